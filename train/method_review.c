/* method_review: ReviewKD's ABF modules and HCL loss over a student's and a
 * frozen teacher's features, and its step (method_review.h, docs/METHODS.md). */
#include "train/method_review.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/system_internal.h"

/* Level l's feature of a network: layer l+1's output (l < 4), or the pooled
 * vector as a 1x1 map (l = 4). */
static const float *level_feat(const tr_resnet *n, int l, int *c, int *h, int *w)
{
    if (l < 4)
        return tr_resnet_stage(n, l + 1, c, h, w);
    *c = n->feat_c;
    *h = *w = 1;
    return n->pooled;
}

static size_t zmax(size_t a, size_t b)
{
    return a > b ? a : b;
}

static void add_abf(tr_review *rv, tr_mem *mem, int l)
{
    tr_abf *A = &rv->abf[l];
    tr_reg *r = &rv->reg;
    int K = TR_REVIEW_N - 1 - l, m = rv->mid;
    char nm[64];
    snprintf(nm, sizeof nm, "abfs.%d.conv1.0.weight", K);
    tr_add_conv(r, &A->conv1, nm, A->cs, m, 1, 1, 0, TI_KAIMING_A1);
    snprintf(nm, sizeof nm, "abfs.%d.conv1.1.", K);
    tr_add_bn(r, mem, &A->bn1, nm, m);
    snprintf(nm, sizeof nm, "abfs.%d.conv2.0.weight", K);
    tr_add_conv(r, &A->conv2, nm, m, A->ct, 3, 1, 1, TI_KAIMING_A1);
    snprintf(nm, sizeof nm, "abfs.%d.conv2.1.", K);
    tr_add_bn(r, mem, &A->bn2, nm, A->ct);
    if (l < TR_REVIEW_N - 1) {
        snprintf(nm, sizeof nm, "abfs.%d.att_conv.0.weight", K);
        tr_add_conv(r, &A->att, nm, 2 * m, 2, 1, 1, 0, TI_TORCH_W);
        snprintf(nm, sizeof nm, "abfs.%d.att_conv.0.bias", K);
        A->att_b = tr_add_bias(r, nm, 2, 2 * m);
    }
}

/* Activations of level l at max_batch; returns the largest map (floats) for the scratch. */
static size_t alloc_abf(tr_review *rv, tr_mem *mem, int l)
{
    tr_abf *A = &rv->abf[l];
    size_t B = (size_t)rv->max_batch, m = (size_t)rv->mid, s = (size_t)A->hs * A->ws, t = (size_t)A->ht * A->wt;
    if (rv->Fs > 1 && l < 4) {
        A->xs = tr_mem_floats(mem, B * A->cs * s);
        A->dxf = tr_mem_floats(mem, B * rv->Fs * A->cs * s);
    }
    if (rv->Ft > 1 && l < 4)
        A->xt = tr_mem_floats(mem, B * A->ct * t);
    A->h1 = tr_mem_floats(mem, B * m * s);
    A->u = tr_mem_floats(mem, B * m * s);
    if (l < 4) {
        A->y = tr_mem_floats(mem, B * m * s);
        A->cat = tr_mem_floats(mem, B * 2 * m * s);
        A->z = tr_mem_floats(mem, B * 2 * s);
        A->a = tr_mem_floats(mem, B * 2 * s);
        A->r = tr_mem_floats(mem, B * m * s);
    } else {
        A->r = A->u;
    }
    A->res = A->resize ? tr_mem_floats(mem, B * m * t) : A->r;
    A->h2 = tr_mem_floats(mem, B * A->ct * t);
    A->o = tr_mem_floats(mem, B * A->ct * t);
    A->dres = tr_mem_floats(mem, B * m * t);
    A->dx = tr_mem_floats(mem, B * A->cs * s);
    return zmax(zmax(B * m * s, B * m * t), zmax(B * A->ct * t, B * A->cs * s));
}

int tr_review_build(tr_review *rv, tr_mem *mem, const tr_resnet *st, const tr_resnet *te, int max_batch,
                    cm_err *err)
{
    memset(rv, 0, sizeof *rv);
    snprintf(rv->reg.group, sizeof rv->reg.group, "review");
    rv->Fs = st->F;
    rv->Ft = te->F;
    rv->max_batch = max_batch;
    /* mid channels: the CIFAR code's min(512, c_top) at ImageNet width 64, i.e. 8 w (docs/METHODS.md) */
    rv->mid = 8 * st->width < st->feat_c ? 8 * st->width : st->feat_c;
    size_t big = 1, cat = 1, z = 1, pyr = 1;
    for (int l = 0; l < TR_REVIEW_N; l++) {
        tr_abf *A = &rv->abf[l];
        level_feat(st, l, &A->cs, &A->hs, &A->ws);
        level_feat(te, l, &A->ct, &A->ht, &A->wt);
        A->resize = A->hs != A->ht || A->ws != A->wt;
        add_abf(rv, mem, l);
        big = zmax(big, alloc_abf(rv, mem, l));
        cat = zmax(cat, (size_t)max_batch * 2 * rv->mid * A->hs * A->ws);
        z = zmax(z, (size_t)max_batch * 2 * A->hs * A->ws);
        pyr = zmax(pyr, (size_t)max_batch * A->ct * 16);
    }
    float **sc[] = {&rv->sA, &rv->sB, &rv->sC, &rv->sD};
    for (int i = 0; i < 4; i++)
        *sc[i] = tr_mem_floats(mem, big);
    rv->scat = tr_mem_floats(mem, cat);
    rv->sz = tr_mem_floats(mem, z);
    rv->ps = tr_mem_floats(mem, pyr);
    rv->pt = tr_mem_floats(mem, pyr);
    rv->dp = tr_mem_floats(mem, pyr);
    if (mem->failed)
        return cm_err_set(err, "review: out of device memory for the activations");
    return tr_reg_alloc(&rv->reg, mem, err);
}

/* dst [B, per] = mean over the F frames of src [B*F, per]. */
static void frames_mean(be_ctx *be, int B, int F, size_t per, const float *src, float *dst)
{
    be->ops->zero(be, dst, (size_t)B * per * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++)
            be->ops->axpy(be, per, 1.0f / (float)F, src + ((size_t)b * F + f) * per, dst + (size_t)b * per);
}

/* dst [B*F, per] = src [B, per] / F for every frame (frames_mean's backward). */
static void frames_expand(be_ctx *be, int B, int F, size_t per, const float *src, float *dst)
{
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++)
            be->ops->copy(be, dst + ((size_t)b * F + f) * per, src + (size_t)b * per, per * sizeof(float));
    be->ops->scale(be, (size_t)B * F * per, 1.0f / (float)F, dst);
}

/* The two halves of a [B, 2m, hw] map and [B, m, hw] maps: cat = [u; y], or
 * back (dir 1): u += cat[:, :m], y += cat[:, m:]. */
static void cat_halves(be_ctx *be, int B, size_t half, float *u, float *y, float *cat, int back)
{
    for (int b = 0; b < B; b++) {
        float *c0 = cat + (size_t)b * 2 * half, *c1 = c0 + half;
        if (back) {
            be->ops->axpy(be, half, 1.0f, c0, u + (size_t)b * half);
            be->ops->axpy(be, half, 1.0f, c1, y + (size_t)b * half);
        } else {
            be->ops->copy(be, c0, u + (size_t)b * half, half * sizeof(float));
            be->ops->copy(be, c1, y + (size_t)b * half, half * sizeof(float));
        }
    }
}

static void abf_fwd(tr_review *rv, be_ctx *be, int l, int B)
{
    const be_ops *o = be->ops;
    tr_abf *A = &rv->abf[l];
    const tr_reg *r = &rv->reg;
    int m = rv->mid, hs = A->hs * A->ws, ht = A->ht * A->wt;
    be_conv_shape s;
    tr_conv_shape(&s, &A->conv1, B, A->hs, A->ws);
    o->conv_fwd(be, &s, A->in_s, r->w + A->conv1.w, A->h1);
    tr_bn_fwd(r, be, &A->bn1, B, hs, A->h1, A->u, 1);
    if (l < TR_REVIEW_N - 1) {
        const tr_abf *U = &rv->abf[l + 1];
        o->resize_fwd(be, B * m, U->ht, U->wt, A->hs, A->ws, U->res, A->y);
        cat_halves(be, B, (size_t)m * hs, A->u, A->y, A->cat, 0);
        tr_conv_shape(&s, &A->att, B, A->hs, A->ws);
        o->conv_fwd(be, &s, A->cat, r->w + A->att.w, A->z);
        o->att_fwd(be, B, m, hs, A->u, A->y, A->z, r->w + A->att_b, A->a, A->r);
    }
    if (A->resize)
        o->resize_fwd(be, B * m, A->hs, A->ws, A->ht, A->wt, A->r, A->res);
    tr_conv_shape(&s, &A->conv2, B, A->ht, A->wt);
    o->conv_fwd(be, &s, A->res, r->w + A->conv2.w, A->h2);
    tr_bn_fwd(r, be, &A->bn2, B, ht, A->h2, A->o, 1);
}

void tr_review_forward(tr_review *rv, be_ctx *be, const tr_resnet *st, const tr_resnet *te, int B)
{
    for (int l = 0; l < TR_REVIEW_N; l++) {
        tr_abf *A = &rv->abf[l];
        int c, h, w;
        const float *xs = level_feat(st, l, &c, &h, &w), *xt = level_feat(te, l, &c, &h, &w);
        if (A->xs) {
            frames_mean(be, B, rv->Fs, (size_t)A->cs * A->hs * A->ws, xs, A->xs);
            xs = A->xs;
        }
        if (A->xt) {
            frames_mean(be, B, rv->Ft, (size_t)A->ct * A->ht * A->wt, xt, A->xt);
            xt = A->xt;
        }
        A->in_s = xs;
        A->in_t = xt;
    }
    for (int l = TR_REVIEW_N - 1; l >= 0; l--)
        abf_fwd(rv, be, l, B);
}

/* HCL of level l (reviewkd.py hcl): into loss[0] and the gradient d of its output. */
static void hcl(tr_review *rv, be_ctx *be, int l, int B, float w, double *loss, float *d)
{
    const be_ops *o = be->ops;
    const tr_abf *A = &rv->abf[l];
    static const int ks[3] = {4, 2, 1};
    int nc = B * A->ct;
    double tot = 1, cnt = 1;
    for (int j = 0; j < 3; j++)
        if (ks[j] < A->ht)
            tot += (cnt /= 2);
    size_t n = (size_t)nc * A->ht * A->wt;
    o->zero(be, d, n * sizeof(float));
    o->mse(be, n, A->o, A->in_t, (float)(w / tot), loss, d);
    cnt = 1;
    for (int j = 0; j < 3; j++) {
        int k = ks[j];
        if (k >= A->ht)
            continue;
        cnt /= 2;
        size_t nk = (size_t)nc * k * k;
        o->adapool_fwd(be, nc, A->ht, A->wt, k, A->o, rv->ps);
        o->adapool_fwd(be, nc, A->ht, A->wt, k, A->in_t, rv->pt);
        o->zero(be, rv->dp, nk * sizeof(float));
        o->mse(be, nk, rv->ps, rv->pt, (float)(w * cnt / tot), loss, rv->dp);
        o->adapool_bwd(be, nc, A->ht, A->wt, k, rv->dp, rv->sB);
        o->axpy(be, n, 1.0f, rv->sB, d);
    }
}

/* The attention part of level l's backward: from dr (the fused map's
 * gradient) to du (into rv->sA) and to the level above's dres. */
static void att_bwd(tr_review *rv, be_ctx *be, int l, int B, const float *dr)
{
    const be_ops *o = be->ops;
    tr_abf *A = &rv->abf[l];
    tr_reg *r = &rv->reg;
    int m = rv->mid, hs = A->hs * A->ws;
    float *du = rv->sA, *dy = rv->sB;
    o->att_bwd(be, B, m, hs, A->u, A->y, A->a, dr, du, dy, rv->sz, r->g + A->att_b);
    be_conv_shape s;
    tr_conv_shape(&s, &A->att, B, A->hs, A->ws);
    o->conv_bwd_filter(be, &s, A->cat, rv->sz, r->g + A->att.w);
    o->conv_bwd_data(be, &s, rv->sz, r->w + A->att.w, rv->scat);
    cat_halves(be, B, (size_t)m * hs, du, dy, rv->scat, 1);
    tr_abf *U = &rv->abf[l + 1];
    o->resize_bwd(be, B * m, U->ht, U->wt, A->hs, A->ws, dy, U->dres);
}

static void abf_bwd(tr_review *rv, be_ctx *be, int l, int B)
{
    const be_ops *o = be->ops;
    tr_abf *A = &rv->abf[l];
    tr_reg *r = &rv->reg;
    int m = rv->mid, hs = A->hs * A->ws, ht = A->ht * A->wt;
    be_conv_shape s;
    /* conv2 + BN: from sA (the HCL gradient of o) to dres */
    tr_bn_bwd(r, be, &A->bn2, B, ht, A->h2, rv->sA, rv->sB);
    tr_conv_shape(&s, &A->conv2, B, A->ht, A->wt);
    o->conv_bwd_filter(be, &s, A->res, rv->sB, r->g + A->conv2.w);
    if (l == 0) {
        o->conv_bwd_data(be, &s, rv->sB, r->w + A->conv2.w, A->dres);
    } else {
        o->conv_bwd_data(be, &s, rv->sB, r->w + A->conv2.w, rv->sC);
        o->axpy(be, (size_t)B * m * ht, 1.0f, rv->sC, A->dres);
    }
    const float *dr = A->dres;
    if (A->resize) {
        o->resize_bwd(be, B * m, A->hs, A->ws, A->ht, A->wt, A->dres, rv->sD);
        dr = rv->sD;
    }
    const float *du = dr;
    if (l < TR_REVIEW_N - 1) {
        att_bwd(rv, be, l, B, dr);
        du = rv->sA;
    }
    tr_bn_bwd(r, be, &A->bn1, B, hs, A->h1, du, rv->sC);
    tr_conv_shape(&s, &A->conv1, B, A->hs, A->ws);
    o->conv_bwd_filter(be, &s, A->in_s, rv->sC, r->g + A->conv1.w);
    o->conv_bwd_data(be, &s, rv->sC, r->w + A->conv1.w, A->dx);
    const float *dx = A->dx;
    if (A->dxf) {
        frames_expand(be, B, rv->Fs, (size_t)A->cs * hs, A->dx, A->dxf);
        dx = A->dxf;
    }
    if (l < TR_REVIEW_N - 1)
        rv->grad.stage[l] = dx;
    else
        rv->grad.pooled = dx;
}

void tr_review_backward(tr_review *rv, be_ctx *be, int B, float w, double *loss)
{
    for (int l = 0; l < TR_REVIEW_N; l++) {
        hcl(rv, be, l, B, w, loss + l, rv->sA);
        abf_bwd(rv, be, l, B);
    }
}

/* ---------------------------------------------------------------- the method */

typedef struct review_state {
    tr_review rv;
    double *loss64;    /* the HCL terms [TR_REVIEW_N], summed in double (device) */
} review_state;

static int review_build(tr_system *s, cm_err *err)
{
    review_state *m = calloc(1, sizeof *m);
    if (!m)
        return cm_err_set(err, "out of memory");
    s->ms = m;
    if (tr_review_build(&m->rv, &s->mem, &s->student, &s->teacher, s->cfg.max_batch, err) < 0)
        return -1;
    m->loss64 = (double *)tr_mem_floats(&s->mem, 2 * TR_REVIEW_N); /* one allocation each: aligned */
    if (!m->loss64)
        return cm_err_set(err, "out of device memory");
    return tr_parts_add(&s->parts, &m->rv.reg, 1, 0, 1, err);
}

static void review_destroy(tr_system *s)
{
    review_state *m = s->ms;
    if (!m)
        return;
    tr_reg_free(&m->rv.reg);
    free(m);
    s->ms = NULL;
}

static const char *review_needs_two(const tr_system *s)
{
    (void)s;
    return "review modules'";
}

static void review_forward(tr_system *s, int B, const tr_step_out *z)
{
    review_state *m = s->ms;
    (void)z;
    s->be->ops->zero(s->be, m->loss64, TR_REVIEW_N * sizeof(double));
    tr_review_forward(&m->rv, s->be, &s->student, &s->teacher, B);
}

/* "ce_student" and the HCL of each level; the modules' backward pass runs here. */
static int review_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    static const char *hcl_names[TR_REVIEW_N] = {"hcl_layer1", "hcl_layer2", "hcl_layer3", "hcl_layer4",
                                                 "hcl_pool"};
    names[0] = "ce_student";
    s->be->ops->ce(s->be, B, s->cfg.n_classes, z->zs, y, 1.0f, s->loss, s->dz_s);
    for (int l = 0; l < TR_REVIEW_N; l++)
        names[1 + l] = hcl_names[l];
    review_state *m = s->ms;
    tr_review_backward(&m->rv, s->be, B, 1.0f, m->loss64); /* weight 1: the authors' ImageNet default */
    return 1 + TR_REVIEW_N;
}

/* The HCL terms, summed in double, in place of the float terms 1..5. */
static void review_terms64(tr_system *s, double *hl)
{
    review_state *m = s->ms;
    s->be->ops->to_host(s->be, hl + 1, m->loss64, TR_REVIEW_N * sizeof(double));
}

/* The modules' gradient into the student's features. */
static void review_feat_grad(const tr_system *s, const tr_resnet *net, tr_feat_grad *fg)
{
    const review_state *m = s->ms;
    if (net == &s->student)
        *fg = m->rv.grad;
}

const tr_method_def tr_method_review = {
    .help = "ReviewKD: ABF modules and HCL against the frozen teacher's features (docs/METHODS.md)",
    .student = 1,
    .teacher = 1,
    .groups = {"review"},
    .build = review_build,
    .destroy = review_destroy,
    .needs_two = review_needs_two,
    .forward = review_forward,
    .losses = review_losses,
    .terms64 = review_terms64,
    .feat_grad = review_feat_grad,
};
