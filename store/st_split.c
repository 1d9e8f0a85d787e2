/* store: one split of an ingested folder, through index.json. */
#include <cjson/cJSON.h>
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

st_split *st_split_open(const char *dir, const char *split, cm_err *err)
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
    st_split *d = calloc(1, sizeof *d);
    cJSON *splits = cJSON_GetObjectItemCaseSensitive(root, "splits");
    cJSON *sp = cJSON_GetObjectItemCaseSensitive(splits, split);
    if (!sp) { /* "aliases": {"val": "test"} (CREMA-D: the test split is also the validation split) */
        cJSON *al = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "aliases"), split);
        if (cJSON_IsString(al))
            sp = cJSON_GetObjectItemCaseSensitive(splits, al->valuestring);
    }
    cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards");
    if (!d || !cJSON_IsArray(shards)) {
        cm_err_set(err, "index.json: no split \"%s\"", split);
        goto bad;
    }
    size_t n = (size_t)cJSON_GetArraySize(shards);
    d->shards = calloc(n + 1, sizeof *d->shards);
    d->first = calloc(n + 1, sizeof *d->first);
    if (!d->shards || !d->first) {
        cm_err_set(err, "out of memory");
        goto bad;
    }
    cJSON *it;
    cJSON_ArrayForEach(it, shards) {
        cJSON *file = cJSON_GetObjectItemCaseSensitive(it, "file");
        cJSON *count = cJSON_GetObjectItemCaseSensitive(it, "count");
        if (!cJSON_IsString(file) || !cJSON_IsNumber(count) || strchr(file->valuestring, '/')) {
            cm_err_set(err, "index.json: bad shard entry in split \"%s\"", split);
            goto bad;
        }
        snprintf(path, sizeof path, "%s/%s", dir, file->valuestring);
        st_shard *s = st_shard_open(path, err);
        if (!s) {
            cm_err_prefix(err, "%s", file->valuestring);
            goto bad;
        }
        d->shards[d->nshards] = s;
        d->first[d->nshards + 1] = d->first[d->nshards] + st_shard_count(s);
        d->nshards++;
        if ((double)st_shard_count(s) != count->valuedouble) {
            cm_err_set(err, "%s: %zu samples, index.json says %.0f", file->valuestring, st_shard_count(s),
                       count->valuedouble);
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
