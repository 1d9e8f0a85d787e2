/* linear (CUDA): cuBLAS sgemm and the bias kernels; mirrors kernels/cpu/linear.c. */
#include "kernels/cuda/cuda_internal.h"

/* ---------------- linear helpers ---------------- */

__global__ void cu_linear_fwd_bias_k(size_t total, int cols, const float *bias, float *y)
{
    GRID_STRIDE(i, total) y[i] += bias[i % cols];
}
__global__ void cu_linear_bwd_bias_k(int rows, int cols, const float *dy, float *db)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.f;
    for (int r = 0; r < rows; r++) s += dy[(size_t)r * cols + j];
    db[j] = s;
}
static cudaError_t cu_linear_fwd_bias_launch(cudaStream_t st, int rows, int cols, const float *bias, float *y)
{
    size_t total = (size_t)rows * cols;
    if (total) cu_linear_fwd_bias_k<<<grid_for(total), NT, 0, st>>>(total, cols, bias, y);
    return cudaGetLastError();
}
static cudaError_t cu_linear_bwd_bias_launch(cudaStream_t st, int rows, int cols, const float *dy, float *db)
{
    if (cols > 0) cu_linear_bwd_bias_k<<<(cols + NT - 1) / NT, NT, 0, st>>>(rows, cols, dy, db);
    return cudaGetLastError();
}
/* ---------------- entries ---------------- */

/* Row-major A[r, c] is column-major A^T (c x r, leading dimension c), so
 * y[n,out] = x[n,in] w[out,in]^T is, column-major, y^T (out x n) = op_T(w: in x out) * x^T (in x n). */
void cu_linear_fwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *bias, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    PROF(c, "linear", "n%d in%d out%d", n, in, out);
    if (!blas_ok(c, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &ONE, w, in, x, in, &ZERO, y, out),
                 "linear forward"))
        return;
    if (bias) cu_ok(c, cu_linear_fwd_bias_launch(c->stream, n, out, bias, y), "linear bias");
}

void cu_linear_bwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *dy, float *dx,
                   float *dw, float *dbias)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    PROF(c, "linear backward", "n%d in%d out%d", n, in, out);
    if (dx && !blas_ok(c, cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &ONE, w, in, dy, out, &ZERO, dx, in),
                       "linear backward data"))
        return;
    if (dw && !blas_ok(c, cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &ONE, x, in, dy, out, &ZERO, dw, in),
                       "linear backward weight"))
        return;
    if (dbias) cu_ok(c, cu_linear_bwd_bias_launch(c->stream, n, out, dy, dbias), "linear backward bias");
}
