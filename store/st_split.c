/* store: one split of an ingested folder, through index.json, once the
 * folder is checked as one whole (st_folder.c). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "store/st_index.h"
#include "store/store.h"

struct st_split {
    size_t nshards;
    st_shard **shards;
    size_t *first; /* global index of each shard's first sample; first[nshards] = total */
    char digest[ST_DIGEST_LEN + 1]; /* the folder's */
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

st_split *st_split_open(const char *dir, const char *split, cm_err *err)
{
    if (!cm_is_dir(dir)) {
        cm_err_set(err, "not a folder");
        return NULL;
    }
    cJSON *ix = st_index_read(dir, err);
    if (!ix)
        return NULL;
    st_shard **sh = NULL;
    size_t n = 0;
    char digest[ST_DIGEST_LEN + 1];
    int rc = st_folder_check(dir, ix, split, &sh, &n, digest, err);
    cJSON_Delete(ix);
    if (rc != 0)
        return NULL;
    st_split *d = split_alloc(n, err);
    for (size_t k = 0; k < n; k++) {
        if (d) {
            d->shards[k] = sh[k];
            d->first[k + 1] = d->first[k] + st_shard_count(sh[k]);
            d->nshards++;
        } else {
            st_shard_close(sh[k]);
        }
    }
    free(sh);
    if (d)
        snprintf(d->digest, sizeof d->digest, "%s", digest);
    return d;
}

int st_split_exists(const char *dir, const char *split)
{
    cJSON *ix = st_index_read(dir, NULL);
    int has = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ix, "splits"), split) != NULL ||
              cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ix, "aliases"), split));
    cJSON_Delete(ix);
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

const char *st_split_folder_digest(const st_split *d)
{
    return d->digest;
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
