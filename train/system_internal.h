/* The tr_system struct, shared by system.c and ckpt.c (internal). */
#ifndef TRAIN_SYSTEM_INTERNAL_H
#define TRAIN_SYSTEM_INTERNAL_H

#include "collective/collective.h"
#include "train/model.h"
#include "train/system.h"

typedef struct tr_index {
    tr_reg *reg;
    int t;
    char name[112];
} tr_index;

struct tr_system {
    be_ctx *be;
    tr_config cfg;
    tr_mem mem;
    int has_student, has_teacher, has_proxies, has_shadow, has_review;
    int teacher_train; /* teacher forward in train mode (batch statistics) */
    int teacher_full;  /* gradients through the whole teacher (else layer4 + fc only) */
    int teacher_sgd;   /* teacher parameters updated */
    tr_resnet student, teacher;
    tr_proxy sproxy, tproxy;
    tr_shadow shadow;      /* shake */
    tr_review review;      /* review */
    /* shake's logit normalisation 3.1415 * layer_norm over the classes, done
     * by the BN ops on [1, B, C] (gamma 3.1415, beta 0, eps 1e-7): */
    float *ln_gamma, *ln_beta, *ln_rm, *ln_rv, *ln_dg, *ln_db; /* [max_batch] each */
    float *ln_mean[3], *ln_inv[3];                             /* student, teacher, shadow */
    float *ln_z[3], *ln_dz[3];                                 /* normalised logits, gradients [B, C] */
    float *h_tmp;                                              /* host [2 * B * C] */
    size_t max_act;
    float *scratch;          /* max_act floats: see tr_system_create */
    float *dz_s, *dz_t, *dp_s, *dp_t;
    float *loss, *tau, *keep;
    int32_t *pred;
    int32_t *h_pred, *h_labels;
    float *h_keep;
    int64_t step;
    int last_B;
    tr_index *idx;
    size_t nidx;
    cl_comm *comm;     /* data parallel: NULL or a world of 1 = one process */
    tr_bnsync bnsync;  /* --sync-bn (system_dist.c); the networks' tr_reg.sync point here */
    /* gradient averages started during the backward pass (system_dist.c) */
    int overlap;       /* 0: blocking, after the backward pass (C2KD_DIST_OVERLAP=0) */
    int ovl_started, ovl_failed;
    cm_err ovl_err;
};

#define TR_MAX_REGS 5
/* The registries of the networks present, in the order student, teacher,
 * student_proxy, teacher_proxy, shadow, review. Returns their number. */
int tr_system_regs(tr_system *s, tr_reg *regs[TR_MAX_REGS]);

/* Data parallel (system_dist.c), no-ops without a communicator of several
 * ranks. After the backward pass: averages the nt loss terms in hl (so that a
 * non-finite loss on any rank fails the step on every rank) and the gradients
 * SGD will use. */
int tr_dist_reduce_step(tr_system *s, float *hl, int nt, cm_err *err);
/* Called by the backward pass as soon as the gradients of r from float `off`
 * on are final: starts their non-blocking average over ranks (cl_iaverage_f32
 * / cl_gpu_iaverage after the work issued so far), which tr_dist_reduce_step
 * waits for. A no-op in one process or without overlap; a failure is kept
 * and reported by tr_dist_reduce_step. */
void tr_dist_grads_ready(tr_system *s, tr_reg *r, size_t off);
/* Sums the correct counts and the kept fraction over ranks (stats of the
 * global batch; st->samples = B * ranks). */
int tr_dist_reduce_stats(tr_system *s, tr_stats *st, int B, cm_err *err);

#endif
