/* loader: a split of an ingested folder (ld_data) and the data identity
 * stored in checkpoints. */
#include <cjson/cJSON.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "train/loader.h"
#include "train/loader_internal.h"

static int meta_compatible(const st_meta *a, const st_meta *b, cm_err *err)
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

int ld_split_exists(const char *dir, const char *split)
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

ld_data *ld_data_open(const char *dir, const char *split, cm_err *err)
{
    if (!cm_is_dir(dir)) {
        cm_err_set(err, "not a folder");
        return NULL;
    }
    ld_data *d = calloc(1, sizeof *d);
    if (!d) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/index.json", dir);
    if (cm_is_file(path)) {
        d->split = st_split_open(dir, split, err);
        if (!d->split) {
            free(d);
            return NULL;
        }
        d->nshards = st_split_nshards(d->split);
        d->shards = calloc(d->nshards + 1, sizeof *d->shards);
        if (!d->shards) {
            cm_err_set(err, "out of memory");
            goto bad;
        }
        for (size_t k = 0; k < d->nshards; k++)
            d->shards[k] = st_split_shard(d->split, k);
    } else {
        /* No index.json: every <split>-*.h5 in name order. */
        snprintf(path, sizeof path, "%s/%s-*.h5", dir, split);
        glob_t g;
        int rc = glob(path, 0, NULL, &g);
        if (rc != 0 || g.gl_pathc == 0) {
            if (rc == 0)
                globfree(&g);
            cm_err_set(err, "no index.json and no %s-*.h5 shard", split);
            free(d);
            return NULL;
        }
        d->own_shards = 1;
        d->shards = calloc(g.gl_pathc + 1, sizeof *d->shards);
        if (!d->shards) {
            globfree(&g);
            cm_err_set(err, "out of memory");
            goto bad;
        }
        for (size_t k = 0; k < g.gl_pathc; k++) {
            d->shards[k] = st_shard_open(g.gl_pathv[k], err);
            if (!d->shards[k]) {
                const char *base = strrchr(g.gl_pathv[k], '/');
                cm_err_prefix(err, "%s", base ? base + 1 : g.gl_pathv[k]);
                globfree(&g);
                goto bad;
            }
            d->nshards = k + 1;
        }
        globfree(&g);
    }
    d->first = calloc(d->nshards + 1, sizeof *d->first);
    if (!d->first) {
        cm_err_set(err, "out of memory");
        goto bad;
    }
    for (size_t k = 0; k < d->nshards; k++) {
        d->first[k + 1] = d->first[k] + st_shard_count(d->shards[k]);
        if (k > 0) {
            cm_err e;
            if (meta_compatible(st_shard_meta(d->shards[0]), st_shard_meta(d->shards[k]), &e) != 0) {
                const char *p = st_shard_path(d->shards[k]), *base = strrchr(p, '/');
                cm_err_set(err, "%s: differs from the split's first shard: %s", base ? base + 1 : p, e.msg);
                goto bad;
            }
        }
    }
    if (d->nshards == 0) {
        cm_err_set(err, "split \"%s\" has no shard", split);
        goto bad;
    }
    const st_meta *m = st_shard_meta(d->shards[0]);
    if (m->frames_per_sample < 1 || m->frames_per_sample > 64 || m->n_classes < 1 || m->bins < 1 ||
        m->frames < 1) {
        cm_err_set(err, "shard metadata out of range (frames_per_sample %d, classes %d, spectrogram %dx%d)",
                   m->frames_per_sample, m->n_classes, m->bins, m->frames);
        goto bad;
    }
    return d;
bad:
    ld_data_close(d);
    return NULL;
}

void ld_data_close(ld_data *d)
{
    if (!d)
        return;
    if (d->own_shards)
        for (size_t k = 0; k < d->nshards; k++)
            st_shard_close(d->shards[k]);
    st_split_close(d->split);
    free(d->shards);
    free(d->first);
    free(d);
}

size_t ld_data_count(const ld_data *d)
{
    return d->first[d->nshards];
}

const st_meta *ld_data_meta(const ld_data *d)
{
    return st_shard_meta(d->shards[0]);
}

int ld_data_locate(const ld_data *d, size_t i, size_t *k, size_t *j)
{
    return st_locate(d->first, d->nshards, i, k, j);
}

int ld_data_compatible(const ld_data *a, const ld_data *b, cm_err *err)
{
    return meta_compatible(ld_data_meta(a), ld_data_meta(b), err);
}

char *ld_data_identity(const ld_data *d)
{
    const st_meta *m = ld_data_meta(d);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "dataset", m->dataset ? m->dataset : "");
    cJSON *cl = cJSON_AddArrayToObject(o, "classes");
    for (int c = 0; c < m->n_classes; c++)
        cJSON_AddItemToArray(cl, cJSON_CreateString(m->classes[c]));
    cJSON_AddNumberToObject(o, "frames_per_sample", m->frames_per_sample);
    cJSON_AddNumberToObject(o, "bins", m->bins);
    cJSON_AddNumberToObject(o, "frames", m->frames);
    cJSON *r = m->recipe_json ? cJSON_Parse(m->recipe_json) : NULL;
    if (r)
        cJSON_AddItemToObject(o, "recipe", r);
    else
        cJSON_AddStringToObject(o, "recipe", m->recipe_json ? m->recipe_json : "");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int ld_identity_compare(const char *ours, const char *theirs, cm_err *err)
{
    cJSON *a = cJSON_Parse(ours), *b = cJSON_Parse(theirs);
    int rc = 0;
    if (!a || !b) {
        rc = cm_err_set(err, "data identity is not valid JSON");
        goto out;
    }
    cJSON *ca = cJSON_GetObjectItemCaseSensitive(a, "classes"), *cb = cJSON_GetObjectItemCaseSensitive(b, "classes");
    if (!cJSON_Compare(ca, cb, 1)) {
        int na = cJSON_GetArraySize(ca), nb = cJSON_GetArraySize(cb);
        if (na != nb) {
            rc = cm_err_set(err, "trained on %d classes, the data has %d", nb, na);
            goto out;
        }
        for (int c = 0; c < na; c++) {
            const char *x = cJSON_GetStringValue(cJSON_GetArrayItem(ca, c));
            const char *y = cJSON_GetStringValue(cJSON_GetArrayItem(cb, c));
            if (!x || !y || strcmp(x, y) != 0) {
                rc = cm_err_set(err, "another class list (class %d is \"%s\" there, \"%s\" in the data)", c,
                                y ? y : "?", x ? x : "?");
                goto out;
            }
        }
    }
    if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(a, "recipe"), cJSON_GetObjectItemCaseSensitive(b, "recipe"), 1)) {
        rc = cm_err_set(err, "trained on data of another recipe");
        goto out;
    }
    static const char *const keys[] = {"frames_per_sample", "bins", "frames"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(a, keys[k]), cJSON_GetObjectItemCaseSensitive(b, keys[k]), 1)) {
            rc = cm_err_set(err, "trained on data with another %s", keys[k]);
            goto out;
        }
out:
    cJSON_Delete(a);
    cJSON_Delete(b);
    return rc;
}

static int find_clip_norm(const cJSON *j)
{
    if (!j)
        return 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        if (c->string && (strcmp(c->string, "normalize") == 0 || strcmp(c->string, "normalise") == 0)) {
            if (cJSON_IsString(c) && strcmp(c->valuestring, "clip") == 0)
                return 1;
            if (cJSON_IsTrue(c) || (cJSON_IsNumber(c) && c->valuedouble == 1))
                return 1;
        }
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && find_clip_norm(c))
            return 1;
    }
    return 0;
}

int ld_recipe_standardized(const char *recipe_json)
{
    if (!recipe_json)
        return 0;
    cJSON *j = cJSON_Parse(recipe_json);
    int r = find_clip_norm(j);
    cJSON_Delete(j);
    return r;
}
