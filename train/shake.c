/* shake: SHAKE's shadow head on the teacher's layer2..4 outputs (model.h,
 * docs/METHODS.md). Its loss lives in system.c. */
#include <stdio.h>
#include <string.h>

#include "train/model.h"

/* Input of fuse k: 0 g2, 1 g3, 2 F1 + F2, 3 g4, 4 F3 + F4. */
static const float *fuse_in(const tr_shadow *sh, int k)
{
    switch (k) {
    case 0: return sh->g[0];
    case 1: return sh->g[1];
    case 2: return sh->s12;
    case 3: return sh->g[2];
    default: return sh->s34;
    }
}

/* Spatial size of fuse k's input. */
static void fuse_in_size(const tr_shadow *sh, int k, int *h, int *w)
{
    static const int src[TR_SHADOW_N] = {0, 1, 1, 2, 2}; /* g2, g3 (= F1 out), g3, g4, g4 (= F3 out) */
    *h = sh->h[src[k]];
    *w = sh->w[src[k]];
}

int tr_shadow_build(tr_shadow *sh, tr_mem *mem, const tr_resnet *t, int max_batch, cm_err *err)
{
    memset(sh, 0, sizeof *sh);
    tr_reg *r = &sh->reg;
    snprintf(r->group, sizeof r->group, "shadow");
    sh->F = t->F;
    sh->classes = t->classes;
    sh->max_batch = max_batch;
    for (int i = 0; i < 3; i++)
        tr_resnet_stage(t, i + 2, &sh->c[i], &sh->h[i], &sh->w[i]);
    int c2 = sh->c[0], c3 = sh->c[1], c4 = sh->c[2];
    const int cin[TR_SHADOW_N] = {c2, c3, c3, c4, c4}, cout[TR_SHADOW_N] = {c3, c3, c4, c4, c4};
    const int ks[TR_SHADOW_N] = {3, 1, 3, 1, 3}, st[TR_SHADOW_N] = {2, 1, 2, 1, 1};
    size_t Bi = (size_t)max_batch * sh->F, big = 1;
    for (int k = 0; k < TR_SHADOW_N; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "fuse%d.0.weight", k + 1);
        tr_add_conv(r, &sh->conv[k], nm, cin[k], cout[k], ks[k], st[k], ks[k] / 2, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "fuse%d.1.", k + 1);
        tr_add_bn(r, mem, &sh->bn[k], nm, cout[k]);
        int hi, wi;
        fuse_in_size(sh, k, &hi, &wi);
        sh->oh[k] = tr_conv_out(hi, &sh->conv[k]);
        sh->ow[k] = tr_conv_out(wi, &sh->conv[k]);
        int want = k < 2 ? 1 : 2; /* F1, F2 land on g3's size; F3, F4, F5 on g4's */
        if (sh->oh[k] != sh->h[want] || sh->ow[k] != sh->w[want])
            return cm_err_set(err, "shadow head: fuse%d gives %dx%d, %dx%d expected", k + 1, sh->oh[k],
                              sh->ow[k], sh->h[want], sh->w[want]);
        size_t n = Bi * (size_t)cout[k] * sh->oh[k] * sh->ow[k];
        if (n > big)
            big = n;
        sh->hc[k] = tr_mem_floats(mem, n);
        sh->y[k] = tr_mem_floats(mem, n);
    }
    size_t n3 = Bi * (size_t)c3 * sh->h[1] * sh->w[1], n4 = Bi * (size_t)c4 * sh->h[2] * sh->w[2];
    sh->s12 = tr_mem_floats(mem, n3);
    sh->ds12 = tr_mem_floats(mem, n3);
    sh->s34 = tr_mem_floats(mem, n4);
    sh->ds34 = tr_mem_floats(mem, n4);
    sh->d[0] = tr_mem_floats(mem, big);
    sh->d[1] = tr_mem_floats(mem, big);
    sh->pooled = tr_mem_floats(mem, (size_t)max_batch * c4);
    sh->dpooled = tr_mem_floats(mem, (size_t)max_batch * c4);
    sh->dfc = tr_mem_floats(mem, (size_t)sh->classes * c4);
    sh->logits = tr_mem_floats(mem, (size_t)max_batch * sh->classes);
    if (mem->failed || tr_fold_build(&sh->fold, mem, mem->be, sh->F, c4, max_batch) < 0)
        return cm_err_set(err, "shadow: out of device memory for the activations");
    return tr_reg_alloc(r, mem, err);
}

static void fuse_fwd(tr_shadow *sh, be_ctx *be, int k, int Bi)
{
    be_conv_shape s;
    int hi, wi;
    fuse_in_size(sh, k, &hi, &wi);
    tr_conv_shape(&s, &sh->conv[k], Bi, hi, wi);
    be->ops->conv_fwd(be, &s, fuse_in(sh, k), sh->reg.w + sh->conv[k].w, sh->hc[k]);
    int hw = sh->oh[k] * sh->ow[k];
    tr_bn_fwd(&sh->reg, be, &sh->bn[k], Bi, hw, sh->hc[k], sh->y[k], 1);
    be->ops->relu_fwd(be, (size_t)Bi * sh->conv[k].cout * hw, sh->y[k], sh->y[k]);
}

const float *tr_shadow_forward(tr_shadow *sh, be_ctx *be, const tr_resnet *t, int B)
{
    const be_ops *o = be->ops;
    int Bi = B * sh->F, c, h, w;
    for (int i = 0; i < 3; i++)
        sh->g[i] = tr_resnet_stage(t, i + 2, &c, &h, &w);
    size_t n3 = (size_t)Bi * sh->c[1] * sh->h[1] * sh->w[1], n4 = (size_t)Bi * sh->c[2] * sh->h[2] * sh->w[2];
    fuse_fwd(sh, be, 0, Bi);
    fuse_fwd(sh, be, 1, Bi);
    o->add(be, n3, sh->y[0], sh->y[1], sh->s12);
    fuse_fwd(sh, be, 2, Bi);
    fuse_fwd(sh, be, 3, Bi);
    o->add(be, n4, sh->y[2], sh->y[3], sh->s34);
    fuse_fwd(sh, be, 4, Bi);
    tr_pool_fwd(be, &sh->fold, B, sh->h[2] * sh->w[2], sh->y[4], sh->pooled);
    o->linear_fwd(be, B, sh->c[2], sh->classes, sh->pooled, t->reg.w + t->fc.w, t->reg.w + t->fc.b, sh->logits);
    return sh->logits;
}

/* dy: gradient of fuse k's output (may be d[0]); dx (may be NULL): of its input. */
static void fuse_bwd(tr_shadow *sh, be_ctx *be, int k, int Bi, const float *dy, float *dx)
{
    const be_ops *o = be->ops;
    int hw = sh->oh[k] * sh->ow[k], hi, wi;
    o->relu_bwd(be, (size_t)Bi * sh->conv[k].cout * hw, sh->y[k], dy, sh->d[0]);
    tr_bn_bwd(&sh->reg, be, &sh->bn[k], Bi, hw, sh->hc[k], sh->d[0], sh->d[1]);
    fuse_in_size(sh, k, &hi, &wi);
    be_conv_shape s;
    tr_conv_shape(&s, &sh->conv[k], Bi, hi, wi);
    o->conv_bwd_filter(be, &s, fuse_in(sh, k), sh->d[1], sh->reg.g + sh->conv[k].w);
    if (dx)
        o->conv_bwd_data(be, &s, sh->d[1], sh->reg.w + sh->conv[k].w, dx);
}

void tr_shadow_backward(tr_shadow *sh, be_ctx *be, const tr_resnet *t, int B, const float *dlogits)
{
    int Bi = B * sh->F;
    be->ops->linear_bwd(be, B, sh->c[2], sh->classes, sh->pooled, t->reg.w + t->fc.w, dlogits, sh->dpooled,
                        sh->dfc, NULL);
    tr_pool_bwd(be, &sh->fold, B, sh->h[2] * sh->w[2], sh->dpooled, sh->d[0]);
    fuse_bwd(sh, be, 4, Bi, sh->d[0], sh->ds34);
    fuse_bwd(sh, be, 3, Bi, sh->ds34, NULL);
    fuse_bwd(sh, be, 2, Bi, sh->ds34, sh->ds12);
    fuse_bwd(sh, be, 1, Bi, sh->ds12, NULL);
    fuse_bwd(sh, be, 0, Bi, sh->ds12, NULL);
}
