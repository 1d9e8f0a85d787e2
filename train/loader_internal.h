/* loader: internals shared by loader*.c (not public). */
#ifndef TRAIN_LOADER_INTERNAL_H
#define TRAIN_LOADER_INTERNAL_H

#include "train/loader.h"

struct ld_data {
    st_split *split;       /* when opened through index.json (owns the shards) */
    int own_shards;        /* 1: shards opened here (glob) */
    size_t nshards;
    st_shard **shards;
    size_t *first;         /* global index of each shard's first sample; first[nshards] = total */
};

/* Maps split sample i to (shard k, local j); -1 when out of range. */
int ld_data_locate(const ld_data *d, size_t i, size_t *k, size_t *j);

#endif
