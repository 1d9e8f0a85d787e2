/* sgd (CPU): PyTorch SGD with momentum. Mirrors kernels/cuda/sgd.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */

#include "kernels/cpu/cpu_internal.h"

/* ---------------------------------------------------------------- optimiser */

typedef struct sgd_job {
    float *p, *m;
    const float *g;
    float lr, mom;
} sgd_job;

static void sgd_r(void *a, size_t lo, size_t hi)
{
    const sgd_job *J = a;
    for (size_t i = lo; i < hi; i++) {
        float m = J->mom * J->m[i] + J->g[i];
        J->m[i] = m;
        J->p[i] -= J->lr * m;
    }
}

void cpu_sgd(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    sgd_job J = {p, m, g, lr, momentum};
    cpu_par_range((cpu_ctx *)b, n, sgd_r, &J);
}
