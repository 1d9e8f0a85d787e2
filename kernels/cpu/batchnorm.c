/* batchnorm (CPU): batch norm over (n, hw) for each of c channels, whole and in
 * parts (--sync-bn). Biased batch variance for normalising, unbiased for the
 * running variance, r = (1 - momentum) r + momentum stat; sums in double.
 * One channel per task. Mirrors kernels/cuda/batchnorm.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* ---------------------------------------------------------------- batch norm */

typedef struct bn_job {
    int n, c, hw;
    const float *x, *dy, *gamma, *beta;
    float *run_mean, *run_var, *save_mean, *save_invstd, *y, *dx, *dgamma, *dbeta;
    const float *rm, *rv;
    float momentum, eps;
    double *sums;        /* split ops (--sync-bn) */
    const double *gsums;
    double count;
} bn_job;


/* q = (p - m) * a + b */
static void affine(const float *p, float *q, size_t n, float m, float a, float b)
{
    for (size_t i = 0; i < n; i++)
        q[i] = (p[i] - m) * a + b;
}

static void bn_train_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double cnt = (double)J->n * hw, s = 0, ss = 0;
    double K = J->x[ch * hw]; /* shift: sums of (x - K) keep the variance exact enough in one pass */
    for (int n = 0; n < J->n; n++)
        cpu_sum_shift(J->x + n * cstride + ch * hw, hw, K, &s, &ss);
    double dm = s / cnt, mean = K + dm;
    double var = ss / cnt - dm * dm;
    if (var < 0)
        var = 0;
    double invstd = 1.0 / sqrt(var + J->eps);
    double unbiased = cnt > 1 ? var * cnt / (cnt - 1) : var;
    float fa = (float)(J->gamma[ch] * invstd), fb = J->beta[ch], fm = (float)mean;
    for (int n = 0; n < J->n; n++)
        affine(J->x + n * cstride + ch * hw, J->y + n * cstride + ch * hw, hw, fm, fa, fb);
    float m = J->momentum;
    J->run_mean[ch] = (float)((1.0 - m) * J->run_mean[ch] + m * mean);
    J->run_var[ch] = (float)((1.0 - m) * J->run_var[ch] + m * unbiased);
    J->save_mean[ch] = (float)mean;
    J->save_invstd[ch] = (float)invstd;
}

void cpu_bn_fwd_train(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
                             const float *beta, float *run_mean, float *run_var, float momentum, float eps,
                             float *y, float *save_mean, float *save_invstd)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .gamma = gamma, .beta = beta, .run_mean = run_mean,
                .run_var = run_var, .save_mean = save_mean, .save_invstd = save_invstd, .y = y,
                .momentum = momentum, .eps = eps};
    cpu_parallel(ctx, (size_t)c, bn_train_task, &J);
}

static void bn_eval_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double invstd = 1.0 / sqrt((double)J->rv[ch] + J->eps);
    float a = (float)(J->gamma[ch] * invstd), bb = (float)(J->beta[ch] - J->rm[ch] * J->gamma[ch] * invstd);
    for (int n = 0; n < J->n; n++)
        affine(J->x + n * cstride + ch * hw, J->y + n * cstride + ch * hw, hw, 0.0f, a, bb);
}

void cpu_bn_fwd_eval(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
                            const float *beta, const float *run_mean, const float *run_var, float eps, float *y)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .gamma = gamma, .beta = beta, .rm = run_mean, .rv = run_var,
                .y = y, .eps = eps};
    cpu_parallel(ctx, (size_t)c, bn_eval_task, &J);
}

static void bn_dx(const float *p, const float *g, float *d, size_t n, float a, float c1, float m, float c0)
{
    for (size_t i = 0; i < n; i++)
        d[i] = a * g[i] + c1 * (p[i] - m) + c0;
}

static void bn_bwd_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double mean = J->save_mean[ch], invstd = J->save_invstd[ch];
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < J->n; n++)
        cpu_sum_dy(J->x + n * cstride + ch * hw, J->dy + n * cstride + ch * hw, hw, mean, &sdy, &sdyx);
    double cnt = (double)J->n * hw;
    J->dbeta[ch] = (float)sdy;
    J->dgamma[ch] = (float)(sdyx * invstd);
    /* dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat))
     *    = k dy - k proj (x - mean) - k mdy */
    double k = J->gamma[ch] * invstd;
    double mdy = sdy / cnt, proj = sdyx * invstd * invstd / cnt;
    float a = (float)k, c1 = (float)(-k * proj), c0 = (float)(-k * mdy), fm = (float)mean;
    for (int n = 0; n < J->n; n++)
        bn_dx(J->x + n * cstride + ch * hw, J->dy + n * cstride + ch * hw, J->dx + n * cstride + ch * hw, hw, a, c1,
              fm, c0);
}

void cpu_bn_bwd(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                       const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .dy = dy, .gamma = gamma, .save_mean = (float *)save_mean,
                .save_invstd = (float *)save_invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta};
    cpu_parallel(ctx, (size_t)c, bn_bwd_task, &J);
}

/* Batch norm in parts (kernels/kernels.h, --sync-bn). The same arithmetic as the
 * fused ops, except that the statistics come from unshifted double sums. */
static void bn_partial_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double s = 0, ss = 0;
    for (int n = 0; n < J->n; n++)
        cpu_sum_shift(J->x + n * cstride + ch * hw, hw, 0.0, &s, &ss);
    J->sums[ch] = s;
    J->sums[(size_t)J->c + ch] = ss;
}

void cpu_bn_stats_partial(be_ctx *b, int n, int c, int hw, const float *x, double *sums)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .sums = sums};
    cpu_parallel(ctx, (size_t)c, bn_partial_task, &J);
}

void cpu_bn_stats_finalize(be_ctx *b, int c, const double *sums, double count, float *run_mean,
                                  float *run_var, float momentum, float eps, float *save_mean, float *save_invstd)
{
    if (((cpu_ctx *)b)->failed)
        return;
    for (int ch = 0; ch < c; ch++) {
        double mean = sums[ch] / count, var = sums[c + ch] / count - mean * mean;
        if (var < 0)
            var = 0;
        double invstd = 1.0 / sqrt(var + eps), unbiased = count > 1 ? var * count / (count - 1) : var;
        if (run_mean) {
            run_mean[ch] = (float)((1.0 - momentum) * run_mean[ch] + momentum * mean);
            run_var[ch] = (float)((1.0 - momentum) * run_var[ch] + momentum * unbiased);
        }
        save_mean[ch] = (float)mean;
        save_invstd[ch] = (float)invstd;
    }
}

static void bn_apply_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    float fa = (float)(J->gamma[ch] * (double)J->save_invstd[ch]), fb = J->beta[ch], fm = J->save_mean[ch];
    for (int n = 0; n < J->n; n++)
        affine(J->x + n * cstride + ch * hw, J->y + n * cstride + ch * hw, hw, fm, fa, fb);
}

void cpu_bn_fwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
                             const float *beta, const float *mean, const float *invstd, float *y)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .gamma = gamma, .beta = beta, .save_mean = (float *)mean,
                .save_invstd = (float *)invstd, .y = y};
    cpu_parallel(ctx, (size_t)c, bn_apply_task, &J);
}

static void bn_bwd_partial_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double mean = J->save_mean[ch], invstd = J->save_invstd[ch], sdy = 0, sdyx = 0;
    for (int n = 0; n < J->n; n++)
        cpu_sum_dy(J->x + n * cstride + ch * hw, J->dy + n * cstride + ch * hw, hw, mean, &sdy, &sdyx);
    J->sums[ch] = sdy;
    J->sums[(size_t)J->c + ch] = sdyx * invstd;
    J->dbeta[ch] = (float)sdy;
    J->dgamma[ch] = (float)(sdyx * invstd);
}

void cpu_bn_bwd_partial(be_ctx *b, int n, int c, int hw, const float *x, const float *dy,
                               const float *mean, const float *invstd, double *sums, float *dgamma, float *dbeta)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .dy = dy, .save_mean = (float *)mean,
                .save_invstd = (float *)invstd, .sums = sums, .dgamma = dgamma, .dbeta = dbeta};
    cpu_parallel(ctx, (size_t)c, bn_bwd_partial_task, &J);
}

static void bn_bwd_apply_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double mean = J->save_mean[ch], invstd = J->save_invstd[ch];
    double k = J->gamma[ch] * invstd;
    double mdy = J->gsums[ch] / J->count, proj = J->gsums[(size_t)J->c + ch] * invstd / J->count;
    float a = (float)k, c1 = (float)(-k * proj), c0 = (float)(-k * mdy), fm = (float)mean;
    for (int n = 0; n < J->n; n++)
        bn_dx(J->x + n * cstride + ch * hw, J->dy + n * cstride + ch * hw, J->dx + n * cstride + ch * hw, hw, a, c1,
              fm, c0);
}

void cpu_bn_bwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                             const float *mean, const float *invstd, const double *sums, double count, float *dx)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .dy = dy, .gamma = gamma, .save_mean = (float *)mean,
                .save_invstd = (float *)invstd, .gsums = sums, .count = count, .dx = dx};
    cpu_parallel(ctx, (size_t)c, bn_bwd_apply_task, &J);
}
