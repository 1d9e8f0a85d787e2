/* store: one split of an ingested folder, through index.json (or, without
 * one, every <split>-*.h5 in name order). */
#include <cjson/cJSON.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "store/store.h"

struct st_split {
    size_t nshards;
    st_shard **shards;
    size_t *first; /* global index of each shard's first sample; first[nshards] = total */
};

void st_split_close(st_split *d)
{
    if (!d)
        return;
    for (size_t k = 0; k < d->nshards; k++)
        st_shard_close(d->shards[k]);
    free(d->shards);
    free(d->first);
    free(d);
}

/* Adds the shard at path (named `name` in messages) to d. */
static int add_shard(st_split *d, const char *path, const char *name, cm_err *err)
{
    st_shard *s = st_shard_open(path, err);
    if (!s) {
        cm_err_prefix(err, "%s", name);
        return -1;
    }
    d->shards[d->nshards] = s;
    d->first[d->nshards + 1] = d->first[d->nshards] + st_shard_count(s);
    d->nshards++;
    cm_err e;
    if (d->nshards > 1 && st_meta_compatible(st_shard_meta(d->shards[0]), st_shard_meta(s), &e) != 0)
        return cm_err_set(err, "%s: differs from the split's first shard: %s", name, e.msg);
    return 0;
}

static st_split *split_alloc(size_t n, cm_err *err)
{
    st_split *d = calloc(1, sizeof *d);
    if (d) {
        d->shards = calloc(n + 1, sizeof *d->shards);
        d->first = calloc(n + 1, sizeof *d->first);
    }
    if (!d || !d->shards || !d->first) {
        cm_err_set(err, "out of memory");
        st_split_close(d);
        return NULL;
    }
    return d;
}

/* The "shards" array of `split` in index.json (NULL when absent). */
static cJSON *index_shards(cJSON *root, const char *split)
{
    cJSON *splits = cJSON_GetObjectItemCaseSensitive(root, "splits");
    cJSON *sp = cJSON_GetObjectItemCaseSensitive(splits, split);
    if (!sp) { /* "aliases": {"val": "test"} (CREMA-D: the test split is also the validation split) */
        cJSON *al = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "aliases"), split);
        if (cJSON_IsString(al))
            sp = cJSON_GetObjectItemCaseSensitive(splits, al->valuestring);
    }
    cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards");
    return cJSON_IsArray(shards) ? shards : NULL;
}

static st_split *open_index(const char *dir, const char *split, cm_err *err)
{
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/index.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (cm_read_file(path, &text, &len, err) != 0)
        return NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) {
        cm_err_set(err, "index.json: not valid JSON");
        return NULL;
    }
    cJSON *shards = index_shards(root, split);
    st_split *d = NULL;
    if (!shards) {
        cm_err_set(err, "index.json: no split \"%s\"", split);
        goto bad;
    }
    if (!(d = split_alloc((size_t)cJSON_GetArraySize(shards), err)))
        goto bad;
    cJSON *it;
    cJSON_ArrayForEach(it, shards) {
        cJSON *file = cJSON_GetObjectItemCaseSensitive(it, "file");
        cJSON *count = cJSON_GetObjectItemCaseSensitive(it, "count");
        if (!cJSON_IsString(file) || !cJSON_IsNumber(count) || strchr(file->valuestring, '/')) {
            cm_err_set(err, "index.json: bad shard entry in split \"%s\"", split);
            goto bad;
        }
        snprintf(path, sizeof path, "%s/%s", dir, file->valuestring);
        if (add_shard(d, path, file->valuestring, err) != 0)
            goto bad;
        size_t got = st_shard_count(d->shards[d->nshards - 1]);
        if ((double)got != count->valuedouble) {
            cm_err_set(err, "%s: %zu samples, index.json says %.0f", file->valuestring, got, count->valuedouble);
            goto bad;
        }
    }
    cJSON_Delete(root);
    return d;
bad:
    cJSON_Delete(root);
    st_split_close(d);
    return NULL;
}

/* No index.json: every DIR/<split>-*.h5 in name order. */
static st_split *open_glob(const char *dir, const char *split, cm_err *err)
{
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s-*.h5", dir, split);
    glob_t g;
    int rc = glob(path, 0, NULL, &g);
    if (rc != 0 || g.gl_pathc == 0) {
        if (rc == 0)
            globfree(&g);
        cm_err_set(err, "no index.json and no %s-*.h5 shard", split);
        return NULL;
    }
    st_split *d = split_alloc(g.gl_pathc, err);
    for (size_t k = 0; d && k < g.gl_pathc; k++) {
        const char *base = strrchr(g.gl_pathv[k], '/');
        if (add_shard(d, g.gl_pathv[k], base ? base + 1 : g.gl_pathv[k], err) != 0) {
            st_split_close(d);
            d = NULL;
        }
    }
    globfree(&g);
    return d;
}

st_split *st_split_open(const char *dir, const char *split, cm_err *err)
{
    if (!cm_is_dir(dir)) {
        cm_err_set(err, "not a folder");
        return NULL;
    }
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/index.json", dir);
    return cm_is_file(path) ? open_index(dir, split, err) : open_glob(dir, split, err);
}

int st_split_exists(const char *dir, const char *split)
{
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/index.json", dir);
    if (cm_is_file(path)) {
        char *text = NULL;
        size_t n = 0;
        if (cm_read_file(path, &text, &n, NULL) != 0)
            return 1; /* let the open report it */
        cJSON *root = cJSON_Parse(text);
        free(text);
        if (!root)
            return 1;
        int has = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "splits"), split) != NULL;
        cJSON_Delete(root);
        return has;
    }
    snprintf(path, sizeof path, "%s/%s-*.h5", dir, split);
    glob_t g;
    int rc = glob(path, 0, NULL, &g);
    int has = rc == 0 && g.gl_pathc > 0;
    if (rc == 0)
        globfree(&g);
    return has;
}

int st_meta_compatible(const st_meta *a, const st_meta *b, cm_err *err)
{
    if (a->n_classes != b->n_classes)
        return cm_err_set(err, "%d classes against %d", a->n_classes, b->n_classes);
    for (int c = 0; c < a->n_classes; c++)
        if (strcmp(a->classes[c], b->classes[c]) != 0)
            return cm_err_set(err, "class %d is \"%s\" against \"%s\"", c, a->classes[c], b->classes[c]);
    if (a->frames_per_sample != b->frames_per_sample)
        return cm_err_set(err, "%d frames per sample against %d", a->frames_per_sample, b->frames_per_sample);
    if (a->bins != b->bins || a->frames != b->frames)
        return cm_err_set(err, "spectrogram %dx%d against %dx%d", a->bins, a->frames, b->bins, b->frames);
    if (a->spec_float32 != b->spec_float32)
        return cm_err_set(err, "spectrogram type differs (float16/float32)");
    const char *ra = a->recipe_json ? a->recipe_json : "", *rb = b->recipe_json ? b->recipe_json : "";
    if (strcmp(ra, rb) != 0) {
        cJSON *ja = cJSON_Parse(ra), *jb = cJSON_Parse(rb);
        int same = ja && jb && cJSON_Compare(ja, jb, 1);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        if (!same)
            return cm_err_set(err, "another recipe");
    }
    return 0;
}

size_t st_split_count(const st_split *d)
{
    return d->first[d->nshards];
}

size_t st_split_nshards(const st_split *d)
{
    return d->nshards;
}

st_shard *st_split_shard(st_split *d, size_t k)
{
    return k < d->nshards ? d->shards[k] : NULL;
}

const st_meta *st_split_meta(const st_split *d)
{
    return d->nshards ? st_shard_meta(d->shards[0]) : NULL;
}

int st_locate(const size_t *first, size_t nshards, size_t i, size_t *k, size_t *j)
{
    if (i >= first[nshards])
        return -1;
    size_t lo = 0, hi = nshards; /* first[lo] <= i < first[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (first[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    *k = lo;
    *j = i - first[lo];
    return 0;
}

int st_split_locate(const st_split *d, size_t i, size_t *k, size_t *j)
{
    return st_locate(d->first, d->nshards, i, k, j);
}

int st_split_read(st_split *d, size_t i, st_record *r, cm_err *err)
{
    size_t k, j;
    if (st_split_locate(d, i, &k, &j) != 0)
        return cm_err_set(err, "sample %zu out of range (%zu samples)", i, st_split_count(d));
    return st_shard_read(d->shards[k], j, r, err);
}

int st_split_read_spec(st_split *d, size_t i, void *raw, float *f32, cm_err *err)
{
    size_t k, j;
    if (st_split_locate(d, i, &k, &j) != 0)
        return cm_err_set(err, "sample %zu out of range (%zu samples)", i, st_split_count(d));
    return st_shard_read_spec(d->shards[k], j, raw, f32, err);
}
