/* elementwise (CUDA): add, axpy, scale; mirrors kernels/cpu/elementwise.c. */
#include "kernels/cuda/cuda_internal.h"

/* ---------------- element-wise and SGD ---------------- */

__global__ void cu_add_k(size_t n, const float *a, const float *c, float *y)
{
    GRID_STRIDE(i, n) y[i] = a[i] + c[i];
}
__global__ void cu_axpy_k(size_t n, float alpha, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ void cu_scale_k(size_t n, float alpha, float *y)
{
    GRID_STRIDE(i, n) y[i] *= alpha;
}
static cudaError_t cu_add_launch(cudaStream_t st, size_t n, const float *a, const float *c, float *y)
{
    if (n) cu_add_k<<<grid_for(n), NT, 0, st>>>(n, a, c, y);
    return cudaGetLastError();
}
static cudaError_t cu_axpy_launch(cudaStream_t st, size_t n, float alpha, const float *x, float *y)
{
    if (n) cu_axpy_k<<<grid_for(n), NT, 0, st>>>(n, alpha, x, y);
    return cudaGetLastError();
}
static cudaError_t cu_scale_launch(cudaStream_t st, size_t n, float alpha, float *y)
{
    if (n) cu_scale_k<<<grid_for(n), NT, 0, st>>>(n, alpha, y);
    return cudaGetLastError();
}
/* ---------------- entries ---------------- */

void cu_add(be_ctx *b, size_t n, const float *a, const float *x, float *y) { LAUNCH(CTX(b), cu_add_launch(CTX(b)->stream, n, a, x, y), "add", "%zu", n); }
void cu_axpy(be_ctx *b, size_t n, float alpha, const float *x, float *y)
{
    LAUNCH(CTX(b), cu_axpy_launch(CTX(b)->stream, n, alpha, x, y), "axpy", "%zu", n);
}
void cu_scale(be_ctx *b, size_t n, float alpha, float *y) { LAUNCH(CTX(b), cu_scale_launch(CTX(b)->stream, n, alpha, y), "scale", "%zu", n); }
