/* linear (CPU): y = x w^T + bias and its backward with OpenBLAS sgemm.
 * Mirrors kernels/cuda/linear.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* ---------------------------------------------------------------- linear */

void cpu_linear_fwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *bias,
                           float *y)
{
    if (((cpu_ctx *)b)->failed)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (bias)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++)
                y[(size_t)i * out + o] += bias[o];
}

void cpu_linear_bwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *dy,
                           float *dx, float *dw, float *dbias)
{
    if (((cpu_ctx *)b)->failed)
        return;
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
    if (dbias)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += dy[(size_t)i * out + o];
            dbias[o] = (float)s;
        }
}
