/* run_dist: what the train command does for a data-parallel run beside the
 * step (train/system_dist.c): the record of the world size in RUN/dist.json
 * and its check on --resume. */
#ifndef TRAIN_RUN_DIST_H
#define TRAIN_RUN_DIST_H

#include "common/cm_err.h"
#include "dist/dist.h"

/* Resuming: -1 when RUN/dist.json (absent: a run of 1 process) names another
 * world size than this one. Otherwise (a new run) rank 0 writes it. */
int tr_run_world(const char *run_dir, int resuming, ds_comm *comm, cm_err *err);

#endif
