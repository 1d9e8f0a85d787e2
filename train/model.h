/* model: the building blocks of the networks of train/system.c on the
 * backend of kernels/kernels.h.
 *
 * - tr_reg: the named tensors of one network (PyTorch state_dict names and
 *   shapes), its parameters in ONE contiguous device allocation each for
 *   values, gradients and momenta (so that SGD is one call per network), and
 *   its buffers (BN running statistics) in another.
 * - layers (convolution, batch norm, linear) and the pool over frames.
 * The ResNet is train/resnet.h; each method's modules are in its own file
 * (train/method_c2kd.h: the proxies, method_shake.h, method_review.h).
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
 * tr_system (train/ddp.c), shared by its trained parts. */
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

/* Building blocks shared by every network (resnet.c, the methods' modules). */
void tr_add_linear(tr_reg *r, tr_lin *l, const char *prefix, int in, int out, int bias);
void tr_lin_fwd(const tr_reg *r, be_ctx *be, const tr_lin *l, int B, const float *x, float *y);
void tr_lin_bwd(const tr_reg *r, be_ctx *be, const tr_lin *l, int B, const float *x, const float *dy, float *dx);
size_t tr_add_bias(tr_reg *r, const char *name, int n, int fan_in);
void tr_add_conv(tr_reg *r, tr_conv *c, const char *name, int cin, int cout, int k, int stride, int pad,
                 int init);
void tr_add_bn(tr_reg *r, tr_mem *mem, tr_bn *b, const char *prefix, int c);
/* A batch norm whose weight is initialised by ginit (TI_ONE or TI_N1), bias 0. */
void tr_add_bn_init(tr_reg *r, tr_mem *mem, tr_bn *b, const char *prefix, int c, int ginit);
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
