#include "common/cm_npy.h"
#include "common/cm_npy_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"

size_t cm_npy_elem_size(const char *descr)
{
    if (strlen(descr) < 3 || (descr[0] != '<' && descr[0] != '|' && descr[0] != '>'))
        return 0;
    const char *kinds = "fiub";
    if (!strchr(kinds, descr[1]))
        return 0;
    long sz = strtol(descr + 2, NULL, 10);
    return sz > 0 && sz <= 8 ? (size_t)sz : 0;
}

int cm_npy_write(const char *path, const char *descr, const size_t *shape, int ndim,
                 const void *data, cm_err *err)
{
    size_t es = cm_npy_elem_size(descr);
    if (!es || ndim < 0 || ndim > CM_NPY_MAXDIM)
        return cm_err_set(err, "%s: bad npy type or rank", path);
    char dict[512];
    int w = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        w += snprintf(dict + w, sizeof dict - (size_t)w, "%zu,%s", shape[i], i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    w += snprintf(dict + w, sizeof dict - (size_t)w, "), }");
    /* header = magic(6) + version(2) + len(2) + dict + spaces + '\n', multiple of 64 */
    size_t total = 10 + (size_t)w + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)w + pad + 1;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                              (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    cm_atomic a;
    if (cm_atomic_open(&a, path, err) != 0)
        return -1;
    int ok = fwrite(head, 1, 10, a.fp) == 10 && fwrite(dict, 1, (size_t)w, a.fp) == (size_t)w;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', a.fp) != EOF;
    ok = ok && fputc('\n', a.fp) != EOF;
    ok = ok && (count == 0 || fwrite(data, es, count, a.fp) == count);
    if (!ok) {
        int e = errno;
        cm_atomic_abort(&a);
        return cm_err_set(err, "%s: write failed: %s", path, strerror(e));
    }
    return cm_atomic_commit(&a, err);
}

int cm_npy_read(const char *path, cm_npy *out, cm_err *err)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t n;
    if (cm_read_regular(path, (size_t)4 << 30, &buf, &n, err) != 0) /* an array: up to 4 GiB */
        return -1;
    if (n < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return cm_err_set(err, "%s: not a .npy file", path);
    }
    size_t hlen, off;
    if (buf[6] == 1) {
        hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
        off = 10;
    } else {
        if (n < 12) {
            free(buf);
            return cm_err_set(err, "%s: truncated header", path);
        }
        hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8) |
               ((size_t)(unsigned char)buf[10] << 16) | ((size_t)(unsigned char)buf[11] << 24);
        off = 12;
    }
    if (off + hlen > n) {
        free(buf);
        return cm_err_set(err, "%s: truncated header", path);
    }
    char *hdr = buf + off;
    char save = hdr[hlen - 1];
    hdr[hlen - 1] = '\0';
    const char *d = strstr(hdr, "'descr':");
    const char *f = strstr(hdr, "'fortran_order':");
    const char *s = strstr(hdr, "'shape':");
    int bad = !d || !f || !s || strncmp(f + 16, " False", 6) != 0;
    if (!bad) {
        d = strchr(d + 8, '\'');
        const char *e = d ? strchr(d + 1, '\'') : NULL;
        bad = !e || (size_t)(e - d - 1) >= sizeof out->descr;
        if (!bad) {
            memcpy(out->descr, d + 1, (size_t)(e - d - 1));
            out->elem_size = cm_npy_elem_size(out->descr);
            bad = out->elem_size == 0;
        }
    }
    if (!bad) {
        const char *p = strchr(s, '(');
        bad = !p;
        out->count = 1;
        while (!bad) {
            p++;
            while (*p == ' ' || *p == ',')
                p++;
            if (*p == ')')
                break;
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p || out->ndim >= CM_NPY_MAXDIM) {
                bad = 1;
                break;
            }
            out->shape[out->ndim++] = (size_t)v;
            out->count *= (size_t)v;
            p = end - 1;
        }
    }
    hdr[hlen - 1] = save;
    if (bad) {
        free(buf);
        return cm_err_set(err, "%s: unsupported .npy header", path);
    }
    size_t bytes = out->count * out->elem_size;
    if (off + hlen + bytes > n) {
        free(buf);
        return cm_err_set(err, "%s: truncated data", path);
    }
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data) {
        free(buf);
        return cm_err_set(err, "%s: out of memory", path);
    }
    memcpy(out->data, buf + off + hlen, bytes);
    free(buf);
    return 0;
}

void cm_npy_free(cm_npy *a)
{
    free(a->data);
    a->data = NULL;
}
