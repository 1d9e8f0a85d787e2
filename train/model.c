/* model: ResNet-18/50 (torchvision layout) and the proxies, forward and
 * backward on the backend. See model.h. */
#include "train/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/system.h"

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
static void add_bn(tr_reg *r, tr_mem *mem, tr_bn *b, const char *prefix, int c, int ginit)
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
    add_bn(r, mem, b, prefix, c, TI_ONE);
}

size_t tr_add_bias(tr_reg *r, const char *name, int n, int fan_in)
{
    return reg_add(r, name, TT_PARAM, TI_TORCH_B, fan_in, 1, n, 0, 0, 0);
}

static void add_linear(tr_reg *r, tr_lin *l, const char *prefix, int in, int out, int bias)
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

static void lin_fwd(const tr_reg *r, be_ctx *be, const tr_lin *l, int B, const float *x, float *y)
{
    be->ops->linear_fwd(be, B, l->in, l->out, x, r->w + l->w, l->b == NO_BIAS ? NULL : r->w + l->b, y);
}

static void lin_bwd(const tr_reg *r, be_ctx *be, const tr_lin *l, int B, const float *x,
                    const float *dy, float *dx)
{
    be->ops->linear_bwd(be, B, l->in, l->out, x, r->w + l->w, dy, dx, r->g + l->w,
                        l->b == NO_BIAS ? NULL : r->g + l->b);
}

/* ---------------------------------------------------------------- ResNet */

/* Sub-buffers of one allocation start at multiples of 64 floats (256 bytes). */
#define ALIGN_F(x) (((x) + 63) & ~(size_t)63)

static size_t track(size_t *mx, size_t v)
{
    if (v > *mx)
        *mx = v;
    return v;
}

/* The convolutions and batch norms of block b (PyTorch names under pre). */
static void block_params(tr_reg *r, tr_mem *mem, tr_block *b, const char *pre, int inplanes, int planes,
                         int stride, int bottleneck)
{
    char nm[96];
    if (bottleneck) {
        b->nst = 3;
        snprintf(nm, sizeof nm, "%sconv1.weight", pre);
        tr_add_conv(r, &b->c[0], nm, inplanes, planes, 1, 1, 0, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn1.", pre);
        add_bn(r, mem, &b->b[0], nm, planes, TI_N1);
        snprintf(nm, sizeof nm, "%sconv2.weight", pre);
        tr_add_conv(r, &b->c[1], nm, planes, planes, 3, stride, 1, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn2.", pre);
        add_bn(r, mem, &b->b[1], nm, planes, TI_N1);
        snprintf(nm, sizeof nm, "%sconv3.weight", pre);
        tr_add_conv(r, &b->c[2], nm, planes, planes * 4, 1, 1, 0, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn3.", pre);
        add_bn(r, mem, &b->b[2], nm, planes * 4, TI_N1);
    } else {
        b->nst = 2;
        snprintf(nm, sizeof nm, "%sconv1.weight", pre);
        tr_add_conv(r, &b->c[0], nm, inplanes, planes, 3, stride, 1, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn1.", pre);
        add_bn(r, mem, &b->b[0], nm, planes, TI_N1);
        snprintf(nm, sizeof nm, "%sconv2.weight", pre);
        tr_add_conv(r, &b->c[1], nm, planes, planes, 3, 1, 1, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn2.", pre);
        add_bn(r, mem, &b->b[1], nm, planes, TI_N1);
    }
}

/* The activation arena (model.h): layer1's region (also stem_y, and in
 * the backward pass the recomputed stem_y and the stem's input gradient),
 * stem_h, stem_p, layers 2-4. Offsets rounded to 64 floats. The first pass
 * measures, the second places. */
static int plan_arena(tr_resnet *n, tr_mem *mem, size_t n_stem, size_t n_pool, cm_err *err)
{
    size_t off = 0, l1 = 0;
    for (int pass = 0; pass < 2; pass++) {
        off = 0;
        for (int l = 0; l < 4; l++) {
            if (l == 1) {
                l1 = off > 2 * ALIGN_F(n_stem) ? off : 2 * ALIGN_F(n_stem);
                if (pass)
                    n->stem_y = n->act;
                off = l1;
                n->stem_h = pass ? n->act + off : NULL;
                off += ALIGN_F(n_stem);
                n->stem_p = pass ? n->act + off : NULL;
                off += ALIGN_F(n_pool);
            }
            int end = l == 3 ? n->nblk : n->layer_first[l + 1];
            for (int i = n->layer_first[l]; i < end; i++) {
                tr_block *b = &n->blk[i];
                for (int st = 0; st < b->nst; st++) {
                    b->h[st] = pass ? n->act + off : NULL;
                    off += ALIGN_F(b->cnt[st]);
                    b->y[st] = pass ? n->act + off : NULL;
                    off += ALIGN_F(b->cnt[st]);
                }
                if (b->has_down) {
                    b->hd = pass ? n->act + off : NULL;
                    off += ALIGN_F(b->cnt[b->nst - 1]);
                }
            }
        }
        if (!pass) {
            n->act_count = off;
            n->act = tr_mem_floats(mem, off);
            if (!n->act)
                return cm_err_set(err, "%s: out of device memory for the activations (%zu MiB)", n->reg.group,
                                  (off * sizeof(float)) >> 20);
        }
    }
    return 0;
}

int tr_resnet_build(tr_resnet *n, tr_mem *mem, const char *group, int depth, int width, int in_c,
                    int in_h, int in_w, int F, int classes, int max_batch, cm_err *err)
{
    memset(n, 0, sizeof *n);
    tr_reg *r = &n->reg;
    snprintf(r->group, sizeof r->group, "%s", group);
    if (depth != 18 && depth != 50)
        return cm_err_set(err, "depth %d: only ResNet-18 and ResNet-50 exist", depth);
    n->depth = depth;
    n->width = width;
    n->classes = classes;
    n->in_c = in_c;
    n->in_h = in_h;
    n->in_w = in_w;
    n->F = F < 1 ? 1 : F;
    n->max_batch = max_batch;
    size_t Bi = (size_t)max_batch * n->F;

    tr_add_conv(r, &n->conv1, "conv1.weight", in_c, width, 7, 2, 3, TI_KAIMING_OUT);
    add_bn(r, mem, &n->bn1, "bn1.", width, TI_N1);
    n->h1 = tr_conv_out(in_h, &n->conv1);
    n->w1 = tr_conv_out(in_w, &n->conv1);
    n->hp = (n->h1 + 2 - 3) / 2 + 1;
    n->wp = (n->w1 + 2 - 3) / 2 + 1;
    if (n->h1 < 1 || n->w1 < 1 || n->hp < 1 || n->wp < 1)
        return cm_err_set(err, "input %dx%d too small for a ResNet", in_h, in_w);
    size_t n_stem = Bi * width * n->h1 * n->w1, n_pool = Bi * width * n->hp * n->wp;
    size_t pq = 0, s_need = 0, tmp_need = 0;

    static const int l18[4] = {2, 2, 2, 2}, l50[4] = {3, 4, 6, 3};
    const int *layers = depth == 18 ? l18 : l50;
    int bottleneck = depth == 50, exp = bottleneck ? 4 : 1;
    n->nblk = layers[0] + layers[1] + layers[2] + layers[3];
    n->blk = calloc((size_t)n->nblk, sizeof *n->blk);
    if (!n->blk)
        return cm_err_set(err, "out of memory");
    int inplanes = width, h = n->hp, w = n->wp, bi = 0;
    for (int l = 0; l < 4; l++) {
        int planes = width << l;
        n->layer_first[l] = bi;
        if (l == 3)
            r->top_off = r->np;
        for (int j = 0; j < layers[l]; j++, bi++) {
            tr_block *b = &n->blk[bi];
            int stride = (j == 0 && l > 0) ? 2 : 1;
            char pre[64], nm[96];
            snprintf(pre, sizeof pre, "layer%d.%d.", l + 1, j);
            b->cin = inplanes;
            b->cout = planes * exp;
            b->hin = h;
            b->win = w;
            block_params(r, mem, b, pre, inplanes, planes, stride, bottleneck);
            int ch = h, cw = w;
            size_t nin = Bi * (size_t)inplanes * h * w;
            for (int s = 0; s < b->nst; s++) {
                ch = tr_conv_out(ch, &b->c[s]);
                cw = tr_conv_out(cw, &b->c[s]);
                b->sh[s] = ch;
                b->sw[s] = cw;
                b->cnt[s] = Bi * (size_t)b->c[s].cout * ch * cw;
                /* the input gradient of stage s > 0 goes to h[s] when it fits, else to S */
                if (s > 0 && b->cnt[s - 1] > b->cnt[s])
                    track(&s_need, b->cnt[s - 1]);
            }
            if (ch < 1 || cw < 1)
                return cm_err_set(err, "input %dx%d too small for a ResNet", in_h, in_w);
            b->hout = ch;
            b->wout = cw;
            track(&pq, nin);
            track(&pq, b->cnt[b->nst - 1]);
            b->has_down = stride != 1 || inplanes != planes * exp;
            if (b->has_down) {
                snprintf(nm, sizeof nm, "%sdownsample.0.weight", pre);
                tr_add_conv(r, &b->cd, nm, inplanes, planes * exp, 1, stride, 0, TI_KAIMING_OUT);
                snprintf(nm, sizeof nm, "%sdownsample.1.", pre);
                add_bn(r, mem, &b->bd, nm, planes * exp, TI_N1);
                track(&s_need, nin);
                track(&tmp_need, b->cnt[b->nst - 1]);
            }
            inplanes = planes * exp;
            h = ch;
            w = cw;
        }
        if (l == 2) {
            n->l3_c = inplanes;
            n->l3_h = h;
            n->l3_w = w;
        }
    }
    n->feat_c = inplanes;
    n->l4_h = h;
    n->l4_w = w;
    add_linear(r, &n->fc, "fc.", n->feat_c, classes, 1);
    n->pooled = tr_mem_floats(mem, (size_t)max_batch * n->feat_c);
    n->dpooled = tr_mem_floats(mem, (size_t)max_batch * n->feat_c);
    n->logits = tr_mem_floats(mem, (size_t)max_batch * classes);
    n->stem_tmp = tr_mem_floats(mem, 4 * (size_t)width);
    if (mem->failed || tr_fold_build(&n->fold, mem, mem->be, n->F, n->feat_c, max_batch) < 0)
        return cm_err_set(err, "%s: out of device memory for the activations", group);
    if (plan_arena(n, mem, n_stem, n_pool, err) < 0)
        return -1;
    n->pq = ALIGN_F(pq > n_pool ? pq : n_pool);
    n->s_need = ALIGN_F(s_need);
    n->tmp_need = tmp_need;
    return tr_reg_alloc(r, mem, err);
}

size_t tr_resnet_scratch_floats(const tr_resnet *n)
{
    return 2 * n->pq + n->s_need;
}

const float *tr_resnet_stage(const tr_resnet *n, int L, int *c, int *h, int *w)
{
    int last = (L < 4 ? n->layer_first[L] : n->nblk) - 1;
    const tr_block *b = &n->blk[last];
    *c = b->cout;
    *h = b->hout;
    *w = b->wout;
    return b->y[b->nst - 1];
}

const float *tr_resnet_layer3(const tr_resnet *n)
{
    const tr_block *b = &n->blk[n->layer_first[3] - 1];
    return b->y[b->nst - 1];
}

static void block_fwd(const tr_reg *r, be_ctx *be, tr_block *b, int Bi, const float *in, float *tmp,
                      int train)
{
    const be_ops *o = be->ops;
    be_conv_shape s;
    const float *x = in;
    int h = b->hin, w = b->win;
    b->in = in;
    for (int i = 0; i < b->nst; i++) {
        tr_conv_shape(&s, &b->c[i], Bi, h, w);
        o->conv_fwd(be, &s, x, r->w + b->c[i].w, b->h[i]);
        h = b->sh[i];
        w = b->sw[i];
        tr_bn_fwd(r, be, &b->b[i], Bi, h * w, b->h[i], b->y[i], train);
        if (i < b->nst - 1) {
            o->relu_fwd(be, (size_t)Bi * b->c[i].cout * h * w, b->y[i], b->y[i]);
            x = b->y[i];
        }
    }
    size_t nout = (size_t)Bi * b->cout * b->hout * b->wout;
    float *out = b->y[b->nst - 1];
    const float *sc = in;
    if (b->has_down) {
        tr_conv_shape(&s, &b->cd, Bi, b->hin, b->win);
        o->conv_fwd(be, &s, in, r->w + b->cd.w, b->hd);
        tr_bn_fwd(r, be, &b->bd, Bi, b->hout * b->wout, b->hd, tmp, train); /* only added: transient */
        sc = tmp;
    }
    o->axpy(be, nout, 1.0f, sc, out);
    o->relu_fwd(be, nout, out, out);
}

/* P: gradient of the block output (overwritten); Q: gradient of its input
 * (when need_dx); S: scratch of tr_resnet s_need floats. Dead activations of
 * the block hold the other intermediates: y[i] (dead once its ReLU mask has
 * been applied) receives stage i's BN input gradient; h[i] (dead after stage
 * i's BN backward) receives the gradient of stage i's input when it fits,
 * else S. The block's activations are garbage afterwards. */
static void block_bwd(const tr_reg *r, be_ctx *be, const tr_block *b, int Bi, float *P, float *Q,
                      float *S, int need_dx)
{
    const be_ops *o = be->ops;
    be_conv_shape s;
    int L = b->nst - 1;
    size_t nout = (size_t)Bi * b->cout * b->hout * b->wout;
    size_t nin = (size_t)Bi * b->cin * b->hin * b->win;
    o->relu_bwd(be, nout, b->y[L], P, P);
    float *d = P;
    for (int i = L; i >= 0; i--) {
        int hw = b->sh[i] * b->sw[i];
        if (i < L)
            o->relu_bwd(be, (size_t)Bi * b->c[i].cout * hw, b->y[i], d, d);
        float *R = b->y[i];
        tr_bn_bwd(r, be, &b->b[i], Bi, hw, b->h[i], d, R);
        int hi = i == 0 ? b->hin : b->sh[i - 1], wi = i == 0 ? b->win : b->sw[i - 1];
        const float *x = i == 0 ? b->in : b->y[i - 1];
        tr_conv_shape(&s, &b->c[i], Bi, hi, wi);
        o->conv_bwd_filter(be, &s, x, R, r->g + b->c[i].w);
        if (i > 0) {
            d = b->cnt[i - 1] <= b->cnt[i] ? b->h[i] : S;
            o->conv_bwd_data(be, &s, R, r->w + b->c[i].w, d);
        } else if (need_dx) {
            o->conv_bwd_data(be, &s, R, r->w + b->c[i].w, Q);
        }
    }
    if (b->has_down) {
        float *R = b->y[L]; /* free again: stage L's gradient has been consumed */
        tr_bn_bwd(r, be, &b->bd, Bi, b->hout * b->wout, b->hd, P, R);
        tr_conv_shape(&s, &b->cd, Bi, b->hin, b->win);
        o->conv_bwd_filter(be, &s, b->in, R, r->g + b->cd.w);
        if (need_dx) {
            o->conv_bwd_data(be, &s, R, r->w + b->cd.w, S);
            o->axpy(be, nin, 1.0f, S, Q);
        }
    } else if (need_dx) {
        o->axpy(be, nin, 1.0f, P, Q);
    }
}

static void stem_pool_shape(const tr_resnet *n, be_pool_shape *p, int Bi)
{
    p->n = Bi;
    p->c = n->width;
    p->h = n->h1;
    p->w = n->w1;
    p->kh = p->kw = 3;
    p->stride = 2;
    p->pad = 1;
}

const float *tr_resnet_forward(tr_resnet *n, be_ctx *be, const float *x, int B, int train)
{
    const be_ops *o = be->ops;
    const tr_reg *r = &n->reg;
    int Bi = B * n->F;
    be_conv_shape s;
    be_pool_shape p;
    n->input = x;
    tr_conv_shape(&s, &n->conv1, Bi, n->in_h, n->in_w);
    o->conv_fwd(be, &s, x, r->w + n->conv1.w, n->stem_h);
    tr_bn_fwd(r, be, &n->bn1, Bi, n->h1 * n->w1, n->stem_h, n->stem_y, train);
    o->relu_fwd(be, (size_t)Bi * n->width * n->h1 * n->w1, n->stem_y, n->stem_y);
    stem_pool_shape(n, &p, Bi);
    o->maxpool_fwd(be, &p, n->stem_y, n->stem_p);
    const float *cur = n->stem_p;
    for (int i = 0; i < n->nblk; i++) {
        block_fwd(r, be, &n->blk[i], Bi, cur, n->tmp, train);
        cur = n->blk[i].y[n->blk[i].nst - 1];
    }
    tr_pool_fwd(be, &n->fold, B, n->l4_h * n->l4_w, cur, n->pooled);
    lin_fwd(r, be, &n->fc, B, n->pooled, n->logits);
    return n->logits;
}

/* Adds fg's gradient of layer L's output (if any) to d. */
static void add_stage_grad(const tr_resnet *n, be_ctx *be, int Bi, const tr_feat_grad *fg, int L, float *d)
{
    if (!fg || !fg->stage[L - 1])
        return;
    int c, h, w;
    tr_resnet_stage(n, L, &c, &h, &w);
    be->ops->axpy(be, (size_t)Bi * c * h * w, 1.0f, fg->stage[L - 1], d);
}

void tr_resnet_backward(tr_resnet *n, be_ctx *be, int B, const float *dlogits, const tr_feat_grad *fg,
                        int full, float *scratch)
{
    const be_ops *o = be->ops;
    const tr_reg *r = &n->reg;
    int Bi = B * n->F;
    float *P = scratch, *Q = scratch + n->pq, *S = scratch + 2 * n->pq;
    lin_bwd(r, be, &n->fc, B, n->pooled, dlogits, n->dpooled);
    if (fg && fg->pooled)
        o->axpy(be, (size_t)B * n->feat_c, 1.0f, fg->pooled, n->dpooled);
    tr_pool_bwd(be, &n->fold, B, n->l4_h * n->l4_w, n->dpooled, P);
    add_stage_grad(n, be, Bi, fg, 4, P);
    int l4 = n->layer_first[3];
    for (int i = n->nblk - 1; i >= 0; i--) {
        int need_dx = full || i > l4;
        block_bwd(r, be, &n->blk[i], Bi, P, Q, S, need_dx);
        if (!need_dx)
            return;
        for (int L = 1; L <= 3; L++)
            if (i == n->layer_first[L])
                add_stage_grad(n, be, Bi, fg, L, Q);
        float *t = P;
        P = Q;
        Q = t;
    }
    /* Stem. stem_y was overwritten by layer1's activations: recompute it in
     * layer1's (now dead) region with the same batch statistics (the same
     * BN call on the same input; the running statistics and the saved ones
     * are left alone: throw-away copies take the update). */
    be_pool_shape p;
    be_conv_shape s;
    size_t ns = (size_t)Bi * n->width * n->h1 * n->w1;
    float *y = n->stem_y, *dy = n->act + ALIGN_F(ns), *t = n->stem_tmp;
    int w = n->width;
    if (r->sync) /* --sync-bn: the saved global statistics (no collective) */
        o->bn_fwd_apply(be, Bi, w, n->h1 * n->w1, n->stem_h, r->w + n->bn1.g, r->w + n->bn1.b, n->bn1.smean,
                        n->bn1.sinv, y);
    else
        o->bn_fwd_train(be, Bi, w, n->h1 * n->w1, n->stem_h, r->w + n->bn1.g, r->w + n->bn1.b, t, t + w, 0.1f,
                        1e-5f, y, t + 2 * w, t + 3 * w);
    o->relu_fwd(be, ns, y, y);
    stem_pool_shape(n, &p, Bi);
    o->maxpool_bwd(be, &p, y, n->stem_p, P, dy);
    o->relu_bwd(be, ns, y, dy, dy);
    tr_bn_bwd(r, be, &n->bn1, Bi, n->h1 * n->w1, n->stem_h, dy, y);
    tr_conv_shape(&s, &n->conv1, Bi, n->in_h, n->in_w);
    o->conv_bwd_filter(be, &s, n->input, y, r->g + n->conv1.w);
}

/* ---------------------------------------------------------------- proxy */

int tr_proxy_build(tr_proxy *p, tr_mem *mem, const char *group, int kind, int C, int h, int w, int F,
                   int classes, int max_batch, cm_err *err)
{
    memset(p, 0, sizeof *p);
    tr_reg *r = &p->reg;
    snprintf(r->group, sizeof r->group, "%s", group);
    p->kind = kind;
    p->C = C;
    p->hw = h * w;
    p->F = F < 1 ? 1 : F;
    p->classes = classes;
    p->max_batch = max_batch;
    size_t BC = (size_t)max_batch * C;
    switch (kind) {
    case TR_PROXY_FA:
        add_linear(r, &p->l1, "conv.", C, C, 0);
        tr_add_bn(r, mem, &p->b1, "bn.", C);
        break;
    case TR_PROXY_CFA:
        add_linear(r, &p->l1, "conv1.", C, C, 0);
        tr_add_bn(r, mem, &p->b1, "bn1.", C);
        add_linear(r, &p->l2, "conv2.", C, C, 0);
        tr_add_bn(r, mem, &p->b2, "bn2.", C);
        break;
    case TR_PROXY_NONE:
        break;
    default:
        return cm_err_set(err, "unknown proxy kind %d", kind);
    }
    add_linear(r, &p->fc, "fc.", C, classes, 1);
    r->top_off = 0;
    p->pooled = tr_mem_floats(mem, BC);
    p->dpooled = tr_mem_floats(mem, BC);
    p->h1 = tr_mem_floats(mem, BC);
    p->y1 = tr_mem_floats(mem, BC);
    p->a1 = tr_mem_floats(mem, BC);
    p->h2 = tr_mem_floats(mem, BC);
    p->y2 = tr_mem_floats(mem, BC);
    p->d1 = tr_mem_floats(mem, BC);
    p->d2 = tr_mem_floats(mem, BC);
    p->logits = tr_mem_floats(mem, (size_t)max_batch * classes);
    p->dfeat = tr_mem_floats(mem, BC * p->F * p->hw);
    if (mem->failed || tr_fold_build(&p->fold, mem, mem->be, p->F, C, max_batch) < 0)
        return cm_err_set(err, "%s: out of device memory", group);
    return tr_reg_alloc(r, mem, err);
}

const float *tr_proxy_forward(tr_proxy *p, be_ctx *be, const float *feat, int B, int train)
{
    const be_ops *o = be->ops;
    const tr_reg *r = &p->reg;
    size_t BC = (size_t)B * p->C;
    p->feat = feat;
    tr_pool_fwd(be, &p->fold, B, p->hw, feat, p->pooled);
    switch (p->kind) {
    case TR_PROXY_FA:
        lin_fwd(r, be, &p->l1, B, p->pooled, p->h1);
        tr_bn_fwd(r, be, &p->b1, B, 1, p->h1, p->y1, train);
        o->leaky_fwd(be, BC, 0.1f, p->y1, p->a1);
        lin_fwd(r, be, &p->fc, B, p->a1, p->logits);
        break;
    case TR_PROXY_CFA:
        lin_fwd(r, be, &p->l1, B, p->pooled, p->h1);
        tr_bn_fwd(r, be, &p->b1, B, 1, p->h1, p->y1, train);
        lin_fwd(r, be, &p->l2, B, p->y1, p->h2);
        tr_bn_fwd(r, be, &p->b2, B, 1, p->h2, p->y2, train);
        o->relu_fwd(be, BC, p->y2, p->y2);
        lin_fwd(r, be, &p->fc, B, p->y2, p->logits);
        break;
    default:
        lin_fwd(r, be, &p->fc, B, p->pooled, p->logits);
        break;
    }
    return p->logits;
}

void tr_proxy_backward(tr_proxy *p, be_ctx *be, int B, const float *dlogits, int need_dfeat)
{
    const be_ops *o = be->ops;
    const tr_reg *r = &p->reg;
    size_t BC = (size_t)B * p->C;
    float *dpool = need_dfeat ? p->dpooled : NULL;
    switch (p->kind) {
    case TR_PROXY_FA:
        lin_bwd(r, be, &p->fc, B, p->a1, dlogits, p->d1);
        o->leaky_bwd(be, BC, 0.1f, p->y1, p->d1, p->d1);
        tr_bn_bwd(r, be, &p->b1, B, 1, p->h1, p->d1, p->d2);
        lin_bwd(r, be, &p->l1, B, p->pooled, p->d2, dpool);
        break;
    case TR_PROXY_CFA:
        lin_bwd(r, be, &p->fc, B, p->y2, dlogits, p->d1);
        o->relu_bwd(be, BC, p->y2, p->d1, p->d1);
        tr_bn_bwd(r, be, &p->b2, B, 1, p->h2, p->d1, p->d2);
        lin_bwd(r, be, &p->l2, B, p->y1, p->d2, p->d1);
        tr_bn_bwd(r, be, &p->b1, B, 1, p->h1, p->d1, p->d2);
        lin_bwd(r, be, &p->l1, B, p->pooled, p->d2, dpool);
        break;
    default:
        lin_bwd(r, be, &p->fc, B, p->pooled, dlogits, dpool);
        break;
    }
    if (need_dfeat)
        tr_pool_bwd(be, &p->fold, B, p->hw, p->dpooled, p->dfeat);
}
