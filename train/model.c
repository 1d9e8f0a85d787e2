/* model: the building blocks of every network: device memory, registries of
 * named tensors and their initialisation, convolution / batch-norm / linear
 * layers, the pool over frames. See model.h. */
#include "train/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define NO_BIAS ((size_t)-1)

/* ---------------------------------------------------------------- memory */

float *tr_mem_floats(tr_mem *m, size_t count)
{
    if (count == 0)
        count = 1;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        void **p = realloc(m->p, cap * sizeof *p);
        if (!p) {
            m->failed = 1;
            return NULL;
        }
        m->p = p;
        m->cap = cap;
    }
    float *f = m->be->ops->alloc(m->be, count * sizeof(float));
    if (!f) {
        m->failed = 1;
        return NULL;
    }
    m->p[m->n++] = f;
    return f;
}

void tr_mem_free_all(tr_mem *m)
{
    for (size_t i = 0; i < m->n; i++)
        m->be->ops->free(m->be, m->p[i]);
    free(m->p);
    m->p = NULL;
    m->n = m->cap = 0;
}

/* ---------------------------------------------------------------- registry */

static size_t reg_add(tr_reg *r, const char *name, int kind, int init, int fan_in, int ndim, int s0,
                      int s1, int s2, int s3)
{
    if (r->nt == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        tr_tensor *t = realloc(r->t, (size_t)cap * sizeof *t);
        if (!t) {
            r->failed = 1; /* reported by tr_reg_alloc */
            return 0;
        }
        r->t = t;
        r->cap = cap;
    }
    tr_tensor *t = &r->t[r->nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->init = init;
    t->fan_in = fan_in;
    t->ndim = ndim;
    int s[4] = {s0, s1, s2, s3};
    t->count = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = s[i];
        t->count *= (size_t)s[i];
    }
    if (kind == TT_PARAM) {
        t->off = r->np;
        r->np += t->count;
    } else if (kind == TT_BUFFER) {
        t->off = r->nb;
        r->nb += t->count;
    } else {
        t->count = 1;
        t->off = 0;
    }
    return t->off;
}

int tr_reg_find(const tr_reg *r, const char *name)
{
    for (int i = 0; i < r->nt; i++)
        if (strcmp(r->t[i].name, name) == 0)
            return i;
    return -1;
}

void tr_add_conv(tr_reg *r, tr_conv *c, const char *name, int cin, int cout, int k, int stride,
                     int pad, int init)
{
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    c->w = reg_add(r, name, TT_PARAM, init, cin * k * k, 4, cout, cin, k, k);
}

/* A batch norm whose weight is initialised by ginit (TI_ONE or TI_N1), bias 0. */
void tr_add_bn_init(tr_reg *r, tr_mem *mem, tr_bn *b, const char *prefix, int c, int ginit)
{
    char nm[64];
    b->c = c;
    snprintf(nm, sizeof nm, "%sweight", prefix);
    b->g = reg_add(r, nm, TT_PARAM, ginit, 0, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%sbias", prefix);
    b->b = reg_add(r, nm, TT_PARAM, TI_ZERO, 0, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%srunning_mean", prefix);
    b->rm = reg_add(r, nm, TT_BUFFER, TI_ZERO, 0, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%srunning_var", prefix);
    b->rv = reg_add(r, nm, TT_BUFFER, TI_ONE, 0, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%snum_batches_tracked", prefix);
    reg_add(r, nm, TT_NBT, TI_NONE, 0, 0, 0, 0, 0, 0);
    b->smean = tr_mem_floats(mem, (size_t)c);
    b->sinv = tr_mem_floats(mem, (size_t)c);
}

void tr_add_bn(tr_reg *r, tr_mem *mem, tr_bn *b, const char *prefix, int c)
{
    tr_add_bn_init(r, mem, b, prefix, c, TI_ONE);
}

size_t tr_add_bias(tr_reg *r, const char *name, int n, int fan_in)
{
    return reg_add(r, name, TT_PARAM, TI_TORCH_B, fan_in, 1, n, 0, 0, 0);
}

void tr_add_linear(tr_reg *r, tr_lin *l, const char *prefix, int in, int out, int bias)
{
    char nm[64];
    l->in = in;
    l->out = out;
    snprintf(nm, sizeof nm, "%sweight", prefix);
    if (bias) {
        l->w = reg_add(r, nm, TT_PARAM, TI_TORCH_W, in, 2, out, in, 0, 0);
        snprintf(nm, sizeof nm, "%sbias", prefix);
        l->b = reg_add(r, nm, TT_PARAM, TI_TORCH_B, in, 1, out, 0, 0, 0);
    } else {
        /* a 1x1 convolution on a [B, C, 1, 1] tensor: PyTorch shape [out, in, 1, 1];
         * Kaiming normal fan_out, as the authors' proxies (module.py) */
        l->w = reg_add(r, nm, TT_PARAM, TI_KAIMING_OUT, in, 4, out, in, 1, 1);
        l->b = NO_BIAS;
    }
}

int tr_reg_alloc(tr_reg *r, tr_mem *mem, cm_err *err)
{
    if (r->failed)
        return cm_err_set(err, "%s: out of memory for the tensor list", r->group);
    r->w = tr_mem_floats(mem, r->np);
    r->g = tr_mem_floats(mem, r->np);
    r->m = tr_mem_floats(mem, r->np);
    r->buf = tr_mem_floats(mem, r->nb);
    r->buf_save = tr_mem_floats(mem, r->nb);
    if (mem->failed)
        return cm_err_set(err, "%s: out of device memory for %zu parameters", r->group, r->np);
    return 0;
}

void tr_reg_init(tr_reg *r, be_ctx *be, tr_rng *rng)
{
    float *hw = calloc(r->np ? r->np : 1, sizeof(float));
    float *hb = calloc(r->nb ? r->nb : 1, sizeof(float));
    if (!hw || !hb) {
        free(hw);
        free(hb);
        return;
    }
    for (int i = 0; i < r->nt; i++) {
        tr_tensor *t = &r->t[i];
        if (t->kind == TT_NBT)
            continue;
        float *d = (t->kind == TT_PARAM ? hw : hb) + t->off;
        switch (t->init) {
        case TI_KAIMING_OUT: {
            /* kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (out * kh * kw)) */
            double fan_out = (double)t->shape[0] * t->shape[2] * t->shape[3];
            double sd = sqrt(2.0 / fan_out);
            for (size_t j = 0; j < t->count; j++)
                d[j] = (float)(sd * tr_rng_normal(rng));
            break;
        }
        case TI_TORCH_W:
        case TI_TORCH_B: {
            /* PyTorch's default: kaiming_uniform_(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias likewise */
            double bound = 1.0 / sqrt((double)t->fan_in);
            for (size_t j = 0; j < t->count; j++)
                d[j] = (float)((2.0 * tr_rng_uniform(rng) - 1.0) * bound);
            break;
        }
        case TI_KAIMING_A1: {
            double bound = sqrt(3.0 / (double)t->fan_in);
            for (size_t j = 0; j < t->count; j++)
                d[j] = (float)((2.0 * tr_rng_uniform(rng) - 1.0) * bound);
            break;
        }
        case TI_ONE:
            for (size_t j = 0; j < t->count; j++)
                d[j] = 1.0f;
            break;
        case TI_N1:
            for (size_t j = 0; j < t->count; j++)
                d[j] = (float)(1.0 + 0.02 * tr_rng_normal(rng));
            break;
        default:
            break;
        }
    }
    be->ops->to_device(be, r->w, hw, r->np * sizeof(float));
    if (r->nb)
        be->ops->to_device(be, r->buf, hb, r->nb * sizeof(float));
    be->ops->sync(be);
    be->ops->zero(be, r->g, r->np * sizeof(float));
    be->ops->zero(be, r->m, r->np * sizeof(float));
    r->nbt = 0;
    free(hw);
    free(hb);
}

void tr_reg_free(tr_reg *r)
{
    free(r->t);
    r->t = NULL;
    r->nt = r->cap = 0;
}

/* ---------------------------------------------------------------- helpers */

void tr_conv_shape(be_conv_shape *s, const tr_conv *c, int n, int h, int w)
{
    s->n = n;
    s->c = c->cin;
    s->h = h;
    s->w = w;
    s->k = c->cout;
    s->kh = s->kw = c->k;
    s->stride = c->stride;
    s->pad = c->pad;
}

int tr_conv_out(int x, const tr_conv *c)
{
    return (x + 2 * c->pad - c->k) / c->stride + 1;
}

/* --sync-bn: the sums dev[0, 2c) of this rank summed over ranks in place, with the count. */
static void bnsync_reduce(tr_bnsync *s, be_ctx *be, int c, double *count)
{
    const be_ops *o = be->ops;
    size_t n = 2 * (size_t)c;
    o->to_host(be, s->h, s->dev, n * sizeof(double));
    s->h[n] = *count;
    if (!s->failed && s->allreduce(s->arg, s->h, n + 1) != 0)
        s->failed = 1;
    *count = s->h[n];
    o->to_device(be, s->dev, s->h, n * sizeof(double));
    o->sync(be); /* s->h is reused by the next batch norm */
}

static void bn_fwd_sync(const tr_reg *r, be_ctx *be, const tr_bn *bn, int n, int hw, const float *x, float *y)
{
    const be_ops *o = be->ops;
    double count = (double)n * hw;
    o->bn_stats_partial(be, n, bn->c, hw, x, r->sync->dev);
    bnsync_reduce(r->sync, be, bn->c, &count);
    o->bn_stats_finalize(be, bn->c, r->sync->dev, count, r->buf + bn->rm, r->buf + bn->rv, 0.1f, 1e-5f, bn->smean,
                         bn->sinv);
    o->bn_fwd_apply(be, n, bn->c, hw, x, r->w + bn->g, r->w + bn->b, bn->smean, bn->sinv, y);
}

/* dgamma, dbeta: this rank's sums (averaged over ranks with the other gradients, as DDP does
 * with SyncBatchNorm's); dx from the global sums. */
static void bn_bwd_sync(const tr_reg *r, be_ctx *be, const tr_bn *bn, int n, int hw, const float *x,
                        const float *dy, float *dx)
{
    const be_ops *o = be->ops;
    double count = (double)n * hw;
    o->bn_bwd_partial(be, n, bn->c, hw, x, dy, bn->smean, bn->sinv, r->sync->dev, r->g + bn->g, r->g + bn->b);
    bnsync_reduce(r->sync, be, bn->c, &count);
    o->bn_bwd_apply(be, n, bn->c, hw, x, dy, r->w + bn->g, bn->smean, bn->sinv, r->sync->dev, count, dx);
}

void tr_bn_fwd(const tr_reg *r, be_ctx *be, const tr_bn *bn, int n, int hw, const float *x,
                   float *y, int train)
{
    if (train && r->sync)
        bn_fwd_sync(r, be, bn, n, hw, x, y);
    else if (train)
        be->ops->bn_fwd_train(be, n, bn->c, hw, x, r->w + bn->g, r->w + bn->b, r->buf + bn->rm,
                              r->buf + bn->rv, 0.1f, 1e-5f, y, bn->smean, bn->sinv);
    else
        be->ops->bn_fwd_eval(be, n, bn->c, hw, x, r->w + bn->g, r->w + bn->b, r->buf + bn->rm,
                             r->buf + bn->rv, 1e-5f, y);
}

void tr_bn_bwd(const tr_reg *r, be_ctx *be, const tr_bn *bn, int n, int hw, const float *x,
                   const float *dy, float *dx)
{
    if (r->sync) {
        bn_bwd_sync(r, be, bn, n, hw, x, dy, dx);
        return;
    }
    be->ops->bn_bwd(be, n, bn->c, hw, x, dy, r->w + bn->g, bn->smean, bn->sinv, dx, r->g + bn->g,
                    r->g + bn->b);
}

int tr_fold_build(tr_fold *f, tr_mem *mem, be_ctx *be, int F, int C, int max_batch)
{
    f->F = F;
    f->C = C;
    if (F <= 1)
        return 0;
    size_t nm = (size_t)C * F * C;
    f->mat = tr_mem_floats(mem, nm);
    f->dmat = tr_mem_floats(mem, nm);
    f->frames = tr_mem_floats(mem, (size_t)max_batch * F * C);
    f->dframes = tr_mem_floats(mem, (size_t)max_batch * F * C);
    if (mem->failed)
        return -1;
    float *h = calloc(nm, sizeof(float));
    if (!h)
        return -1;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < F; k++)
            h[(size_t)c * F * C + (size_t)k * C + c] = 1.0f / (float)F;
    be->ops->to_device(be, f->mat, h, nm * sizeof(float));
    be->ops->sync(be);
    free(h);
    return 0;
}

/* x [B*F, C, hw] -> y [B, C] (average over frames and space). */
void tr_pool_fwd(be_ctx *be, const tr_fold *f, int B, int hw, const float *x, float *y)
{
    if (f->F <= 1) {
        be->ops->avgpool_fwd(be, B, f->C, hw, x, y);
        return;
    }
    be->ops->avgpool_fwd(be, B * f->F, f->C, hw, x, f->frames);
    be->ops->linear_fwd(be, B, f->F * f->C, f->C, f->frames, f->mat, NULL, y);
}

void tr_pool_bwd(be_ctx *be, const tr_fold *f, int B, int hw, const float *dy, float *dx)
{
    if (f->F <= 1) {
        be->ops->avgpool_bwd(be, B, f->C, hw, dy, dx);
        return;
    }
    be->ops->linear_bwd(be, B, f->F * f->C, f->C, f->frames, f->mat, dy, f->dframes, f->dmat, NULL);
    be->ops->avgpool_bwd(be, B * f->F, f->C, hw, f->dframes, dx);
}

void tr_lin_fwd(const tr_reg *r, be_ctx *be, const tr_lin *l, int B, const float *x, float *y)
{
    be->ops->linear_fwd(be, B, l->in, l->out, x, r->w + l->w, l->b == NO_BIAS ? NULL : r->w + l->b, y);
}

void tr_lin_bwd(const tr_reg *r, be_ctx *be, const tr_lin *l, int B, const float *x,
                const float *dy, float *dx)
{
    be->ops->linear_bwd(be, B, l->in, l->out, x, r->w + l->w, dy, dx, r->g + l->w,
                        l->b == NO_BIAS ? NULL : r->g + l->b);
}
