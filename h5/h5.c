/* h5: HDF5 helpers (h5.h) for store/, spectro/main.c and train/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5/h5.h"
#include "h5/h5_test.h"

void h5_quiet_begin(h5_quiet *q)
{
    q->fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5_quiet_end(const h5_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

typedef struct cause_found {
    int err_no;
    char desc[256];
} cause_found;

/* Walked outermost first: keeps the innermost description and the first errno. */
static herr_t cause_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    cause_found *c = data;
    if (!e->desc)
        return 0;
    const char *p = strstr(e->desc, "errno = ");
    if (p && !c->err_no)
        c->err_no = atoi(p + 8);
    snprintf(c->desc, sizeof c->desc, "%s", e->desc);
    return 0;
}

int h5_cause(char *out, size_t n)
{
    cause_found c = {0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, cause_cb, &c);
    if (c.err_no > 0)
        snprintf(out, n, "%s", strerror(c.err_no));
    else
        snprintf(out, n, "%s", c.desc[0] ? c.desc : "HDF5 error");
    return c.err_no > 0 ? c.err_no : 0;
}

hid_t h5_half_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0)
        return t;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

hid_t h5_vlen_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

hid_t h5_fixed_utf8(size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    if (H5Tset_size(t, len ? len : 1) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLPAD) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int h5_attr_get_int(hid_t loc, const char *name, int64_t *v)
{
    if (H5Aexists(loc, name) <= 0)
        return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1, ft = a >= 0 ? H5Aget_type(a) : -1;
    int ok = sp >= 0 && ft >= 0 && H5Tget_class(ft) == H5T_INTEGER && H5Sget_simple_extent_npoints(sp) == 1 &&
             H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
    return ok ? 0 : -1;
}

/* Writes attribute `name` of type t and dataspace sp from buf; closes t and sp. */
static int attr_put(hid_t loc, const char *name, hid_t t, hid_t sp, const void *buf)
{
    hid_t a = (t >= 0 && sp >= 0) ? H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && (!buf || H5Awrite(a, t, buf) >= 0);
    if (a >= 0 && H5Aclose(a) < 0)
        ok = 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ok ? 0 : -1;
}

int h5_attr_write(hid_t loc, const char *name, hid_t type, int n, const void *v)
{
    if (n < 0)
        return -1;
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = sp >= 0 ? H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, type, v) >= 0;
    if (a >= 0 && H5Aclose(a) < 0)
        ok = 0;
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

int h5_attr_read(hid_t loc, const char *name, hid_t type, int n, void *v)
{
    if (H5Aexists(loc, name) <= 0)
        return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a), ft = H5Aget_type(a);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = -2;
    if (np == (n > 0 ? n : 1) && ft >= 0 && H5Tget_class(ft) == H5Tget_class(type))
        rc = H5Aread(a, type, v) < 0 ? -2 : 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

int h5_attr_str(hid_t loc, const char *name, const char *value)
{
    size_t len = strlen(value);
    char *buf = calloc(1, len + 1);
    if (!buf)
        return -1;
    memcpy(buf, value, len);
    int rc = attr_put(loc, name, h5_fixed_utf8(len), H5Screate(H5S_SCALAR), buf);
    free(buf);
    return rc;
}

int h5_attr_strs(hid_t loc, const char *name, char *const *v, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(v[i]) > len)
            len = strlen(v[i]);
    char *buf = calloc(n > 0 ? (size_t)n : 1, len);
    if (!buf)
        return -1;
    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * len, v[i], strlen(v[i]));
    hsize_t d = (hsize_t)n;
    int rc = attr_put(loc, name, h5_fixed_utf8(len), H5Screate_simple(1, &d, NULL), n > 0 ? buf : NULL);
    free(buf);
    return rc;
}

/* The memory type reading string type ft: same character set (HDF5 converts
 * no string between ASCII and UTF-8), variable length or sz + 1 bytes. */
hid_t h5_str_memtype(hid_t ft)
{
    hid_t mt = H5Tcopy(H5T_C_S1);
    if (mt < 0)
        return -1;
    int ok = H5Tset_cset(mt, H5Tget_cset(ft)) >= 0;
    if (H5Tis_variable_str(ft) > 0)
        ok = ok && H5Tset_size(mt, H5T_VARIABLE) >= 0;
    else
        ok = ok && H5Tset_size(mt, H5Tget_size(ft) + 1) >= 0 && H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0;
    if (!ok) {
        H5Tclose(mt);
        return -1;
    }
    return mt;
}

int h5_str_type_check(hid_t ft, const char *what, const char *refuse_vlen, size_t max_len, cm_err *err)
{
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING)
        return cm_err_set(err, "%s: not a string", what);
    htri_t vl = H5Tis_variable_str(ft);
    if (vl < 0)
        return cm_err_set(err, "%s: unreadable string type", what);
    if (vl > 0 && refuse_vlen)
        return cm_err_set(err, "%s: variable-length string not accepted %s", what, refuse_vlen);
    size_t sz = vl > 0 ? 0 : H5Tget_size(ft);
    if (vl == 0 && (sz == 0 || sz > max_len))
        return cm_err_set(err, "%s: fixed-length string of %zu bytes (at most %zu)", what, sz, max_len);
    return 0;
}

const char *h5_vlen_refusal(hid_t loc, const char *version_attr, int64_t first_fixed, char *buf, size_t n)
{
    int64_t v = 0;
    if (h5_attr_get_int(loc, version_attr, &v) != 0 || v < first_fixed)
        return NULL;
    snprintf(buf, n, "in %s %lld", version_attr, (long long)v);
    return buf;
}

/* Bound of a fixed-length string attribute: H5_STR_MAX and the file's size. */
static size_t str_bound(hid_t loc)
{
    size_t max = H5_STR_MAX;
    hid_t f = H5Iget_file_id(loc);
    hsize_t fs = 0;
    if (f >= 0 && H5Fget_filesize(f, &fs) >= 0 && fs < max)
        max = (size_t)fs;
    if (f >= 0)
        H5Fclose(f);
    return max;
}

/* Reads the checked string attribute a of file type ft into *out. */
static int read_str_value(hid_t a, hid_t ft, char **out)
{
    hid_t mt = h5_str_memtype(ft);
    if (mt < 0)
        return -1;
    if (H5Tis_variable_str(ft) > 0) {
        char *v = NULL;
        if (H5Aread(a, mt, &v) >= 0)
            *out = strdup(v ? v : "");
        if (v)
            H5free_memory(v);
    } else {
        char *buf = calloc(1, H5Tget_size(ft) + 2);
        if (buf && H5Aread(a, mt, buf) >= 0)
            *out = buf;
        else
            free(buf);
    }
    H5Tclose(mt);
    return *out ? 0 : -1;
}

int h5_attr_read_str(hid_t loc, const char *name, const char *refuse_vlen, char **out, cm_err *err)
{
    *out = NULL;
    if (H5Aexists(loc, name) <= 0) {
        cm_err_set(err, "attribute %s: missing", name);
        return -1;
    }
    char what[300];
    snprintf(what, sizeof what, "attribute %s", name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = 0;
    if (a < 0 || sp < 0 || H5Sget_simple_extent_npoints(sp) != 1)
        rc = cm_err_set(err, "%s: not one string", what);
    else if (h5_str_type_check(ft, what, refuse_vlen, str_bound(loc), err) != 0)
        rc = -1;
    else if (read_str_value(a, ft, out) != 0)
        rc = cm_err_set(err, "%s: unreadable", what);
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    return rc == 0 ? 0 : -2;
}

/* Reads the cnt (> 0) strings, variable or fixed length, of the attribute
 * (is_attr) or dataset obj of file type ft into v[0..cnt) as malloc'd copies.
 * Entries already copied stay in v when it fails. */
int h5_read_strings(hid_t obj, int is_attr, hid_t ft, size_t cnt, char **v)
{
    hid_t mt = h5_str_memtype(ft);
    if (mt < 0)
        return -1;
    int ok;
    if (H5Tis_variable_str(ft) > 0) {
        char **tmp = calloc(cnt, sizeof *tmp);
        ok = tmp && (is_attr ? H5Aread(obj, mt, tmp) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp)) >= 0;
        for (size_t i = 0; ok && i < cnt; i++)
            ok = (v[i] = strdup(tmp[i] ? tmp[i] : "")) != NULL;
        for (size_t i = 0; tmp && i < cnt; i++)
            if (tmp[i])
                H5free_memory(tmp[i]);
        free(tmp);
    } else {
        size_t sz = H5Tget_size(ft);
        char *buf = calloc(cnt, sz + 1);
        ok = buf && (is_attr ? H5Aread(obj, mt, buf) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)) >= 0;
        for (size_t i = 0; ok && i < cnt; i++)
            ok = (v[i] = strndup(buf + i * (sz + 1), sz)) != NULL;
        free(buf);
    }
    H5Tclose(mt);
    return ok ? 0 : -1;
}

/* Reads a 1-D string attribute into a malloc'd array of malloc'd strings. */
int h5_attr_read_strs(hid_t loc, const char *name, const char *refuse_vlen, char ***out, int *n, cm_err *err)
{
    *out = NULL;
    *n = 0;
    if (H5Aexists(loc, name) <= 0)
        return cm_err_set(err, "missing attribute %s", name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return cm_err_set(err, "attribute %s cannot be opened", name);
    char what[300];
    snprintf(what, sizeof what, "attribute %s", name);
    hid_t sp = H5Aget_space(a), ft = H5Aget_type(a);
    hssize_t cnt = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int ok = cnt >= 0 && cnt < (1 << 20);
    if (!ok)
        cm_err_set(err, "bad attribute %s (not 0 to 2^20 strings)", name);
    else if (h5_str_type_check(ft, what, refuse_vlen, H5_STR_MAX / ((size_t)cnt + 1), err) != 0)
        ok = 0;
    char **v = ok ? calloc((size_t)cnt + 1, sizeof *v) : NULL;
    if (ok && !v)
        ok = cm_err_set(err, "out of memory") == 0;
    if (ok && cnt > 0 && h5_read_strings(a, 1, ft, (size_t)cnt, v) != 0)
        ok = cm_err_set(err, "attribute %s cannot be read", name) == 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Aclose(a);
    if (!ok) {
        for (hssize_t i = 0; v && i < cnt; i++)
            free(v[i]);
        free(v);
        return -1;
    }
    *out = v;
    *n = (int)cnt;
    return 0;
}

void h5_no_close_at_exit(void)
{
    H5dont_atexit();
}
