/* store info DIR: splits, counts, shards, failures, class histogram, recipe. */
#include <stdio.h>
#include <stdlib.h>

#include "store/cmd.h"
#include "store/store.h"

/* The class histogram of one split; 1 when the split cannot be read. */
static int print_split(const st_index *ix, const char *dir, const cJSON *sp)
{
    printf("split %s: %.0f samples in %d shard(s), %.0f failed\n", sp->string, st_index_count(sp, "count"),
           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sp, "shards")), st_index_count(sp, "failed"));
    cm_err err;
    st_split *d = st_split_open(dir, sp->string, &err);
    if (!d) {
        printf("  (cannot read: %s)\n", err.msg);
        return 1;
    }
    size_t *hist = calloc((size_t)ix->n_classes + 1, sizeof *hist);
    for (size_t k = 0; hist && k < st_split_nshards(d); k++) {
        st_shard *s = st_split_shard(d, k);
        for (size_t i = 0; i < st_shard_count(s); i++) {
            int32_t l = st_shard_label(s, i);
            if (l >= 0 && l < ix->n_classes)
                hist[l]++;
        }
    }
    st_split_close(d);
    for (int c = 0; hist && c < ix->n_classes; c++)
        printf("  %4d %-40s %zu\n", c, st_index_class(ix, c), hist[c]);
    free(hist);
    return hist ? 0 : 1;
}

int cmd_info(const st_cmd_args *a)
{
    st_index ix;
    if (st_index_load(&ix, a->dir) != 0)
        return 1;
    const cJSON *r = ix.root, *ds = cJSON_GetObjectItemCaseSensitive(r, "dataset");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(r, "spec_dtype");
    printf("dataset: %s\n", cJSON_IsString(ds) ? ds->valuestring : "?");
    printf("format: %s version %.0f\n", ST_FORMAT, st_index_count(r, "version"));
    printf("spectrogram: %d x %d %s; frames per sample: %d\n", ix.bins, ix.frames,
           cJSON_IsString(dt) ? dt->valuestring : "?", ix.fps);
    printf("samples: %.0f; failed rows: %.0f (failures.tsv)\n", st_index_count(r, "count"),
           st_index_count(r, "failed"));
    int rc = 0;
    const cJSON *sp, *al;
    cJSON_ArrayForEach(sp, ix.splits)
        rc |= print_split(&ix, a->dir, sp);
    cJSON_ArrayForEach(al, cJSON_GetObjectItemCaseSensitive(r, "aliases"))
        if (cJSON_IsString(al))
            printf("split %s: the same samples as split %s\n", al->string, al->valuestring);
    printf("recipe: %s\n", ix.recipe ? ix.recipe : "{}");
    st_index_free(&ix);
    return rc;
}
