/* method_c2kd: C²KD (docs/METHOD.md): the proxies on each network's layer3
 * output (FA, none, CFA: --proxy), the teacher trained with it
 * (--teacher-update full, top or frozen), the on-the-fly selection and the
 * bidirectional losses (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_C2KD_H
#define TRAIN_METHOD_C2KD_H

#include "train/method.h"
#include "train/model.h"

extern const tr_method_def tr_method_c2kd;

/* The proxy on a layer3 output [B*F, C, h, w]: pool over frames and space,
 * then FA (1x1 conv, BN, LeakyReLU 0.1), CFA (two 1x1 conv + BN, ReLU) or
 * nothing, then fc. PyTorch names conv.weight / bn.* (FA), conv1/bn1,
 * conv2/bn2 (CFA), fc.weight / fc.bias. */
typedef struct tr_proxy {
    tr_reg reg;
    int kind;                      /* TR_PROXY_* of system.h (tr_proxy_kind) */
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

int tr_proxy_build(tr_proxy *p, tr_mem *mem, const char *group, int kind, int C, int h, int w, int F,
                   int classes, int max_batch, cm_err *err);
const float *tr_proxy_forward(tr_proxy *p, be_ctx *be, const float *feat, int B, int train);
/* Parameter gradients; when need_dfeat, also p->dfeat. */
void tr_proxy_backward(tr_proxy *p, be_ctx *be, int B, const float *dlogits, int need_dfeat);

/* The proxies of a c2kd system (tests: tests/tools/stepcheck.c reads their
 * activations); NULL for another method. */
tr_proxy *tr_c2kd_proxy(struct tr_system *s, int teacher);

#endif
