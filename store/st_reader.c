/* store: shard reader. Opens with HDF5 once, then reads with pread(). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "store/st_internal.h"
#include "store/store.h"

struct st_shard {
    char path[CM_PATH_MAX];
    hid_t file, spec, jpeg_ds;
    int fd;
    st_meta meta;
    char *dataset, *split, *recipe;
    char **classes;
    size_t n;
    char **ids;
    int32_t *labels;
    float *segments;
    float *frame_time;
    uint64_t *offsets;
    uint64_t jpeg_total;
    size_t spec_bytes;      /* bytes of one sample's spectrogram */
    haddr_t *spec_addr;     /* file offset of each sample's chunk (NULL: read through HDF5) */
    haddr_t jpeg_addr;      /* file offset of the JPEG bytes (HADDR_UNDEF: through HDF5) */
};

int st_hdf5_threadsafe(void)
{
    hbool_t ts = 0;
    if (H5is_library_threadsafe(&ts) < 0)
        return 0;
    return ts ? 1 : 0;
}

char *st_attr_get_str(hid_t loc, const char *name)
{
    if (H5Aexists(loc, name) <= 0)
        return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 converts no string between ASCII and UTF-8 */
        if (H5Tis_variable_str(ft) > 0) {
            H5Tset_size(mt, H5T_VARIABLE);
            char *v = NULL;
            if (H5Aread(a, mt, &v) >= 0 && v) {
                out = strdup(v);
                H5free_memory(v);
            }
        } else {
            size_t sz = H5Tget_size(ft);
            H5Tset_size(mt, sz + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            out = calloc(1, sz + 2);
            if (out && H5Aread(a, mt, out) < 0) {
                free(out);
                out = NULL;
            }
        }
        H5Tclose(mt);
    }
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return out;
}

static int attr_get_int(hid_t loc, const char *name, int64_t *v)
{
    if (H5Aexists(loc, name) <= 0)
        return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    int ok = a >= 0 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    if (a >= 0)
        H5Aclose(a);
    return ok ? 0 : -1;
}

/* Reads the cnt (> 0) strings, variable or fixed length, of the attribute
 * (is_attr) or dataset obj of file type ft into v[0..cnt) as malloc'd copies.
 * Entries already copied stay in v when it fails. */
static int read_strings(hid_t obj, int is_attr, hid_t ft, size_t cnt, char **v)
{
    int ok;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 converts no string between ASCII and UTF-8 */
    if (H5Tis_variable_str(ft) > 0) {
        H5Tset_size(mt, H5T_VARIABLE);
        char **tmp = calloc(cnt, sizeof *tmp);
        ok = tmp && (is_attr ? H5Aread(obj, mt, tmp) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp)) >= 0;
        for (size_t i = 0; ok && i < cnt; i++)
            ok = (v[i] = strdup(tmp[i] ? tmp[i] : "")) != NULL;
        if (tmp) {
            for (size_t i = 0; i < cnt; i++)
                if (tmp[i])
                    H5free_memory(tmp[i]);
            free(tmp);
        }
    } else {
        size_t sz = H5Tget_size(ft);
        H5Tset_size(mt, sz + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
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
static int attr_get_strs(hid_t loc, const char *name, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    if (H5Aexists(loc, name) <= 0)
        return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a), ft = H5Aget_type(a);
    hssize_t cnt = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int ok = cnt >= 0 && ft >= 0 && H5Tget_class(ft) == H5T_STRING;
    char **v = NULL;
    if (ok) {
        v = calloc((size_t)cnt + 1, sizeof *v);
        ok = v != NULL;
    }
    if (ok && cnt > 0)
        ok = read_strings(a, 1, ft, (size_t)cnt, v) == 0;
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

/* Reads a whole dataset of `expect` elements with memory type mt. */
static int read_all(hid_t f, const char *name, hid_t mt, size_t expect, void *buf)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t sp = H5Dget_space(d);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int ok = n >= 0 && (size_t)n == expect && (n == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return ok ? 0 : -1;
}

static int read_ids(st_shard *s)
{
    s->ids = calloc(s->n + 1, sizeof *s->ids);
    if (!s->ids)
        return -1;
    if (s->n == 0)
        return read_all(s->file, "id", H5T_NATIVE_INT, 0, NULL);
    hid_t d = H5Dopen2(s->file, "id", H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int ok = ft >= 0 && n >= 0 && (size_t)n == s->n && H5Tget_class(ft) == H5T_STRING;
    if (ok)
        ok = read_strings(d, 0, ft, s->n, s->ids) == 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return ok ? 0 : -1;
}

void st_shard_close(st_shard *s)
{
    if (!s)
        return;
    if (s->spec >= 0)
        H5Dclose(s->spec);
    if (s->jpeg_ds >= 0)
        H5Dclose(s->jpeg_ds);
    if (s->file >= 0)
        H5Fclose(s->file);
    if (s->fd >= 0)
        close(s->fd);
    for (size_t i = 0; s->ids && i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    for (int i = 0; s->classes && i < s->meta.n_classes; i++)
        free(s->classes[i]);
    free(s->classes);
    free(s->labels);
    free(s->segments);
    free(s->frame_time);
    free(s->offsets);
    free(s->spec_addr);
    free(s->dataset);
    free(s->split);
    free(s->recipe);
    free(s);
}

static st_shard *fail(st_shard *s, cm_err *err, const char *msg)
{
    cm_err_set(err, "%s", msg);
    st_shard_close(s);
    return NULL;
}

st_shard *st_shard_open(const char *path, cm_err *err)
{
    st_hdf5_quiet();
    st_shard *s = calloc(1, sizeof *s);
    if (!s) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    s->file = s->spec = s->jpeg_ds = -1;
    s->fd = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    if (!cm_is_file(path))
        return fail(s, err, cm_is_dir(path) ? "is a directory" : "no such file");
    if (H5Fis_hdf5(path) <= 0)
        return fail(s, err, "not an HDF5 file");
    s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->file < 0)
        return fail(s, err, "cannot open the HDF5 file");
    char *fmt = st_attr_get_str(s->file, "format");
    int fmt_ok = fmt && !strcmp(fmt, ST_FORMAT);
    free(fmt);
    if (!fmt_ok)
        return fail(s, err, "not a " ST_FORMAT " file (attribute format)");
    int64_t ver = 0, F = 0;
    if (attr_get_int(s->file, "version", &ver) != 0 || ver < 1 || ver > ST_VERSION) {
        cm_err_set(err, "unsupported format version %lld", (long long)ver);
        st_shard_close(s);
        return NULL;
    }
    if (attr_get_int(s->file, "frames_per_sample", &F) != 0 || F < 0 || F > 64)
        return fail(s, err, "bad or missing attribute frames_per_sample");
    s->dataset = st_attr_get_str(s->file, "dataset");
    s->split = st_attr_get_str(s->file, "split");
    s->recipe = st_attr_get_str(s->file, "recipe");
    if (!s->dataset || !s->split || !s->recipe)
        return fail(s, err, "missing attribute dataset, split or recipe");
    int nc = 0;
    if (attr_get_strs(s->file, "classes", &s->classes, &nc) != 0)
        return fail(s, err, "bad or missing attribute classes");
    s->meta.n_classes = nc;

    s->spec = H5Dopen2(s->file, "audio/spec", H5P_DEFAULT);
    if (s->spec < 0)
        return fail(s, err, "missing dataset audio/spec");
    hid_t sp = H5Dget_space(s->spec), ft = H5Dget_type(s->spec);
    hsize_t dims[3] = {0, 0, 0};
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == 3)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    size_t esz = ft >= 0 ? H5Tget_size(ft) : 0;
    int fclass = ft >= 0 ? H5Tget_class(ft) : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (rank != 3 || fclass != H5T_FLOAT || (esz != 2 && esz != 4) || dims[1] == 0 || dims[2] == 0)
        return fail(s, err, "audio/spec is not a [N, bins, frames] float16/float32 dataset");
    s->n = (size_t)dims[0];
    s->meta.bins = (int)dims[1];
    s->meta.frames = (int)dims[2];
    s->meta.spec_float32 = esz == 4;
    s->meta.frames_per_sample = (int)F;
    s->spec_bytes = (size_t)dims[1] * (size_t)dims[2] * esz;

    size_t n = s->n, nf = n * (size_t)F;
    s->labels = malloc((n + 1) * sizeof *s->labels);
    s->segments = malloc((2 * n + 1) * sizeof *s->segments);
    s->frame_time = malloc((nf + 1) * sizeof *s->frame_time);
    s->offsets = malloc((nf + 1) * sizeof *s->offsets);
    if (!s->labels || !s->segments || !s->frame_time || !s->offsets)
        return fail(s, err, "out of memory");
    if (read_ids(s) != 0)
        return fail(s, err, "dataset id missing or not N strings");
    if (read_all(s->file, "label", H5T_NATIVE_INT32, n, s->labels) != 0)
        return fail(s, err, "dataset label missing or not N values");
    if (read_all(s->file, "segment", H5T_NATIVE_FLOAT, 2 * n, s->segments) != 0)
        return fail(s, err, "dataset segment missing or not [N, 2]");
    if (read_all(s->file, "frame_time", H5T_NATIVE_FLOAT, nf, s->frame_time) != 0)
        return fail(s, err, "dataset frame_time missing or not [N, F]");
    if (read_all(s->file, "video/offset", H5T_NATIVE_UINT64, nf + 1, s->offsets) != 0)
        return fail(s, err, "dataset video/offset missing or not N*F+1 values");
    s->jpeg_ds = H5Dopen2(s->file, "video/jpeg", H5P_DEFAULT);
    if (s->jpeg_ds < 0)
        return fail(s, err, "missing dataset video/jpeg");
    sp = H5Dget_space(s->jpeg_ds);
    hssize_t nj = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (nj < 0)
        return fail(s, err, "bad dataset video/jpeg");
    s->jpeg_total = (uint64_t)nj;
    if (s->offsets[0] != 0 || s->offsets[nf] != s->jpeg_total)
        return fail(s, err, "video/offset does not span video/jpeg");
    for (size_t i = 0; i < nf; i++)
        if (s->offsets[i + 1] < s->offsets[i])
            return fail(s, err, "video/offset is not increasing");
    for (size_t i = 0; i < n; i++)
        if (s->labels[i] < 0 || s->labels[i] >= nc)
            return fail(s, err, "label out of the range of classes");

    /* direct-read map: chunk addresses of audio/spec, address of video/jpeg */
    s->jpeg_addr = s->jpeg_total ? H5Dget_offset(s->jpeg_ds) : HADDR_UNDEF;
    s->spec_addr = malloc((n + 1) * sizeof *s->spec_addr);
    int direct = s->spec_addr != NULL;
    for (size_t i = 0; direct && i < n; i++) {
        hsize_t off[3] = {i, 0, 0}, size = 0;
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        if (H5Dget_chunk_info_by_coord(s->spec, off, &mask, &addr, &size) < 0 || mask != 0 ||
            addr == HADDR_UNDEF || size != s->spec_bytes)
            direct = 0;
        else
            s->spec_addr[i] = addr;
    }
    if (!direct) {
        free(s->spec_addr);
        s->spec_addr = NULL;
    }
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return fail(s, err, "cannot open for reading");

    s->meta.dataset = s->dataset;
    s->meta.split = s->split;
    s->meta.classes = (const char *const *)s->classes;
    s->meta.recipe_json = s->recipe;
    return s;
}

size_t st_shard_count(const st_shard *s)
{
    return s->n;
}

const st_meta *st_shard_meta(const st_shard *s)
{
    return &s->meta;
}

const char *st_shard_path(const st_shard *s)
{
    return s->path;
}

const char *st_shard_id(const st_shard *s, size_t i)
{
    return i < s->n ? s->ids[i] : NULL;
}

int32_t st_shard_label(const st_shard *s, size_t i)
{
    return i < s->n ? s->labels[i] : -1;
}

char *st_shard_note(const st_shard *s, const char *name)
{
    return st_attr_get_str(s->file, name);
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int hdf5_read_range(hid_t d, int rank, const hsize_t *start, const hsize_t *count, hid_t mt, void *buf)
{
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    int ok = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf) >= 0;
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    return ok ? 0 : -1;
}

int st_shard_read(st_shard *s, size_t i, st_record *r, cm_err *err)
{
    memset(r, 0, sizeof *r);
    if (i >= s->n)
        return cm_err_set(err, "sample %zu out of range (%zu samples)", i, s->n);
    snprintf(r->id, sizeof r->id, "%s", s->ids[i]);
    r->label = s->labels[i];
    r->seg_start = s->segments[2 * i];
    r->seg_end = s->segments[2 * i + 1];
    int F = s->meta.frames_per_sample;
    r->frames_per_sample = F;
    size_t base = i * (size_t)F;
    uint64_t lo = s->offsets[base], hi = s->offsets[base + (size_t)F];
    for (int k = 0; k < F; k++) {
        r->frame_time[k] = s->frame_time[base + (size_t)k];
        r->jpeg_off[k] = (size_t)(s->offsets[base + (size_t)k] - lo);
        r->jpeg_len[k] = (size_t)(s->offsets[base + (size_t)k + 1] - s->offsets[base + (size_t)k]);
    }
    r->jpeg_buf = malloc(hi - lo + 1);
    if (!r->jpeg_buf)
        return cm_err_set(err, "out of memory");
    if (hi == lo)
        return 0;
    int rc;
    if (s->jpeg_addr != HADDR_UNDEF) {
        rc = pread_all(s->fd, r->jpeg_buf, hi - lo, s->jpeg_addr + lo);
    } else {
        hsize_t st = lo, cnt = hi - lo;
        rc = hdf5_read_range(s->jpeg_ds, 1, &st, &cnt, H5T_NATIVE_UINT8, r->jpeg_buf);
    }
    if (rc != 0) {
        st_record_free(r);
        return cm_err_set(err, "sample %zu: cannot read the JPEG bytes", i);
    }
    return 0;
}

void st_record_free(st_record *r)
{
    if (!r)
        return;
    free(r->jpeg_buf);
    r->jpeg_buf = NULL;
}

int st_shard_read_spec(st_shard *s, size_t i, void *raw, float *f32, cm_err *err)
{
    if (i >= s->n)
        return cm_err_set(err, "sample %zu out of range (%zu samples)", i, s->n);
    size_t cnt = (size_t)s->meta.bins * (size_t)s->meta.frames;
    void *buf = raw;
    void *own = NULL;
    if (!buf) {
        if (s->meta.spec_float32 && f32) {
            buf = f32;
        } else {
            buf = own = malloc(s->spec_bytes);
            if (!own)
                return cm_err_set(err, "out of memory");
        }
    }
    int rc;
    if (s->spec_addr) {
        rc = pread_all(s->fd, buf, s->spec_bytes, s->spec_addr[i]);
    } else {
        hsize_t st[3] = {i, 0, 0}, c[3] = {1, (hsize_t)s->meta.bins, (hsize_t)s->meta.frames};
        hid_t mt = s->meta.spec_float32 ? H5Tcopy(H5T_IEEE_F32LE) : st_half_type();
        rc = mt >= 0 ? hdf5_read_range(s->spec, 3, st, c, mt, buf) : -1;
        if (mt >= 0)
            H5Tclose(mt);
    }
    if (rc == 0 && f32 && buf != (void *)f32) {
        if (s->meta.spec_float32)
            memcpy(f32, buf, cnt * sizeof(float));
        else
            st_f16_to_f32_n(buf, f32, cnt);
    }
    free(own);
    if (rc != 0)
        return cm_err_set(err, "sample %zu: cannot read the spectrogram", i);
    return 0;
}
