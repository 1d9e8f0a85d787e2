/* cm_err: the error message a library function fills instead of printing.
 *
 * Convention (whole project): a function that can fail takes `cm_err *err`
 * last, returns 0 on success and -1 on failure, and on failure writes one
 * human-readable line (no trailing newline) into err->msg. The caller decides
 * whether and how to print it. `err` may be NULL when the caller does not care.
 */
#ifndef CM_ERR_H
#define CM_ERR_H

#define CM_ERR_MAX 512

typedef struct cm_err {
    char msg[CM_ERR_MAX];
} cm_err;

/* Formats the message into err (when err is not NULL). Always returns -1, so
 * that `return cm_err_set(err, "...")` reads naturally. */
int cm_err_set(cm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message: "<prefix>: <old message>". Returns -1. */
int cm_err_prefix(cm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
