/* store: shard writer (one HDF5 file, written under a temporary name). */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "store/st_internal.h"
#include "store/store.h"

typedef struct st_note {
    char *name, *value;
} st_note;

struct st_writer {
    char path[CM_PATH_MAX];
    char tmp[CM_PATH_MAX];
    hid_t file, spec, spec_type;
    /* meta (deep copies) */
    char *dataset, *split, *recipe;
    char **classes;
    int n_classes, F, bins, frames, f32;
    /* per-sample fields, kept in memory until close */
    size_t n, cap;
    char **ids;
    int32_t *labels;
    float *segments;    /* [n, 2] */
    float *frame_time;  /* [n, F] */
    uint64_t *offsets;  /* [n*F + 1] */
    uint8_t *jpeg;
    size_t jpeg_len, jpeg_cap;
    uint16_t *half;     /* one sample's spectrogram as float16 */
    st_note *notes;
    int n_notes;
    size_t bytes;
};

static char *dupstr(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
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

void st_hdf5_quiet(void)
{
    /* The library returns errors through cm_err; HDF5's own stack printing is off. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void writer_free(st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->ids[i]);
    free(w->ids);
    free(w->labels);
    free(w->segments);
    free(w->frame_time);
    free(w->offsets);
    free(w->jpeg);
    free(w->half);
    for (int i = 0; i < w->n_classes; i++)
        free(w->classes ? w->classes[i] : NULL);
    free(w->classes);
    for (int i = 0; i < w->n_notes; i++) {
        free(w->notes[i].name);
        free(w->notes[i].value);
    }
    free(w->notes);
    free(w->dataset);
    free(w->split);
    free(w->recipe);
    free(w);
}

static void writer_close_h5(st_writer *w)
{
    if (w->spec >= 0)
        H5Dclose(w->spec);
    if (w->spec_type >= 0)
        H5Tclose(w->spec_type);
    if (w->file >= 0)
        H5Fclose(w->file);
    w->spec = w->spec_type = w->file = -1;
}

st_writer *st_writer_create(const char *path, const st_meta *meta, cm_err *err)
{
    st_hdf5_quiet();
    if (!meta || meta->frames_per_sample < 0 || meta->frames_per_sample > 64 || meta->bins <= 0 ||
        meta->frames <= 0 || meta->n_classes < 0) {
        cm_err_set(err, "invalid shard metadata");
        return NULL;
    }
    st_writer *w = calloc(1, sizeof *w);
    if (!w) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    w->file = w->spec = w->spec_type = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->dataset = dupstr(meta->dataset);
    w->split = dupstr(meta->split);
    w->recipe = dupstr(meta->recipe_json ? meta->recipe_json : "{}");
    w->n_classes = meta->n_classes;
    w->classes = calloc((size_t)(meta->n_classes ? meta->n_classes : 1), sizeof *w->classes);
    w->F = meta->frames_per_sample;
    w->bins = meta->bins;
    w->frames = meta->frames;
    w->f32 = meta->spec_float32 ? 1 : 0;
    w->offsets = malloc(sizeof *w->offsets);
    w->half = w->f32 ? NULL : malloc((size_t)w->bins * (size_t)w->frames * sizeof *w->half);
    if (!w->dataset || !w->split || !w->recipe || !w->classes || !w->offsets || (!w->f32 && !w->half)) {
        writer_free(w);
        cm_err_set(err, "out of memory");
        return NULL;
    }
    w->offsets[0] = 0;
    for (int i = 0; i < meta->n_classes; i++)
        if (!(w->classes[i] = dupstr(meta->classes[i]))) {
            writer_free(w);
            cm_err_set(err, "out of memory");
            return NULL;
        }
    if (cm_tmp_path(w->tmp, sizeof w->tmp, path, err) != 0) {
        writer_free(w);
        return NULL;
    }
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        unlink(w->tmp);
        writer_free(w);
        cm_err_set(err, "cannot create HDF5 file");
        return NULL;
    }
    /* audio/spec: [N, bins, frames], one chunk per sample, no filter, no fill */
    hid_t g = H5Gcreate2(w->file, "audio", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[3] = {0, (hsize_t)w->bins, (hsize_t)w->frames};
    hsize_t maxd[3] = {H5S_UNLIMITED, (hsize_t)w->bins, (hsize_t)w->frames};
    hsize_t chunk[3] = {1, (hsize_t)w->bins, (hsize_t)w->frames};
    hid_t sp = H5Screate_simple(3, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    w->spec_type = w->f32 ? H5Tcopy(H5T_IEEE_F32LE) : st_half_type();
    int ok = g >= 0 && sp >= 0 && dcpl >= 0 && w->spec_type >= 0 && H5Pset_chunk(dcpl, 3, chunk) >= 0 &&
             H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 &&
             H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR) >= 0;
    if (ok)
        w->spec = H5Dcreate2(g, "spec", w->spec_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    if (g >= 0)
        H5Gclose(g);
    if (!ok || w->spec < 0) {
        writer_close_h5(w);
        unlink(w->tmp);
        writer_free(w);
        cm_err_set(err, "cannot create the spectrogram dataset");
        return NULL;
    }
    return w;
}

static int grow(st_writer *w)
{
    if (w->n < w->cap)
        return 0;
    size_t cap = w->cap ? w->cap * 2 : 64;
    char **ids = realloc(w->ids, cap * sizeof *ids);
    if (ids)
        w->ids = ids;
    int32_t *lb = realloc(w->labels, cap * sizeof *lb);
    if (lb)
        w->labels = lb;
    float *sg = realloc(w->segments, cap * 2 * sizeof *sg);
    if (sg)
        w->segments = sg;
    float *ft = realloc(w->frame_time, (cap * (size_t)w->F + 1) * sizeof *ft);
    if (ft)
        w->frame_time = ft;
    uint64_t *of = realloc(w->offsets, (cap * (size_t)w->F + 1) * sizeof *of);
    if (of)
        w->offsets = of;
    if (!ids || !lb || !sg || !ft || !of)
        return -1;
    w->cap = cap;
    return 0;
}

int st_writer_add(st_writer *w, const st_sample *s, cm_err *err)
{
    if (!s->id || !*s->id || strlen(s->id) >= 256)
        return cm_err_set(err, "sample id empty or longer than 255 bytes");
    if (s->label < 0 || s->label >= w->n_classes)
        return cm_err_set(err, "%s: label %d out of range [0, %d)", s->id, (int)s->label, w->n_classes);
    if (grow(w) != 0)
        return cm_err_set(err, "out of memory");
    size_t add = 0;
    for (int k = 0; k < w->F; k++)
        add += s->jpeg_len[k];
    if (w->jpeg_len + add > w->jpeg_cap) {
        size_t cap = w->jpeg_cap ? w->jpeg_cap : 1 << 20;
        while (cap < w->jpeg_len + add)
            cap *= 2;
        uint8_t *j = realloc(w->jpeg, cap);
        if (!j)
            return cm_err_set(err, "out of memory");
        w->jpeg = j;
        w->jpeg_cap = cap;
    }
    /* spectrogram first: the only HDF5 call, so a failure leaves nothing half-added */
    size_t cnt = (size_t)w->bins * (size_t)w->frames;
    const void *buf = s->spec;
    if (!w->f32) {
        st_f32_to_f16_n(s->spec, w->half, cnt);
        buf = w->half;
    }
    hsize_t dims[3] = {w->n + 1, (hsize_t)w->bins, (hsize_t)w->frames};
    hsize_t start[3] = {w->n, 0, 0}, count[3] = {1, (hsize_t)w->bins, (hsize_t)w->frames};
    if (H5Dset_extent(w->spec, dims) < 0)
        return cm_err_set(err, "%s: cannot extend the spectrogram dataset", s->id);
    hid_t fs = H5Dget_space(w->spec);
    hid_t ms = H5Screate_simple(3, count, NULL);
    int ok = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dwrite(w->spec, w->spec_type, ms, fs, H5P_DEFAULT, buf) >= 0;
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    if (!ok) {
        dims[0] = w->n;
        H5Dset_extent(w->spec, dims);
        return cm_err_set(err, "%s: cannot write the spectrogram", s->id);
    }
    if (!(w->ids[w->n] = dupstr(s->id)))
        return cm_err_set(err, "out of memory");
    w->labels[w->n] = s->label;
    w->segments[2 * w->n] = s->seg_start;
    w->segments[2 * w->n + 1] = s->seg_end;
    for (int k = 0; k < w->F; k++) {
        size_t o = w->n * (size_t)w->F + (size_t)k;
        w->frame_time[o] = s->frame_time ? s->frame_time[k] : 0.0f;
        memcpy(w->jpeg + w->jpeg_len, s->jpeg[k], s->jpeg_len[k]);
        w->jpeg_len += s->jpeg_len[k];
        w->offsets[o + 1] = w->jpeg_len;
    }
    w->n++;
    w->bytes += cnt * (w->f32 ? 4 : 2) + add + 64;
    return 0;
}

size_t st_writer_count(const st_writer *w)
{
    return w->n;
}

size_t st_writer_bytes(const st_writer *w)
{
    return w->bytes;
}

int st_writer_set_note(st_writer *w, const char *name, const char *value, cm_err *err)
{
    for (int i = 0; i < w->n_notes; i++)
        if (!strcmp(w->notes[i].name, name)) {
            char *v = dupstr(value);
            if (!v)
                return cm_err_set(err, "out of memory");
            free(w->notes[i].value);
            w->notes[i].value = v;
            return 0;
        }
    st_note *n = realloc(w->notes, (size_t)(w->n_notes + 1) * sizeof *n);
    if (!n)
        return cm_err_set(err, "out of memory");
    w->notes = n;
    n[w->n_notes].name = dupstr(name);
    n[w->n_notes].value = dupstr(value);
    if (!n[w->n_notes].name || !n[w->n_notes].value) {
        free(n[w->n_notes].name);
        free(n[w->n_notes].value);
        return cm_err_set(err, "out of memory");
    }
    w->n_notes++;
    return 0;
}

/* ---- close: the small datasets and the attributes ---- */

static int write_ds(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                    const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    if (sp < 0)
        return -1;
    hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0;
    hsize_t total = 1;
    for (int i = 0; i < rank; i++)
        total *= dims[i];
    if (ok && total > 0)
        ok = H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

static hid_t vlen_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int st_attr_str(hid_t loc, const char *name, const char *value)
{
    hid_t t = vlen_utf8();
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = (t >= 0 && sp >= 0) ? H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ok ? 0 : -1;
}

static int attr_int(hid_t loc, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

static int attr_strs(hid_t loc, const char *name, char *const *v, int n)
{
    hid_t t = vlen_utf8();
    hsize_t d = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    hid_t a = (t >= 0 && sp >= 0) ? H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && (n == 0 || H5Awrite(a, t, v) >= 0);
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ok ? 0 : -1;
}

static int write_rest(st_writer *w)
{
    hid_t f = w->file;
    hsize_t n = w->n, F = (hsize_t)w->F;
    hid_t st = vlen_utf8();
    int ok = st >= 0 && write_ds(f, "id", st, st, 1, &n, w->ids) == 0;
    if (st >= 0)
        H5Tclose(st);
    ok = ok && write_ds(f, "label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, w->labels) == 0;
    hsize_t d2[2] = {n, 2};
    ok = ok && write_ds(f, "segment", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, w->segments) == 0;
    hsize_t dt[2] = {n, F};
    ok = ok && write_ds(f, "frame_time", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dt, w->frame_time) == 0;
    hid_t g = ok ? H5Gcreate2(f, "video", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = ok && g >= 0;
    hsize_t no = n * F + 1, nj = w->jpeg_len;
    ok = ok && write_ds(g, "offset", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &no, w->offsets) == 0;
    ok = ok && write_ds(g, "jpeg", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &nj, w->jpeg) == 0;
    if (g >= 0)
        H5Gclose(g);
    ok = ok && st_attr_str(f, "format", ST_FORMAT) == 0 && attr_int(f, "version", ST_VERSION) == 0 &&
         st_attr_str(f, "dataset", w->dataset) == 0 && st_attr_str(f, "split", w->split) == 0 &&
         attr_strs(f, "classes", w->classes, w->n_classes) == 0 &&
         attr_int(f, "frames_per_sample", w->F) == 0 && st_attr_str(f, "recipe", w->recipe) == 0 &&
         st_attr_str(f, "tool_version", ST_TOOL_VERSION) == 0 &&
         st_attr_str(f, "spec_dtype", w->f32 ? "float32" : "float16") == 0;
    for (int i = 0; ok && i < w->n_notes; i++)
        ok = st_attr_str(f, w->notes[i].name, w->notes[i].value) == 0;
    return ok ? 0 : -1;
}

int st_writer_close(st_writer *w, cm_err *err)
{
    if (!w)
        return cm_err_set(err, "no writer");
    int ok = write_rest(w) == 0;
    ok = H5Fflush(w->file, H5F_SCOPE_GLOBAL) >= 0 && ok;
    writer_close_h5(w);
    int rc;
    if (!ok) {
        unlink(w->tmp);
        rc = cm_err_set(err, "cannot write the shard's datasets");
    } else {
        rc = cm_rename_commit(w->tmp, w->path, err);
    }
    writer_free(w);
    return rc;
}

void st_writer_abort(st_writer *w)
{
    if (!w)
        return;
    writer_close_h5(w);
    unlink(w->tmp);
    writer_free(w);
}
