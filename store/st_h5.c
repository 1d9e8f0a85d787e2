/* store: HDF5 helpers shared by the writer, the reader and train/ckpt.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/st_internal.h"

void st_h5_quiet_begin(st_h5_quiet *q)
{
    q->fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void st_h5_quiet_end(const st_h5_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

typedef struct h5_cause {
    int err_no;
    char desc[256];
} h5_cause;

/* Walked outermost first: keeps the innermost description and the first errno. */
static herr_t cause_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    h5_cause *c = data;
    if (!e->desc)
        return 0;
    const char *p = strstr(e->desc, "errno = ");
    if (p && !c->err_no)
        c->err_no = atoi(p + 8);
    snprintf(c->desc, sizeof c->desc, "%s", e->desc);
    return 0;
}

int st_h5_cause(char *out, size_t n)
{
    h5_cause c = {0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, cause_cb, &c);
    if (c.err_no > 0)
        snprintf(out, n, "%s", strerror(c.err_no));
    else
        snprintf(out, n, "%s", c.desc[0] ? c.desc : "HDF5 error");
    return c.err_no > 0 ? c.err_no : 0;
}

hid_t st_half_type(void)
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

static hid_t vlen_utf8(void)
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

hid_t st_vlen_utf8(void)
{
    return vlen_utf8();
}

int st_attr_str(hid_t loc, const char *name, const char *value)
{
    hid_t t = vlen_utf8();
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = (t >= 0 && sp >= 0) ? H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0 && H5Aclose(a) < 0)
        ok = 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ok ? 0 : -1;
}

/* The memory type reading string type ft: same character set (HDF5 converts
 * no string between ASCII and UTF-8), variable length or sz + 1 bytes. */
hid_t st_str_memtype(hid_t ft)
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

char *st_attr_get_str(hid_t loc, const char *name)
{
    if (H5Aexists(loc, name) <= 0)
        return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    char *out = NULL;
    if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
        hid_t mt = st_str_memtype(ft);
        if (mt >= 0 && H5Tis_variable_str(ft) > 0) {
            char *v = NULL;
            if (H5Aread(a, mt, &v) >= 0 && v)
                out = strdup(v);
            if (v)
                H5free_memory(v);
        } else if (mt >= 0) {
            out = calloc(1, H5Tget_size(ft) + 2);
            if (out && H5Aread(a, mt, out) < 0) {
                free(out);
                out = NULL;
            }
        }
        if (mt >= 0)
            H5Tclose(mt);
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return out;
}

void st_h5_no_close_at_exit(void)
{
    H5dont_atexit();
}
