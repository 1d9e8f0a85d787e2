/* store: shard reader. Opens and validates with HDF5 once, then reads with pread(). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cm_file.h"
#include "store/st_internal.h"
#include "store/store.h"

struct st_shard {
    char path[CM_PATH_MAX];
    const char *base;       /* file name part of path */
    hid_t file;
    int fd;
    uint64_t file_size;
    int version, checks;
    st_meta meta;
    char *dataset, *split, *recipe;
    char **classes;
    size_t n;
    char **ids;
    int32_t *labels;
    float *segments;        /* [n, 2] */
    float *frame_time;      /* [n, F] */
    uint64_t *offsets;      /* [n*F + 1] */
    uint32_t *crc_spec, *crc_record; /* [n] (version >= 2) */
    uint64_t jpeg_total;
    size_t spec_bytes;      /* bytes of one sample's spectrogram */
    uint64_t *spec_addr;    /* file offset of each sample's chunk */
    uint64_t jpeg_addr;     /* file offset of the JPEG bytes (when jpeg_total > 0) */
};

/* ---- attributes ---- */

/* The words that refuse a variable-length string in this shard (NULL: accepted,
 * version 1). */
static const char *vlen_refusal(int version)
{
    return version == 1 ? NULL : version == 2 ? "in format version 2" : "in this format version";
}

/* ---- close ---- */

void st_shard_close(st_shard *s)
{
    if (!s)
        return;
    if (s->file >= 0) {
        h5_quiet q;
        h5_quiet_begin(&q);
        H5Fclose(s->file);
        h5_quiet_end(&q);
    }
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
    free(s->crc_spec);
    free(s->crc_record);
    free(s->spec_addr);
    free(s->dataset);
    free(s->split);
    free(s->recipe);
    free(s);
}

/* ---- open: the file and its root attributes ---- */

static int open_file(st_shard *s, const char *path, cm_err *err)
{
    struct stat st0;
    if (stat(path, &st0) != 0)
        return cm_err_set(err, "%s", errno == ENOENT ? "no such file" : strerror(errno));
    if (S_ISDIR(st0.st_mode))
        return cm_err_set(err, "is a directory");
    if (cm_check_regular(path, err) != 0)
        return -1;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0)
        return cm_err_set(err, "cannot open for reading: %s", strerror(errno));
    s->file_size = (uint64_t)st.st_size;
    if (H5Fis_hdf5(path) <= 0)
        return cm_err_set(err, "not an HDF5 file");
    s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->file < 0)
        return cm_err_set(err, "cannot open the HDF5 file");
    return 0;
}

/* The attribute version, then format: a variable-length format attribute is
 * read only when the version is 1 (the version is an integer, stored in the
 * object header). */
static int read_root_attrs(st_shard *s, cm_err *err)
{
    int64_t ver = 0, F = 0;
    int have_ver = h5_attr_get_int(s->file, "version", &ver) == 0;
    int ver_ok = have_ver && ver >= 1 && ver <= ST_VERSION;
    char *fmt = NULL;
    int rc = h5_attr_read_str(s->file, "format", ver_ok ? vlen_refusal((int)ver) : "", &fmt, err);
    int fmt_ok = rc == 0 && !strcmp(fmt, ST_FORMAT);
    free(fmt);
    if (rc == -2 && ver_ok)
        return -1; /* err says why (variable length in version 2, size) */
    if (!fmt_ok && (rc != -2 || !have_ver))
        return cm_err_set(err, "not a " ST_FORMAT " file (attribute format)");
    if (!ver_ok)
        return cm_err_set(err, "unsupported format version %lld (this reader: 1 to %d)", (long long)ver, ST_VERSION);
    s->version = (int)ver;
    if (h5_attr_get_int(s->file, "frames_per_sample", &F) != 0 || F < 0 || F > ST_MAX_FRAMES)
        return cm_err_set(err, "bad or missing attribute frames_per_sample (0 to %d)", ST_MAX_FRAMES);
    s->meta.frames_per_sample = (int)F;
    const char *rv = vlen_refusal(s->version);
    if (h5_attr_read_str(s->file, "dataset", rv, &s->dataset, err) != 0 ||
        h5_attr_read_str(s->file, "split", rv, &s->split, err) != 0 ||
        h5_attr_read_str(s->file, "recipe", rv, &s->recipe, err) != 0)
        return -1;
    int nc = 0;
    if (h5_attr_read_strs(s->file, "classes", rv, &s->classes, &nc, err) != 0)
        return -1;
    s->meta.n_classes = nc;
    return 0;
}

/* ---- open: audio/spec ---- */

/* 1 when ft is IEEE binary16 little endian (the writer's and numpy's float16). */
static int is_half_le(hid_t ft)
{
    size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
    return H5Tget_size(ft) == 2 && H5Tget_order(ft) == H5T_ORDER_LE &&
           H5Tget_fields(ft, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && epos == 10 && esize == 5 &&
           mpos == 0 && msize == 10 && H5Tget_ebias(ft) == 15;
}

/* The spectrogram's element type: 2 (float16 LE) or 4 (float32 LE), else 0. */
static size_t spec_type_size(hid_t d)
{
    hid_t ft = H5Dget_type(d);
    if (ft < 0)
        return 0;
    size_t esz = 0;
    if (H5Tget_class(ft) == H5T_FLOAT && is_half_le(ft))
        esz = 2;
    else if (H5Tget_class(ft) == H5T_FLOAT && H5Tequal(ft, H5T_IEEE_F32LE) > 0)
        esz = 4;
    H5Tclose(ft);
    return esz;
}

/* The recipe's audio bins and frames, when it states them, must be the shape. */
static int check_recipe_shape(const st_shard *s, hsize_t bins, hsize_t frames, cm_err *err)
{
    cJSON *r = cJSON_Parse(s->recipe);
    if (!r)
        return cm_err_set(err, "attribute recipe is not JSON");
    cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "audio");
    cJSON *b = cJSON_GetObjectItemCaseSensitive(a, "bins"), *t = cJSON_GetObjectItemCaseSensitive(a, "frames");
    int bad = (cJSON_IsNumber(b) && b->valuedouble != (double)bins) ||
              (cJSON_IsNumber(t) && t->valuedouble != (double)frames);
    double rb = cJSON_IsNumber(b) ? b->valuedouble : 0, rt = cJSON_IsNumber(t) ? t->valuedouble : 0;
    cJSON_Delete(r);
    if (bad)
        return cm_err_set(err, "audio/spec: shape [%llu, %llu] per sample, the recipe says [%.0f, %.0f]",
                          (unsigned long long)bins, (unsigned long long)frames, rb, rt);
    return 0;
}

/* Chunked [1, bins, frames] with no filter: the layout the direct reads take. */
static int check_spec_layout(hid_t d, const hsize_t *dims, cm_err *err)
{
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0)
        return cm_err_set(err, "audio/spec: cannot read its layout");
    hsize_t chunk[3] = {0, 0, 0};
    int layout = H5Pget_layout(dcpl), nfilt = H5Pget_nfilters(dcpl);
    int rank = layout == H5D_CHUNKED ? H5Pget_chunk(dcpl, 3, chunk) : -1;
    H5Pclose(dcpl);
    if (nfilt != 0)
        return cm_err_set(err, "audio/spec: %d filter(s) (compression, shuffle, ...): the reader takes "
                               "unfiltered chunks only", nfilt);
    if (layout != H5D_CHUNKED || rank != 3 || chunk[0] != 1 || chunk[1] != dims[1] || chunk[2] != dims[2])
        return cm_err_set(err, "audio/spec: not chunked one sample per chunk [1, %llu, %llu]",
                          (unsigned long long)dims[1], (unsigned long long)dims[2]);
    return 0;
}

/* File offset of every sample's chunk, each inside the file. */
static int map_spec_chunks(st_shard *s, hid_t d, cm_err *err)
{
    s->spec_addr = malloc((s->n + 1) * sizeof *s->spec_addr);
    if (!s->spec_addr)
        return cm_err_set(err, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        hsize_t off[3] = {i, 0, 0}, size = 0;
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        if (H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) < 0 || addr == HADDR_UNDEF)
            return cm_err_set(err, "audio/spec: the chunk of row %zu is not stored", i);
        if (mask != 0 || size != s->spec_bytes)
            return cm_err_set(err, "audio/spec: the chunk of row %zu is filtered or not %zu bytes", i, s->spec_bytes);
        if (addr > s->file_size || s->file_size - addr < s->spec_bytes)
            return cm_err_set(err, "audio/spec: the chunk of row %zu lies beyond the end of the file", i);
        s->spec_addr[i] = addr;
    }
    return 0;
}

static int open_spec(st_shard *s, cm_err *err)
{
    hid_t d = H5Dopen2(s->file, "audio/spec", H5P_DEFAULT);
    if (d < 0)
        return cm_err_set(err, "missing dataset audio/spec");
    hid_t sp = H5Dget_space(d);
    hsize_t dims[3] = {0, 0, 0};
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == 3)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0)
        H5Sclose(sp);
    size_t esz = spec_type_size(d);
    int rc = -1;
    if (rank != 3 || dims[1] == 0 || dims[2] == 0)
        cm_err_set(err, "audio/spec is not a [N, bins, frames] dataset");
    else if (esz == 0)
        cm_err_set(err, "audio/spec: element type is not little-endian IEEE float16 or float32");
    else if (dims[1] > ST_MAX_SPEC_VALUES || dims[2] > ST_MAX_SPEC_VALUES / dims[1])
        cm_err_set(err, "audio/spec: %llu x %llu values per sample (at most %u)", (unsigned long long)dims[1],
                   (unsigned long long)dims[2], ST_MAX_SPEC_VALUES);
    else if (check_recipe_shape(s, dims[1], dims[2], err) != 0)
        ;
    else if (dims[0] > 0 && check_spec_layout(d, dims, err) != 0)
        ;
    else if (dims[0] > s->file_size / (dims[1] * dims[2] * esz))
        cm_err_set(err, "audio/spec: %llu samples of %llu bytes do not fit in a file of %llu bytes",
                   (unsigned long long)dims[0], (unsigned long long)(dims[1] * dims[2] * esz),
                   (unsigned long long)s->file_size);
    else {
        s->n = (size_t)dims[0];
        s->meta.bins = (int)dims[1];
        s->meta.frames = (int)dims[2];
        s->meta.spec_float32 = esz == 4;
        s->spec_bytes = (size_t)(dims[1] * dims[2] * esz);
        rc = map_spec_chunks(s, d, err);
    }
    H5Dclose(d);
    return rc;
}

/* ---- open: the small datasets, read whole through HDF5 (byte order and
 * filters handled by HDF5's conversion) ---- */

typedef struct ds_spec {
    const char *name, *want;   /* dataset path; expected type and shape, for messages */
    H5T_class_t cls;
    size_t size;               /* element bytes; 0: any (floats are converted) */
    H5T_sign_t sign;           /* integers */
    int rank;
    hsize_t d0, d1;            /* expected dims */
} ds_spec;

/* Reads dataset w (checked against w: class, size, sign, rank, dims) into buf with memory type mt. */
static int read_checked(const st_shard *s, const ds_spec *w, hid_t mt, void *buf, cm_err *err)
{
    hid_t d = H5Dopen2(s->file, w->name, H5P_DEFAULT);
    if (d < 0)
        return cm_err_set(err, "missing dataset %s", w->name);
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == w->rank)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    int ok = ft >= 0 && H5Tget_class(ft) == w->cls && (!w->size || H5Tget_size(ft) == w->size) &&
             (w->cls != H5T_INTEGER || H5Tget_sign(ft) == w->sign) && rank == w->rank && dims[0] == w->d0 &&
             (rank < 2 || dims[1] == w->d1);
    int rc = ok ? 0 : cm_err_set(err, "dataset %s is not %s", w->name, w->want);
    hsize_t total = w->rank == 2 ? w->d0 * w->d1 : w->d0;
    if (rc == 0 && total > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = cm_err_set(err, "dataset %s cannot be read", w->name);
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static int read_ids(st_shard *s, cm_err *err)
{
    s->ids = calloc(s->n + 1, sizeof *s->ids);
    if (!s->ids)
        return cm_err_set(err, "out of memory");
    hid_t d = H5Dopen2(s->file, "id", H5P_DEFAULT);
    if (d < 0)
        return cm_err_set(err, "missing dataset id");
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    hsize_t n = 0;
    int ok = ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, &n, NULL) == 1 && n == s->n;
    int rc = ok ? 0 : cm_err_set(err, "dataset id is not [N] strings");
    if (rc == 0 && h5_str_type_check(ft, "dataset id", vlen_refusal(s->version), ST_ID_MAX, err) != 0)
        rc = -1;
    if (rc == 0 && s->n > 0 && h5_read_strings(d, 0, ft, s->n, s->ids) != 0)
        rc = cm_err_set(err, "dataset id cannot be read");
    for (size_t i = 0; rc == 0 && i < s->n; i++)
        if (!s->ids[i][0] || strlen(s->ids[i]) > ST_ID_MAX)
            rc = cm_err_set(err, "dataset id: row %zu is empty or longer than %d bytes", i, ST_ID_MAX);
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static int read_small(st_shard *s, cm_err *err)
{
    size_t n = s->n, F = (size_t)s->meta.frames_per_sample, nf = n * F;
    s->labels = malloc((n + 1) * sizeof *s->labels);
    s->segments = malloc((2 * n + 1) * sizeof *s->segments);
    s->frame_time = malloc((nf + 1) * sizeof *s->frame_time);
    s->offsets = malloc((nf + 1) * sizeof *s->offsets);
    if (!s->labels || !s->segments || !s->frame_time || !s->offsets)
        return cm_err_set(err, "out of memory");
    const ds_spec label = {"label", "int32 [N]", H5T_INTEGER, 4, H5T_SGN_2, 1, n, 0};
    const ds_spec seg = {"segment", "float [N, 2]", H5T_FLOAT, 0, H5T_SGN_ERROR, 2, n, 2};
    const ds_spec ft = {"frame_time", "float [N, F]", H5T_FLOAT, 0, H5T_SGN_ERROR, 2, n, F};
    const ds_spec off = {"video/offset", "uint64 [N*F + 1]", H5T_INTEGER, 8, H5T_SGN_NONE, 1, nf + 1, 0};
    if (read_ids(s, err) != 0 || read_checked(s, &label, H5T_NATIVE_INT32, s->labels, err) != 0 ||
        read_checked(s, &seg, H5T_NATIVE_FLOAT, s->segments, err) != 0 ||
        read_checked(s, &ft, H5T_NATIVE_FLOAT, s->frame_time, err) != 0 ||
        read_checked(s, &off, H5T_NATIVE_UINT64, s->offsets, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s->labels[i] < 0 || s->labels[i] >= s->meta.n_classes)
            return cm_err_set(err, "label of row %zu out of the range of classes", i);
    if (s->version < 2)
        return 0;
    s->crc_spec = malloc((n + 1) * sizeof *s->crc_spec);
    s->crc_record = malloc((n + 1) * sizeof *s->crc_record);
    if (!s->crc_spec || !s->crc_record)
        return cm_err_set(err, "out of memory");
    const ds_spec cs = {"crc32/spec", "uint32 [N]", H5T_INTEGER, 4, H5T_SGN_NONE, 1, n, 0};
    const ds_spec cr = {"crc32/record", "uint32 [N]", H5T_INTEGER, 4, H5T_SGN_NONE, 1, n, 0};
    if (read_checked(s, &cs, H5T_NATIVE_UINT32, s->crc_spec, err) != 0 ||
        read_checked(s, &cr, H5T_NATIVE_UINT32, s->crc_record, err) != 0)
        return -1;
    return 0;
}

/* ---- open: video/jpeg, contiguous uint8, spanned by video/offset ---- */

static int open_jpeg(st_shard *s, cm_err *err)
{
    hid_t d = H5Dopen2(s->file, "video/jpeg", H5P_DEFAULT);
    if (d < 0)
        return cm_err_set(err, "missing dataset video/jpeg");
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    hsize_t total = 0;
    int ok = ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_INTEGER && H5Tget_size(ft) == 1 &&
             H5Tget_sign(ft) == H5T_SGN_NONE && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, &total, NULL) == 1;
    int layout = dcpl >= 0 ? H5Pget_layout(dcpl) : -1;
    haddr_t addr = ok && total > 0 ? H5Dget_offset(d) : HADDR_UNDEF;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    if (!ok)
        return cm_err_set(err, "dataset video/jpeg is not uint8 [total]");
    if (total > 0 && layout != H5D_CONTIGUOUS)
        return cm_err_set(err, "video/jpeg: not stored contiguous (chunked or filtered): the reader takes the "
                               "contiguous layout only");
    if (total > 0 && addr == HADDR_UNDEF)
        return cm_err_set(err, "video/jpeg: declares %llu bytes but stores none", (unsigned long long)total);
    if (total > 0 && (addr > s->file_size || s->file_size - addr < total))
        return cm_err_set(err, "video/jpeg: %llu bytes beyond the end of the file", (unsigned long long)total);
    s->jpeg_total = total;
    s->jpeg_addr = total > 0 ? addr : 0;
    size_t nf = s->n * (size_t)s->meta.frames_per_sample;
    if (s->offsets[0] != 0 || s->offsets[nf] != s->jpeg_total)
        return cm_err_set(err, "video/offset does not span video/jpeg");
    for (size_t i = 0; i < nf; i++)
        if (s->offsets[i + 1] < s->offsets[i])
            return cm_err_set(err, "video/offset is not increasing");
    return 0;
}

static st_shard *open_fail(st_shard *s, const h5_quiet *q)
{
    st_shard_close(s);
    h5_quiet_end(q);
    return NULL;
}

st_shard *st_shard_open(const char *path, cm_err *err)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    st_shard *s = calloc(1, sizeof *s);
    if (!s) {
        cm_err_set(err, "out of memory");
        h5_quiet_end(&q);
        return NULL;
    }
    s->file = -1;
    s->fd = -1;
    s->checks = 1;
    snprintf(s->path, sizeof s->path, "%s", path);
    const char *b = strrchr(s->path, '/');
    s->base = b ? b + 1 : s->path;
    if (open_file(s, path, err) != 0 || read_root_attrs(s, err) != 0 || open_spec(s, err) != 0 ||
        read_small(s, err) != 0 || open_jpeg(s, err) != 0)
        return open_fail(s, &q);
    s->meta.dataset = s->dataset;
    s->meta.split = s->split;
    s->meta.classes = (const char *const *)s->classes;
    s->meta.recipe_json = s->recipe;
    h5_quiet_end(&q);
    return s;
}

/* ---- accessors ---- */

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

int st_shard_version(const st_shard *s)
{
    return s->version;
}

int st_shard_has_checksums(const st_shard *s)
{
    return s->crc_record != NULL;
}

void st_shard_set_checks(st_shard *s, int on)
{
    s->checks = on ? 1 : 0;
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
    h5_quiet q;
    h5_quiet_begin(&q);
    char *v = NULL;
    h5_attr_read_str(s->file, name, vlen_refusal(s->version), &v, NULL);
    h5_quiet_end(&q);
    return v;
}

/* ---- sample reads: pread only ---- */

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

static int checksum_error(const st_shard *s, size_t i, const char *what, cm_err *err)
{
    cm_err_set(err, "checksum mismatch: sample %s (row %zu) of %s: %s", s->ids[i], i, s->base, what);
    return ST_ERR_CHECKSUM;
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
    if (hi > lo && pread_all(s->fd, r->jpeg_buf, hi - lo, s->jpeg_addr + lo) != 0) {
        st_record_free(r);
        return cm_err_set(err, "sample %zu: cannot read the JPEG bytes", i);
    }
    if (s->checks && s->crc_record) {
        uint32_t c = st_crc_record_head(r->id, r->label, &s->segments[2 * i], r->frame_time, F, r->jpeg_len);
        if (st_crc(c, r->jpeg_buf, hi - lo) != s->crc_record[i]) {
            st_record_free(r);
            return checksum_error(s, i, "JPEG bytes or fields", err);
        }
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
    void *buf = raw, *own = NULL;
    if (!buf) {
        if (s->meta.spec_float32 && f32) {
            buf = f32;
        } else {
            buf = own = malloc(s->spec_bytes);
            if (!own)
                return cm_err_set(err, "out of memory");
        }
    }
    if (pread_all(s->fd, buf, s->spec_bytes, s->spec_addr[i]) != 0) {
        free(own);
        return cm_err_set(err, "sample %zu: cannot read the spectrogram", i);
    }
    int rc = 0;
    if (s->checks && s->crc_spec && st_crc(0, buf, s->spec_bytes) != s->crc_spec[i])
        rc = checksum_error(s, i, "spectrogram", err);
    if (f32 && buf != (void *)f32) {
        if (s->meta.spec_float32)
            memcpy(f32, buf, cnt * sizeof(float));
        else
            st_f16_to_f32_n(buf, f32, cnt);
    }
    free(own);
    return rc;
}

/* ---- the shard's digest (docs/FORMAT.md, "index.json") ---- */

void st_shard_digest(const st_shard *s, char out[ST_DIGEST_LEN + 1])
{
    uLong crc = crc32(0L, Z_NULL, 0), adl = adler32(0L, Z_NULL, 0);
    for (size_t i = 0; i < s->n; i++) {
        uint8_t tail[8];
        uint32_t a = s->crc_record ? s->crc_record[i] : (uint32_t)s->labels[i];
        uint32_t b = s->crc_spec ? s->crc_spec[i] : 0;
        size_t nt = s->crc_record ? 8 : 4;
        memcpy(tail, &a, 4); /* little-endian host (st_internal.h) */
        memcpy(tail + 4, &b, 4);
        const Bytef *id = (const Bytef *)s->ids[i];
        uInt len = (uInt)strlen(s->ids[i]) + 1; /* with its NUL */
        crc = crc32(crc, id, len);
        adl = adler32(adl, id, len);
        crc = crc32(crc, tail, (uInt)nt);
        adl = adler32(adl, tail, (uInt)nt);
    }
    snprintf(out, ST_DIGEST_LEN + 1, "%08lx%08lx", (unsigned long)crc & 0xffffffffUL, (unsigned long)adl & 0xffffffffUL);
}
