/* elementwise (CPU): add, axpy, scale. Mirrors kernels/cuda/elementwise.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */

#include "kernels/cpu/cpu_internal.h"

static void add_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++)
        J->out[i] = J->x[i] + J->y[i];
}
void cpu_add(be_ctx *b, size_t n, const float *a, const float *c, float *y)
{
    ew_job J = {.x = a, .y = c, .out = y};
    cpu_par_range((cpu_ctx *)b, n, add_r, &J);
}

static void axpy_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++)
        J->out[i] += J->alpha * J->x[i];
}
void cpu_axpy(be_ctx *b, size_t n, float alpha, const float *x, float *y)
{
    ew_job J = {.x = x, .out = y, .alpha = alpha};
    cpu_par_range((cpu_ctx *)b, n, axpy_r, &J);
}

static void scale_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++)
        J->out[i] *= J->alpha;
}
void cpu_scale(be_ctx *b, size_t n, float alpha, float *y)
{
    ew_job J = {.out = y, .alpha = alpha};
    cpu_par_range((cpu_ctx *)b, n, scale_r, &J);
}
