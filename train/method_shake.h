/* method_shake: SHAKE (docs/METHODS.md): the shadow head on the frozen
 * teacher's layer2..4 outputs and its losses on layer-normalised logits
 * (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_SHAKE_H
#define TRAIN_METHOD_SHAKE_H

#include "train/method.h"
#include "train/resnet.h"

extern const tr_method_def tr_method_shake;

/* SHAKE's shadow head (docs/METHODS.md) on a teacher's layer2..4 outputs
 * g2, g3, g4 (channels c2, c3, c4):
 *   x = F5(F3(F1(g2) + F2(g3)) + F4(g4)), h = W_t pool(x) + b_t
 * Fk = conv (3x3 stride 2: F1, F3; 1x1: F2, F4; 3x3 stride 1: F5), BN, ReLU;
 * the pool averages over frames and space; W_t, b_t are the teacher's fc
 * (detached: no gradient). PyTorch names fuseK.0.weight (conv), fuseK.1.*
 * (BN). Always in train mode (batch statistics), like the authors' head. */
#define TR_SHADOW_N 5
typedef struct tr_shadow {
    tr_reg reg;
    int F, classes, max_batch;
    int c[3], h[3], w[3];          /* g2, g3, g4 */
    tr_conv conv[TR_SHADOW_N];
    tr_bn bn[TR_SHADOW_N];
    int oh[TR_SHADOW_N], ow[TR_SHADOW_N]; /* output size of fuse k */
    float *hc[TR_SHADOW_N];        /* conv outputs (BN inputs) */
    float *y[TR_SHADOW_N];         /* BN + ReLU outputs */
    float *s12, *s34;              /* F1 + F2, F3 + F4 */
    float *d[2];                   /* gradient scratch (largest map) */
    float *ds12, *ds34;
    tr_fold fold;
    float *pooled, *dpooled, *dfc; /* dfc: the teacher fc's unused weight gradient */
    float *logits;
    const float *g[3];             /* inputs of the last forward */
} tr_shadow;

int tr_shadow_build(tr_shadow *sh, tr_mem *mem, const tr_resnet *teacher, int max_batch, cm_err *err);
/* Needs the teacher's forward of this batch (its stage outputs stay live
 * until tr_shadow_backward). Returns the logits [B, classes]. */
const float *tr_shadow_forward(tr_shadow *sh, be_ctx *be, const tr_resnet *teacher, int B);
void tr_shadow_backward(tr_shadow *sh, be_ctx *be, const tr_resnet *teacher, int B, const float *dlogits);

/* The shadow head of a shake system (tests: tests/tools/stepcheck.c reads
 * its activations); NULL for another method. */
tr_shadow *tr_shake_shadow(struct tr_system *s);

#endif
