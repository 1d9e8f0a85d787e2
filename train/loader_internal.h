/* loader: internals shared by loader*.c (not public). */
#ifndef TRAIN_LOADER_INTERNAL_H
#define TRAIN_LOADER_INTERNAL_H

#include "train/loader.h"

struct ld_data {
    st_split *split;       /* the shards (st_split_open: index.json, or <split>-*.h5) */
};

#endif
