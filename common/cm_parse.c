/* cm_parse: numbers from strings (see cm_parse.h). */
#include "common/cm_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cm_parse_int(const char *s, long lo, long hi, int *out)
{
    if (!s)
        return -1;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi || x < -2147483647L - 1 || x > 2147483647L)
        return -1;
    *out = (int)x;
    return 0;
}

int cm_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s)
        return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi))
        return -1;
    *out = x;
    return 0;
}

int cm_parse_decimal(const char *s, double lo, double hi, double *out)
{
    if (!s)
        return -1;
    size_t digits = 0, i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (s[i] == '.')
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (!digits || s[i])
        return -1;
    return cm_parse_double(s, lo, hi, out); /* strtod reads exactly this syntax the same way */
}

int cm_format_decimal(char *buf, size_t n, double x)
{
    int l = 0;
    for (int d = 0; d <= 40; d++) { /* 40 decimals: 17 significant digits from 1e-23 up */
        l = snprintf(buf, n, "%.*f", d, x);
        if (l > 0 && (size_t)l < n && strtod(buf, NULL) == x)
            return l;
    }
    return snprintf(buf, n, "%.17g", x);
}
