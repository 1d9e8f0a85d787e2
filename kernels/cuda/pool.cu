/* pool (CUDA): max pooling and global average pooling, forward and backward;
 * mirrors kernels/cpu/pool.c (ties: the first position wins). */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/reduce.cuh"

/* ---------------- pooling ---------------- */

struct pool_geo {
    int n, c, h, w, kh, kw, stride, pad, oh, ow;
};

static pool_geo make_geo(const be_pool_shape *s)
{
    pool_geo g;
    g.n = s->n; g.c = s->c; g.h = s->h; g.w = s->w;
    g.kh = s->kh; g.kw = s->kw; g.stride = s->stride; g.pad = s->pad;
    g.oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
    g.ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
    return g;
}

/* PyTorch's CPU scan: starts at the window's first in-bounds element with
 * -inf, takes a value when it is greater or NaN. Returns the index inside the
 * plane. */
__device__ __forceinline__ int pool_argmax(const pool_geo g, const float *plane, int oy, int ox, float *best)
{
    int y0 = oy * g.stride - g.pad, x0 = ox * g.stride - g.pad;
    int y1 = min(y0 + g.kh, g.h), x1 = min(x0 + g.kw, g.w);
    y0 = max(y0, 0); x0 = max(x0, 0);
    float m = -INFINITY;
    int mi = y0 * g.w + x0;
    for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++) {
            float v = plane[(size_t)yy * g.w + xx];
            if (v > m || isnan(v)) { m = v; mi = yy * g.w + xx; }
        }
    *best = m;
    return mi;
}

__global__ void cu_maxpool_fwd_k(pool_geo g, const float *x, float *y)
{
    size_t total = (size_t)g.n * g.c * g.oh * g.ow;
    GRID_STRIDE(i, total) {
        int ox = (int)(i % g.ow);
        int oy = (int)((i / g.ow) % g.oh);
        size_t plane = i / ((size_t)g.ow * g.oh);
        float m;
        int mi = pool_argmax(g, x + plane * g.h * g.w, oy, ox, &m);
        (void)mi;
        y[i] = m;
    }
}
__global__ void cu_maxpool_bwd_k(pool_geo g, const float *x, const float *dy, float *dx)
{
    size_t total = (size_t)g.n * g.c * g.oh * g.ow;
    GRID_STRIDE(i, total) {
        int ox = (int)(i % g.ow);
        int oy = (int)((i / g.ow) % g.oh);
        size_t plane = i / ((size_t)g.ow * g.oh);
        float m;
        int mi = pool_argmax(g, x + plane * g.h * g.w, oy, ox, &m);
        atomicAdd(dx + plane * g.h * g.w + mi, dy[i]);
    }
}
static cudaError_t cu_maxpool_fwd_launch(cudaStream_t st, const be_pool_shape *s, const float *x, float *y)
{
    pool_geo g = make_geo(s);
    size_t total = (size_t)g.n * g.c * g.oh * g.ow;
    if (total) cu_maxpool_fwd_k<<<grid_for(total), NT, 0, st>>>(g, x, y);
    return cudaGetLastError();
}
static cudaError_t cu_maxpool_bwd_launch(cudaStream_t st, const be_pool_shape *s, const float *x, const float *dy, float *dx)
{
    pool_geo g = make_geo(s);
    size_t total = (size_t)g.n * g.c * g.oh * g.ow;
    if (total) cu_maxpool_bwd_k<<<grid_for(total), NT, 0, st>>>(g, x, dy, dx);
    return cudaGetLastError();
}

/* One warp per (n, c) row. */
__global__ void cu_avgpool_fwd_k(int rows, int hw, const float *x, float *y)
{
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= rows) return;
    const float *r = x + (size_t)warp * hw;
    float s = 0.f;
    for (int i = lane; i < hw; i += 32) s += r[i];
    s = warp_sum(s);
    if (lane == 0) y[warp] = s / (float)hw;
}
__global__ void cu_avgpool_bwd_k(size_t total, int hw, const float *dy, float *dx)
{
    float inv = 1.f / (float)hw;
    GRID_STRIDE(i, total) dx[i] = dy[i / hw] * inv;
}
static cudaError_t cu_avgpool_fwd_launch(cudaStream_t st, int n, int c, int hw, const float *x, float *y)
{
    int rows = n * c;
    if (rows > 0) cu_avgpool_fwd_k<<<(unsigned)(((size_t)rows * 32 + NT - 1) / NT), NT, 0, st>>>(rows, hw, x, y);
    return cudaGetLastError();
}
static cudaError_t cu_avgpool_bwd_launch(cudaStream_t st, int n, int c, int hw, const float *dy, float *dx)
{
    size_t total = (size_t)n * c * hw;
    if (total) cu_avgpool_bwd_k<<<grid_for(total), NT, 0, st>>>(total, hw, dy, dx);
    return cudaGetLastError();
}
/* ---------------- entries ---------------- */

void cu_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y)
{
    LAUNCH(CTX(b), cu_maxpool_fwd_launch(CTX(b)->stream, s, x, y), "max pool", "n%d c%d %dx%d", s->n, s->c, s->h, s->w);
}
void cu_maxpool_bwd(be_ctx *b, const be_pool_shape *s, const float *x, const float *y, const float *dy, float *dx)
{
    cu_ctx *c = CTX(b);
    (void)y;
    if (c->failed) return;
    PROF(c, "max pool backward", "n%d c%d %dx%d", s->n, s->c, s->h, s->w);
    if (!cu_ok(c, cudaMemsetAsync(dx, 0, (size_t)s->n * s->c * s->h * s->w * sizeof(float), c->stream), "max pool backward")) return;
    cu_ok(c, cu_maxpool_bwd_launch(c->stream, s, x, dy, dx), "max pool backward");
}
void cu_avgpool_fwd(be_ctx *b, int n, int ch, int hw, const float *x, float *y)
{
    LAUNCH(CTX(b), cu_avgpool_fwd_launch(CTX(b)->stream, n, ch, hw, x, y), "average pool", "n%d c%d hw%d", n, ch, hw);
}
void cu_avgpool_bwd(be_ctx *b, int n, int ch, int hw, const float *dy, float *dx)
{
    LAUNCH(CTX(b), cu_avgpool_bwd_launch(CTX(b)->stream, n, ch, hw, dy, dx), "average pool backward", "n%d c%d hw%d", n, ch, hw);
}
