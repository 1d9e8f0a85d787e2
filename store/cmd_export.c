/* store export DIR ID -o PREFIX: one sample as PREFIX.npy, PREFIX_K.jpg and a JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "common/cm_npy.h"
#include "store/cmd.h"
#include "store/store.h"

static void print_fields(const st_shard *s, size_t i, const st_record *rec)
{
    const st_meta *m = st_shard_meta(s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", rec->id);
    cJSON_AddStringToObject(o, "split", m->split);
    cJSON_AddStringToObject(o, "shard", st_shard_path(s));
    cJSON_AddNumberToObject(o, "index", (double)i);
    cJSON_AddNumberToObject(o, "label", rec->label);
    cJSON_AddStringToObject(o, "class", m->classes[rec->label]);
    cJSON *sg = cJSON_AddArrayToObject(o, "segment");
    cJSON_AddItemToArray(sg, cJSON_CreateNumber(rec->seg_start));
    cJSON_AddItemToArray(sg, cJSON_CreateNumber(rec->seg_end));
    cJSON *ft = cJSON_AddArrayToObject(o, "frame_time");
    for (int f = 0; f < rec->frames_per_sample; f++)
        cJSON_AddItemToArray(ft, cJSON_CreateNumber(rec->frame_time[f]));
    char *t = cJSON_PrintUnformatted(o);
    printf("%s\n", t ? t : "{}");
    free(t);
    cJSON_Delete(o);
}

/* Writes sample i of s; 0 or 1 (the reason printed). */
static int export_sample(st_shard *s, size_t i, const char *prefix)
{
    const st_meta *m = st_shard_meta(s);
    cm_err err;
    st_record rec;
    size_t shape[2] = {(size_t)m->bins, (size_t)m->frames};
    float *spec = malloc(shape[0] * shape[1] * sizeof *spec);
    if (!spec) {
        fprintf(stderr, "store: %s: out of memory\n", st_shard_path(s));
        return 1;
    }
    if (st_shard_read(s, i, &rec, &err) != 0) {
        fprintf(stderr, "store: %s: %s\n", st_shard_path(s), err.msg);
        free(spec);
        return 1;
    }
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s.npy", prefix);
    int ok = st_shard_read_spec(s, i, NULL, spec, &err) == 0 && cm_npy_write(path, "<f4", shape, 2, spec, &err) == 0;
    for (int f = 0; ok && f < rec.frames_per_sample; f++) {
        snprintf(path, sizeof path, "%s_%d.jpg", prefix, f);
        ok = cm_write_file_atomic(path, rec.jpeg_buf + rec.jpeg_off[f], rec.jpeg_len[f], &err) == 0;
    }
    if (ok)
        print_fields(s, i, &rec);
    else
        fprintf(stderr, "store: %s: %s\n", st_shard_path(s), err.msg);
    st_record_free(&rec);
    free(spec);
    return ok ? 0 : 1;
}

/* Looks for id in split sp: 0 exported, 1 failed, -1 not there. */
static int export_from_split(const char *dir, const char *split, const char *id, const char *prefix)
{
    cm_err err;
    st_split *d = st_split_open(dir, split, &err);
    if (!d) {
        fprintf(stderr, "store: %s: split %s: %s\n", dir, split, err.msg);
        return -1;
    }
    int rc = -1;
    for (size_t k = 0; k < st_split_nshards(d) && rc < 0; k++) {
        st_shard *s = st_split_shard(d, k);
        for (size_t i = 0; i < st_shard_count(s) && rc < 0; i++)
            if (!strcmp(st_shard_id(s, i), id))
                rc = export_sample(s, i, prefix);
    }
    st_split_close(d);
    return rc;
}

int cmd_export(const st_cmd_args *a)
{
    const char *dir = a->dir, *id = a->id, *prefix = a->out;
    st_index ix;
    if (st_index_load(&ix, dir) != 0)
        return 1;
    int rc = -1;
    const cJSON *sp;
    cJSON_ArrayForEach(sp, ix.splits) {
        rc = export_from_split(dir, sp->string, id, prefix);
        if (rc >= 0)
            break;
    }
    if (rc < 0)
        fprintf(stderr, "store: %s: no sample with id \"%s\"\n", dir, id);
    st_index_free(&ix);
    return rc == 0 ? 0 : 1;
}
