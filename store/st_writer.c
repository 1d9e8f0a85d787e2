/* store: shard writer (one HDF5 file, written under a temporary name).
 * Every HDF5 call is checked; a failure names the shard and the cause. */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "common/cm_version.h"
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
    uint32_t *crc_spec, *crc_record; /* [n] */
    uint8_t *jpeg;
    size_t jpeg_len, jpeg_cap;
    uint16_t *half;     /* one sample's spectrogram as float16 */
    st_note *notes;
    int n_notes;
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

/* Right after a failed HDF5 call: "PATH: cannot WHAT: CAUSE". Returns -1. */
static int write_fail(const st_writer *w, cm_err *err, const char *what)
{
    char cause[256];
    h5_cause(cause, sizeof cause);
    return cm_err_set(err, "%s: cannot %s: %s", w->path, what, cause);
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
    free(w->crc_spec);
    free(w->crc_record);
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

/* Closes the HDF5 objects; -1 (err filled unless already failed) when a close fails. */
static int writer_close_h5(st_writer *w, cm_err *err, int failed)
{
    int rc = 0;
    if (w->spec >= 0 && H5Dclose(w->spec) < 0)
        rc = failed ? -1 : write_fail(w, err, "close audio/spec");
    if (w->spec_type >= 0)
        H5Tclose(w->spec_type);
    w->spec = w->spec_type = -1;
    if (w->file >= 0 && H5Fclose(w->file) < 0)
        rc = (failed || rc) ? -1 : write_fail(w, err, "close the HDF5 file");
    w->file = -1;
    return rc;
}

/* After a failure: frees the temporary file's blocks first (on a full disk
 * HDF5's close must still be able to flush what it holds), closes, removes. */
static void writer_discard(st_writer *w)
{
    int fd = open(w->tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    writer_close_h5(w, NULL, 1);
    unlink(w->tmp);
    writer_free(w);
}

static st_writer *writer_new(const char *path, const st_meta *meta)
{
    st_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
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
    int ok = w->dataset && w->split && w->recipe && w->classes && w->offsets && (w->f32 || w->half);
    for (int i = 0; ok && i < meta->n_classes; i++)
        ok = (w->classes[i] = dupstr(meta->classes[i])) != NULL;
    if (!ok) {
        writer_free(w);
        return NULL;
    }
    w->offsets[0] = 0;
    return w;
}

/* audio/spec: [N, bins, frames], one chunk per sample, no filter, no fill. */
static int create_spec(st_writer *w, cm_err *err)
{
    hid_t g = H5Gcreate2(w->file, "audio", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return write_fail(w, err, "create the group audio");
    hsize_t dims[3] = {0, (hsize_t)w->bins, (hsize_t)w->frames};
    hsize_t maxd[3] = {H5S_UNLIMITED, (hsize_t)w->bins, (hsize_t)w->frames};
    hsize_t chunk[3] = {1, (hsize_t)w->bins, (hsize_t)w->frames};
    hid_t sp = H5Screate_simple(3, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    w->spec_type = w->f32 ? H5Tcopy(H5T_IEEE_F32LE) : h5_half_type();
    int ok = sp >= 0 && dcpl >= 0 && w->spec_type >= 0 && H5Pset_chunk(dcpl, 3, chunk) >= 0 &&
             H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 && H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR) >= 0;
    if (ok)
        w->spec = H5Dcreate2(g, "spec", w->spec_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = (!ok || w->spec < 0) ? write_fail(w, err, "create the dataset audio/spec") : 0;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    if (H5Gclose(g) < 0 && rc == 0)
        rc = write_fail(w, err, "close the group audio");
    return rc;
}

/* The HDF5 file: object headers of the 1.8 format, so that a string
 * attribute over 64 KiB (ingest_failures) can be stored (dense storage);
 * up to 32 attributes stay in the root's object header. */
static hid_t create_file(const char *path)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t f = -1;
    if (fcpl >= 0 && fapl >= 0 && H5Pset_attr_phase_change(fcpl, 32, 24) >= 0 &&
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) >= 0)
        f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (fapl >= 0)
        H5Pclose(fapl);
    return f;
}

st_writer *st_writer_create(const char *path, const st_meta *meta, cm_err *err)
{
    if (!meta || meta->frames_per_sample < 0 || meta->frames_per_sample > ST_MAX_FRAMES || meta->bins <= 0 ||
        meta->frames <= 0 || (size_t)meta->bins * (size_t)meta->frames > ST_MAX_SPEC_VALUES || meta->n_classes < 0) {
        cm_err_set(err, "%s: invalid shard metadata", path);
        return NULL;
    }
    st_writer *w = writer_new(path, meta);
    if (!w) {
        cm_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    if (cm_tmp_path(w->tmp, sizeof w->tmp, path, err) != 0) {
        writer_free(w);
        return NULL;
    }
    h5_quiet q;
    h5_quiet_begin(&q);
    w->file = create_file(w->tmp);
    int rc = w->file < 0 ? write_fail(w, err, "create the HDF5 file") : create_spec(w, err);
    if (rc != 0) {
        writer_discard(w);
        w = NULL;
    }
    h5_quiet_end(&q);
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
    uint32_t *cs = realloc(w->crc_spec, cap * sizeof *cs);
    if (cs)
        w->crc_spec = cs;
    uint32_t *cr = realloc(w->crc_record, cap * sizeof *cr);
    if (cr)
        w->crc_record = cr;
    if (!ids || !lb || !sg || !ft || !of || !cs || !cr)
        return -1;
    w->cap = cap;
    return 0;
}

static int reserve_jpeg(st_writer *w, size_t add)
{
    if (w->jpeg_len + add <= w->jpeg_cap)
        return 0;
    size_t cap = w->jpeg_cap ? w->jpeg_cap : 1 << 20;
    while (cap < w->jpeg_len + add)
        cap *= 2;
    uint8_t *j = realloc(w->jpeg, cap);
    if (!j)
        return -1;
    w->jpeg = j;
    w->jpeg_cap = cap;
    return 0;
}

/* Appends one row of audio/spec (the only HDF5 call of add). */
static int write_spec_row(st_writer *w, const void *buf, const char *id, cm_err *err)
{
    hsize_t dims[3] = {w->n + 1, (hsize_t)w->bins, (hsize_t)w->frames};
    hsize_t start[3] = {w->n, 0, 0}, count[3] = {1, (hsize_t)w->bins, (hsize_t)w->frames};
    char what[300];
    snprintf(what, sizeof what, "write the spectrogram of sample %s", id);
    if (H5Dset_extent(w->spec, dims) < 0)
        return write_fail(w, err, what);
    hid_t fs = H5Dget_space(w->spec);
    hid_t ms = H5Screate_simple(3, count, NULL);
    int ok = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dwrite(w->spec, w->spec_type, ms, fs, H5P_DEFAULT, buf) >= 0;
    int rc = ok ? 0 : write_fail(w, err, what);
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    if (!ok) {
        dims[0] = w->n;
        H5Dset_extent(w->spec, dims);
    }
    return rc;
}

int st_writer_add(st_writer *w, const st_sample *s, cm_err *err)
{
    if (!s->id || !*s->id || strlen(s->id) > ST_ID_MAX)
        return cm_err_set(err, "sample id empty or longer than %d bytes", ST_ID_MAX);
    if (s->label < 0 || s->label >= w->n_classes)
        return cm_err_set(err, "%s: label %d out of range [0, %d)", s->id, (int)s->label, w->n_classes);
    size_t add = 0;
    for (int k = 0; k < w->F; k++)
        add += s->jpeg_len[k];
    char *id = dupstr(s->id);
    if (!id || grow(w) != 0 || reserve_jpeg(w, add) != 0) {
        free(id);
        return cm_err_set(err, "out of memory");
    }
    size_t cnt = (size_t)w->bins * (size_t)w->frames;
    const void *buf = s->spec;
    if (!w->f32) {
        st_f32_to_f16_n(s->spec, w->half, cnt);
        buf = w->half;
    }
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = write_spec_row(w, buf, s->id, err);
    h5_quiet_end(&q);
    if (rc != 0) {
        free(id);
        return rc;
    }
    size_t n = w->n, F = (size_t)w->F;
    w->ids[n] = id;
    w->labels[n] = s->label;
    w->segments[2 * n] = s->seg_start;
    w->segments[2 * n + 1] = s->seg_end;
    w->crc_spec[n] = st_crc(0, buf, cnt * (w->f32 ? 4 : 2));
    for (size_t k = 0; k < F; k++)
        w->frame_time[n * F + k] = s->frame_time ? s->frame_time[k] : 0.0f;
    uint32_t c = st_crc_record_head(id, s->label, &w->segments[2 * n], &w->frame_time[n * F], w->F, s->jpeg_len);
    for (size_t k = 0; k < F; k++) {
        memcpy(w->jpeg + w->jpeg_len, s->jpeg[k], s->jpeg_len[k]);
        c = st_crc(c, s->jpeg[k], s->jpeg_len[k]);
        w->jpeg_len += s->jpeg_len[k];
        w->offsets[n * F + k + 1] = w->jpeg_len;
    }
    w->crc_record[n] = c;
    w->n++;
    return 0;
}

size_t st_writer_count(const st_writer *w)
{
    return w->n;
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

/* Writes dataset `name` of file type ftype from data (memory type mtype); -1 with err filled. */
static int write_ds(st_writer *w, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                    const void *data, cm_err *err)
{
    char what[128];
    snprintf(what, sizeof what, "write the dataset %s", name);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    if (sp < 0)
        return write_fail(w, err, what);
    hid_t d = H5Dcreate2(w->file, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0;
    hsize_t total = 1;
    for (int i = 0; i < rank; i++)
        total *= dims[i];
    if (ok && total > 0)
        ok = H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    int rc = ok ? 0 : write_fail(w, err, what);
    if (d >= 0 && H5Dclose(d) < 0 && rc == 0)
        rc = write_fail(w, err, what);
    H5Sclose(sp);
    return rc;
}

/* id: fixed-length UTF-8 strings of the longest id's length (at least 1), NUL-padded. */
static int write_ids(st_writer *w, cm_err *err)
{
    size_t len = 1;
    for (size_t i = 0; i < w->n; i++)
        if (strlen(w->ids[i]) > len)
            len = strlen(w->ids[i]);
    char *buf = calloc(w->n ? w->n : 1, len);
    hid_t st = buf ? h5_fixed_utf8(len) : -1;
    if (st < 0) {
        free(buf);
        return write_fail(w, err, "make the string type of id");
    }
    for (size_t i = 0; i < w->n; i++)
        memcpy(buf + i * len, w->ids[i], strlen(w->ids[i]));
    hsize_t n = w->n;
    int rc = write_ds(w, "id", st, st, 1, &n, buf, err);
    H5Tclose(st);
    free(buf);
    return rc;
}

static int write_datasets(st_writer *w, cm_err *err)
{
    hsize_t n = w->n, F = (hsize_t)w->F, d2[2] = {n, 2}, dt[2] = {n, F}, no = n * F + 1, nj = w->jpeg_len;
    int rc = write_ids(w, err);
    hid_t g1 = -1, g2 = -1;
    if (rc == 0 && ((g1 = H5Gcreate2(w->file, "video", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
                    (g2 = H5Gcreate2(w->file, "crc32", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0))
        rc = write_fail(w, err, "create the groups video and crc32");
    if (g1 >= 0)
        H5Gclose(g1);
    if (g2 >= 0)
        H5Gclose(g2);
    if (rc != 0 || write_ds(w, "label", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, w->labels, err) != 0 ||
        write_ds(w, "segment", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, w->segments, err) != 0 ||
        write_ds(w, "frame_time", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dt, w->frame_time, err) != 0 ||
        write_ds(w, "video/offset", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &no, w->offsets, err) != 0 ||
        write_ds(w, "video/jpeg", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &nj, w->jpeg, err) != 0 ||
        write_ds(w, "crc32/spec", H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, &n, w->crc_spec, err) != 0 ||
        write_ds(w, "crc32/record", H5T_STD_U32LE, H5T_NATIVE_UINT32, 1, &n, w->crc_record, err) != 0)
        return -1;
    return 0;
}

static int write_attrs(st_writer *w, cm_err *err)
{
    hid_t f = w->file;
    int64_t version = ST_VERSION, F = w->F;
    int ok = h5_attr_str(f, "format", ST_FORMAT) == 0 && h5_attr_write(f, "version", H5T_STD_I64LE, 0, &version) == 0 &&
             h5_attr_str(f, "dataset", w->dataset) == 0 && h5_attr_str(f, "split", w->split) == 0 &&
             h5_attr_strs(f, "classes", w->classes, w->n_classes) == 0 &&
             h5_attr_write(f, "frames_per_sample", H5T_STD_I64LE, 0, &F) == 0 && h5_attr_str(f, "recipe", w->recipe) == 0 &&
             h5_attr_str(f, "tool_version", cm_tool_version()) == 0 &&
             h5_attr_str(f, "spec_dtype", w->f32 ? "float32" : "float16") == 0 &&
             h5_attr_str(f, "checksum", "crc32") == 0;
    for (int i = 0; ok && i < w->n_notes; i++)
        ok = h5_attr_str(f, w->notes[i].name, w->notes[i].value) == 0;
    return ok ? 0 : write_fail(w, err, "write the root attributes");
}

int st_writer_close(st_writer *w, cm_err *err)
{
    if (!w)
        return cm_err_set(err, "no writer");
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = write_datasets(w, err);
    if (rc == 0)
        rc = write_attrs(w, err);
    if (rc == 0 && H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        rc = write_fail(w, err, "flush the HDF5 file");
    if (rc == 0)
        rc = writer_close_h5(w, err, 0);
    if (rc != 0) {
        writer_discard(w);
        h5_quiet_end(&q);
        return -1;
    }
    h5_quiet_end(&q);
    rc = cm_rename_commit(w->tmp, w->path, err);
    writer_free(w);
    return rc;
}

void st_writer_abort(st_writer *w)
{
    if (!w)
        return;
    h5_quiet q;
    h5_quiet_begin(&q);
    writer_discard(w);
    h5_quiet_end(&q);
}
