/* cuda_kernels: the project's own CUDA kernels (element-wise ops, pooling,
 * losses, Kendall tau-b selection, argmax, SGD, input preparation). The
 * semantics of each follow backend/backend.h and the CPU backend. */
#include <cuda_fp16.h>
#include <math.h>

#include "backend/cuda/cuda_internal.h"

#define NT 256

static inline unsigned grid_for(size_t n, unsigned threads = NT)
{
    size_t g = (n + threads - 1) / threads;
    if (g > 65535u * 8u) g = 65535u * 8u; /* grid-stride loops cover the rest */
    if (g == 0) g = 1;
    return (unsigned)g;
}

#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---------------- block reductions (blockDim a multiple of 32, <= 1024) ---------------- */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Every thread gets the result. `sh` holds 32 entries. */
__device__ float block_sum(float v, float *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh may be in use by a previous reduction */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.f;
    return warp_sum(v);
}
__device__ double block_sum_d(double v, double *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    return warp_sum_d(v);
}
__device__ float block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(v);
}

/* ---------------- activations ---------------- */

__global__ void relu_fwd_k(size_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n) { float v = x[i]; y[i] = v > 0.f ? v : 0.f; }
}
__global__ void relu_bwd_k(size_t n, const float *y, const float *dy, float *dx)
{
    GRID_STRIDE(i, n) { dx[i] = y[i] > 0.f ? dy[i] : 0.f; }
}
__global__ void leaky_fwd_k(size_t n, float slope, const float *x, float *y)
{
    GRID_STRIDE(i, n) { float v = x[i]; y[i] = v > 0.f ? v : v * slope; }
}
__global__ void leaky_bwd_k(size_t n, float slope, const float *x, const float *dy, float *dx)
{
    GRID_STRIDE(i, n) { dx[i] = x[i] > 0.f ? dy[i] : dy[i] * slope; }
}

cudaError_t k_relu_fwd(cudaStream_t st, size_t n, const float *x, float *y)
{
    if (n) relu_fwd_k<<<grid_for(n), NT, 0, st>>>(n, x, y);
    return cudaGetLastError();
}
cudaError_t k_relu_bwd(cudaStream_t st, size_t n, const float *y, const float *dy, float *dx)
{
    if (n) relu_bwd_k<<<grid_for(n), NT, 0, st>>>(n, y, dy, dx);
    return cudaGetLastError();
}
cudaError_t k_leaky_fwd(cudaStream_t st, size_t n, float slope, const float *x, float *y)
{
    if (n) leaky_fwd_k<<<grid_for(n), NT, 0, st>>>(n, slope, x, y);
    return cudaGetLastError();
}
cudaError_t k_leaky_bwd(cudaStream_t st, size_t n, float slope, const float *x, const float *dy, float *dx)
{
    if (n) leaky_bwd_k<<<grid_for(n), NT, 0, st>>>(n, slope, x, dy, dx);
    return cudaGetLastError();
}

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

__global__ void maxpool_fwd_k(pool_geo g, const float *x, float *y)
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
__global__ void maxpool_bwd_k(pool_geo g, const float *x, const float *dy, float *dx)
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
cudaError_t k_maxpool_fwd(cudaStream_t st, const be_pool_shape *s, const float *x, float *y)
{
    pool_geo g = make_geo(s);
    size_t total = (size_t)g.n * g.c * g.oh * g.ow;
    if (total) maxpool_fwd_k<<<grid_for(total), NT, 0, st>>>(g, x, y);
    return cudaGetLastError();
}
cudaError_t k_maxpool_bwd(cudaStream_t st, const be_pool_shape *s, const float *x, const float *dy, float *dx)
{
    pool_geo g = make_geo(s);
    size_t total = (size_t)g.n * g.c * g.oh * g.ow;
    if (total) maxpool_bwd_k<<<grid_for(total), NT, 0, st>>>(g, x, dy, dx);
    return cudaGetLastError();
}

/* One warp per (n, c) row. */
__global__ void avgpool_fwd_k(int rows, int hw, const float *x, float *y)
{
    int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= rows) return;
    const float *r = x + (size_t)warp * hw;
    float s = 0.f;
    for (int i = lane; i < hw; i += 32) s += r[i];
    s = warp_sum(s);
    if (lane == 0) y[warp] = s / (float)hw;
}
__global__ void avgpool_bwd_k(size_t total, int hw, const float *dy, float *dx)
{
    float inv = 1.f / (float)hw;
    GRID_STRIDE(i, total) dx[i] = dy[i / hw] * inv;
}
cudaError_t k_avgpool_fwd(cudaStream_t st, int n, int c, int hw, const float *x, float *y)
{
    int rows = n * c;
    if (rows > 0) avgpool_fwd_k<<<(unsigned)(((size_t)rows * 32 + NT - 1) / NT), NT, 0, st>>>(rows, hw, x, y);
    return cudaGetLastError();
}
cudaError_t k_avgpool_bwd(cudaStream_t st, int n, int c, int hw, const float *dy, float *dx)
{
    size_t total = (size_t)n * c * hw;
    if (total) avgpool_bwd_k<<<grid_for(total), NT, 0, st>>>(total, hw, dy, dx);
    return cudaGetLastError();
}

/* ---------------- linear helpers ---------------- */

__global__ void add_bias_k(size_t total, int cols, const float *bias, float *y)
{
    GRID_STRIDE(i, total) y[i] += bias[i % cols];
}
__global__ void col_sum_k(int rows, int cols, const float *dy, float *db)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.f;
    for (int r = 0; r < rows; r++) s += dy[(size_t)r * cols + j];
    db[j] = s;
}
cudaError_t k_add_bias(cudaStream_t st, int rows, int cols, const float *bias, float *y)
{
    size_t total = (size_t)rows * cols;
    if (total) add_bias_k<<<grid_for(total), NT, 0, st>>>(total, cols, bias, y);
    return cudaGetLastError();
}
cudaError_t k_col_sum(cudaStream_t st, int rows, int cols, const float *dy, float *db)
{
    if (cols > 0) col_sum_k<<<(cols + NT - 1) / NT, NT, 0, st>>>(rows, cols, dy, db);
    return cudaGetLastError();
}

/* ---------------- element-wise and SGD ---------------- */

__global__ void add_k(size_t n, const float *a, const float *c, float *y)
{
    GRID_STRIDE(i, n) y[i] = a[i] + c[i];
}
__global__ void axpy_k(size_t n, float alpha, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ void scale_k(size_t n, float alpha, float *y)
{
    GRID_STRIDE(i, n) y[i] *= alpha;
}
__global__ void sgd_k(size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    GRID_STRIDE(i, n) {
        float v = momentum * m[i] + g[i];
        m[i] = v;
        p[i] -= lr * v;
    }
}
/* float4 version when every pointer is 16-byte aligned. */
__global__ void sgd4_k(size_t n4, float4 *p, const float4 *g, float4 *m, float lr, float momentum)
{
    GRID_STRIDE(i, n4) {
        float4 gv = g[i], mv = m[i], pv = p[i];
        mv.x = momentum * mv.x + gv.x; mv.y = momentum * mv.y + gv.y;
        mv.z = momentum * mv.z + gv.z; mv.w = momentum * mv.w + gv.w;
        pv.x -= lr * mv.x; pv.y -= lr * mv.y; pv.z -= lr * mv.z; pv.w -= lr * mv.w;
        m[i] = mv; p[i] = pv;
    }
}
cudaError_t k_add(cudaStream_t st, size_t n, const float *a, const float *c, float *y)
{
    if (n) add_k<<<grid_for(n), NT, 0, st>>>(n, a, c, y);
    return cudaGetLastError();
}
cudaError_t k_axpy(cudaStream_t st, size_t n, float alpha, const float *x, float *y)
{
    if (n) axpy_k<<<grid_for(n), NT, 0, st>>>(n, alpha, x, y);
    return cudaGetLastError();
}
cudaError_t k_scale(cudaStream_t st, size_t n, float alpha, float *y)
{
    if (n) scale_k<<<grid_for(n), NT, 0, st>>>(n, alpha, y);
    return cudaGetLastError();
}
cudaError_t k_sgd(cudaStream_t st, size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    if (!n) return cudaGetLastError();
    if ((((uintptr_t)p | (uintptr_t)g | (uintptr_t)m) & 15) == 0) {
        size_t n4 = n / 4;
        if (n4) sgd4_k<<<grid_for(n4), NT, 0, st>>>(n4, (float4 *)p, (const float4 *)g, (float4 *)m, lr, momentum);
        size_t rest = n - n4 * 4;
        if (rest) sgd_k<<<1, NT, 0, st>>>(rest, p + n4 * 4, g + n4 * 4, m + n4 * 4, lr, momentum);
    } else {
        sgd_k<<<grid_for(n), NT, 0, st>>>(n, p, g, m, lr, momentum);
    }
    return cudaGetLastError();
}

/* ---------------- losses: one block per sample ---------------- */

#define LT 128 /* threads per loss block */

__global__ void ce_k(int B, int C, const float *z, const int32_t *y, float gscale, float *per, float *dz)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    const float *r = z + (size_t)i * C;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, r[c]);
    m = block_max(m, sh);
    float s = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += expf(r[c] - m);
    s = block_sum(s, sh);
    float lse = m + logf(s);
    int lab = y[i];
    bool ok = lab >= 0 && lab < C;
    if (threadIdx.x == 0) per[i] = ok ? lse - r[lab] : NAN;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float p = expf(r[c] - lse);
        dz[(size_t)i * C + c] += gscale * (p - (c == lab ? 1.f : 0.f));
    }
}

__global__ void kl_k(int B, int C, const float *t, const float *s, float temp, float gscale, float *per, float *ds)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    const float *rt = t + (size_t)i * C, *rs = s + (size_t)i * C;
    float it = 1.f / temp;
    float mt = -INFINITY, ms = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { mt = fmaxf(mt, rt[c] * it); ms = fmaxf(ms, rs[c] * it); }
    mt = block_max(mt, sh);
    ms = block_max(ms, sh);
    float st_ = 0.f, ss = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { st_ += expf(rt[c] * it - mt); ss += expf(rs[c] * it - ms); }
    st_ = block_sum(st_, sh);
    ss = block_sum(ss, sh);
    float lt = mt + logf(st_), ls = ms + logf(ss);
    float acc = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float lpt = rt[c] * it - lt, lps = rs[c] * it - ls;
        float pt = expf(lpt), ps = expf(lps);
        if (pt > 0.f) acc += pt * (lpt - lps);
        ds[(size_t)i * C + c] += gscale * (ps - pt) * it;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) per[i] = acc;
}

/* Non-target KL: target logit multiplied by 0, softmax over all C. */
__global__ void nt_kl_k(int B, int C, const float *src, const float *dst, const int32_t *y, const float *keep,
                        float gscale, float *per, float *dd)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    int lab = y[i];
    float kp = keep[i];
    if (kp == 0.f) {
        if (threadIdx.x == 0) per[i] = 0.f;
        return;
    }
    const float *ra = src + (size_t)i * C, *rb = dst + (size_t)i * C;
#define MASKED(r, c) ((c) == lab ? 0.f : (r)[c])
    float ma = -INFINITY, mb = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { ma = fmaxf(ma, MASKED(ra, c)); mb = fmaxf(mb, MASKED(rb, c)); }
    ma = block_max(ma, sh);
    mb = block_max(mb, sh);
    float sa = 0.f, sb = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { sa += expf(MASKED(ra, c) - ma); sb += expf(MASKED(rb, c) - mb); }
    sa = block_sum(sa, sh);
    sb = block_sum(sb, sh);
    float la = ma + logf(sa), lb = mb + logf(sb);
    float acc = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float lpa = MASKED(ra, c) - la, lpb = MASKED(rb, c) - lb;
        float pa = expf(lpa), pb = expf(lpb);
        if (pa > 0.f) acc += pa * (lpa - lpb);
        if (c != lab) dd[(size_t)i * C + c] += gscale * kp * (pb - pa);
    }
#undef MASKED
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) per[i] = kp * acc;
}

/* NKD: -T_y log S_y - gamma temp^2 sum_{c!=y} N(T/temp)_c log N(S/temp)_c. */
__global__ void nkd_k(int B, int C, const float *t, const float *s, const int32_t *y, float temp, float gamma,
                      float gscale, float *per, float *ds)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    int lab = y[i];
    const float *rt = t + (size_t)i * C, *rs = s + (size_t)i * C;
    float it = 1.f / temp;
    /* temperature-1 softmaxes over all classes */
    float mt = -INFINITY, ms = -INFINITY, mtn = -INFINITY, msn = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        mt = fmaxf(mt, rt[c]); ms = fmaxf(ms, rs[c]);
        if (c != lab) { mtn = fmaxf(mtn, rt[c] * it); msn = fmaxf(msn, rs[c] * it); }
    }
    mt = block_max(mt, sh); ms = block_max(ms, sh);
    mtn = block_max(mtn, sh); msn = block_max(msn, sh);
    float st_ = 0.f, ss = 0.f, stn = 0.f, ssn = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        st_ += expf(rt[c] - mt); ss += expf(rs[c] - ms);
        if (c != lab) { stn += expf(rt[c] * it - mtn); ssn += expf(rs[c] * it - msn); }
    }
    st_ = block_sum(st_, sh); ss = block_sum(ss, sh);
    stn = block_sum(stn, sh); ssn = block_sum(ssn, sh);
    float lt = mt + logf(st_), ls = ms + logf(ss), ltn = mtn + logf(stn), lsn = msn + logf(ssn);
    bool ok = lab >= 0 && lab < C;
    float ty = ok ? expf(rt[lab] - lt) : NAN;
    float acc = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float S = expf(rs[c] - ls);
        float g = -ty * ((c == lab ? 1.f : 0.f) - S);
        if (c != lab) {
            float lnt = rt[c] * it - ltn, lns = rs[c] * it - lsn;
            float nt = expf(lnt), ns = expf(lns);
            acc += nt * lns;
            g += gamma * temp * (ns - nt);
        }
        ds[(size_t)i * C + c] += gscale * g;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) per[i] = ok ? -ty * (rs[lab] - ls) - gamma * temp * temp * acc : NAN;
}

__global__ void loss_reduce_k(int B, const float *per, float scale, float *loss)
{
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < B; i += blockDim.x) s += per[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) loss[0] += (float)(s * scale);
}

cudaError_t k_ce(cudaStream_t st, int B, int C, const float *z, const int32_t *y, float weight, float *per, float *dz)
{
    if (B > 0) ce_k<<<B, LT, 0, st>>>(B, C, z, y, weight / (float)B, per, dz);
    return cudaGetLastError();
}
cudaError_t k_kl(cudaStream_t st, int B, int C, const float *t, const float *s, float temp, float weight, float *per,
                 float *ds)
{
    if (B > 0) kl_k<<<B, LT, 0, st>>>(B, C, t, s, temp, weight / (float)B, per, ds);
    return cudaGetLastError();
}
cudaError_t k_nt_kl(cudaStream_t st, int B, int C, const float *src, const float *dst, const int32_t *y,
                    const float *keep, float weight, float *per, float *ddst)
{
    if (B > 0) nt_kl_k<<<B, LT, 0, st>>>(B, C, src, dst, y, keep, weight / (float)B, per, ddst);
    return cudaGetLastError();
}
cudaError_t k_nkd(cudaStream_t st, int B, int C, const float *t, const float *s, const int32_t *y, float temp,
                  float gamma, float weight, float *per, float *ds)
{
    if (B > 0) nkd_k<<<B, LT, 0, st>>>(B, C, t, s, y, temp, gamma, weight / (float)B, per, ds);
    return cudaGetLastError();
}
cudaError_t k_loss_reduce(cudaStream_t st, int B, const float *per, float weight, float *loss)
{
    if (B > 0) loss_reduce_k<<<1, NT, 0, st>>>(B, per, (double)weight / B, loss);
    return cudaGetLastError();
}

/* ---------------- Kendall tau-b: one block per sample ---------------- */

__global__ void kendall_k(int B, int C, const float *a, const float *c, float omega, float *tau, float *keep)
{
    extern __shared__ float rows[]; /* 2*C floats */
    __shared__ long long red[4][32];
    int i = blockIdx.x;
    float *ra = rows, *rc = rows + C;
    for (int k = threadIdx.x; k < C; k += blockDim.x) {
        ra[k] = a[(size_t)i * C + k];
        rc[k] = c[(size_t)i * C + k];
    }
    __syncthreads();
    long long s = 0, ta = 0, tc = 0; /* concordant - discordant, ties in a, ties in c */
    for (int p = 0; p < C - 1; p++) {
        float ap = ra[p], cp = rc[p];
        for (int q = p + 1 + threadIdx.x; q < C; q += blockDim.x) {
            float da = ap - ra[q], dc = cp - rc[q];
            int sa = (da > 0.f) - (da < 0.f), sc = (dc > 0.f) - (dc < 0.f);
            s += sa * sc;
            ta += (da == 0.f);
            tc += (dc == 0.f);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        s += __shfl_xor_sync(0xffffffffu, s, o);
        ta += __shfl_xor_sync(0xffffffffu, ta, o);
        tc += __shfl_xor_sync(0xffffffffu, tc, o);
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { red[0][wid] = s; red[1][wid] = ta; red[2][wid] = tc; }
    __syncthreads();
    if (threadIdx.x == 0) {
        long long S = 0, TA = 0, TC = 0;
        for (int w = 0; w < nw; w++) { S += red[0][w]; TA += red[1][w]; TC += red[2][w]; }
        long long n0 = (long long)C * (C - 1) / 2;
        double den = sqrt((double)(n0 - TA) * (double)(n0 - TC));
        float t = (n0 - TA) > 0 && (n0 - TC) > 0 ? (float)((double)S / den) : NAN;
        tau[i] = t;
        keep[i] = t > omega ? 1.f : 0.f; /* NaN compares false */
    }
}
cudaError_t k_kendall(cudaStream_t st, int B, int C, const float *a, const float *c, float omega, float *tau,
                      float *keep)
{
    size_t shm = 2 * (size_t)C * sizeof(float);
    if (shm > 48 * 1024) return cudaErrorInvalidValue; /* > 6144 classes: not supported */
    if (B > 0) kendall_k<<<B, NT, shm, st>>>(B, C, a, c, omega, tau, keep);
    return cudaGetLastError();
}

/* ---------------- argmax: one warp per row ---------------- */

__global__ void argmax_k(int B, int C, const float *z, int32_t *pred)
{
    int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= B) return;
    const float *r = z + (size_t)row * C;
    float best = -INFINITY;
    int bi = -1;
    for (int c = lane; c < C; c += 32) {
        float v = r[c];
        if (bi < 0 || v > best) { best = v; bi = c; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > best || (ov == best && oi < bi))) { best = ov; bi = oi; }
    }
    if (lane == 0) pred[row] = bi < 0 ? 0 : bi;
}
cudaError_t k_argmax(cudaStream_t st, int B, int C, const float *z, int32_t *pred)
{
    if (B > 0) argmax_k<<<(unsigned)(((size_t)B * 32 + NT - 1) / NT), NT, 0, st>>>(B, C, z, pred);
    return cudaGetLastError();
}

/* ---------------- input preparation ---------------- */

__global__ void half_to_float_k(size_t n, const __half *h, float *out)
{
    GRID_STRIDE(i, n) out[i] = __half2float(h[i]);
}
/* One block per clip: two-pass mean and population std in double. */
__global__ void prep_spec_std_k(size_t len, const __half *h, float *out)
{
    __shared__ double sh[32];
    const __half *r = h + (size_t)blockIdx.x * len;
    float *o = out + (size_t)blockIdx.x * len;
    double s = 0.0;
    for (size_t k = threadIdx.x; k < len; k += blockDim.x) s += (double)__half2float(r[k]);
    s = block_sum_d(s, sh);
    double mean = s / (double)len;
    double v = 0.0;
    for (size_t k = threadIdx.x; k < len; k += blockDim.x) {
        double d = (double)__half2float(r[k]) - mean;
        v += d * d;
    }
    v = block_sum_d(v, sh);
    double inv = 1.0 / (sqrt(v / (double)len) + 1e-9);
    float fm = (float)mean, fi = (float)inv;
    for (size_t k = threadIdx.x; k < len; k += blockDim.x) o[k] = (__half2float(r[k]) - fm) * fi;
}
cudaError_t k_prep_spec(cudaStream_t st, int n, size_t len, const uint16_t *half, int standardize, float *out)
{
    if (n <= 0 || len == 0) return cudaGetLastError();
    if (standardize)
        prep_spec_std_k<<<n, 1024, 0, st>>>(len, (const __half *)half, out);
    else
        half_to_float_k<<<grid_for((size_t)n * len), NT, 0, st>>>((size_t)n * len, (const __half *)half, out);
    return cudaGetLastError();
}

struct norm3 {
    float m[3], s[3];
};

/* One thread per output pixel (3 channels). PyTorch's bilinear, align_corners=False. */
__global__ void prep_frames_k(const be_crop *crops, const uint8_t *src, int oh, int ow, norm3 nm, float *out)
{
    int img = blockIdx.y;
    int pix = blockIdx.x * blockDim.x + threadIdx.x;
    if (pix >= oh * ow) return;
    be_crop cr = crops[img];
    int oy = pix / ow, ox = pix % ow;
    int sx = cr.flip ? ow - 1 - ox : ox;
    /* the CPU backend's index arithmetic (double), PyTorch's formula */
    double hs = (double)cr.h / oh, ws = (double)cr.w / ow;
    double hr = ((double)oy + 0.5) * hs - 0.5;
    if (hr < 0.0) hr = 0.0;
    int h1 = min((int)hr, cr.h - 1);
    int h1p = h1 < cr.h - 1 ? 1 : 0;
    float h1l = (float)fmin(hr - h1, 1.0), h0l = 1.f - h1l;
    double wr = ((double)sx + 0.5) * ws - 0.5;
    if (wr < 0.0) wr = 0.0;
    int w1 = min((int)wr, cr.w - 1);
    int w1p = w1 < cr.w - 1 ? 1 : 0;
    float w1l = (float)fmin(wr - w1, 1.0), w0l = 1.f - w1l;
    const uint8_t *base = src + cr.offset;
    size_t stride = (size_t)cr.src_w * 3;
    const uint8_t *p00 = base + (size_t)(cr.y + h1) * stride + (size_t)(cr.x + w1) * 3;
    const uint8_t *p01 = p00 + w1p * 3;
    const uint8_t *p10 = p00 + h1p * stride;
    const uint8_t *p11 = p10 + w1p * 3;
    float *o = out + (size_t)img * 3 * oh * ow + pix;
#pragma unroll
    for (int ch = 0; ch < 3; ch++) {
        float top = w0l * (float)p00[ch] + w1l * (float)p01[ch];
        float bot = w0l * (float)p10[ch] + w1l * (float)p11[ch];
        float v = h0l * top + h1l * bot;
        o[(size_t)ch * oh * ow] = (v / 255.f - nm.m[ch]) / nm.s[ch];
    }
}
cudaError_t k_prep_frames(cudaStream_t st, int n, const be_crop *crops, const uint8_t *src, int oh, int ow,
                          float m0, float m1, float m2, float s0, float s1, float s2, float *out)
{
    if (n <= 0 || oh <= 0 || ow <= 0) return cudaGetLastError();
    norm3 nm = {{m0, m1, m2}, {s0, s1, s2}};
    dim3 grid((unsigned)((oh * ow + NT - 1) / NT), (unsigned)n);
    prep_frames_k<<<grid, NT, 0, st>>>(crops, src, oh, ow, nm, out);
    return cudaGetLastError();
}

/* ---------------- batch norm (own kernels) ----------------
 * Layout NCHW: channel ch of sample i is the contiguous row x[(i*C + ch)*hw ..].
 * Each channel's M = n*hw values are split into P chunks of consecutive
 * (row, col) positions; block (p, ch) reduces chunk p of channel ch into
 * double partial sums (per thread in double, shifted by the channel's first
 * value as the CPU backend does), then a finalize kernel adds the P partials
 * of each channel in a fixed order (deterministic, no atomics) and computes
 * the per-channel coefficients; an element-wise kernel over the same chunks
 * applies them. The element-wise pass reads and writes each position once,
 * after the statistics are complete, so y may alias x and dx may alias dy or x.
 * Vectorised (float4) when hw is a multiple of 4 and the pointers are 16-byte
 * aligned. */

#define BN_T 256

struct bn_geo {
    unsigned C, hwv, Mv, chunk; /* in vector units (4 floats when vec) */
};

template <bool VEC> struct bn_ld;
template <> struct bn_ld<true> {
    typedef float4 T;
};
template <> struct bn_ld<false> {
    typedef float T;
};

__device__ __forceinline__ size_t bn_off(const bn_geo &g, unsigned ch, unsigned j)
{
    unsigned row = j / g.hwv, col = j - row * g.hwv;
    return ((size_t)row * g.C + ch) * g.hwv + col;
}

__device__ __forceinline__ void acc1(double &s, double &q, float v, double K)
{
    double d = (double)v - K;
    s += d;
    q += d * d;
}
__device__ __forceinline__ void acc1b(double &s, double &q, float dy, float x, double m)
{
    s += (double)dy;
    q += (double)dy * ((double)x - m);
}

/* partial[(ch*P + p)*2 + {0,1}] = sum (x-K), sum (x-K)^2 over chunk p. */
/* shift 1: sums of x - x[first of the channel] (the fused op); 0: plain sums (the split ops). */
template <bool VEC> __global__ void bn_stats_k(bn_geo g, const float *x, double *partial, int shift)
{
    __shared__ double sh[32];
    unsigned ch = blockIdx.y, p = blockIdx.x, P = gridDim.x;
    double K = shift ? (double)x[(size_t)ch * g.hwv * (VEC ? 4 : 1)] : 0.0;
    unsigned j0 = p * g.chunk, j1 = min(j0 + g.chunk, g.Mv);
    double s = 0, q = 0;
    const typename bn_ld<VEC>::T *xv = (const typename bn_ld<VEC>::T *)x;
    for (unsigned j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        if constexpr (VEC) {
            float4 v = xv[bn_off(g, ch, j)];
            acc1(s, q, v.x, K); acc1(s, q, v.y, K); acc1(s, q, v.z, K); acc1(s, q, v.w, K);
        } else {
            acc1(s, q, xv[bn_off(g, ch, j)], K);
        }
    }
    s = block_sum_d(s, sh);
    q = block_sum_d(q, sh);
    if (threadIdx.x == 0) {
        partial[((size_t)ch * P + p) * 2] = s;
        partial[((size_t)ch * P + p) * 2 + 1] = q;
    }
}

/* One thread per channel: the CPU backend's arithmetic (double). coef[ch*2] = a, coef[ch*2+1] = mean. */
__global__ void bn_fwd_final_k(int C, int P, double cnt, const float *x, size_t hw, const double *partial, const float *gamma,
                               float *run_mean, float *run_var, float momentum, float eps, float *save_mean,
                               float *save_invstd, float *coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    double K = (double)x[(size_t)ch * hw], s = 0, q = 0;
    for (int p = 0; p < P; p++) {
        s += partial[((size_t)ch * P + p) * 2];
        q += partial[((size_t)ch * P + p) * 2 + 1];
    }
    double dm = s / cnt, mean = K + dm;
    double var = q / cnt - dm * dm;
    if (var < 0) var = 0;
    double invstd = 1.0 / sqrt(var + (double)eps);
    double unbiased = cnt > 1 ? var * cnt / (cnt - 1) : var;
    double m = momentum;
    run_mean[ch] = (float)((1.0 - m) * run_mean[ch] + m * mean);
    run_var[ch] = (float)((1.0 - m) * run_var[ch] + m * unbiased);
    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
    coef[ch * 2] = (float)((double)gamma[ch] * invstd);
    coef[ch * 2 + 1] = (float)mean;
}

/* y = (x - m) * a + b over the chunks of the statistics pass. */
template <bool VEC> __global__ void bn_apply_k(bn_geo g, const float *x, const float *coef, const float *beta, float *y)
{
    unsigned ch = blockIdx.y, p = blockIdx.x;
    float a = coef[ch * 2], m = coef[ch * 2 + 1], b = beta[ch];
    unsigned j0 = p * g.chunk, j1 = min(j0 + g.chunk, g.Mv);
    const typename bn_ld<VEC>::T *xv = (const typename bn_ld<VEC>::T *)x;
    typename bn_ld<VEC>::T *yv = (typename bn_ld<VEC>::T *)y;
    for (unsigned j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        size_t o = bn_off(g, ch, j);
        if constexpr (VEC) {
            float4 v = xv[o];
            v.x = (v.x - m) * a + b; v.y = (v.y - m) * a + b; v.z = (v.z - m) * a + b; v.w = (v.w - m) * a + b;
            yv[o] = v;
        } else {
            yv[o] = (xv[o] - m) * a + b;
        }
    }
}

/* Evaluation: y = x * a + b with a = gamma / sqrt(rv + eps), b = beta - rm * a (double, as the CPU backend). */
template <bool VEC> __global__ void bn_eval_k(bn_geo g, const float *x, const float *gamma, const float *beta, const float *rm,
                                               const float *rv, float eps, float *y)
{
    unsigned ch = blockIdx.y, p = blockIdx.x;
    double inv = 1.0 / sqrt((double)rv[ch] + (double)eps);
    float a = (float)(gamma[ch] * inv), b = (float)(beta[ch] - rm[ch] * gamma[ch] * inv);
    unsigned j0 = p * g.chunk, j1 = min(j0 + g.chunk, g.Mv);
    const typename bn_ld<VEC>::T *xv = (const typename bn_ld<VEC>::T *)x;
    typename bn_ld<VEC>::T *yv = (typename bn_ld<VEC>::T *)y;
    for (unsigned j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        size_t o = bn_off(g, ch, j);
        if constexpr (VEC) {
            float4 v = xv[o];
            v.x = (v.x - 0.f) * a + b; v.y = (v.y - 0.f) * a + b; v.z = (v.z - 0.f) * a + b; v.w = (v.w - 0.f) * a + b;
            yv[o] = v;
        } else {
            yv[o] = (xv[o] - 0.f) * a + b;
        }
    }
}

/* Backward partials: sum dy, sum dy * (x - mean). */
template <bool VEC> __global__ void bn_bwd_stats_k(bn_geo g, const float *x, const float *dy, const float *save_mean,
                                                    double *partial)
{
    __shared__ double sh[32];
    unsigned ch = blockIdx.y, p = blockIdx.x, P = gridDim.x;
    double m = (double)save_mean[ch];
    unsigned j0 = p * g.chunk, j1 = min(j0 + g.chunk, g.Mv);
    double s = 0, q = 0;
    const typename bn_ld<VEC>::T *xv = (const typename bn_ld<VEC>::T *)x, *dv = (const typename bn_ld<VEC>::T *)dy;
    for (unsigned j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        size_t o = bn_off(g, ch, j);
        if constexpr (VEC) {
            float4 a = dv[o], b = xv[o];
            acc1b(s, q, a.x, b.x, m); acc1b(s, q, a.y, b.y, m); acc1b(s, q, a.z, b.z, m); acc1b(s, q, a.w, b.w, m);
        } else {
            acc1b(s, q, dv[o], xv[o], m);
        }
    }
    s = block_sum_d(s, sh);
    q = block_sum_d(q, sh);
    if (threadIdx.x == 0) {
        partial[((size_t)ch * P + p) * 2] = s;
        partial[((size_t)ch * P + p) * 2 + 1] = q;
    }
}

/* coef[ch*4 ..] = a, c1, c0, mean: dx = a dy + c1 (x - mean) + c0 (the CPU backend's formula). */
__global__ void bn_bwd_final_k(int C, int P, double cnt, const double *partial, const float *gamma, const float *save_mean,
                               const float *save_invstd, float *dgamma, float *dbeta, float *coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    double sdy = 0, sdyx = 0;
    for (int p = 0; p < P; p++) {
        sdy += partial[((size_t)ch * P + p) * 2];
        sdyx += partial[((size_t)ch * P + p) * 2 + 1];
    }
    double invstd = save_invstd[ch];
    dbeta[ch] = (float)sdy;
    dgamma[ch] = (float)(sdyx * invstd);
    double k = (double)gamma[ch] * invstd;
    double mdy = sdy / cnt, proj = sdyx * invstd * invstd / cnt;
    coef[ch * 4] = (float)k;
    coef[ch * 4 + 1] = (float)(-k * proj);
    coef[ch * 4 + 2] = (float)(-k * mdy);
    coef[ch * 4 + 3] = save_mean[ch];
}

template <bool VEC> __global__ void bn_bwd_apply_k(bn_geo g, const float *x, const float *dy, const float *coef, float *dx)
{
    unsigned ch = blockIdx.y, p = blockIdx.x;
    float a = coef[ch * 4], c1 = coef[ch * 4 + 1], c0 = coef[ch * 4 + 2], m = coef[ch * 4 + 3];
    unsigned j0 = p * g.chunk, j1 = min(j0 + g.chunk, g.Mv);
    const typename bn_ld<VEC>::T *xv = (const typename bn_ld<VEC>::T *)x, *dv = (const typename bn_ld<VEC>::T *)dy;
    typename bn_ld<VEC>::T *ov = (typename bn_ld<VEC>::T *)dx;
    for (unsigned j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        size_t o = bn_off(g, ch, j);
        if constexpr (VEC) {
            float4 d = dv[o], v = xv[o];
            d.x = a * d.x + c1 * (v.x - m) + c0; d.y = a * d.y + c1 * (v.y - m) + c0;
            d.z = a * d.z + c1 * (v.z - m) + c0; d.w = a * d.w + c1 * (v.w - m) + c0;
            ov[o] = d;
        } else {
            ov[o] = a * dv[o] + c1 * (xv[o] - m) + c0;
        }
    }
}

/* Chunking: about 2048 blocks in all, at least 4 vector loads per thread. */
static bool bn_plan(int n, int c, int hw, bool vec, bn_geo *g, unsigned *P)
{
    size_t M = (size_t)n * hw;
    if (n <= 0 || c <= 0 || hw <= 0 || c > 65535 || M >= (1u << 31)) return false;
    g->C = (unsigned)c;
    g->hwv = (unsigned)(vec ? hw / 4 : hw);
    g->Mv = (unsigned)(vec ? M / 4 : M);
    unsigned want = (2048u + c - 1) / c;
    unsigned maxp = (g->Mv + BN_T * 4 - 1) / (BN_T * 4);
    if (maxp < 1) maxp = 1;
    unsigned p = want < maxp ? want : maxp;
    if (p < 1) p = 1;
    g->chunk = (g->Mv + p - 1) / p;
    *P = (g->Mv + g->chunk - 1) / g->chunk;
    return true;
}

size_t k_bn_scratch_bytes(int n, int c, int hw)
{
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, false, &g, &P)) return 0;
    return (size_t)c * P * 2 * sizeof(double) + (size_t)c * 4 * sizeof(float);
}

static bool bn_vec_ok(int hw, const void *a, const void *b, const void *c)
{
    return hw % 4 == 0 && ((((uintptr_t)a) | ((uintptr_t)b) | ((uintptr_t)c)) & 15) == 0;
}

#define BN_LAUNCH(kern, vec, grid, ...)                                    \
    do {                                                                   \
        if (vec) kern<true><<<grid, BN_T, 0, st>>>(__VA_ARGS__);           \
        else kern<false><<<grid, BN_T, 0, st>>>(__VA_ARGS__);              \
    } while (0)

cudaError_t k_bn_fwd_train(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                           float *run_mean, float *run_var, float momentum, float eps, float *y, float *save_mean,
                           float *save_invstd, void *scratch)
{
    bool vec = bn_vec_ok(hw, x, y, x);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P)) return cudaErrorInvalidValue;
    double *partial = (double *)scratch;
    float *coef = (float *)(partial + (size_t)c * P * 2);
    dim3 grid(P, (unsigned)c);
    BN_LAUNCH(bn_stats_k, vec, grid, g, x, partial, 1);
    bn_fwd_final_k<<<(c + 127) / 128, 128, 0, st>>>(c, (int)P, (double)n * hw, x, (size_t)hw, partial, gamma, run_mean, run_var,
                                                   momentum, eps, save_mean, save_invstd, coef);
    BN_LAUNCH(bn_apply_k, vec, grid, g, x, coef, beta, y);
    return cudaGetLastError();
}

cudaError_t k_bn_fwd_eval(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, float eps, float *y)
{
    bool vec = bn_vec_ok(hw, x, y, x);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P)) return cudaErrorInvalidValue;
    dim3 grid(P, (unsigned)c);
    BN_LAUNCH(bn_eval_k, vec, grid, g, x, gamma, beta, run_mean, run_var, eps, y);
    return cudaGetLastError();
}

cudaError_t k_bn_bwd(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                     const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta, void *scratch)
{
    bool vec = bn_vec_ok(hw, x, dy, dx);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P)) return cudaErrorInvalidValue;
    double *partial = (double *)scratch;
    float *coef = (float *)(partial + (size_t)c * P * 2);
    dim3 grid(P, (unsigned)c);
    BN_LAUNCH(bn_bwd_stats_k, vec, grid, g, x, dy, save_mean, partial);
    bn_bwd_final_k<<<(c + 127) / 128, 128, 0, st>>>(c, (int)P, (double)n * hw, partial, gamma, save_mean, save_invstd, dgamma,
                                                   dbeta, coef);
    BN_LAUNCH(bn_bwd_apply_k, vec, grid, g, x, dy, coef, dx);
    return cudaGetLastError();
}

/* ---------------- batch norm in parts (--sync-bn; backend.h) ---------------- */

/* sums[ch] = Σ_p partial[ch, p, 0], sums[C + ch] = Σ_p partial[ch, p, 1] · (invstd ? invstd[ch] : 1);
 * with dgamma: dbeta = sums[ch], dgamma = sums[C + ch] (floats). */
__global__ void bn_sum_partials_k(int C, int P, const double *partial, const float *invstd, double *sums, float *dgamma,
                                  float *dbeta)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    double s = 0, q = 0;
    for (int p = 0; p < P; p++) {
        s += partial[((size_t)ch * P + p) * 2];
        q += partial[((size_t)ch * P + p) * 2 + 1];
    }
    if (invstd) q *= (double)invstd[ch];
    sums[ch] = s;
    sums[C + ch] = q;
    if (dgamma) {
        dbeta[ch] = (float)s;
        dgamma[ch] = (float)q;
    }
}

__global__ void bn_finalize_k(int C, const double *sums, double cnt, float *run_mean, float *run_var, float momentum,
                              float eps, float *save_mean, float *save_invstd)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    double mean = sums[ch] / cnt, var = sums[C + ch] / cnt - mean * mean;
    if (var < 0) var = 0;
    double invstd = 1.0 / sqrt(var + (double)eps), unbiased = cnt > 1 ? var * cnt / (cnt - 1) : var;
    if (run_mean) {
        double m = momentum;
        run_mean[ch] = (float)((1.0 - m) * run_mean[ch] + m * mean);
        run_var[ch] = (float)((1.0 - m) * run_var[ch] + m * unbiased);
    }
    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
}

/* coef for bn_apply_k from the given statistics. */
__global__ void bn_apply_coef_k(int C, const float *gamma, const float *mean, const float *invstd, float *coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    coef[ch * 2] = (float)((double)gamma[ch] * (double)invstd[ch]);
    coef[ch * 2 + 1] = mean[ch];
}

/* coef for bn_bwd_apply_k from the sums Σdy, Σdy·x̂ over cnt values (bn_bwd_final_k's arithmetic). */
__global__ void bn_bwd_coef_k(int C, double cnt, const double *sums, const float *gamma, const float *mean,
                              const float *invstd, float *coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    double inv = invstd[ch], k = (double)gamma[ch] * inv;
    double mdy = sums[ch] / cnt, proj = sums[C + ch] * inv / cnt;
    coef[ch * 4] = (float)k;
    coef[ch * 4 + 1] = (float)(-k * proj);
    coef[ch * 4 + 2] = (float)(-k * mdy);
    coef[ch * 4 + 3] = mean[ch];
}

cudaError_t k_bn_stats_partial(cudaStream_t st, int n, int c, int hw, const float *x, double *sums, void *scratch)
{
    bool vec = bn_vec_ok(hw, x, x, x);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P)) return cudaErrorInvalidValue;
    double *partial = (double *)scratch;
    dim3 grid(P, (unsigned)c);
    BN_LAUNCH(bn_stats_k, vec, grid, g, x, partial, 0);
    bn_sum_partials_k<<<(c + 127) / 128, 128, 0, st>>>(c, (int)P, partial, NULL, sums, NULL, NULL);
    return cudaGetLastError();
}

cudaError_t k_bn_stats_finalize(cudaStream_t st, int c, const double *sums, double count, float *run_mean, float *run_var,
                                float momentum, float eps, float *save_mean, float *save_invstd)
{
    if (c <= 0 || count <= 0) return cudaErrorInvalidValue;
    bn_finalize_k<<<(c + 127) / 128, 128, 0, st>>>(c, sums, count, run_mean, run_var, momentum, eps, save_mean, save_invstd);
    return cudaGetLastError();
}

cudaError_t k_bn_fwd_apply(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                           const float *mean, const float *invstd, float *y, void *scratch)
{
    bool vec = bn_vec_ok(hw, x, y, x);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P)) return cudaErrorInvalidValue;
    float *coef = (float *)((double *)scratch + (size_t)c * P * 2);
    dim3 grid(P, (unsigned)c);
    bn_apply_coef_k<<<(c + 127) / 128, 128, 0, st>>>(c, gamma, mean, invstd, coef);
    BN_LAUNCH(bn_apply_k, vec, grid, g, x, coef, beta, y);
    return cudaGetLastError();
}

cudaError_t k_bn_bwd_partial(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *mean,
                             const float *invstd, double *sums, float *dgamma, float *dbeta, void *scratch)
{
    bool vec = bn_vec_ok(hw, x, dy, x);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P)) return cudaErrorInvalidValue;
    double *partial = (double *)scratch;
    dim3 grid(P, (unsigned)c);
    BN_LAUNCH(bn_bwd_stats_k, vec, grid, g, x, dy, mean, partial);
    bn_sum_partials_k<<<(c + 127) / 128, 128, 0, st>>>(c, (int)P, partial, invstd, sums, dgamma, dbeta);
    return cudaGetLastError();
}

cudaError_t k_bn_bwd_apply(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                           const float *mean, const float *invstd, const double *sums, double count, float *dx,
                           void *scratch)
{
    bool vec = bn_vec_ok(hw, x, dy, dx);
    bn_geo g;
    unsigned P;
    if (!bn_plan(n, c, hw, vec, &g, &P) || count <= 0) return cudaErrorInvalidValue;
    float *coef = (float *)((double *)scratch + (size_t)c * P * 2);
    dim3 grid(P, (unsigned)c);
    bn_bwd_coef_k<<<(c + 127) / 128, 128, 0, st>>>(c, count, sums, gamma, mean, invstd, coef);
    BN_LAUNCH(bn_bwd_apply_k, vec, grid, g, x, dy, coef, dx);
    return cudaGetLastError();
}
