/* resnet: torchvision-layout ResNet-18/50 (BasicBlock [2,2,2,2] /
 * Bottleneck [3,4,6,3]) over the building blocks of model.h, forward in
 * train or eval mode, backward, and its memory plan. Internal to train/. */
#ifndef TRAIN_RESNET_H
#define TRAIN_RESNET_H

#include "train/model.h"

#define TR_MAX_STAGES 3
typedef struct tr_block {
    int nst;                       /* 2 basic, 3 bottleneck */
    tr_conv c[TR_MAX_STAGES];
    tr_bn b[TR_MAX_STAGES];
    int has_down;
    tr_conv cd;
    tr_bn bd;
    int hin, win, hout, wout;
    int cin, cout;
    int sh[TR_MAX_STAGES], sw[TR_MAX_STAGES]; /* spatial size after stage i */
    float *h[TR_MAX_STAGES];       /* conv outputs (BN inputs) */
    float *y[TR_MAX_STAGES];       /* BN outputs (after ReLU in place); y[nst-1] = block output */
    float *hd;                     /* downsample conv output (BN input) */
    size_t cnt[TR_MAX_STAGES];     /* elements of h[i] / y[i] at max_batch */
    const float *in;               /* input of the last forward */
} tr_block;

typedef struct tr_resnet {
    tr_reg reg;
    int depth, width, classes;
    int in_c, in_h, in_w;
    int F;                         /* images per sample (fold mode), else 1 */
    int max_batch;
    tr_conv conv1;
    tr_bn bn1;
    int h1, w1, hp, wp;            /* after conv1, after max-pool */
    float *stem_h, *stem_y, *stem_p; /* stem_y lies in layer1's region (see below) */
    float *stem_tmp;               /* 4 x width floats: statistics of the stem recomputation */
    tr_block *blk;
    int nblk;
    int layer_first[4];            /* index of each layer's first block */
    int l3_c, l3_h, l3_w;          /* layer3 output shape (per image) */
    int feat_c, l4_h, l4_w;
    tr_fold fold;
    float *pooled;                 /* [B, feat_c] */
    float *dpooled;
    tr_lin fc;
    float *logits;                 /* [B, classes] */
    const float *input;
    /* Memory plan (floats at max_batch). Every activation lies in ONE device
     * allocation `act` (act_count floats), so that a network whose backward
     * pass is done (or that has none: a frozen teacher) lends it whole as
     * another network's backward scratch. Layer1's region comes first and
     * also holds stem_y during the forward pass (dead once max-pooled; the
     * backward pass recomputes it there, after layer1's backward, next to the
     * stem's input gradient). The downsample BN output is transient (tmp).
     * Backward scratch: P and Q (block output / input gradients, pq floats
     * each) and S (s_need floats). */
    float *act;
    size_t act_count;
    size_t pq, s_need;             /* backward scratch: 2 * pq + s_need floats */
    size_t tmp_need;               /* floats of tmp (downsample BN output) */
    float *tmp;                    /* set by the owner before a forward pass */
} tr_resnet;

/* depth 18 or 50. */
int tr_resnet_build(tr_resnet *n, tr_mem *mem, const char *group, int depth, int width, int in_c,
                    int in_h, int in_w, int F, int classes, int max_batch, cm_err *err);
/* x: [B*F, in_c, in_h, in_w]. Returns the logits [B, classes] (device). */
const float *tr_resnet_forward(tr_resnet *n, be_ctx *be, const float *x, int B, int train);
/* Layer3 output of the last forward: [B*F, l3_c, l3_h, l3_w]. */
const float *tr_resnet_layer3(const tr_resnet *n);
/* Gradients that other parts of the system send into a network's features
 * (each NULL when none): stage[L-1] into layer L's output [B*F, c, h, w]
 * (tr_resnet_stage), pooled into the pooled features [B, feat_c]. */
typedef struct tr_feat_grad {
    const float *stage[4];
    const float *pooled;
} tr_feat_grad;

/* Gradients of every parameter (full) or of layer4 + fc only (full == 0)
 * from dlogits [B, classes]; fg (may be NULL) is added to the gradients of
 * the features it names (with full == 0 only layer4's output and the pooled
 * features may receive one). scratch: tr_resnet_scratch_floats(n) floats
 * that hold nothing of n (another network's dead `act`, or a buffer of the
 * owner). Overwrites n's activations (they are dead afterwards). */
void tr_resnet_backward(tr_resnet *n, be_ctx *be, int B, const float *dlogits, const tr_feat_grad *fg,
                        int full, float *scratch);
size_t tr_resnet_scratch_floats(const tr_resnet *n);

/* Layer L's output (L = 1..4) of the last forward: [B*F, c, h, w] (post-ReLU). */
const float *tr_resnet_stage(const tr_resnet *n, int L, int *c, int *h, int *w);

#endif
