/* store command: index.json, loaded with every field checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "store/cmd.h"
#include "store/st_index.h"
#include "store/store.h"

double st_index_count(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble >= 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    return v->valuedouble;
}

/* An int field in [lo, hi]: 1 when present and valid, 0 when absent, -1 when bad. */
static int int_field(const cJSON *v, int lo, int hi, int *out)
{
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi || v->valuedouble != floor(v->valuedouble))
        return -1;
    *out = (int)v->valuedouble;
    return 1;
}

static const char *check_shards(const cJSON *sp)
{
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards"), *e;
    if (!cJSON_IsObject(sp) || !cJSON_IsArray(shards))
        return "a split is not an object with a \"shards\" array";
    if (cJSON_GetObjectItemCaseSensitive(sp, "count") && st_index_count(sp, "count") < 0)
        return "a split's count is not a non-negative integer";
    cJSON_ArrayForEach(e, shards) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "file");
        if (!cJSON_IsString(f) || !f->valuestring[0] || f->valuestring[0] == '.' || strchr(f->valuestring, '/'))
            return "a shard's file is not a plain file name";
        if (st_index_count(e, "count") < 0)
            return "a shard's count is not a non-negative integer";
    }
    return NULL;
}

/* The reason index.json is malformed, NULL when it is fine; fills ix. */
static const char *check_index(st_index *ix)
{
    const cJSON *r = ix->root, *c, *sp;
    if (!cJSON_IsObject(r))
        return "not a JSON object";
    ix->splits = cJSON_GetObjectItemCaseSensitive(r, "splits");
    ix->classes = cJSON_GetObjectItemCaseSensitive(r, "classes");
    if (!cJSON_IsObject(ix->splits))
        return "not an ingest index (no \"splits\" object)";
    if (!cJSON_IsArray(ix->classes))
        return "\"classes\" is not an array";
    cJSON_ArrayForEach(c, ix->classes)
        if (!cJSON_IsString(c))
            return "\"classes\" holds a value that is not a string";
    ix->n_classes = cJSON_GetArraySize(ix->classes);
    cJSON_ArrayForEach(sp, ix->splits) {
        const char *why = check_shards(sp);
        if (why)
            return why;
    }
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(r, "spec_shape");
    if (shape) {
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
            int_field(cJSON_GetArrayItem(shape, 0), 1, 1 << 24, &ix->bins) != 1 ||
            int_field(cJSON_GetArrayItem(shape, 1), 1, 1 << 24, &ix->frames) != 1)
            return "\"spec_shape\" is not two positive integers";
        ix->has_shape = 1;
    }
    ix->has_fps = int_field(cJSON_GetObjectItemCaseSensitive(r, "frames_per_sample"), 0, ST_MAX_FRAMES, &ix->fps);
    if (ix->has_fps < 0)
        return "\"frames_per_sample\" is not an integer in [0, 64]";
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(r, "recipe");
    if (rec && !cJSON_IsObject(rec))
        return "\"recipe\" is not an object";
    if (rec && !(ix->recipe = cJSON_PrintUnformatted(rec)))
        return "out of memory";
    return NULL;
}

int st_index_load(st_index *ix, const char *dir)
{
    memset(ix, 0, sizeof *ix);
    cm_err err;
    if (!(ix->root = st_index_read(dir, &err))) {
        fprintf(stderr, "store: %s: %s\n", dir, err.msg);
        return -1;
    }
    const char *why = check_index(ix);
    if (why) {
        fprintf(stderr, "store: %s/index.json: %s\n", dir, why);
        st_index_free(ix);
        return -1;
    }
    return 0;
}

void st_index_free(st_index *ix)
{
    cJSON_Delete(ix->root);
    free(ix->recipe);
    memset(ix, 0, sizeof *ix);
}

const char *st_index_class(const st_index *ix, int c)
{
    const cJSON *v = cJSON_GetArrayItem(ix->classes, c);
    return cJSON_IsString(v) ? v->valuestring : "?";
}
