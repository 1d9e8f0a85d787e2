/* resnet: ResNet-18/50 (torchvision layout), forward and backward on the
 * backend, with the memory plan of resnet.h. */
#include "train/resnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        tr_add_bn_init(r, mem, &b->b[0], nm, planes, TI_N1);
        snprintf(nm, sizeof nm, "%sconv2.weight", pre);
        tr_add_conv(r, &b->c[1], nm, planes, planes, 3, stride, 1, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn2.", pre);
        tr_add_bn_init(r, mem, &b->b[1], nm, planes, TI_N1);
        snprintf(nm, sizeof nm, "%sconv3.weight", pre);
        tr_add_conv(r, &b->c[2], nm, planes, planes * 4, 1, 1, 0, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn3.", pre);
        tr_add_bn_init(r, mem, &b->b[2], nm, planes * 4, TI_N1);
    } else {
        b->nst = 2;
        snprintf(nm, sizeof nm, "%sconv1.weight", pre);
        tr_add_conv(r, &b->c[0], nm, inplanes, planes, 3, stride, 1, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn1.", pre);
        tr_add_bn_init(r, mem, &b->b[0], nm, planes, TI_N1);
        snprintf(nm, sizeof nm, "%sconv2.weight", pre);
        tr_add_conv(r, &b->c[1], nm, planes, planes, 3, 1, 1, TI_KAIMING_OUT);
        snprintf(nm, sizeof nm, "%sbn2.", pre);
        tr_add_bn_init(r, mem, &b->b[1], nm, planes, TI_N1);
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
    tr_add_bn_init(r, mem, &n->bn1, "bn1.", width, TI_N1);
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
                tr_add_bn_init(r, mem, &b->bd, nm, planes * exp, TI_N1);
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
    tr_add_linear(r, &n->fc, "fc.", n->feat_c, classes, 1);
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
    tr_lin_fwd(r, be, &n->fc, B, n->pooled, n->logits);
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
    tr_lin_bwd(r, be, &n->fc, B, n->pooled, dlogits, n->dpooled);
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
