/* method_review: ReviewKD (docs/METHODS.md): the ABF modules over the
 * student's features and the HCL loss against the frozen teacher's
 * (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_REVIEW_H
#define TRAIN_METHOD_REVIEW_H

#include "train/method.h"
#include "train/resnet.h"

extern const tr_method_def tr_method_review;

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

#endif
