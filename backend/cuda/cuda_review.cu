/* cuda_review: the project's kernels for ReviewKD's ops (backend/backend.h,
 * "ReviewKD"; the CPU backend's backend/cpu/cpu_review.c gives the same
 * results). Backward passes gather (one thread per input element), so they
 * are deterministic, without atomics. */
#include <math.h>

#include "backend/cuda/cuda_internal.h"

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

__global__ void resize_fwd_k(size_t total, int h, int w, int oh, int ow, const float *x, float *y)
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

__global__ void resize_bwd_k(size_t total, int h, int w, int oh, int ow, const float *dy, float *dx)
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

cudaError_t k_resize_fwd(cudaStream_t st, int nc, int h, int w, int oh, int ow, const float *x, float *y)
{
    size_t total = (size_t)nc * oh * ow;
    if (total) resize_fwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, oh, ow, x, y);
    return cudaGetLastError();
}

cudaError_t k_resize_bwd(cudaStream_t st, int nc, int h, int w, int oh, int ow, const float *dy, float *dx)
{
    size_t total = (size_t)nc * h * w;
    if (total) resize_bwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, oh, ow, dy, dx);
    return cudaGetLastError();
}

__device__ __forceinline__ void window(int i, int n, int k, int *lo, int *hi)
{
    *lo = (int)(((long long)i * n) / k);
    *hi = (int)(((long long)(i + 1) * n + k - 1) / k);
}

__global__ void adapool_fwd_k(size_t total, int h, int w, int k, const float *x, float *y)
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

__global__ void adapool_bwd_k(size_t total, int h, int w, int k, const float *dy, float *dx)
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

cudaError_t k_adapool_fwd(cudaStream_t st, int nc, int h, int w, int k, const float *x, float *y)
{
    size_t total = (size_t)nc * k * k;
    if (total) adapool_fwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, k, x, y);
    return cudaGetLastError();
}

cudaError_t k_adapool_bwd(cudaStream_t st, int nc, int h, int w, int k, const float *dy, float *dx)
{
    size_t total = (size_t)nc * h * w;
    if (total) adapool_bwd_k<<<grid_of(total), NT, 0, st>>>(total, h, w, k, dy, dx);
    return cudaGetLastError();
}

/* One thread per (sample, position): the two attention values, then the c channels. */
__global__ void att_fwd_k(size_t total, int c, int hw, const float *u, const float *v, const float *z,
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

__global__ void att_bwd_k(size_t total, int c, int hw, const float *u, const float *v, const float *a,
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
__global__ void att_dbias_k(int n, int hw, const float *dz, float *dbias)
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

cudaError_t k_att_fwd(cudaStream_t st, int n, int c, int hw, const float *u, const float *v, const float *z,
                      const float *bias, float *a, float *r)
{
    size_t total = (size_t)n * hw;
    if (total) att_fwd_k<<<grid_of(total), NT, 0, st>>>(total, c, hw, u, v, z, bias, a, r);
    return cudaGetLastError();
}

cudaError_t k_att_bwd(cudaStream_t st, int n, int c, int hw, const float *u, const float *v, const float *a,
                      const float *dr, float *du, float *dv, float *dz, float *dbias)
{
    size_t total = (size_t)n * hw;
    if (!total) return cudaSuccess;
    att_bwd_k<<<grid_of(total), NT, 0, st>>>(total, c, hw, u, v, a, dr, du, dv, dz);
    att_dbias_k<<<2, NT, 0, st>>>(n, hw, dz, dbias);
    return cudaGetLastError();
}

/* One block: the gradient element-wise, the sum of squares reduced in double
 * in a fixed order (deterministic), added to the double loss[0] by thread 0. */
__global__ void mse_k(size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
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

cudaError_t k_mse(cudaStream_t st, size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
{
    if (n) mse_k<<<1, 1024, 0, st>>>(n, x, t, weight, loss, dx);
    return cudaGetLastError();
}
