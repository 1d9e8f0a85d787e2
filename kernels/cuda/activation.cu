/* activation (CUDA): relu and leaky relu, forward and backward; the CPU's
 * kernels/cpu/activation.c gives the same results. Each op: its kernel
 * (cu_<op>_k), its launcher (cu_<op>_launch) and its table entry (cu_<op>). */
#include "kernels/cuda/cuda_internal.h"

/* ---------------- activations ---------------- */

__global__ void cu_relu_fwd_k(size_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n) { float v = x[i]; y[i] = v > 0.f ? v : 0.f; }
}
__global__ void cu_relu_bwd_k(size_t n, const float *y, const float *dy, float *dx)
{
    GRID_STRIDE(i, n) { dx[i] = y[i] > 0.f ? dy[i] : 0.f; }
}
__global__ void cu_leaky_fwd_k(size_t n, float slope, const float *x, float *y)
{
    GRID_STRIDE(i, n) { float v = x[i]; y[i] = v > 0.f ? v : v * slope; }
}
__global__ void cu_leaky_bwd_k(size_t n, float slope, const float *x, const float *dy, float *dx)
{
    GRID_STRIDE(i, n) { dx[i] = x[i] > 0.f ? dy[i] : dy[i] * slope; }
}

static cudaError_t cu_relu_fwd_launch(cudaStream_t st, size_t n, const float *x, float *y)
{
    if (n) cu_relu_fwd_k<<<grid_for(n), NT, 0, st>>>(n, x, y);
    return cudaGetLastError();
}
static cudaError_t cu_relu_bwd_launch(cudaStream_t st, size_t n, const float *y, const float *dy, float *dx)
{
    if (n) cu_relu_bwd_k<<<grid_for(n), NT, 0, st>>>(n, y, dy, dx);
    return cudaGetLastError();
}
static cudaError_t cu_leaky_fwd_launch(cudaStream_t st, size_t n, float slope, const float *x, float *y)
{
    if (n) cu_leaky_fwd_k<<<grid_for(n), NT, 0, st>>>(n, slope, x, y);
    return cudaGetLastError();
}
static cudaError_t cu_leaky_bwd_launch(cudaStream_t st, size_t n, float slope, const float *x, const float *dy, float *dx)
{
    if (n) cu_leaky_bwd_k<<<grid_for(n), NT, 0, st>>>(n, slope, x, dy, dx);
    return cudaGetLastError();
}
/* ---------------- entries ---------------- */

void cu_relu_fwd(be_ctx *b, size_t n, const float *x, float *y) { LAUNCH(CTX(b), cu_relu_fwd_launch(CTX(b)->stream, n, x, y), "relu", "%zu", n); }
void cu_relu_bwd(be_ctx *b, size_t n, const float *y, const float *dy, float *dx)
{
    LAUNCH(CTX(b), cu_relu_bwd_launch(CTX(b)->stream, n, y, dy, dx), "relu backward", "%zu", n);
}
void cu_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y)
{
    LAUNCH(CTX(b), cu_leaky_fwd_launch(CTX(b)->stream, n, slope, x, y), "leaky relu", "%zu", n);
}
void cu_leaky_bwd(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx)
{
    LAUNCH(CTX(b), cu_leaky_bwd_launch(CTX(b)->stream, n, slope, x, dy, dx), "leaky relu backward", "%zu", n);
}
