/* eval: what an evaluation pass of one network measures, and the files
 * `train --eval` (and every training run, for its best epoch) writes.
 *
 * An ev_pass gathers, from the host logits of each batch: the samples, the
 * top-1 and top-5 hits, the summed cross-entropy, the confusion matrix
 * (row: label, column: prediction) and, when asked, each sample's index,
 * label, prediction and softmax probabilities (predictions.tsv). The
 * prediction is the first index of the largest logit (the backend's argmax).
 * Probabilities and the loss are computed in double from the float logits;
 * each sample's loss is rounded to 2^-32 and summed as an integer, so a mean
 * loss is the same whatever the batches, the order and the number of ranks.
 *
 * Files (docs/FORMAT.md, "Evaluation"): DIR/eval.json, DIR/predictions.tsv,
 * DIR/confusion.svg, each written atomically. */
#ifndef TRAIN_EVAL_H
#define TRAIN_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"
#include "collective/collective.h"
#include "train/system.h"

typedef struct ev_pass {
    int C;                /* classes */
    int keep;             /* 1: keep each sample (predictions.tsv) */
    long long n, top1, top5;
    int64_t loss_fx;      /* sum of the samples' cross-entropy in units of 2^-32 (fixed point:
                           * the sum does not depend on the order of the samples or on the ranks) */
    int64_t *confusion;   /* [C * C] */
    /* kept samples (keep) */
    size_t ns, cap;
    int64_t *index;
    int32_t *label, *pred;
    double *prob;         /* [ns * C] */
} ev_pass;

ev_pass *ev_pass_create(int n_classes, int keep, cm_err *err);
void ev_pass_destroy(ev_pass *p);
/* Forgets every sample (a new pass). */
void ev_pass_reset(ev_pass *p);
/* Adds a batch of B samples: logits [B, C] (host), labels, indices in the split. */
int ev_pass_add(ev_pass *p, int B, const float *logits, const int32_t *labels, const int64_t *index, cm_err *err);
/* Sums the counts, the loss and the confusion matrix over the ranks (the
 * kept samples stay each rank's own). */
int ev_pass_allreduce(ev_pass *p, cl_comm *comm, cm_err *err);
/* top-1 accuracy (-1 without samples), mean loss, class c's accuracy (-1: no sample of c). */
double ev_top1(const ev_pass *p);
double ev_mean_loss(const ev_pass *p);
double ev_class_acc(const ev_pass *p, int c);

/* What the files say about where the numbers come from. */
typedef struct ev_info {
    const char *checkpoint, *network, *data, *split;
    int epoch;                    /* the checkpoint's epochs completed (-1: unknown) */
    const char *const *classes;   /* C names */
    /* the id of sample i of the split (NULL: the index is written) */
    const char *(*id_of)(const void *ctx, size_t i);
    const void *ctx;
} ev_info;

/* DIR/eval.json, DIR/predictions.tsv (when p->keep) and DIR/confusion.svg. */
int ev_write(const ev_pass *p, const ev_info *info, const char *dir, cm_err *err);

/* A tr_config from a checkpoint's `config` attribute (docs/FORMAT.md), for
 * evaluating it: the networks' shapes, modalities and method. -1 naming the
 * first missing or bad key. */
int ev_config_from_json(const char *json, tr_config *c, cm_err *err);

#endif
