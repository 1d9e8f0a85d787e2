/* reduce (CPU): the double-precision sums the batch norm and the average
 * pooling share (mirrored by kernels/cuda/reduce.cuh, the CUDA kernels' block
 * reductions). */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include "kernels/cpu/cpu_internal.h"

/* Sums over n floats in 8 double lanes (vectorisable, same precision as one double accumulator). */
#define LANES 8
void cpu_sum_shift(const float *restrict p, size_t n, double K, double *s, double *ss)
{
    double a[LANES] = {0}, q[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            double d = (double)p[i + l] - K;
            a[l] += d;
            q[l] += d * d;
        }
    double S = 0, SS = 0;
    for (; i < n; i++) {
        double d = (double)p[i] - K;
        S += d;
        SS += d * d;
    }
    for (int l = 0; l < LANES; l++)
        S += a[l], SS += q[l];
    *s += S;
    *ss += SS;
}

/* sum dy and sum dy*(x - m) */
void cpu_sum_dy(const float *restrict x, const float *restrict g, size_t n, double m, double *sdy, double *sdyx)
{
    double a[LANES] = {0}, q[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            double gv = g[i + l];
            a[l] += gv;
            q[l] += gv * ((double)x[i + l] - m);
        }
    double S = 0, SS = 0;
    for (; i < n; i++) {
        S += g[i];
        SS += g[i] * ((double)x[i] - m);
    }
    for (int l = 0; l < LANES; l++)
        S += a[l], SS += q[l];
    *sdy += S;
    *sdyx += SS;
}
