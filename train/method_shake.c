/* method_shake: SHAKE's shadow head on the teacher's layer2..4 outputs and
 * its step (method_shake.h, docs/METHODS.md). */
#include "train/method_shake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/system_internal.h"

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

/* ---------------------------------------------------------------- the method */

typedef struct shake_state {
    tr_shadow shadow;
    float *dh;         /* gradient of the shadow head's logits */
    /* the logit normalisation 3.1415 * layer_norm over the classes, done by
     * the BN ops on [1, B, C] (gamma 3.1415, beta 0, eps 1e-7): */
    float *ln_gamma, *ln_beta, *ln_rm, *ln_rv, *ln_dg, *ln_db; /* [max_batch] each */
    float *ln_mean[3], *ln_inv[3];                             /* student, teacher, shadow */
    float *ln_z[3], *ln_dz[3];                                 /* normalised logits, gradients [B, C] */
    float *h_tmp;                                              /* host [2 * B * C + 1] */
} shake_state;

/* The layer-norm buffers. */
static int shake_alloc(tr_system *s, shake_state *m, cm_err *err)
{
    size_t B = (size_t)s->cfg.max_batch, BC = B * s->cfg.n_classes;
    float **per_row[] = {&m->ln_gamma, &m->ln_beta, &m->ln_rm, &m->ln_rv, &m->ln_dg, &m->ln_db,
                         &m->ln_mean[0], &m->ln_mean[1], &m->ln_mean[2], &m->ln_inv[0], &m->ln_inv[1], &m->ln_inv[2]};
    for (size_t i = 0; i < sizeof per_row / sizeof *per_row; i++)
        *per_row[i] = tr_mem_floats(&s->mem, B);
    for (int i = 0; i < 3; i++) {
        m->ln_z[i] = tr_mem_floats(&s->mem, BC);
        m->ln_dz[i] = tr_mem_floats(&s->mem, BC);
    }
    m->dh = tr_mem_floats(&s->mem, BC);
    m->h_tmp = malloc((2 * BC + 1) * sizeof(float));
    if (s->mem.failed || !m->h_tmp)
        return cm_err_set(err, "out of memory for the shadow head's losses");
    for (size_t i = 0; i < B; i++)
        m->h_tmp[i] = 3.1415f;
    s->be->ops->to_device(s->be, m->ln_gamma, m->h_tmp, B * sizeof(float));
    s->be->ops->sync(s->be);
    return 0;
}

static int shake_build(tr_system *s, cm_err *err)
{
    shake_state *m = calloc(1, sizeof *m);
    if (!m)
        return cm_err_set(err, "out of memory");
    s->ms = m;
    if (tr_shadow_build(&m->shadow, &s->mem, &s->teacher, s->cfg.max_batch, err) < 0 ||
        shake_alloc(s, m, err) < 0)
        return -1;
    return tr_parts_add(&s->parts, &m->shadow.reg, 1, 0, 1, err);
}

static void shake_destroy(tr_system *s)
{
    shake_state *m = s->ms;
    if (!m)
        return;
    tr_reg_free(&m->shadow.reg);
    free(m->h_tmp);
    free(m);
    s->ms = NULL;
}

static const char *shake_needs_two(const tr_system *s)
{
    (void)s;
    return "shadow head's";
}

static void shake_forward(tr_system *s, int B, const tr_step_out *z)
{
    shake_state *m = s->ms;
    (void)z;
    s->be->ops->zero(s->be, m->dh, (size_t)B * s->cfg.n_classes * sizeof(float));
    tr_shadow_forward(&m->shadow, s->be, &s->teacher, B);
}

/* 3.1415 * layer_norm(z) over the classes = batch norm of [1, B, C] with
 * gamma 3.1415, beta 0, eps 1e-7 (the running statistics are scratch). */
static void shake_ln(tr_system *s, shake_state *m, int B, int i, const float *z)
{
    s->be->ops->bn_fwd_train(s->be, 1, B, s->cfg.n_classes, z, m->ln_gamma, m->ln_beta, m->ln_rm, m->ln_rv,
                             0.1f, 1e-7f, m->ln_z[i], m->ln_mean[i], m->ln_inv[i]);
}

static void shake_ln_bwd(tr_system *s, shake_state *m, int B, int i, const float *z, float *dz)
{
    s->be->ops->bn_bwd(s->be, 1, B, s->cfg.n_classes, z, m->ln_dz[i], m->ln_gamma, m->ln_mean[i], m->ln_inv[i],
                       dz, m->ln_dg, m->ln_db);
}

/* SHAKE's terms on the normalised logits (system.h); the gradients go to the
 * raw logits of the student (dz_s) and of the shadow head (dh). */
static int shake_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    shake_state *m = s->ms;
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    int C = s->cfg.n_classes, nt = 0;
    size_t BC = (size_t)B * C;
    float T = s->cfg.kd_temp, *L = s->loss;
    const float *raw[3] = {z->zs, z->zt, m->shadow.logits};
    for (int i = 0; i < 3; i++) {
        shake_ln(s, m, B, i, raw[i]);
        o->zero(be, m->ln_dz[i], BC * sizeof(float));
    }
    const float *ns = m->ln_z[0], *nz = m->ln_z[1], *nh = m->ln_z[2];
    names[nt] = "ce_student";
    o->ce(be, B, C, ns, y, 1.0f, L + nt++, m->ln_dz[0]);
    names[nt] = "kl_student_to_shadow"; /* T² KL_T(σ(sg z_s) ‖ σ(h)) */
    o->kl(be, B, C, ns, nh, T, T * T, L + nt++, m->ln_dz[2]);
    names[nt] = "kl_shadow_to_student"; /* T² KL_T(σ(sg h) ‖ σ(z_s)) */
    o->kl(be, B, C, nh, ns, T, T * T, L + nt++, m->ln_dz[0]);
    names[nt] = "ce_shadow";
    o->ce(be, B, C, nh, y, 1.0f, L + nt++, m->ln_dz[2]);
    /* MSE(h, sg z_t), mean over B*C: gradient 2 (h - z_t) / (B C); the value on the host */
    names[nt] = "mse_shadow_teacher";
    o->axpy(be, BC, 2.0f / (float)BC, nh, m->ln_dz[2]);
    o->axpy(be, BC, -2.0f / (float)BC, nz, m->ln_dz[2]);
    float *hh = m->h_tmp, *ht = m->h_tmp + BC;
    o->to_host(be, hh, nh, BC * sizeof(float));
    o->to_host(be, ht, nz, BC * sizeof(float));
    double sum = 0;
    for (size_t i = 0; i < BC; i++)
        sum += ((double)hh[i] - ht[i]) * ((double)hh[i] - ht[i]);
    m->h_tmp[2 * BC] = (float)(sum / (double)BC);
    o->to_device(be, L + nt++, m->h_tmp + 2 * BC, sizeof(float));
    o->sync(be);
    shake_ln_bwd(s, m, B, 0, z->zs, s->dz_s);
    shake_ln_bwd(s, m, B, 2, m->shadow.logits, m->dh);
    return nt;
}

/* Before the networks': the frozen teacher's arena (the head's input) may be lent as scratch. */
static void shake_backward(tr_system *s, int B)
{
    shake_state *m = s->ms;
    tr_shadow_backward(&m->shadow, s->be, &s->teacher, B, m->dh);
}

static void shake_outputs(const tr_system *s, tr_outputs *out)
{
    const shake_state *m = s->ms;
    out->h_shadow = m->shadow.logits;
}

tr_shadow *tr_shake_shadow(tr_system *s)
{
    shake_state *m = s->method == &tr_method_shake ? s->ms : NULL;
    return m ? &m->shadow : NULL;
}

const tr_method_def tr_method_shake = {
    .help = "SHAKE: a shadow head on the frozen teacher's features (docs/METHODS.md)",
    .student = 1,
    .teacher = 1,
    .groups = {"shadow"},
    .build = shake_build,
    .destroy = shake_destroy,
    .needs_two = shake_needs_two,
    .forward = shake_forward,
    .losses = shake_losses,
    .backward = shake_backward,
    .outputs = shake_outputs,
};
