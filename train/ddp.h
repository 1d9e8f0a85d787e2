/* ddp: the data-parallel parts of a step (system.h, "data parallel"), over
 * the list of trained parts (parts.h): gradient and loss averaging over
 * ranks (blocking, or started during the backward pass), the initial
 * broadcast, the check that every rank holds the same weights, and
 * --sync-bn's sums. Knows the parts and the communicator, not the system
 * (train/system.c calls it; it calls nothing of system.c). Every function is
 * a no-op without a communicator of several ranks (a launcher's world of 1
 * still goes through the collectives). Internal to train/. */
#ifndef TRAIN_DDP_H
#define TRAIN_DDP_H

#include <stdint.h>

#include "collective/collective.h"
#include "train/parts.h"

typedef struct tr_ddp {
    be_ctx *be;
    cl_comm *comm;     /* NULL or a world of 1 = one process */
    tr_bnsync bnsync;  /* --sync-bn; the parts' tr_reg.sync point here */
    /* gradient averages started during the backward pass */
    int overlap;       /* 0: blocking, after the backward pass (C2KD_DIST_OVERLAP=0) */
    int ovl_started, ovl_failed;
    cm_err ovl_err;
} tr_ddp;

/* Sets the communicator (not owned); with sync_bn, points every part's
 * batch norms at the shared sums (scratch from mem). */
void tr_ddp_set_comm(tr_ddp *d, cl_comm *comm, int sync_bn, tr_mem *mem, const tr_parts *l);
void tr_ddp_free(tr_ddp *d);
/* Called by the backward pass as soon as the gradients of r from float `off`
 * on are final: starts their non-blocking average over ranks
 * (cl_iaverage_f32 / cl_gpu_iaverage after the work issued so far), which
 * tr_ddp_reduce_step waits for. A no-op without overlap; a failure is kept
 * and reported by tr_ddp_reduce_step. */
void tr_ddp_grads_ready(tr_ddp *d, tr_reg *r, size_t off);
/* After the backward pass: averages the nt loss terms in hl, in double (so that a
 * non-finite loss on any rank fails the step on every rank) and the
 * gradients of every part SGD updates. */
int tr_ddp_reduce_step(tr_ddp *d, const tr_parts *l, double *hl, int nt, cm_err *err);
/* Sums n doubles over ranks in place (a step's counts). */
int tr_ddp_sum(tr_ddp *d, double *v, int n, cm_err *err);
/* 1 with a communicator of a launcher (several ranks, or one through MPI). */
int tr_ddp_multi(const tr_ddp *d);
/* Sends rank 0's parameters, momenta, buffers and counters of every part,
 * and *step, to every rank, then tr_ddp_check_same. */
int tr_ddp_broadcast(tr_ddp *d, const tr_parts *l, int64_t *step, cm_err *err);
/* Sends rank 0's running statistics to every rank and returns -1 naming the
 * first part whose parameters differ between ranks. */
int tr_ddp_check_same(tr_ddp *d, const tr_parts *l, cm_err *err);

#endif
