/* world: RUN/dist.json, the number of ranks (world size) a data-parallel run
 * was started with, and its check on --resume (the batches, the sampling and
 * the batch-norm statistics depend on it). The step's own data-parallel work
 * is in train/ddp.c. */
#ifndef TRAIN_WORLD_H
#define TRAIN_WORLD_H

#include "common/cm_err.h"
#include "collective/collective.h"

/* A new run: rank 0 writes RUN/dist.json (the other ranks return 0). */
int tr_world_save(const char *run_dir, cl_comm *comm, cm_err *err);
/* --resume: -1 when RUN/dist.json (absent: a run of 1 process) names
 * another world size than this one's. */
int tr_world_check(const char *run_dir, cl_comm *comm, cm_err *err);

#endif
