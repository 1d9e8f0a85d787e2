/* model: the networks of train/system.c on the backend of kernels/kernels.h.
 *
 * - tr_reg: the named tensors of one network (PyTorch state_dict names and
 *   shapes), its parameters in ONE contiguous device allocation each for
 *   values, gradients and momenta (so that SGD is one call per network), and
 *   its buffers (BN running statistics) in another.
 * - tr_resnet: torchvision-layout ResNet-18/50 (BasicBlock [2,2,2,2] /
 *   Bottleneck [3,4,6,3]), forward in train or eval mode, backward.
 * - tr_proxy: the proxy on the layer3 output (FA, none, CFA).
 *
 * Internal to the train module; see train/system.h for the public API.
 */
#ifndef TRAIN_MODEL_H
#define TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"
#include "kernels/kernels.h"
#include "train/rng.h"

enum { TT_PARAM = 0, TT_BUFFER = 1, TT_NBT = 2 };
enum { TI_NONE = 0, TI_KAIMING_OUT, TI_TORCH_W, TI_TORCH_B, TI_ONE, TI_ZERO, TI_KAIMING_A1, TI_N1 };
/* TI_N1: N(1, 0.02) (the authors' ResNet batch-norm weights, backbone.py). */
/* TI_KAIMING_A1: kaiming_uniform_(a=1): U(-sqrt(3 / fan_in), sqrt(3 / fan_in)) (ReviewKD's ABF convs). */

typedef struct tr_tensor {
    char name[64];  /* state_dict name inside the group ("layer1.0.conv1.weight") */
    int kind;       /* TT_PARAM, TT_BUFFER (float running stats), TT_NBT (num_batches_tracked) */
    int init;       /* TI_* */
    int fan_in;     /* for TI_TORCH_* */
    int ndim;
    int shape[4];
    size_t count;
    size_t off;     /* into reg->w (params) or reg->buf (buffers) */
} tr_tensor;

/* Device allocations of one system (all freed together). */
typedef struct tr_mem {
    be_ctx *be;
    void **p;
    size_t n, cap;
    int failed;
} tr_mem;

float *tr_mem_floats(tr_mem *m, size_t count);
void tr_mem_free_all(tr_mem *m);

/* --sync-bn (PyTorch's SyncBatchNorm): when a network's tr_reg points to one,
 * its batch norms in training mode use the statistics of the global batch
 * (every rank's samples): the per-channel sums (Σx, Σx², then in the backward
 * pass Σdy, Σdy·x̂, each with the count) are summed over ranks by `allreduce`
 * between the backend's split ops (backend.h: bn_stats_partial ...). One set per
 * tr_system (train/system_dist.c), shared by its networks. */
typedef struct tr_bnsync {
    int (*allreduce)(void *arg, double *buf, size_t n); /* in place sum over ranks; 0 or -1 (err set) */
    void *arg;
    double *h;   /* host, 2 * max_c + 1 */
    double *dev; /* device, 2 * max_c */
    int failed;  /* an all-reduce failed: err says why (the step reports it) */
    cm_err err;
} tr_bnsync;

typedef struct tr_reg {
    char group[32];
    tr_tensor *t;
    int nt, cap;
    size_t np, nb;          /* parameter / buffer element counts */
    float *w, *g, *m;       /* device, np each */
    float *buf, *buf_save;  /* device, nb each (buf_save: restored after a failed step) */
    size_t top_off;         /* parameters [top_off, np) are layer4 + fc */
    int64_t nbt;            /* num_batches_tracked (the same for every BN of a network) */
    int failed;             /* the tensor list could not grow (tr_reg_alloc reports it) */
    tr_bnsync *sync;        /* NULL: batch norm with this rank's statistics; else --sync-bn (not owned) */
} tr_reg;

typedef struct tr_conv {
    size_t w;
    int cin, cout, k, stride, pad;
} tr_conv;

typedef struct tr_bn {
    size_t g, b, rm, rv;
    int c;
    float *smean, *sinv;
} tr_bn;

typedef struct tr_lin {
    size_t w, b; /* b == (size_t)-1: no bias */
    int in, out;
} tr_lin;

/* Average over frames: [B*F, C] -> [B, C] as a linear map with a constant
 * [C, F*C] matrix (backend ops only). */
typedef struct tr_fold {
    int F, C;
    float *mat, *dmat;     /* [C, F*C]; dmat receives an unused weight gradient */
    float *frames;         /* [B*F, C] per-frame spatial averages */
    float *dframes;        /* [B*F, C] */
} tr_fold;

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

typedef struct tr_proxy {
    tr_reg reg;
    int kind;                      /* TR_PROXY_* of system.h */
    int C, hw, F, classes, max_batch;
    tr_fold fold;
    float *pooled, *dpooled;       /* [B, C] */
    tr_lin l1, l2;                 /* 1x1 convs as linear maps without bias */
    tr_bn b1, b2;
    float *h1, *y1, *a1, *h2, *y2; /* [B, C] */
    float *d1, *d2;                /* [B, C] gradient scratch */
    tr_lin fc;
    float *logits;
    float *dfeat;                  /* [B*F, C, hw] gradient to the layer3 output */
    const float *feat;
} tr_proxy;

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

int tr_proxy_build(tr_proxy *p, tr_mem *mem, const char *group, int kind, int C, int h, int w, int F,
                   int classes, int max_batch, cm_err *err);
const float *tr_proxy_forward(tr_proxy *p, be_ctx *be, const float *feat, int B, int train);
/* Parameter gradients; when need_dfeat, also p->dfeat. */
void tr_proxy_backward(tr_proxy *p, be_ctx *be, int B, const float *dlogits, int need_dfeat);

/* Layer L's output (L = 1..4) of the last forward: [B*F, c, h, w] (post-ReLU). */
const float *tr_resnet_stage(const tr_resnet *n, int L, int *c, int *h, int *w);

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

/* ReviewKD (docs/METHODS.md): five ABF modules over the student's features
 * (layer1..4 outputs and the pooled vector as a 1x1 map, frames averaged),
 * fused top-down, each output compared with the teacher's feature of the
 * same level under HCL. Level l = 0..4 (layer1 .. pooled); its module is the
 * authors' abfs.(4 - l) (their list runs top-down). PyTorch names
 * abfs.K.conv1.0.weight, abfs.K.conv1.1.* (BN), abfs.K.conv2.0.weight,
 * abfs.K.conv2.1.*, abfs.K.att_conv.0.weight / .bias (K < 4). ABF of level l,
 * student feature x [B, cs, hs, ws], teacher's (ct, ht, wt):
 *   u = BN(conv1x1(x)); top: r = u; else y = resize(res_{l+1}, hs x ws),
 *   a = sigmoid(conv1x1([u; y]) + b), r = u a0 + y a1;
 *   res_l = resize(r, ht x wt) (bilinear, align_corners=False; skipped when
 *   equal); o = BN(conv3x3(res_l)), compared with the teacher's feature. */
#define TR_REVIEW_N 5
typedef struct tr_abf {
    int cs, hs, ws, ct, ht, wt;
    int resize;                 /* (hs, ws) != (ht, wt) */
    tr_conv conv1, att, conv2;
    size_t att_b;               /* attention bias (2 values) in reg */
    tr_bn bn1, bn2;
    float *xs, *xt;             /* frame averages (F > 1), else NULL */
    const float *in_s, *in_t;   /* features of the last forward */
    float *h1, *u, *y, *cat, *z, *a, *r; /* [B, m or 2m or 2, hs, ws] */
    float *res;                 /* [B, m, ht, wt] (== r when not resized) */
    float *h2, *o;              /* [B, ct, ht, wt] */
    float *dres;                /* gradient of res */
    float *dx, *dxf;            /* gradient of x [B, cs, hs, ws]; expanded to frames (F > 1) */
} tr_abf;

typedef struct tr_review {
    tr_reg reg;
    int Fs, Ft, mid, max_batch;
    tr_abf abf[TR_REVIEW_N];
    float *sA, *sB, *sC, *sD, *scat, *sz; /* backward scratch (largest level) */
    float *ps, *pt, *dp;        /* pooled pyramids [B, ct, 4, 4] */
    tr_feat_grad grad;          /* into the student (after tr_review_backward) */
} tr_review;

int tr_review_build(tr_review *rv, tr_mem *mem, const tr_resnet *student, const tr_resnet *teacher, int max_batch,
                    cm_err *err);
/* Needs both networks' forward of this batch (train mode for the student). */
void tr_review_forward(tr_review *rv, be_ctx *be, const tr_resnet *student, const tr_resnet *teacher, int B);
/* HCL of each level, weight w, into loss[l] (5 doubles on the device,
 * accumulated: a teacher's features near FLT_MAX square beyond float32), and
 * the backward pass of the modules: parameter gradients and rv->grad. */
void tr_review_backward(tr_review *rv, be_ctx *be, int B, float w, double *loss);

/* Building blocks shared by model.c, shake.c and review.c. */
size_t tr_add_bias(tr_reg *r, const char *name, int n, int fan_in);
void tr_add_conv(tr_reg *r, tr_conv *c, const char *name, int cin, int cout, int k, int stride, int pad,
                 int init);
void tr_add_bn(tr_reg *r, tr_mem *mem, tr_bn *b, const char *prefix, int c);
void tr_conv_shape(be_conv_shape *s, const tr_conv *c, int n, int h, int w);
int tr_conv_out(int x, const tr_conv *c);
void tr_bn_fwd(const tr_reg *r, be_ctx *be, const tr_bn *bn, int n, int hw, const float *x, float *y,
               int train);
void tr_bn_bwd(const tr_reg *r, be_ctx *be, const tr_bn *bn, int n, int hw, const float *x,
               const float *dy, float *dx);
int tr_fold_build(tr_fold *f, tr_mem *mem, be_ctx *be, int F, int C, int max_batch);
/* x [B*F, C, hw] -> y [B, C] (average over frames and space), and its backward. */
void tr_pool_fwd(be_ctx *be, const tr_fold *f, int B, int hw, const float *x, float *y);
void tr_pool_bwd(be_ctx *be, const tr_fold *f, int B, int hw, const float *dy, float *dx);

/* Allocates the registry's device memory (after build) and initialises it from rng. */
int tr_reg_alloc(tr_reg *r, tr_mem *mem, cm_err *err);
void tr_reg_init(tr_reg *r, be_ctx *be, tr_rng *rng);
void tr_reg_free(tr_reg *r);
/* Index of a tensor by name, or -1. */
int tr_reg_find(const tr_reg *r, const char *name);

#endif
