/* loader: a split of an ingested folder (ld_data, a thin layer over store's
 * st_split) and the data identity stored in checkpoints. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "train/loader.h"
#include "train/loader_internal.h"

int ld_split_exists(const char *dir, const char *split)
{
    return st_split_exists(dir, split);
}

ld_data *ld_data_open(const char *dir, const char *split, cm_err *err)
{
    st_split *sp = st_split_open(dir, split, err);
    if (!sp)
        return NULL;
    const st_meta *m = st_split_meta(sp);
    if (!m) {
        cm_err_set(err, "split \"%s\" has no shard", split);
    } else if (m->frames_per_sample < 1 || m->frames_per_sample > 64 || m->n_classes < 1 || m->bins < 1 ||
               m->frames < 1) {
        cm_err_set(err, "shard metadata out of range (frames_per_sample %d, classes %d, spectrogram %dx%d)",
                   m->frames_per_sample, m->n_classes, m->bins, m->frames);
    } else {
        ld_data *d = calloc(1, sizeof *d);
        if (d) {
            d->split = sp;
            return d;
        }
        cm_err_set(err, "out of memory");
    }
    st_split_close(sp);
    return NULL;
}

void ld_data_close(ld_data *d)
{
    if (!d)
        return;
    st_split_close(d->split);
    free(d);
}

size_t ld_data_count(const ld_data *d)
{
    return st_split_count(d->split);
}

const st_meta *ld_data_meta(const ld_data *d)
{
    return st_split_meta(d->split);
}

int ld_data_compatible(const ld_data *a, const ld_data *b, cm_err *err)
{
    return st_meta_compatible(ld_data_meta(a), ld_data_meta(b), err);
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
    cJSON_AddStringToObject(o, "content", st_split_folder_digest(d->split));
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

int ld_identity_same_content(const char *ours, const char *theirs, cm_err *err)
{
    cJSON *a = cJSON_Parse(ours), *b = cJSON_Parse(theirs);
    const char *x = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "content"));
    const char *y = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "content"));
    int rc = x && y && strcmp(x, y) ? cm_err_set(err, "the run was trained on other data (folder digest %s, this "
                                                      "folder's %s): resume it on its own data", y, x)
                                    : 0;
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

const char *ld_data_id(const ld_data *d, size_t i)
{
    size_t k, j;
    if (st_split_locate(d->split, i, &k, &j) != 0)
        return NULL;
    return st_shard_id(st_split_shard(d->split, k), j);
}
