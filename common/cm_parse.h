/* cm_parse: numbers from command-line and configuration strings.
 *
 * The whole string must be the number (no leading/trailing junk, no empty
 * string); out is written only on success. */
#ifndef CM_PARSE_H
#define CM_PARSE_H

/* A decimal integer in [lo, hi]: 0, or -1. */
int cm_parse_int(const char *s, long lo, long hi, int *out);
/* A number (strtod syntax) in [lo, hi]; NaN is refused, infinities only when
 * inside the bounds (pass -INFINITY, INFINITY for no bound): 0, or -1. */
int cm_parse_double(const char *s, double lo, double hi, double *out);

#endif
