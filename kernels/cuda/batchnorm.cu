/* batchnorm (CUDA): batch norm, whole and in parts (--sync-bn). Default: the
 * project's kernels (deterministic, the CPU's arithmetic: kernels/cpu/batchnorm.c);
 * be_options.bn = BE_BN_CUDNN selects cuDNN's spatial batch norm for the whole ops. */
#include <math.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/reduce.cuh"

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

static size_t bn_scratch_bytes(int n, int c, int hw)
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

static cudaError_t cu_bn_fwd_train_launch(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
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

static cudaError_t cu_bn_fwd_eval_launch(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
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

static cudaError_t cu_bn_bwd_launch(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
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

/* ---------------- batch norm in parts (--sync-bn; kernels/kernels.h) ---------------- */

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

static cudaError_t cu_bn_stats_partial_launch(cudaStream_t st, int n, int c, int hw, const float *x, double *sums, void *scratch)
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

static cudaError_t cu_bn_stats_finalize_launch(cudaStream_t st, int c, const double *sums, double count, float *run_mean, float *run_var,
                                float momentum, float eps, float *save_mean, float *save_invstd)
{
    if (c <= 0 || count <= 0) return cudaErrorInvalidValue;
    bn_finalize_k<<<(c + 127) / 128, 128, 0, st>>>(c, sums, count, run_mean, run_var, momentum, eps, save_mean, save_invstd);
    return cudaGetLastError();
}

static cudaError_t cu_bn_fwd_apply_launch(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
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

static cudaError_t cu_bn_bwd_partial_launch(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *mean,
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

static cudaError_t cu_bn_bwd_apply_launch(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
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
/* ---------------- entries ---------------- */

/* ---------------- batch norm ----------------
 * Default: the project's kernels (above: per-channel
 * partial sums in double over chunks, a fixed-order finalize, an element-wise
 * pass; deterministic; the CPU backend's arithmetic). be_options.bn = BE_BN_CUDNN at
 * creation selects cuDNN's spatial batch norm instead. */

static void *bn_scratch(cu_ctx *c, int n, int ch, int hw)
{
    size_t need = bn_scratch_bytes(n, ch, hw);
    if (need == 0) return NULL;
    if (need > c->bn_scratch_cap) {
        dev_free(c, c->bn_scratch);
        c->bn_scratch = dev_alloc(c, need, "batch norm scratch");
        c->bn_scratch_cap = c->bn_scratch ? need : 0;
    }
    return c->bn_scratch;
}

static bool bn_desc(cu_ctx *c, int n, int ch, int hw)
{
    return dnn_ok(c, cudnnSetTensor4dDescriptor(c->bn_x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, ch, hw, 1), "bn shape") &&
           dnn_ok(c, cudnnDeriveBNTensorDescriptor(c->bn_p, c->bn_x, CUDNN_BATCHNORM_SPATIAL), "bn parameter shape");
}

void cu_bn_fwd_train(be_ctx *b, int n, int ch, int hw, const float *x, const float *gamma, const float *beta,
                     float *run_mean, float *run_var, float momentum, float eps, float *y, float *save_mean,
                     float *save_invstd)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (c->bn_own && bn_scratch_bytes(n, ch, hw)) {
        void *s = bn_scratch(c, n, ch, hw);
        if (!s) return;
        PROF(c, "bn_fwd_train", "n%d c%d hw%d", n, ch, hw);
        cu_ok(c, cu_bn_fwd_train_launch(c->stream, n, ch, hw, x, gamma, beta, run_mean, run_var, momentum, eps, y, save_mean, save_invstd, s),
              "batch norm (training)");
        return;
    }
    if (!bn_desc(c, n, ch, hw)) return;
    PROF(c, "bn_fwd_train", "n%d c%d hw%d", n, ch, hw);
    dnn_ok(c, cudnnBatchNormalizationForwardTraining(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, c->bn_x, x, c->bn_x, y,
                                                     c->bn_p, gamma, beta, (double)momentum, run_mean, run_var,
                                                     (double)eps, save_mean, save_invstd),
           "batch norm (training)");
}

void cu_bn_fwd_eval(be_ctx *b, int n, int ch, int hw, const float *x, const float *gamma, const float *beta,
                    const float *run_mean, const float *run_var, float eps, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (c->bn_own && bn_scratch_bytes(n, ch, hw)) {
        PROF(c, "bn_fwd_eval", "n%d c%d hw%d", n, ch, hw);
        cu_ok(c, cu_bn_fwd_eval_launch(c->stream, n, ch, hw, x, gamma, beta, run_mean, run_var, eps, y), "batch norm (evaluation)");
        return;
    }
    if (!bn_desc(c, n, ch, hw)) return;
    PROF(c, "bn_fwd_eval", "n%d c%d hw%d", n, ch, hw);
    dnn_ok(c, cudnnBatchNormalizationForwardInference(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, c->bn_x, x, c->bn_x,
                                                      y, c->bn_p, gamma, beta, run_mean, run_var, (double)eps),
           "batch norm (evaluation)");
}

void cu_bn_bwd(be_ctx *b, int n, int ch, int hw, const float *x, const float *dy, const float *gamma,
               const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (c->bn_own && bn_scratch_bytes(n, ch, hw)) {
        void *s = bn_scratch(c, n, ch, hw);
        if (!s) return;
        PROF(c, "bn_bwd", "n%d c%d hw%d", n, ch, hw);
        cu_ok(c, cu_bn_bwd_launch(c->stream, n, ch, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, s), "batch norm (backward)");
        return;
    }
    if (!bn_desc(c, n, ch, hw)) return;
    PROF(c, "bn_bwd", "n%d c%d hw%d", n, ch, hw);
    /* epsilon is unused when the saved statistics are given */
    dnn_ok(c, cudnnBatchNormalizationBackward(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, &ONE, &ZERO, c->bn_x, x,
                                              c->bn_x, dy, c->bn_x, dx, c->bn_p, gamma, dgamma, dbeta, 1e-5, save_mean,
                                              save_invstd),
           "batch norm (backward)");
}

/* Batch norm in parts (--sync-bn): always the project's kernels (cuDNN has no split ops). */
static void *bn_split_scratch(cu_ctx *c, int n, int ch, int hw)
{
    if (bn_scratch_bytes(n, ch, hw) == 0) {
        cu_ok(c, cudaErrorInvalidValue, "batch norm in parts: shape not supported");
        return NULL;
    }
    return bn_scratch(c, n, ch, hw);
}

void cu_bn_stats_partial(be_ctx *b, int n, int ch, int hw, const float *x, double *sums)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_stats_partial", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, cu_bn_stats_partial_launch(c->stream, n, ch, hw, x, sums, s), "batch norm (statistics)");
}

void cu_bn_stats_finalize(be_ctx *b, int ch, const double *sums, double count, float *run_mean, float *run_var,
                          float momentum, float eps, float *save_mean, float *save_invstd)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    PROF(c, "bn_stats_finalize", "c%d", ch);
    cu_ok(c, cu_bn_stats_finalize_launch(c->stream, ch, sums, count, run_mean, run_var, momentum, eps, save_mean, save_invstd),
          "batch norm (statistics)");
}

void cu_bn_fwd_apply(be_ctx *b, int n, int ch, int hw, const float *x, const float *gamma, const float *beta,
                     const float *mean, const float *invstd, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_fwd_apply", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, cu_bn_fwd_apply_launch(c->stream, n, ch, hw, x, gamma, beta, mean, invstd, y, s), "batch norm (apply)");
}

void cu_bn_bwd_partial(be_ctx *b, int n, int ch, int hw, const float *x, const float *dy, const float *mean,
                       const float *invstd, double *sums, float *dgamma, float *dbeta)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_bwd_partial", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, cu_bn_bwd_partial_launch(c->stream, n, ch, hw, x, dy, mean, invstd, sums, dgamma, dbeta, s),
          "batch norm (backward sums)");
}

void cu_bn_bwd_apply(be_ctx *b, int n, int ch, int hw, const float *x, const float *dy, const float *gamma,
                     const float *mean, const float *invstd, const double *sums, double count, float *dx)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_bwd_apply", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, cu_bn_bwd_apply_launch(c->stream, n, ch, hw, x, dy, gamma, mean, invstd, sums, count, dx, s),
          "batch norm (backward)");
}
