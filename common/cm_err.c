#include "common/cm_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cm_err_set(cm_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cm_err_prefix(cm_err *err, const char *fmt, ...)
{
    if (err) {
        char prefix[CM_ERR_MAX];
        char old[CM_ERR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        size_t n = strlen(prefix);
        if (n > CM_ERR_MAX - 3)
            n = CM_ERR_MAX - 3;
        memcpy(err->msg, prefix, n);
        memcpy(err->msg + n, ": ", 2);
        size_t rest = CM_ERR_MAX - n - 3;
        size_t m = strnlen(old, rest);
        memcpy(err->msg + n + 2, old, m);
        err->msg[n + 2 + m] = '\0';
    }
    return -1;
}
