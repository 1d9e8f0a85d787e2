/* cpu_conv: convolution forward and both backward passes on the CPU.
 *
 * im2col + OpenBLAS sgemm. Samples are processed one at a time when a
 * sample's output plane is large (the gemm is big enough on its own, output
 * written straight into y), or in groups of g samples when it is small
 * (layer3/layer4, the proxies' 1x1 convolutions on pooled features): the
 * group's columns sit side by side in one [c*kh*kw, g*oh*ow] matrix so that
 * one gemm does the whole group, and the result is scattered back to NCHW.
 * A 1x1 stride-1 unpadded convolution of a single sample uses the input
 * directly as its column matrix (no im2col, no col2im).
 *
 * Our loops (im2col, col2im, gather, scatter) run on the context's threads;
 * the gemms on OpenBLAS's threads (its count set in be_cpu_create). The
 * workspace is the context's, grown on first use of a larger shape.
 */
#include <cblas.h>
#include <string.h>

#include "train/cpu_internal.h"

/* Group samples until one gemm has at least this many columns. */
#ifndef CONV_TARGET_COLS
#define CONV_TARGET_COLS 3136
#endif

typedef struct conv_geo {
    int n, c, h, w, k, kh, kw, stride, pad, oh, ow;
    size_t hw, ohw, ckk;
    int direct; /* 1x1, stride 1, pad 0 */
} conv_geo;

static int geo_init(cpu_ctx *c, conv_geo *g, const be_conv_shape *s)
{
    g->n = s->n, g->c = s->c, g->h = s->h, g->w = s->w;
    g->k = s->k, g->kh = s->kh, g->kw = s->kw, g->stride = s->stride, g->pad = s->pad;
    if (g->n <= 0 || g->c <= 0 || g->h <= 0 || g->w <= 0 || g->k <= 0 || g->kh <= 0 || g->kw <= 0 ||
        g->stride <= 0 || g->pad < 0) {
        cpu_fail(c, "conv: bad shape");
        return -1;
    }
    g->oh = (g->h + 2 * g->pad - g->kh) / g->stride + 1;
    g->ow = (g->w + 2 * g->pad - g->kw) / g->stride + 1;
    if (g->h + 2 * g->pad < g->kh || g->w + 2 * g->pad < g->kw) {
        cpu_fail(c, "conv: kernel larger than the padded input");
        return -1;
    }
    g->hw = (size_t)g->h * g->w;
    g->ohw = (size_t)g->oh * g->ow;
    g->ckk = (size_t)g->c * g->kh * g->kw;
    g->direct = g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
    return 0;
}

static int group_size(const conv_geo *g)
{
    if (g->ohw >= CONV_TARGET_COLS)
        return 1;
    size_t gs = (CONV_TARGET_COLS + g->ohw - 1) / g->ohw;
    return gs > (size_t)g->n ? g->n : (int)gs;
}

/* Valid output columns [*o0, *o1) for kernel offset kx: 0 <= ox*stride - pad + kx < w. */
static void valid_range(int w, int ow, int stride, int pad, int kx, int *o0, int *o1)
{
    int lo = pad - kx; /* ox*stride >= lo */
    int a = lo > 0 ? (lo + stride - 1) / stride : 0;
    int hi = w - 1 + pad - kx; /* ox*stride <= hi */
    int b = hi >= 0 ? hi / stride + 1 : 0;
    if (b > ow)
        b = ow;
    if (a > ow)
        a = ow;
    if (b < a)
        b = a;
    *o0 = a;
    *o1 = b;
}

/* ---- im2col: rows (ci, ky, kx), columns (sample j of the group, oy, ox) ---- */
typedef struct col_job {
    const conv_geo *g;
    const float *x; /* first sample of the group */
    float *col;
    size_t ld;      /* columns of the matrix: cnt * ohw */
    float *dx;      /* col2im: first sample of the group */
} col_job;

static void im2col_task(void *arg, size_t i, int worker)
{
    (void)worker;
    const col_job *J = arg;
    const conv_geo *g = J->g;
    size_t j = i / g->ckk, r = i % g->ckk;
    int ci = (int)(r / ((size_t)g->kh * g->kw));
    int ky = (int)(r / g->kw % g->kh), kx = (int)(r % g->kw);
    const float *plane = J->x + (j * g->c + ci) * g->hw;
    float *dst = J->col + r * J->ld + j * g->ohw;
    int o0, o1;
    valid_range(g->w, g->ow, g->stride, g->pad, kx, &o0, &o1);
    for (int oy = 0; oy < g->oh; oy++, dst += g->ow) {
        int iy = oy * g->stride - g->pad + ky;
        if (iy < 0 || iy >= g->h) {
            memset(dst, 0, sizeof(float) * g->ow);
            continue;
        }
        const float *src = plane + (size_t)iy * g->w - g->pad + kx;
        if (o0 > 0)
            memset(dst, 0, sizeof(float) * o0);
        if (g->stride == 1) {
            memcpy(dst + o0, src + o0, sizeof(float) * (o1 - o0));
        } else if (g->stride == 2) {
            for (int ox = o0; ox < o1; ox++)
                dst[ox] = src[2 * ox];
        } else {
            for (int ox = o0; ox < o1; ox++)
                dst[ox] = src[ox * g->stride];
        }
        if (o1 < g->ow)
            memset(dst + o1, 0, sizeof(float) * (g->ow - o1));
    }
}

static void im2col(cpu_ctx *c, const conv_geo *g, const float *x, int cnt, float *col, size_t ld)
{
    col_job J = {g, x, col, ld, NULL};
    cpu_parallel(c, (size_t)cnt * g->ckk, im2col_task, &J);
}

/* col2im: one task per (sample, input channel) plane, so no two tasks write the same place. */
static void col2im_task(void *arg, size_t i, int worker)
{
    (void)worker;
    const col_job *J = arg;
    const conv_geo *g = J->g;
    size_t j = i / g->c;
    int ci = (int)(i % g->c);
    float *plane = J->dx + (j * g->c + ci) * g->hw;
    memset(plane, 0, sizeof(float) * g->hw);
    for (int ky = 0; ky < g->kh; ky++) {
        for (int kx = 0; kx < g->kw; kx++) {
            size_t r = ((size_t)ci * g->kh + ky) * g->kw + kx;
            const float *src = J->col + r * J->ld + j * g->ohw;
            int o0, o1;
            valid_range(g->w, g->ow, g->stride, g->pad, kx, &o0, &o1);
            for (int oy = 0; oy < g->oh; oy++, src += g->ow) {
                int iy = oy * g->stride - g->pad + ky;
                if (iy < 0 || iy >= g->h)
                    continue;
                float *d = plane + (size_t)iy * g->w - g->pad + kx;
                if (g->stride == 1) {
                    for (int ox = o0; ox < o1; ox++)
                        d[ox] += src[ox];
                } else {
                    for (int ox = o0; ox < o1; ox++)
                        d[ox * g->stride] += src[ox];
                }
            }
        }
    }
}

static void col2im(cpu_ctx *c, const conv_geo *g, const float *col, size_t ld, int cnt, float *dx)
{
    col_job J = {g, NULL, (float *)col, ld, dx};
    cpu_parallel(c, (size_t)cnt * g->c, col2im_task, &J);
}

/* ---- moving between NCHW (per sample [ch, plane]) and a group matrix [ch, cnt*plane] ---- */
typedef struct perm_job {
    float *nchw;       /* first sample of the group */
    float *mat;
    size_t ch, plane, ld;
    int to_mat;
} perm_job;

static void perm_task(void *arg, size_t j, int worker)
{
    (void)worker;
    const perm_job *P = arg;
    for (size_t q = 0; q < P->ch; q++) {
        float *a = P->nchw + (j * P->ch + q) * P->plane;
        float *m = P->mat + q * P->ld + j * P->plane;
        if (P->to_mat)
            memcpy(m, a, sizeof(float) * P->plane);
        else
            memcpy(a, m, sizeof(float) * P->plane);
    }
}

static void permute(cpu_ctx *c, float *nchw, float *mat, int cnt, size_t ch, size_t plane, int to_mat)
{
    perm_job P = {nchw, mat, ch, plane, (size_t)cnt * plane, to_mat};
    cpu_parallel(c, (size_t)cnt, perm_task, &P);
}

/* ---- the three passes ---- */

void cpu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y)
{
    cpu_ctx *c = (cpu_ctx *)b;
    conv_geo g;
    if (c->failed || geo_init(c, &g, s) < 0)
        return;
    int gs = group_size(&g);
    if (gs == 1) {
        float *col = NULL;
        if (!g.direct && !(col = cpu_workspace(c, g.ckk * g.ohw)))
            return;
        for (int n = 0; n < g.n; n++) {
            const float *xn = x + (size_t)n * g.c * g.hw;
            if (!g.direct)
                im2col(c, &g, xn, 1, col, g.ohw);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.k, (int)g.ohw, (int)g.ckk, 1.0f, w,
                        (int)g.ckk, g.direct ? xn : col, (int)g.ohw, 0.0f, y + (size_t)n * g.k * g.ohw,
                        (int)g.ohw);
        }
        return;
    }
    size_t cols = (size_t)gs * g.ohw;
    float *ws = cpu_workspace(c, g.ckk * cols + (size_t)g.k * cols);
    if (!ws)
        return;
    float *col = ws, *out = ws + g.ckk * cols;
    for (int n0 = 0; n0 < g.n; n0 += gs) {
        int cnt = g.n - n0 < gs ? g.n - n0 : gs;
        size_t ld = (size_t)cnt * g.ohw;
        im2col(c, &g, x + (size_t)n0 * g.c * g.hw, cnt, col, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.k, (int)ld, (int)g.ckk, 1.0f, w, (int)g.ckk,
                    col, (int)ld, 0.0f, out, (int)ld);
        permute(c, y + (size_t)n0 * g.k * g.ohw, out, cnt, (size_t)g.k, g.ohw, 0);
    }
}

void cpu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx)
{
    cpu_ctx *c = (cpu_ctx *)b;
    conv_geo g;
    if (c->failed || geo_init(c, &g, s) < 0)
        return;
    int gs = group_size(&g);
    if (gs == 1) {
        float *col = NULL;
        if (!g.direct && !(col = cpu_workspace(c, g.ckk * g.ohw)))
            return;
        for (int n = 0; n < g.n; n++) {
            float *dxn = dx + (size_t)n * g.c * g.hw;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.ckk, (int)g.ohw, g.k, 1.0f, w,
                        (int)g.ckk, dy + (size_t)n * g.k * g.ohw, (int)g.ohw, 0.0f, g.direct ? dxn : col,
                        (int)g.ohw);
            if (!g.direct)
                col2im(c, &g, col, g.ohw, 1, dxn);
        }
        return;
    }
    size_t cols = (size_t)gs * g.ohw;
    float *ws = cpu_workspace(c, g.ckk * cols + (size_t)g.k * cols);
    if (!ws)
        return;
    float *col = ws, *dyg = ws + g.ckk * cols;
    for (int n0 = 0; n0 < g.n; n0 += gs) {
        int cnt = g.n - n0 < gs ? g.n - n0 : gs;
        size_t ld = (size_t)cnt * g.ohw;
        permute(c, (float *)dy + (size_t)n0 * g.k * g.ohw, dyg, cnt, (size_t)g.k, g.ohw, 1);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.ckk, (int)ld, g.k, 1.0f, w, (int)g.ckk,
                    dyg, (int)ld, 0.0f, col, (int)ld);
        float *dxn = dx + (size_t)n0 * g.c * g.hw;
        if (g.direct)
            permute(c, dxn, col, cnt, (size_t)g.c, g.hw, 0);
        else
            col2im(c, &g, col, ld, cnt, dxn);
    }
}

void cpu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw)
{
    cpu_ctx *c = (cpu_ctx *)b;
    conv_geo g;
    if (c->failed || geo_init(c, &g, s) < 0)
        return;
    int gs = group_size(&g);
    if (gs == 1) {
        float *col = NULL;
        if (!g.direct && !(col = cpu_workspace(c, g.ckk * g.ohw)))
            return;
        for (int n = 0; n < g.n; n++) {
            const float *xn = x + (size_t)n * g.c * g.hw;
            if (!g.direct)
                im2col(c, &g, xn, 1, col, g.ohw);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.k, (int)g.ckk, (int)g.ohw, 1.0f,
                        dy + (size_t)n * g.k * g.ohw, (int)g.ohw, g.direct ? xn : col, (int)g.ohw,
                        n == 0 ? 0.0f : 1.0f, dw, (int)g.ckk);
        }
        return;
    }
    size_t cols = (size_t)gs * g.ohw;
    float *ws = cpu_workspace(c, g.ckk * cols + (size_t)g.k * cols);
    if (!ws)
        return;
    float *col = ws, *dyg = ws + g.ckk * cols;
    for (int n0 = 0; n0 < g.n; n0 += gs) {
        int cnt = g.n - n0 < gs ? g.n - n0 : gs;
        size_t ld = (size_t)cnt * g.ohw;
        permute(c, (float *)dy + (size_t)n0 * g.k * g.ohw, dyg, cnt, (size_t)g.k, g.ohw, 1);
        im2col(c, &g, x + (size_t)n0 * g.c * g.hw, cnt, col, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.k, (int)g.ckk, (int)ld, 1.0f, dyg, (int)ld, col,
                    (int)ld, n0 == 0 ? 0.0f : 1.0f, dw, (int)g.ckk);
    }
}
