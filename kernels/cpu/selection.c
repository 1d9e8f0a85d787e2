/* selection (CPU): Kendall tau-b of two rows (C2KD's on-the-fly selection)
 * and argmax. Mirrors kernels/cuda/selection.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <math.h>

#include "kernels/cpu/cpu_internal.h"

void cpu_kendall_select(be_ctx *b, int B, int C, const float *a, const float *c, float omega, float *tau,
                               float *keep)
{
    (void)b;
    for (int i = 0; i < B; i++) {
        const float *x = a + (size_t)i * C, *z = c + (size_t)i * C;
        long long S = 0, tx = 0, tz = 0;
        for (int p = 0; p < C; p++) {
            float xp = x[p], zp = z[p];
            for (int q = p + 1; q < C; q++) {
                int sx = (xp > x[q]) - (xp < x[q]);
                int sz = (zp > z[q]) - (zp < z[q]);
                tx += sx == 0;
                tz += sz == 0;
                S += sx * sz;
            }
        }
        long long n0 = (long long)C * (C - 1) / 2;
        double t;
        if (tx == n0 || tz == n0)
            t = NAN;
        else
            t = (double)S / sqrt((double)(n0 - tx) * (double)(n0 - tz));
        tau[i] = (float)t;
        keep[i] = t > omega ? 1.0f : 0.0f;
    }
}

void cpu_argmax(be_ctx *b, int B, int C, const float *z, int32_t *pred)
{
    (void)b;
    for (int i = 0; i < B; i++) {
        const float *r = z + (size_t)i * C;
        int best = 0;
        for (int k = 1; k < C; k++)
            if (r[k] > r[best])
                best = k;
        pred[i] = best;
    }
}
