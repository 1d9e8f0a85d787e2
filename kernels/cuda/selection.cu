/* selection (CUDA): Kendall tau-b (one block per sample) and argmax (one warp
 * per row); mirrors kernels/cpu/selection.c. */
#include <math.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/reduce.cuh"

/* ---------------- Kendall tau-b: one block per sample ---------------- */

__global__ void cu_kendall_select_k(int B, int C, const float *a, const float *c, float omega, float *tau, float *keep)
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
static cudaError_t cu_kendall_select_launch(cudaStream_t st, int B, int C, const float *a, const float *c, float omega, float *tau,
                      float *keep)
{
    size_t shm = 2 * (size_t)C * sizeof(float);
    if (shm > 48 * 1024) return cudaErrorInvalidValue; /* > 6144 classes: not supported */
    if (B > 0) cu_kendall_select_k<<<B, NT, shm, st>>>(B, C, a, c, omega, tau, keep);
    return cudaGetLastError();
}

/* ---------------- argmax: one warp per row ---------------- */

__global__ void cu_argmax_k(int B, int C, const float *z, int32_t *pred)
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
static cudaError_t cu_argmax_launch(cudaStream_t st, int B, int C, const float *z, int32_t *pred)
{
    if (B > 0) cu_argmax_k<<<(unsigned)(((size_t)B * 32 + NT - 1) / NT), NT, 0, st>>>(B, C, z, pred);
    return cudaGetLastError();
}

/* ---------------- entries ---------------- */

void cu_kendall_select(be_ctx *b, int B, int C, const float *a, const float *x, float omega, float *tau, float *keep)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (2 * (size_t)C * sizeof(float) > 48 * 1024) {
        fail(c, "kendall_select: %d classes is more than the 6144 supported", C);
        return;
    }
    PROF(c, "kendall", "B%d C%d", B, C);
    cu_ok(c, cu_kendall_select_launch(c->stream, B, C, a, x, omega, tau, keep), "kendall tau-b");
}
void cu_argmax(be_ctx *b, int B, int C, const float *z, int32_t *pred)
{
    LAUNCH(CTX(b), cu_argmax_launch(CTX(b)->stream, B, C, z, pred), "argmax", "B%d C%d", B, C);
}
