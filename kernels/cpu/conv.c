/* conv (CPU): convolution forward and both backward passes. Mirrors kernels/cuda/conv.cu.
 *
 * im2col + OpenBLAS sgemm (single-threaded; the parallelism is ours). The
 * batch is cut into units: one sample when a sample's output plane is large
 * (the gemm is big enough on its own, output written straight into y), or a
 * group of g samples when it is small (layer3/layer4, the proxies' 1x1
 * convolutions): the group's columns sit side by side in one
 * [c*kh*kw, g*oh*ow] matrix so that one gemm does the whole group, and the
 * result is scattered back to NCHW. A 1x1 stride-1 unpadded convolution of a
 * single sample uses the input directly as its column matrix (no im2col, no
 * col2im).
 *
 * The units are split into `threads` contiguous ranges, one task each, run
 * on the context's persistent threads; each task has its own slice of the
 * workspace and does its own im2col/col2im, so the data of one unit stays in
 * that core's cache between im2col and gemm. The filter gradient is summed
 * per task into its own buffer and the buffers are then added in task order:
 * the result does not depend on thread timing.
 */
#pragma GCC optimize("O3")
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

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
    if (g->h + 2 * g->pad < g->kh || g->w + 2 * g->pad < g->kw) {
        cpu_fail(c, "conv: kernel larger than the padded input");
        return -1;
    }
    g->oh = (g->h + 2 * g->pad - g->kh) / g->stride + 1;
    g->ow = (g->w + 2 * g->pad - g->kw) / g->stride + 1;
    g->hw = (size_t)g->h * g->w;
    g->ohw = (size_t)g->oh * g->ow;
    g->ckk = (size_t)g->c * g->kh * g->kw;
    g->direct = g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
    return 0;
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

/* ---- im2col: rows (ci, ky, kx), columns (sample j of the group, oy, ox); ld = cnt*ohw ---- */
static void im2col(const conv_geo *g, const float *x, int cnt, float *restrict col, size_t ld)
{
    for (int j = 0; j < cnt; j++) {
        for (size_t r = 0; r < g->ckk; r++) {
            int ci = (int)(r / ((size_t)g->kh * g->kw));
            int ky = (int)(r / g->kw % g->kh), kx = (int)(r % g->kw);
            const float *plane = x + ((size_t)j * g->c + ci) * g->hw;
            float *restrict dst = col + r * ld + (size_t)j * g->ohw;
            int o0, o1;
            valid_range(g->w, g->ow, g->stride, g->pad, kx, &o0, &o1);
            for (int oy = 0; oy < g->oh; oy++, dst += g->ow) {
                int iy = oy * g->stride - g->pad + ky;
                if (iy < 0 || iy >= g->h) {
                    memset(dst, 0, sizeof(float) * g->ow);
                    continue;
                }
                const float *restrict src = plane + (size_t)iy * g->w - g->pad + kx;
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
    }
}

/* col2im: dx (cnt samples) = the sum of the columns back onto the input planes. */
static void col2im(const conv_geo *g, const float *col, size_t ld, int cnt, float *dx)
{
    for (int j = 0; j < cnt; j++) {
        for (int ci = 0; ci < g->c; ci++) {
            float *plane = dx + ((size_t)j * g->c + ci) * g->hw;
            memset(plane, 0, sizeof(float) * g->hw);
            for (int ky = 0; ky < g->kh; ky++) {
                for (int kx = 0; kx < g->kw; kx++) {
                    size_t r = ((size_t)ci * g->kh + ky) * g->kw + kx;
                    const float *restrict src = col + r * ld + (size_t)j * g->ohw;
                    int o0, o1;
                    valid_range(g->w, g->ow, g->stride, g->pad, kx, &o0, &o1);
                    for (int oy = 0; oy < g->oh; oy++, src += g->ow) {
                        int iy = oy * g->stride - g->pad + ky;
                        if (iy < 0 || iy >= g->h)
                            continue;
                        float *restrict d = plane + (size_t)iy * g->w - g->pad + kx;
                        if (g->stride == 1) {
                            for (int ox = o0; ox < o1; ox++)
                                d[ox] += src[ox];
                        } else {
                            int st = g->stride;
                            for (int ox = o0; ox < o1; ox++)
                                d[ox * st] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/* NCHW (cnt samples of [ch, plane]) <-> group matrix [ch, cnt*plane]. */
static void to_mat(const float *nchw, float *mat, int cnt, size_t ch, size_t plane)
{
    size_t ld = (size_t)cnt * plane;
    for (int j = 0; j < cnt; j++)
        for (size_t q = 0; q < ch; q++)
            memcpy(mat + q * ld + j * plane, nchw + (j * ch + q) * plane, sizeof(float) * plane);
}

static void from_mat(float *nchw, const float *mat, int cnt, size_t ch, size_t plane)
{
    size_t ld = (size_t)cnt * plane;
    for (int j = 0; j < cnt; j++)
        for (size_t q = 0; q < ch; q++)
            memcpy(nchw + (j * ch + q) * plane, mat + q * ld + j * plane, sizeof(float) * plane);
}

/* ---- the split of the batch into units and tasks ---- */
typedef struct conv_job {
    conv_geo g;
    int gs, units, tasks; /* samples per unit, units, tasks */
    size_t ws_per;        /* workspace floats per task */
    float *ws;
    const float *x, *w, *dy;
    float *y, *dx, *dw;
    float *dwp; /* filter gradient per task (tasks > 1) */
} conv_job;

static int conv_plan(cpu_ctx *c, conv_job *J, const be_conv_shape *s, int pass)
{
    if (c->failed || geo_init(c, &J->g, s) < 0)
        return -1;
    const conv_geo *g = &J->g;
    int T = c->threads < 1 ? 1 : c->threads;
    int gs = g->ohw >= CONV_TARGET_COLS ? 1 : (int)((CONV_TARGET_COLS + g->ohw - 1) / g->ohw);
    if (gs > g->n)
        gs = g->n;
    int units = (g->n + gs - 1) / gs;
    if (units % T && units < g->n) { /* round the unit count up to a multiple of the tasks */
        int want = (units + T - 1) / T * T;
        if (want > g->n)
            want = g->n;
        gs = (g->n + want - 1) / want;
        units = (g->n + gs - 1) / gs;
    }
    J->gs = gs;
    J->units = units;
    J->tasks = units < T ? units : T;
    size_t cols = (size_t)gs * g->ohw;
    size_t per = 0;
    if (gs > 1)
        per = g->ckk * cols + (size_t)g->k * cols; /* columns + gathered output / dy */
    else if (!g->direct)
        per = g->ckk * cols;
    per = (per + 15) & ~(size_t)15; /* 64-byte aligned slices */
    J->ws_per = per;
    size_t dwn = pass == 2 && J->tasks > 1 ? (size_t)J->tasks * (((size_t)g->k * g->ckk + 15) & ~(size_t)15) : 0;
    J->ws = NULL;
    J->dwp = NULL;
    if (per * J->tasks + dwn > 0) {
        float *ws = cpu_workspace(c, per * J->tasks + dwn);
        if (!ws)
            return -1;
        J->ws = ws;
        J->dwp = dwn ? ws + per * J->tasks : NULL;
    }
    return 0;
}

static void task_units(const conv_job *J, size_t t, int *u0, int *u1)
{
    *u0 = (int)((size_t)J->units * t / J->tasks);
    *u1 = (int)((size_t)J->units * (t + 1) / J->tasks);
}

static void fwd_task(void *arg, size_t t, int worker)
{
    (void)worker;
    const conv_job *J = arg;
    const conv_geo *g = &J->g;
    float *col = J->ws ? J->ws + t * J->ws_per : NULL;
    int u0, u1;
    task_units(J, t, &u0, &u1);
    for (int u = u0; u < u1; u++) {
        int n0 = u * J->gs, cnt = g->n - n0 < J->gs ? g->n - n0 : J->gs;
        const float *xn = J->x + (size_t)n0 * g->c * g->hw;
        float *yn = J->y + (size_t)n0 * g->k * g->ohw;
        if (cnt == 1) {
            if (!g->direct)
                im2col(g, xn, 1, col, g->ohw);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->k, (int)g->ohw, (int)g->ckk, 1.0f, J->w,
                        (int)g->ckk, g->direct ? xn : col, (int)g->ohw, 0.0f, yn, (int)g->ohw);
            continue;
        }
        size_t ld = (size_t)cnt * g->ohw;
        float *out = col + g->ckk * (size_t)J->gs * g->ohw;
        im2col(g, xn, cnt, col, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->k, (int)ld, (int)g->ckk, 1.0f, J->w,
                    (int)g->ckk, col, (int)ld, 0.0f, out, (int)ld);
        from_mat(yn, out, cnt, (size_t)g->k, g->ohw);
    }
}

void cpu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y)
{
    cpu_ctx *c = (cpu_ctx *)b;
    conv_job J = {.x = x, .w = w, .y = y};
    if (conv_plan(c, &J, s, 0) < 0)
        return;
    cpu_parallel(c, (size_t)J.tasks, fwd_task, &J);
}

static void bwd_data_task(void *arg, size_t t, int worker)
{
    (void)worker;
    const conv_job *J = arg;
    const conv_geo *g = &J->g;
    float *col = J->ws ? J->ws + t * J->ws_per : NULL;
    int u0, u1;
    task_units(J, t, &u0, &u1);
    for (int u = u0; u < u1; u++) {
        int n0 = u * J->gs, cnt = g->n - n0 < J->gs ? g->n - n0 : J->gs;
        const float *dyn = J->dy + (size_t)n0 * g->k * g->ohw;
        float *dxn = J->dx + (size_t)n0 * g->c * g->hw;
        if (cnt == 1) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->ckk, (int)g->ohw, g->k, 1.0f, J->w,
                        (int)g->ckk, dyn, (int)g->ohw, 0.0f, g->direct ? dxn : col, (int)g->ohw);
            if (!g->direct)
                col2im(g, col, g->ohw, 1, dxn);
            continue;
        }
        size_t ld = (size_t)cnt * g->ohw;
        float *dyg = col + g->ckk * (size_t)J->gs * g->ohw;
        to_mat(dyn, dyg, cnt, (size_t)g->k, g->ohw);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->ckk, (int)ld, g->k, 1.0f, J->w, (int)g->ckk,
                    dyg, (int)ld, 0.0f, col, (int)ld);
        if (g->direct)
            from_mat(dxn, col, cnt, (size_t)g->c, g->hw);
        else
            col2im(g, col, ld, cnt, dxn);
    }
}

void cpu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx)
{
    cpu_ctx *c = (cpu_ctx *)b;
    conv_job J = {.dy = dy, .w = w, .dx = dx};
    if (conv_plan(c, &J, s, 1) < 0)
        return;
    cpu_parallel(c, (size_t)J.tasks, bwd_data_task, &J);
}

static void bwd_filter_task(void *arg, size_t t, int worker)
{
    (void)worker;
    const conv_job *J = arg;
    const conv_geo *g = &J->g;
    float *col = J->ws ? J->ws + t * J->ws_per : NULL;
    size_t kc = (size_t)g->k * g->ckk;
    float *dst = J->dwp ? J->dwp + t * ((kc + 15) & ~(size_t)15) : J->dw;
    int u0, u1;
    task_units(J, t, &u0, &u1);
    for (int u = u0; u < u1; u++) {
        int n0 = u * J->gs, cnt = g->n - n0 < J->gs ? g->n - n0 : J->gs;
        const float *xn = J->x + (size_t)n0 * g->c * g->hw;
        const float *dyn = J->dy + (size_t)n0 * g->k * g->ohw;
        float beta = u == u0 ? 0.0f : 1.0f;
        if (cnt == 1) {
            if (!g->direct)
                im2col(g, xn, 1, col, g->ohw);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->k, (int)g->ckk, (int)g->ohw, 1.0f, dyn,
                        (int)g->ohw, g->direct ? xn : col, (int)g->ohw, beta, dst, (int)g->ckk);
            continue;
        }
        size_t ld = (size_t)cnt * g->ohw;
        float *dyg = col + g->ckk * (size_t)J->gs * g->ohw;
        to_mat(dyn, dyg, cnt, (size_t)g->k, g->ohw);
        im2col(g, xn, cnt, col, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->k, (int)g->ckk, (int)ld, 1.0f, dyg, (int)ld, col,
                    (int)ld, beta, dst, (int)g->ckk);
    }
}

/* dw[i] = sum over tasks (in task order) of the partial gradients. */
#define RED_CHUNK 16384
static void reduce_task(void *arg, size_t i, int worker)
{
    (void)worker;
    const conv_job *J = arg;
    size_t kc = (size_t)J->g.k * J->g.ckk, stride = (kc + 15) & ~(size_t)15;
    size_t lo = i * RED_CHUNK, hi = lo + RED_CHUNK < kc ? lo + RED_CHUNK : kc;
    float *restrict d = J->dw;
    const float *restrict p0 = J->dwp;
    for (size_t e = lo; e < hi; e++)
        d[e] = p0[e];
    for (int t = 1; t < J->tasks; t++) {
        const float *restrict p = J->dwp + t * stride;
        for (size_t e = lo; e < hi; e++)
            d[e] += p[e];
    }
}

void cpu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw)
{
    cpu_ctx *c = (cpu_ctx *)b;
    conv_job J = {.x = x, .dy = dy, .dw = dw};
    if (conv_plan(c, &J, s, 2) < 0)
        return;
    cpu_parallel(c, (size_t)J.tasks, bwd_filter_task, &J);
    if (J.dwp) {
        size_t kc = (size_t)J.g.k * J.g.ckk;
        cpu_parallel(c, (kc + RED_CHUNK - 1) / RED_CHUNK, reduce_task, &J);
    }
}
