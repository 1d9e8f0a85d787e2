/* cm_parse: numbers from command-line and configuration strings.
 *
 * The whole string must be the number (no leading/trailing junk, no empty
 * string); out is written only on success. */
#ifndef CM_PARSE_H
#define CM_PARSE_H

#include <stddef.h>

/* A decimal integer in [lo, hi]: 0, or -1. */
int cm_parse_int(const char *s, long lo, long hi, int *out);
/* A number (strtod syntax) in [lo, hi]; NaN is refused, infinities only when
 * inside the bounds (pass -INFINITY, INFINITY for no bound): 0, or -1. */
int cm_parse_double(const char *s, double lo, double hi, double *out);
/* A plain unsigned decimal in [lo, hi]: digits with an optional fraction
 * ("12", "0.5", "3.", ".25"); no sign, space, exponent, hex, inf or nan
 * (what annotation files hold as times): 0, or -1. */
int cm_parse_decimal(const char *s, double lo, double hi, double *out);
/* x (finite, >= 0) as the shortest plain decimal that reads back as x
 * ("0", "10", "2.5", "0.1"; no exponent, no trailing zeros): the one
 * canonical text of a parsed time. Falls back to "%.17g" when no plain
 * form of up to 40 decimals fits in n (x < 1e-23 or too long for buf).
 * Returns the length (as snprintf); n = 64 holds every x < 1e22. */
int cm_format_decimal(char *buf, size_t n, double x);

#endif
