/* review (CUDA): the project's kernels for ReviewKD's ops (kernels/kernels.h,
 * "ReviewKD": resize, adaptive pool, attention fusion, MSE; the CPU's
 * kernels/cpu/review.c gives the same results). Backward passes gather (one thread per input element), so they
 * are deterministic, without atomics. */
#include <math.h>

#include "kernels/cuda/cuda_internal.h"

#define NT 256

static inline unsigned grid_of(size_t n)
{
    size_t g = (n + NT - 1) / NT;
    if (g > 65535u * 8u) g = 65535u * 8u;
    if (g == 0) g = 1;
    return (unsigned)g;
}

#define GSTRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__device__ __forceinline__ void src_index(int dst, int in, int out, int *i0, int *i1, double *l1)
{
    double src = (dst + 0.5) * ((double)in / out) - 0.5;
    if (src < 0) src = 0;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = src - i;
}

/* Weight of source index s in output index d (0 when d does not read s). */
__device__ __forceinline__ double src_weight(int d, int s, int in, int out)
{
    int i0, i1;
    double l;
    src_index(d, in, out, &i0, &i1, &l);
    double w = 0;
    if (i0 == s) w += 1 - l;
    if (i1 == s) w += l;
    return w;
}

/* The outputs that may read source index s: a conservative range. */
__device__ __forceinline__ void readers(int s, int in, int out, int *lo, int *hi)
{
    double sc = (double)out / in;
    int a = (int)floor((s - 1 + 0.5) * sc - 0.5) - 1, b = (int)ceil((s + 1 + 0.5) * sc - 0.5) + 1;
    *lo = a < 0 ? 0 : a;
    *hi = b > out - 1 ? out - 1 : b;
}

__global__ void cu_resize_fwd_k(size_t total, int h, int w, int oh, int ow, const float *x, float *y)
{
    GSTRIDE(i, total) {
        int j = (int)(i % ow), r = (int)((i / ow) % oh);
        size_t p = i / ((size_t)oh * ow);
        const float *xp = x + p * h * w;
        int r0, r1, c0, c1;
        double ly, lx;
        src_index(r, h, oh, &r0, &r1, &ly);
        src_index(j, w, ow, &c0, &c1, &lx);
        double top = (1 - lx) * xp[r0 * w + c0] + lx * xp[r0 * w + c1];
        double bot = (1 - lx) * xp[r1 * w + c0] + lx * xp[r1 * w + c1];
        y[i] = (float)((1 - ly) * top + ly * bot);
    }
}

__global__ void cu_resize_bwd_k(size_t total, int h, int w, int oh, int ow, const float *dy, float *dx)
{
    GSTRIDE(i, total) {
        int c = (int)(i % w), r = (int)((i / w) % h);
        size_t p = i / ((size_t)h * w);
        const float *g = dy + p * oh * ow;
        int ylo, yhi, xlo, xhi;
        readers(r, h, oh, &ylo, &yhi);
        readers(c, w, ow, &xlo, &xhi);
        double s = 0;
        for (int a = ylo; a <= yhi; a++) {
            double wy = src_weight(a, r, h, oh);
            if (wy == 0) continue;
            for (int b = xlo; b <= xhi; b++) {
                double wx = src_weight(b, c, w, ow);
                if (wx != 0) s += wy * wx * g[a * ow + b];
            }
        }
        dx[i] = (float)s;
    }
}

static cudaError_t cu_resize_fwd_launch(cudaStream_t st, int nc, int h, int w, int oh, int ow, const float *x, float *y)
{
    size_t total = (size_t)nc * oh * ow;
    if (total) cu_resize_fwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, oh, ow, x, y);
    return cudaGetLastError();
}

static cudaError_t cu_resize_bwd_launch(cudaStream_t st, int nc, int h, int w, int oh, int ow, const float *dy, float *dx)
{
    size_t total = (size_t)nc * h * w;
    if (total) cu_resize_bwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, oh, ow, dy, dx);
    return cudaGetLastError();
}

__device__ __forceinline__ void window(int i, int n, int k, int *lo, int *hi)
{
    *lo = (int)(((long long)i * n) / k);
    *hi = (int)(((long long)(i + 1) * n + k - 1) / k);
}

__global__ void cu_adapool_fwd_k(size_t total, int h, int w, int k, const float *x, float *y)
{
    GSTRIDE(i, total) {
        int j = (int)(i % k), r = (int)((i / k) % k);
        size_t p = i / ((size_t)k * k);
        const float *xp = x + p * h * w;
        int r0, r1, c0, c1;
        window(r, h, k, &r0, &r1);
        window(j, w, k, &c0, &c1);
        double s = 0;
        for (int a = r0; a < r1; a++)
            for (int b = c0; b < c1; b++) s += xp[a * w + b];
        y[i] = (float)(s / ((double)(r1 - r0) * (c1 - c0)));
    }
}

__global__ void cu_adapool_bwd_k(size_t total, int h, int w, int k, const float *dy, float *dx)
{
    GSTRIDE(i, total) {
        int c = (int)(i % w), r = (int)((i / w) % h);
        size_t p = i / ((size_t)h * w);
        const float *g = dy + p * k * k;
        float s = 0;
        for (int a = 0; a < k; a++) {
            int r0, r1;
            window(a, h, k, &r0, &r1);
            if (r < r0 || r >= r1) continue;
            for (int b = 0; b < k; b++) {
                int c0, c1;
                window(b, w, k, &c0, &c1);
                if (c >= c0 && c < c1) s += (float)(g[a * k + b] / ((double)(r1 - r0) * (c1 - c0)));
            }
        }
        dx[i] = s;
    }
}

static cudaError_t cu_adapool_fwd_launch(cudaStream_t st, int nc, int h, int w, int k, const float *x, float *y)
{
    size_t total = (size_t)nc * k * k;
    if (total) cu_adapool_fwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, k, x, y);
    return cudaGetLastError();
}

static cudaError_t cu_adapool_bwd_launch(cudaStream_t st, int nc, int h, int w, int k, const float *dy, float *dx)
{
    size_t total = (size_t)nc * h * w;
    if (total) cu_adapool_bwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, k, dy, dx);
    return cudaGetLastError();
}

/* One thread per (sample, position): the two attention values, then the c channels. */
__global__ void cu_att_fwd_k(size_t total, int c, int hw, const float *u, const float *v, const float *z,
                          const float *bias, float *a, float *r)
{
    GSTRIDE(i, total) {
        size_t s = i / hw, p = i % hw, base = s * (size_t)c * hw + p;
        float a0 = (float)(1.0 / (1.0 + exp(-((double)z[s * 2 * hw + p] + bias[0]))));
        float a1 = (float)(1.0 / (1.0 + exp(-((double)z[s * 2 * hw + hw + p] + bias[1]))));
        a[s * 2 * hw + p] = a0;
        a[s * 2 * hw + hw + p] = a1;
        for (int ch = 0; ch < c; ch++) {
            size_t q = base + (size_t)ch * hw;
            r[q] = u[q] * a0 + v[q] * a1;
        }
    }
}

__global__ void cu_att_bwd_k(size_t total, int c, int hw, const float *u, const float *v, const float *a,
                          const float *dr, float *du, float *dv, float *dz)
{
    GSTRIDE(i, total) {
        size_t s = i / hw, p = i % hw, base = s * (size_t)c * hw + p;
        float a0 = a[s * 2 * hw + p], a1 = a[s * 2 * hw + hw + p];
        double g0 = 0, g1 = 0;
        for (int ch = 0; ch < c; ch++) {
            size_t q = base + (size_t)ch * hw;
            g0 += (double)dr[q] * u[q];
            g1 += (double)dr[q] * v[q];
            du[q] = dr[q] * a0;
            dv[q] = dr[q] * a1;
        }
        dz[s * 2 * hw + p] = (float)(g0 * a0 * (1.0 - a0));
        dz[s * 2 * hw + hw + p] = (float)(g1 * a1 * (1.0 - a1));
    }
}

/* dbias[j] = sum over samples and positions of dz[:, j, :]; one block per j. */
__global__ void cu_att_bwd_dbias_k(int n, int hw, const float *dz, float *dbias)
{
    __shared__ double sh[NT];
    int j = blockIdx.x;
    double s = 0;
    for (size_t i = threadIdx.x; i < (size_t)n * hw; i += blockDim.x)
        s += dz[(i / hw) * 2 * hw + (size_t)j * hw + i % hw];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) dbias[j] = (float)sh[0];
}

static cudaError_t cu_att_fwd_launch(cudaStream_t st, int n, int c, int hw, const float *u, const float *v, const float *z,
                      const float *bias, float *a, float *r)
{
    size_t total = (size_t)n * hw;
    if (total) cu_att_fwd_k<<<grid_of(total), NT, 0, st>>>(total, c, hw, u, v, z, bias, a, r);
    return cudaGetLastError();
}

static cudaError_t cu_att_bwd_launch(cudaStream_t st, int n, int c, int hw, const float *u, const float *v, const float *a,
                      const float *dr, float *du, float *dv, float *dz, float *dbias)
{
    size_t total = (size_t)n * hw;
    if (!total) return cudaSuccess;
    cu_att_bwd_k<<<grid_of(total), NT, 0, st>>>(total, c, hw, u, v, a, dr, du, dv, dz);
    cu_att_bwd_dbias_k<<<2, NT, 0, st>>>(n, hw, dz, dbias);
    return cudaGetLastError();
}

/* One block: the gradient element-wise, the sum of squares reduced in double
 * in a fixed order (deterministic), added to the double loss[0] by thread 0. */
__global__ void cu_mse_k(size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
{
    __shared__ double sh[1024];
    double g = 2.0 * weight / (double)n, s = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        double d = (double)x[i] - t[i];
        s += d * d;
        dx[i] += (float)(g * d);
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] += weight * sh[0] / (double)n;
}

static cudaError_t cu_mse_launch(cudaStream_t st, size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
{
    if (n) cu_mse_k<<<1, 1024, 0, st>>>(n, x, t, weight, loss, dx);
    return cudaGetLastError();
}

/* ---------------- entries ---------------- */

void cu_resize_fwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y)
{
    LAUNCH(CTX(b), cu_resize_fwd_launch(CTX(b)->stream, nc, h, w, oh, ow, x, y), "resize", "nc%d %dx%d->%dx%d", nc, h, w, oh, ow);
}
void cu_resize_bwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx)
{
    LAUNCH(CTX(b), cu_resize_bwd_launch(CTX(b)->stream, nc, h, w, oh, ow, dy, dx), "resize backward", "nc%d %dx%d->%dx%d", nc, h,
           w, oh, ow);
}
void cu_adapool_fwd(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y)
{
    LAUNCH(CTX(b), cu_adapool_fwd_launch(CTX(b)->stream, nc, h, w, k, x, y), "adaptive pool", "nc%d %dx%d->%d", nc, h, w, k);
}
void cu_adapool_bwd(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx)
{
    LAUNCH(CTX(b), cu_adapool_bwd_launch(CTX(b)->stream, nc, h, w, k, dy, dx), "adaptive pool backward", "nc%d %dx%d->%d", nc, h,
           w, k);
}
void cu_att_fwd(be_ctx *b, int n, int ch, int hw, const float *u, const float *v, const float *z, const float *bias,
                float *a, float *r)
{
    LAUNCH(CTX(b), cu_att_fwd_launch(CTX(b)->stream, n, ch, hw, u, v, z, bias, a, r), "attention fusion", "n%d c%d hw%d", n, ch, hw);
}
void cu_att_bwd(be_ctx *b, int n, int ch, int hw, const float *u, const float *v, const float *a, const float *dr,
                float *du, float *dv, float *dz, float *dbias)
{
    LAUNCH(CTX(b), cu_att_bwd_launch(CTX(b)->stream, n, ch, hw, u, v, a, dr, du, dv, dz, dbias), "attention fusion backward",
           "n%d c%d hw%d", n, ch, hw);
}
void cu_mse(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
{
    LAUNCH(CTX(b), cu_mse_launch(CTX(b)->stream, n, x, t, weight, loss, dx), "loss mse", "%zu", n);
}
