/* pool (CPU): max pooling and global average pooling, forward and backward.
 * Max-pool: padding is -inf; the window is scanned row by row and a value
 * replaces the current maximum only when strictly greater (or NaN), so on
 * ties the first position wins and receives the whole gradient, as in
 * PyTorch's CPU kernel (the backward recomputes that position from x).
 * Mirrors kernels/cuda/pool.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* ---------------------------------------------------------------- pooling */

typedef struct pool_job {
    const be_pool_shape *s;
    int oh, ow;
    const float *x, *dy;
    float *y, *dx;
} pool_job;

/* m kept unless v is greater or NaN: NaN is sticky, otherwise the maximum. */
static inline float pmax(float m, float v)
{
    return (v > m || v != v) ? v : m;
}

/* Forward: the window's value is NaN if it holds a NaN, else its maximum, whatever
 * the scan order; so rows are reduced horizontally (vectorisable in the interior)
 * and then combined vertically. */
static void maxpool_fwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const pool_job *J = arg;
    const be_pool_shape *s = J->s;
    const float *plane = J->x + p * s->h * s->w;
    float *out = J->y + p * J->oh * J->ow;
    int ow = J->ow, st = s->stride, kw = s->kw;
    /* interior columns: the whole window inside the row */
    int a = (s->pad + st - 1) / st, e = s->w - kw + s->pad >= 0 ? (s->w - kw + s->pad) / st + 1 : 0;
    if (a > ow)
        a = ow;
    if (e > ow)
        e = ow;
    if (e < a)
        e = a;
    float hm[ow > 0 ? ow : 1];
    for (int oy = 0; oy < J->oh; oy++) {
        float *o = out + (size_t)oy * ow;
        for (int ox = 0; ox < ow; ox++)
            o[ox] = -INFINITY;
        for (int ky = 0; ky < s->kh; ky++) {
            int iy = oy * st - s->pad + ky;
            if (iy < 0 || iy >= s->h)
                continue;
            const float *r = plane + (size_t)iy * s->w;
            for (int ox = 0; ox < ow; ox++) {
                if (ox == a && e > a) { /* interior */
                    const float *rb = r + (ptrdiff_t)a * st - s->pad;
                    for (int q = 0; q < e - a; q++) {
                        float m = rb[q * st];
                        for (int kx = 1; kx < kw; kx++)
                            m = pmax(m, rb[q * st + kx]);
                        hm[a + q] = m;
                    }
                    ox = e - 1;
                    continue;
                }
                int x0 = ox * st - s->pad, x1 = x0 + kw < s->w ? x0 + kw : s->w;
                if (x0 < 0)
                    x0 = 0;
                float m = -INFINITY;
                for (int ix = x0; ix < x1; ix++)
                    m = pmax(m, r[ix]);
                hm[ox] = m;
            }
            for (int ox = 0; ox < ow; ox++)
                o[ox] = pmax(o[ox], hm[ox]);
        }
    }
}

/* Backward: the gradient goes to the position PyTorch's scan picks: the first
 * position (row by row) equal to the maximum y, or the last NaN when y is NaN. */
static void maxpool_bwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const pool_job *J = arg;
    const be_pool_shape *s = J->s;
    const float *plane = J->x + p * s->h * s->w;
    const float *yp = J->y + p * J->oh * J->ow;
    const float *g = J->dy + p * J->oh * J->ow;
    float *d = J->dx + p * s->h * s->w;
    memset(d, 0, sizeof(float) * s->h * s->w);
    for (int oy = 0; oy < J->oh; oy++) {
        int y0 = oy * s->stride - s->pad, y1 = y0 + s->kh < s->h ? y0 + s->kh : s->h;
        if (y0 < 0)
            y0 = 0;
        for (int ox = 0; ox < J->ow; ox++) {
            int x0 = ox * s->stride - s->pad, x1 = x0 + s->kw < s->w ? x0 + s->kw : s->w;
            if (x0 < 0)
                x0 = 0;
            float m = yp[oy * J->ow + ox];
            size_t idx = (size_t)y0 * s->w + x0;
            if (m != m) {
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (plane[(size_t)iy * s->w + ix] != plane[(size_t)iy * s->w + ix])
                            idx = (size_t)iy * s->w + ix;
            } else {
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (plane[(size_t)iy * s->w + ix] == m) {
                            idx = (size_t)iy * s->w + ix;
                            goto found;
                        }
            }
        found:
            d[idx] += g[oy * J->ow + ox];
        }
    }
}

static void pool_dims(const be_pool_shape *s, int *oh, int *ow)
{
    *oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
    *ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
}

void cpu_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    pool_job J = {.s = s, .x = x, .y = y};
    pool_dims(s, &J.oh, &J.ow);
    cpu_parallel(c, (size_t)s->n * s->c, maxpool_fwd_task, &J);
}

void cpu_maxpool_bwd(be_ctx *b, const be_pool_shape *s, const float *x, const float *y, const float *dy,
                            float *dx)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    pool_job J = {.s = s, .x = x, .y = (float *)y, .dy = dy, .dx = dx};
    pool_dims(s, &J.oh, &J.ow);
    cpu_parallel(c, (size_t)s->n * s->c, maxpool_bwd_task, &J);
}

typedef struct avg_job {
    int hw;
    const float *x, *dy;
    float *y, *dx;
    void (*planes)(const struct avg_job *J, size_t p0, size_t p1); /* the pass over planes [p0, p1) */
} avg_job;

static void avg_fwd_planes(const avg_job *J, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) {
        double s = 0, ss = 0;
        cpu_sum_shift(J->x + p * J->hw, (size_t)J->hw, 0.0, &s, &ss);
        J->y[p] = (float)(s / J->hw);
    }
}

static void avg_bwd_planes(const avg_job *J, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) {
        float v = J->dy[p] / (float)J->hw;
        float *q = J->dx + p * J->hw;
        for (int i = 0; i < J->hw; i++)
            q[i] = v;
    }
}

#define AVG_PLANES 64 /* planes per task */
static void avg_task(void *arg, size_t t, int worker)
{
    (void)worker;
    const avg_job *J = arg;
    J->planes(J, t * AVG_PLANES, (t + 1) * AVG_PLANES);
}

/* The n*c planes: whole tasks of AVG_PLANES on the threads, the rest here. */
static void avg_run(be_ctx *b, int n, int c, avg_job *J)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    size_t np = (size_t)n * c;
    if (ctx->failed || np == 0)
        return;
    size_t full = np / AVG_PLANES;
    cpu_parallel(ctx, full, avg_task, J);
    J->planes(J, full * AVG_PLANES, np);
}

void cpu_avgpool_fwd(be_ctx *b, int n, int c, int hw, const float *x, float *y)
{
    avg_job J = {.hw = hw, .x = x, .y = y, .planes = avg_fwd_planes};
    avg_run(b, n, c, &J);
}

void cpu_avgpool_bwd(be_ctx *b, int n, int c, int hw, const float *dy, float *dx)
{
    avg_job J = {.hw = hw, .dy = dy, .dx = dx, .planes = avg_bwd_planes};
    avg_run(b, n, c, &J);
}
