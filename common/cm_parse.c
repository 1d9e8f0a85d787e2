/* cm_parse: numbers from strings (see cm_parse.h). */
#include "common/cm_parse.h"

#include <errno.h>
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
