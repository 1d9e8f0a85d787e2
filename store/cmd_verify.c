/* store verify DIR: every shard against index.json, every sample's checksums,
 * JPEGs and spectrogram values; one line per fault. */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "frames/frames.h"
#include "store/cmd.h"
#include "store/st_index.h"
#include "store/store.h"

/* Largest JPEG decoded (width x height): a header declaring more is a fault, not an allocation. */

typedef struct verify {
    const st_index *ix;
    const char *dir;
    fr_jpeg *jd;            /* JPEG decoder (frames/) and its reused picture buffer */
    uint8_t *px;
    size_t px_cap;
    size_t faults, samples, jpegs, unchecked;
} verify;

static void fault(verify *v, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fault(verify *v, const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("store: %s: ", file);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    v->faults++;
}

/* The shard's metadata against index.json and its listing. */
static void check_meta(verify *v, const char *name, const st_shard *s, const cJSON *entry, const char *split)
{
    const st_meta *m = st_shard_meta(s);
    const st_index *ix = v->ix;
    if ((double)st_shard_count(s) != st_index_count(entry, "count"))
        fault(v, name, "%zu samples, index.json says %.0f", st_shard_count(s), st_index_count(entry, "count"));
    if (strcmp(m->split, split))
        fault(v, name, "split attribute \"%s\", listed under \"%s\"", m->split, split);
    if (m->n_classes != ix->n_classes)
        fault(v, name, "%d classes, index.json has %d", m->n_classes, ix->n_classes);
    for (int c = 0; m->n_classes == ix->n_classes && c < ix->n_classes; c++)
        if (strcmp(m->classes[c], st_index_class(ix, c))) {
            fault(v, name, "class %d is \"%s\", index.json says \"%s\"", c, m->classes[c], st_index_class(ix, c));
            break;
        }
    if (!ix->has_fps || m->frames_per_sample != ix->fps)
        fault(v, name, "%d frames per sample, index.json says %d", m->frames_per_sample, ix->has_fps ? ix->fps : -1);
    if (!ix->has_shape || m->bins != ix->bins || m->frames != ix->frames)
        fault(v, name, "spectrogram %d x %d, index.json says %d x %d", m->bins, m->frames, ix->bins, ix->frames);
    cJSON *sr = cJSON_Parse(m->recipe_json);
    char *srs = sr ? cJSON_PrintUnformatted(sr) : NULL;
    if (!srs || !ix->recipe || strcmp(srs, ix->recipe))
        fault(v, name, "recipe differs from index.json");
    free(srs);
    cJSON_Delete(sr);
    if (!st_shard_has_checksums(s))
        printf("store: %s: format version %d: no checksums, sample bytes not verified\n", name, st_shard_version(s));
}

/* Every frame decodes (frames/ owns JPEG decoding: fr_jpeg_decode checks the
 * header's size against FR_MAX_PIXELS before allocating). */
static void check_jpegs(verify *v, const char *name, size_t i, const st_record *rec)
{
    for (int k = 0; k < rec->frames_per_sample; k++) {
        int w = 0, h = 0;
        cm_err err = {{0}};
        if (!v->jd || fr_jpeg_decode(v->jd, rec->jpeg_buf + rec->jpeg_off[k], rec->jpeg_len[k], &v->px, &v->px_cap,
                                     &w, &h, &err) != 0)
            fault(v, name, "sample %zu (%s) frame %d: %s", i, rec->id, k, v->jd ? err.msg : "no JPEG decoder");
        else
            v->jpegs++;
    }
}

/* Reads sample i: a checksum mismatch is a fault, and the sample is read
 * again without the check to report what else is wrong with it. */
static int read_record(verify *v, const char *name, st_shard *s, size_t i, st_record *rec)
{
    cm_err err;
    int rc = st_shard_read(s, i, rec, &err);
    if (rc == ST_ERR_CHECKSUM) {
        fault(v, name, "%s", err.msg);
        st_shard_set_checks(s, 0);
        rc = st_shard_read(s, i, rec, &err);
        st_shard_set_checks(s, 1);
    }
    if (rc != 0)
        fault(v, name, "sample %zu: %s", i, err.msg);
    return rc;
}

/* The segment is two finite times, 0 <= start <= end; every frame time is
 * finite and >= 0. (Not compared with the segment: for a whole clip the
 * segment is the audio's length and the video may run longer, and the frame
 * shown at a time may start before the segment.) */
static void check_times(verify *v, const char *name, size_t i, const st_record *rec)
{
    float a = rec->seg_start, b = rec->seg_end;
    int seg_ok = isfinite(a) && isfinite(b) && a >= 0 && a <= b;
    if (!seg_ok)
        fault(v, name, "sample %zu (%s): segment (%g, %g) is not two finite times 0 <= start <= end", i, rec->id,
              (double)a, (double)b);
    for (int k = 0; k < rec->frames_per_sample; k++) {
        float t = rec->frame_time[k];
        if (!isfinite(t) || t < 0) {
            fault(v, name, "sample %zu (%s) frame %d: time %g is %s", i, rec->id, k, (double)t,
                  !isfinite(t) ? "not finite" : "negative");
            break;
        }
    }
}

static void check_sample(verify *v, const char *name, st_shard *s, size_t i, float *spec)
{
    st_record rec;
    if (read_record(v, name, s, i, &rec) != 0)
        return;
    check_jpegs(v, name, i, &rec);
    check_times(v, name, i, &rec);
    cm_err err;
    int rc = st_shard_read_spec(s, i, NULL, spec, &err);
    if (rc != 0)
        fault(v, name, "%s%s", rc == ST_ERR_CHECKSUM ? "" : "spectrogram: ", err.msg);
    if (rc == 0 || rc == ST_ERR_CHECKSUM) { /* after a mismatch the buffer holds the bytes as read */
        const st_meta *m = st_shard_meta(s);
        size_t bad = 0, cnt = (size_t)m->bins * (size_t)m->frames;
        for (size_t q = 0; q < cnt; q++)
            bad += !isfinite(spec[q]);
        if (bad)
            fault(v, name, "sample %zu (%s): %zu NaN/Inf values in the spectrogram", i, rec.id, bad);
    }
    v->samples++;
    st_record_free(&rec);
}

/* One shard listed in split `split`; returns its sample count. */
static size_t check_shard(verify *v, const char *split, const cJSON *entry)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(entry, "file")->valuestring;
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", v->dir, name);
    cm_err err;
    st_shard *s = st_shard_open(path, &err);
    if (!s) {
        fault(v, name, "%s", err.msg);
        return 0;
    }
    check_meta(v, name, s, entry, split);
    if (!st_shard_has_checksums(s))
        v->unchecked++;
    const st_meta *m = st_shard_meta(s);
    size_t n = st_shard_count(s);
    float *spec = n ? malloc((size_t)m->bins * (size_t)m->frames * sizeof *spec) : NULL;
    if (n && !spec)
        fault(v, name, "out of memory");
    for (size_t i = 0; i < n && spec; i++)
        check_sample(v, name, s, i, spec);
    free(spec);
    st_shard_close(s);
    return n;
}

static int listed(const st_index *ix, const char *name)
{
    const cJSON *sp, *e;
    cJSON_ArrayForEach(sp, ix->splits)
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards"))
            if (!strcmp(cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring, name))
                return 1;
    return 0;
}

/* Shards in the folder that index.json does not list, and failures.tsv. */
static void check_folder(verify *v)
{
    DIR *d = opendir(v->dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && cm_has_suffix(de->d_name, ".h5") && !listed(v->ix, de->d_name))
            fault(v, de->d_name, "shard not listed in index.json");
    if (d)
        closedir(d);
    char fpath[CM_PATH_MAX];
    snprintf(fpath, sizeof fpath, "%s/failures.tsv", v->dir);
    if (!cm_is_file(fpath))
        fault(v, "failures.tsv", "missing");
}

int cmd_verify(const st_cmd_args *a)
{
    const char *dir = a->dir;
    st_index ix;
    cm_err err;
    cJSON *root = st_index_read(dir, &err);
    if (!root) {
        fprintf(stderr, "store: %s: %s\n", dir, err.msg);
        return 1;
    }
    int whole = st_folder_check(dir, root, NULL, NULL, NULL, NULL, &err);
    cJSON_Delete(root);
    if (st_index_load(&ix, dir) != 0)
        return 1;
    verify v = {.ix = &ix, .dir = dir, .jd = fr_jpeg_create(NULL)};
    if (whole != 0) /* the folder as one whole (st_index.h); then every shard and sample as listed */
        fault(&v, dir, "%s", err.msg);
    const cJSON *sp, *e;
    cJSON_ArrayForEach(sp, ix.splits) {
        size_t count = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "file");
            if (a->verbose && cJSON_IsString(f))
                printf("store: %s: split %s: checking %s\n", dir, sp->string, f->valuestring);
            count += check_shard(&v, sp->string, e);
        }
        if ((double)count != st_index_count(sp, "count"))
            fault(&v, "index.json", "split %s: shards hold %zu samples, index says %.0f", sp->string, count,
                  st_index_count(sp, "count"));
    }
    check_folder(&v);
    fr_jpeg_destroy(v.jd);
    free(v.px);
    if (!a->quiet || v.faults)
        printf("store: %s: %zu samples, %zu JPEG frames checked; %zu shard(s) without checksums; %zu fault(s)\n",
           v.dir, v.samples, v.jpegs, v.unchecked, v.faults);
    st_index_free(&ix);
    return v.faults ? 1 : 0;
}
