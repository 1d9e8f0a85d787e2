/* cpu_backend: the backend table (backend/backend.h) on the CPU.
 *
 * Memory is plain host memory (64-byte aligned). Convolutions are in
 * cpu_conv.c (im2col + OpenBLAS sgemm); everything else is here. Reductions
 * (batch-norm statistics, softmax, losses, Kendall's tau) accumulate in
 * double. Loops over large tensors run on the context's threads; OpenBLAS
 * runs single-threaded inside them (be_cpu_create sets it to one thread).
 *
 * PyTorch semantics matched (and tested in tests/oracle/test_backend_ops.py):
 * - relu keeps NaN (clamp_min), its gradient is zero where y <= 0;
 *   leaky: x > 0 ? x : slope*x, gradient x > 0 ? dy : slope*dy.
 * - max-pool: padding is -inf; the window is scanned row by row and a value
 *   replaces the current maximum only when strictly greater (or NaN), so on
 *   ties the first position wins and receives the whole gradient, as in
 *   PyTorch's CPU kernel (the backward recomputes that position from x).
 * - batch norm: biased batch variance for normalising, unbiased for the
 *   running variance, r = (1 - momentum) r + momentum stat.
 * - kl() returns KL at temperature temp WITHOUT the temp^2 factor (put it in
 *   weight); nkd() follows the NKD authors' code: the target term uses the
 *   temperature-1 softmaxes, the non-target term has gamma*temp^2 built in.
 */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_pool.h"
#include "backend/cpu/cpu_internal.h"

/* Declared by OpenBLAS's cblas.h; repeated here in case another cblas.h is found first. */
void openblas_set_num_threads(int num_threads);

#define PAR_MIN 32768 /* element-wise loops shorter than this stay on the calling thread */
#define CHUNK 65536

/* ---------------------------------------------------------------- context */

void cpu_fail(cpu_ctx *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    va_end(ap);
}

float *cpu_workspace(cpu_ctx *c, size_t floats)
{
    if (c->failed)
        return NULL;
    if (floats <= c->ws_cap)
        return c->ws;
    free(c->ws);
    c->ws = NULL;
    c->ws_cap = 0;
    size_t cap = floats + floats / 8; /* some slack against growing by small steps */
    void *p = NULL;
    if (posix_memalign(&p, 64, cap * sizeof(float)) != 0) {
        cpu_fail(c, "out of memory (workspace of %zu MB)", cap * sizeof(float) >> 20);
        return NULL;
    }
    c->ws = p;
    c->ws_cap = cap;
    return c->ws;
}

/* ---------------------------------------------------------------- thread pool
 * threads - 1 persistent workers sleep on a condition variable; a job is
 * published under the mutex with a new generation number, the caller runs
 * items too, then waits until every worker has left the job. Items are
 * handed out by an atomic counter. */
struct cpu_pool {
    int nth; /* worker threads (the caller is worker 0) */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;
    int active, quit;
    atomic_int busy; /* 1 while a job runs: nested or concurrent calls run inline */
    size_t n;
    atomic_size_t next;
    void (*fn)(void *, size_t, int);
    void *arg;
};

typedef struct pool_arg {
    cpu_pool *p;
    int id;
} pool_arg;

static void pool_run_items(cpu_pool *p, int id)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n)
            break;
        p->fn(p->arg, i, id);
    }
}

static void *pool_worker(void *arg)
{
    pool_arg *a = arg;
    cpu_pool *p = a->p;
    int id = a->id;
    free(a);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        pool_run_items(p, id);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_destroy(cpu_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nth; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

/* NULL when threads could not be started (the context then runs on one thread). */
static cpu_pool *pool_create(int workers)
{
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->th = calloc((size_t)workers, sizeof *p->th);
    if (!p->th) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->busy, 0);
    for (int i = 0; i < workers; i++) {
        pool_arg *a = malloc(sizeof *a);
        if (a)
            *a = (pool_arg){p, i + 1};
        if (!a || pthread_create(&p->th[i], NULL, pool_worker, a) != 0) {
            free(a);
            pool_destroy(p);
            return NULL;
        }
        p->nth = i + 1;
    }
    return p;
}

void cpu_parallel(cpu_ctx *c, size_t n, void (*fn)(void *ctx, size_t i, int worker), void *arg)
{
    cpu_pool *p = c->pool;
    if (n == 0)
        return;
    if (!p || n == 1 || atomic_exchange(&p->busy, 1)) { /* one thread, one item, or nested */
        for (size_t i = 0; i < n; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store(&p->next, 0);
    p->active = p->nth;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    pool_run_items(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_store(&p->busy, 0);
}

/* Runs fn over [0, n) in chunks, on threads when n is large. */
typedef void (*range_fn)(void *arg, size_t lo, size_t hi);
typedef struct range_job {
    range_fn fn;
    void *arg;
    size_t n;
} range_job;

static void range_task(void *arg, size_t i, int worker)
{
    (void)worker;
    range_job *R = arg;
    size_t lo = i * CHUNK, hi = lo + CHUNK < R->n ? lo + CHUNK : R->n;
    R->fn(R->arg, lo, hi);
}

static void par_range(cpu_ctx *c, size_t n, range_fn fn, void *arg)
{
    if (n < PAR_MIN || c->threads <= 1) {
        fn(arg, 0, n);
        return;
    }
    range_job R = {fn, arg, n};
    cpu_parallel(c, (n + CHUNK - 1) / CHUNK, range_task, &R);
}

static void cpu_destroy(be_ctx *b)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (!c)
        return;
    pool_destroy(c->pool);
    free(c->ws);
    free(c);
}

static int cpu_status(be_ctx *b, cm_err *err)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (!c->failed)
        return 0;
    return cm_err_set(err, "%s", c->err.msg);
}

static void cpu_sync(be_ctx *b)
{
    (void)b;
}

/* ---------------------------------------------------------------- memory */

static void *cpu_alloc(be_ctx *b, size_t bytes)
{
    cpu_ctx *c = (cpu_ctx *)b;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) {
        cpu_fail(c, "out of memory (%zu bytes)", bytes);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

static void cpu_free(be_ctx *b, void *p)
{
    (void)b;
    free(p);
}

static void cpu_memcpy(be_ctx *b, void *dst, const void *src, size_t bytes)
{
    (void)b;
    if (bytes)
        memmove(dst, src, bytes);
}

static void cpu_zero(be_ctx *b, void *p, size_t bytes)
{
    (void)b;
    if (bytes)
        memset(p, 0, bytes);
}

static void *cpu_host_alloc(be_ctx *b, size_t bytes)
{
    return cpu_alloc(b, bytes);
}

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

/* Sums over n floats in 8 double lanes (vectorisable, same precision as one double accumulator). */
#define LANES 8
static void sum_shift(const float *restrict p, size_t n, double K, double *s, double *ss)
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
static void sum_dy(const float *restrict x, const float *restrict g, size_t n, double m, double *sdy, double *sdyx)
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
        sum_shift(J->x + n * cstride + ch * hw, hw, K, &s, &ss);
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

static void cpu_bn_fwd_train(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
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

static void cpu_bn_fwd_eval(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
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
        sum_dy(J->x + n * cstride + ch * hw, J->dy + n * cstride + ch * hw, hw, mean, &sdy, &sdyx);
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

static void cpu_bn_bwd(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                       const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .dy = dy, .gamma = gamma, .save_mean = (float *)save_mean,
                .save_invstd = (float *)save_invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta};
    cpu_parallel(ctx, (size_t)c, bn_bwd_task, &J);
}

/* Batch norm in parts (backend.h, --sync-bn). The same arithmetic as the
 * fused ops, except that the statistics come from unshifted double sums. */
static void bn_partial_task(void *arg, size_t ch, int worker)
{
    (void)worker;
    const bn_job *J = arg;
    size_t hw = (size_t)J->hw, cstride = (size_t)J->c * hw;
    double s = 0, ss = 0;
    for (int n = 0; n < J->n; n++)
        sum_shift(J->x + n * cstride + ch * hw, hw, 0.0, &s, &ss);
    J->sums[ch] = s;
    J->sums[(size_t)J->c + ch] = ss;
}

static void cpu_bn_stats_partial(be_ctx *b, int n, int c, int hw, const float *x, double *sums)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .sums = sums};
    cpu_parallel(ctx, (size_t)c, bn_partial_task, &J);
}

static void cpu_bn_stats_finalize(be_ctx *b, int c, const double *sums, double count, float *run_mean,
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

static void cpu_bn_fwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
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
        sum_dy(J->x + n * cstride + ch * hw, J->dy + n * cstride + ch * hw, hw, mean, &sdy, &sdyx);
    J->sums[ch] = sdy;
    J->sums[(size_t)J->c + ch] = sdyx * invstd;
    J->dbeta[ch] = (float)sdy;
    J->dgamma[ch] = (float)(sdyx * invstd);
}

static void cpu_bn_bwd_partial(be_ctx *b, int n, int c, int hw, const float *x, const float *dy,
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

static void cpu_bn_bwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                             const float *mean, const float *invstd, const double *sums, double count, float *dx)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    if (ctx->failed)
        return;
    bn_job J = {.n = n, .c = c, .hw = hw, .x = x, .dy = dy, .gamma = gamma, .save_mean = (float *)mean,
                .save_invstd = (float *)invstd, .gsums = sums, .count = count, .dx = dx};
    cpu_parallel(ctx, (size_t)c, bn_bwd_apply_task, &J);
}

/* ---------------------------------------------------------------- element-wise */

typedef struct ew_job {
    const float *x, *y, *dy;
    float *out;
    float alpha;
} ew_job;

static void relu_fwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++) {
        float v = J->x[i];
        J->out[i] = v < 0.0f ? 0.0f : v; /* NaN stays NaN, like torch.relu */
    }
}
static void cpu_relu_fwd(be_ctx *b, size_t n, const float *x, float *y)
{
    ew_job J = {.x = x, .out = y};
    par_range((cpu_ctx *)b, n, relu_fwd_r, &J);
}

static void relu_bwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    const float *y = J->y, *dy = J->dy;
    float *out = J->out;
    for (size_t i = lo; i < hi; i++) {
        float g = dy[i]; /* loaded unconditionally: the loop becomes a blend */
        out[i] = y[i] <= 0.0f ? 0.0f : g;
    }
}
static void cpu_relu_bwd(be_ctx *b, size_t n, const float *y, const float *dy, float *dx)
{
    ew_job J = {.y = y, .dy = dy, .out = dx};
    par_range((cpu_ctx *)b, n, relu_bwd_r, &J);
}

static void leaky_fwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++) {
        float v = J->x[i];
        J->out[i] = v > 0.0f ? v : v * J->alpha;
    }
}
static void cpu_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y)
{
    ew_job J = {.x = x, .out = y, .alpha = slope};
    par_range((cpu_ctx *)b, n, leaky_fwd_r, &J);
}

static void leaky_bwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    const float *x = J->x, *dy = J->dy;
    float *out = J->out, al = J->alpha;
    for (size_t i = lo; i < hi; i++) {
        float g = dy[i];
        out[i] = x[i] > 0.0f ? g : g * al;
    }
}
static void cpu_leaky_bwd(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx)
{
    ew_job J = {.x = x, .dy = dy, .out = dx, .alpha = slope};
    par_range((cpu_ctx *)b, n, leaky_bwd_r, &J);
}

static void add_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++)
        J->out[i] = J->x[i] + J->y[i];
}
static void cpu_add(be_ctx *b, size_t n, const float *a, const float *c, float *y)
{
    ew_job J = {.x = a, .y = c, .out = y};
    par_range((cpu_ctx *)b, n, add_r, &J);
}

static void axpy_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++)
        J->out[i] += J->alpha * J->x[i];
}
static void cpu_axpy(be_ctx *b, size_t n, float alpha, const float *x, float *y)
{
    ew_job J = {.x = x, .out = y, .alpha = alpha};
    par_range((cpu_ctx *)b, n, axpy_r, &J);
}

static void scale_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++)
        J->out[i] *= J->alpha;
}
static void cpu_scale(be_ctx *b, size_t n, float alpha, float *y)
{
    ew_job J = {.out = y, .alpha = alpha};
    par_range((cpu_ctx *)b, n, scale_r, &J);
}

/* ---------------------------------------------------------------- pooling */

typedef struct pool_job {
    const be_pool_shape *s;
    int oh, ow;
    const float *x, *dy;
    float *y, *dx;
} pool_job;

/* m kept unless v is greater or NaN: NaN is sticky, otherwise the maximum. */
static inline float pmax(float m, float v)
{
    return (v > m || v != v) ? v : m;
}

/* Forward: the window's value is NaN if it holds a NaN, else its maximum, whatever
 * the scan order; so rows are reduced horizontally (vectorisable in the interior)
 * and then combined vertically. */
static void maxpool_fwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const pool_job *J = arg;
    const be_pool_shape *s = J->s;
    const float *plane = J->x + p * s->h * s->w;
    float *out = J->y + p * J->oh * J->ow;
    int ow = J->ow, st = s->stride, kw = s->kw;
    /* interior columns: the whole window inside the row */
    int a = (s->pad + st - 1) / st, e = s->w - kw + s->pad >= 0 ? (s->w - kw + s->pad) / st + 1 : 0;
    if (a > ow)
        a = ow;
    if (e > ow)
        e = ow;
    if (e < a)
        e = a;
    float hm[ow > 0 ? ow : 1];
    for (int oy = 0; oy < J->oh; oy++) {
        float *o = out + (size_t)oy * ow;
        for (int ox = 0; ox < ow; ox++)
            o[ox] = -INFINITY;
        for (int ky = 0; ky < s->kh; ky++) {
            int iy = oy * st - s->pad + ky;
            if (iy < 0 || iy >= s->h)
                continue;
            const float *r = plane + (size_t)iy * s->w;
            for (int ox = 0; ox < ow; ox++) {
                if (ox == a && e > a) { /* interior */
                    const float *rb = r + (ptrdiff_t)a * st - s->pad;
                    for (int q = 0; q < e - a; q++) {
                        float m = rb[q * st];
                        for (int kx = 1; kx < kw; kx++)
                            m = pmax(m, rb[q * st + kx]);
                        hm[a + q] = m;
                    }
                    ox = e - 1;
                    continue;
                }
                int x0 = ox * st - s->pad, x1 = x0 + kw < s->w ? x0 + kw : s->w;
                if (x0 < 0)
                    x0 = 0;
                float m = -INFINITY;
                for (int ix = x0; ix < x1; ix++)
                    m = pmax(m, r[ix]);
                hm[ox] = m;
            }
            for (int ox = 0; ox < ow; ox++)
                o[ox] = pmax(o[ox], hm[ox]);
        }
    }
}

/* Backward: the gradient goes to the position PyTorch's scan picks: the first
 * position (row by row) equal to the maximum y, or the last NaN when y is NaN. */
static void maxpool_bwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const pool_job *J = arg;
    const be_pool_shape *s = J->s;
    const float *plane = J->x + p * s->h * s->w;
    const float *yp = J->y + p * J->oh * J->ow;
    const float *g = J->dy + p * J->oh * J->ow;
    float *d = J->dx + p * s->h * s->w;
    memset(d, 0, sizeof(float) * s->h * s->w);
    for (int oy = 0; oy < J->oh; oy++) {
        int y0 = oy * s->stride - s->pad, y1 = y0 + s->kh < s->h ? y0 + s->kh : s->h;
        if (y0 < 0)
            y0 = 0;
        for (int ox = 0; ox < J->ow; ox++) {
            int x0 = ox * s->stride - s->pad, x1 = x0 + s->kw < s->w ? x0 + s->kw : s->w;
            if (x0 < 0)
                x0 = 0;
            float m = yp[oy * J->ow + ox];
            size_t idx = (size_t)y0 * s->w + x0;
            if (m != m) {
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (plane[(size_t)iy * s->w + ix] != plane[(size_t)iy * s->w + ix])
                            idx = (size_t)iy * s->w + ix;
            } else {
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (plane[(size_t)iy * s->w + ix] == m) {
                            idx = (size_t)iy * s->w + ix;
                            goto found;
                        }
            }
        found:
            d[idx] += g[oy * J->ow + ox];
        }
    }
}

static void pool_dims(const be_pool_shape *s, int *oh, int *ow)
{
    *oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
    *ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
}

static void cpu_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    pool_job J = {.s = s, .x = x, .y = y};
    pool_dims(s, &J.oh, &J.ow);
    cpu_parallel(c, (size_t)s->n * s->c, maxpool_fwd_task, &J);
}

static void cpu_maxpool_bwd(be_ctx *b, const be_pool_shape *s, const float *x, const float *y, const float *dy,
                            float *dx)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    pool_job J = {.s = s, .x = x, .y = (float *)y, .dy = dy, .dx = dx};
    pool_dims(s, &J.oh, &J.ow);
    cpu_parallel(c, (size_t)s->n * s->c, maxpool_bwd_task, &J);
}

typedef struct avg_job {
    int hw;
    const float *x, *dy;
    float *y, *dx;
    void (*planes)(const struct avg_job *J, size_t p0, size_t p1); /* the pass over planes [p0, p1) */
} avg_job;

static void avg_fwd_planes(const avg_job *J, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) {
        double s = 0, ss = 0;
        sum_shift(J->x + p * J->hw, (size_t)J->hw, 0.0, &s, &ss);
        J->y[p] = (float)(s / J->hw);
    }
}

static void avg_bwd_planes(const avg_job *J, size_t p0, size_t p1)
{
    for (size_t p = p0; p < p1; p++) {
        float v = J->dy[p] / (float)J->hw;
        float *q = J->dx + p * J->hw;
        for (int i = 0; i < J->hw; i++)
            q[i] = v;
    }
}

#define AVG_PLANES 64 /* planes per task */
static void avg_task(void *arg, size_t t, int worker)
{
    (void)worker;
    const avg_job *J = arg;
    J->planes(J, t * AVG_PLANES, (t + 1) * AVG_PLANES);
}

/* The n*c planes: whole tasks of AVG_PLANES on the threads, the rest here. */
static void avg_run(be_ctx *b, int n, int c, avg_job *J)
{
    cpu_ctx *ctx = (cpu_ctx *)b;
    size_t np = (size_t)n * c;
    if (ctx->failed || np == 0)
        return;
    size_t full = np / AVG_PLANES;
    cpu_parallel(ctx, full, avg_task, J);
    J->planes(J, full * AVG_PLANES, np);
}

static void cpu_avgpool_fwd(be_ctx *b, int n, int c, int hw, const float *x, float *y)
{
    avg_job J = {.hw = hw, .x = x, .y = y, .planes = avg_fwd_planes};
    avg_run(b, n, c, &J);
}

static void cpu_avgpool_bwd(be_ctx *b, int n, int c, int hw, const float *dy, float *dx)
{
    avg_job J = {.hw = hw, .dy = dy, .dx = dx, .planes = avg_bwd_planes};
    avg_run(b, n, c, &J);
}

/* ---------------------------------------------------------------- linear */

static void cpu_linear_fwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *bias,
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

static void cpu_linear_bwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *dy,
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

/* ---------------------------------------------------------------- losses */

/* lp[c] = log_softmax(scale * z[c]) over C values (with z[skip] replaced by 0 when skip >= 0). */
static void log_softmax_row(int C, const float *z, double scale, int skip, double *lp)
{
    double m = -INFINITY;
    for (int c = 0; c < C; c++) {
        lp[c] = c == skip ? 0.0 : scale * z[c];
        if (lp[c] > m)
            m = lp[c];
    }
    double s = 0;
    for (int c = 0; c < C; c++)
        s += exp(lp[c] - m);
    double lse = m + log(s);
    for (int c = 0; c < C; c++)
        lp[c] -= lse;
}

/* The same over the classes other than `excl` (which gets -inf). */
static void log_softmax_excl(int C, const float *z, double scale, int excl, double *lp)
{
    double m = -INFINITY;
    for (int c = 0; c < C; c++)
        if (c != excl && scale * z[c] > m)
            m = scale * z[c];
    double s = 0;
    for (int c = 0; c < C; c++)
        if (c != excl)
            s += exp(scale * z[c] - m);
    double lse = m + log(s);
    for (int c = 0; c < C; c++)
        lp[c] = c == excl ? -INFINITY : scale * z[c] - lse;
}

static double *loss_buf(cpu_ctx *c, int C)
{
    return (double *)cpu_workspace(c, (size_t)8 * C + 16); /* 4 rows of C doubles */
}

static int bad_label(cpu_ctx *c, const char *op, int32_t y, int C)
{
    if (y < 0 || y >= C) {
        cpu_fail(c, "%s: label %d out of range [0, %d)", op, (int)y, C);
        return 1;
    }
    return 0;
}

static void cpu_ce(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight, float *loss, float *dz)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *lp = loss_buf(c, C);
    if (!lp)
        return;
    double total = 0, g = (double)weight / B;
    for (int i = 0; i < B; i++) {
        if (bad_label(c, "ce", y[i], C))
            return;
        const float *zi = z + (size_t)i * C;
        log_softmax_row(C, zi, 1.0, -1, lp);
        total -= lp[y[i]];
        float *d = dz + (size_t)i * C;
        for (int k = 0; k < C; k++)
            d[k] += (float)(g * (exp(lp[k]) - (k == y[i])));
    }
    loss[0] += (float)(weight * total / B);
}

static void cpu_kl(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight, float *loss,
                   float *ds)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *lp = loss_buf(c, C);
    if (!lp)
        return;
    double *lq = lp + C;
    double total = 0, g = (double)weight / B / temp;
    for (int i = 0; i < B; i++) {
        log_softmax_row(C, t + (size_t)i * C, 1.0 / temp, -1, lp);
        log_softmax_row(C, s + (size_t)i * C, 1.0 / temp, -1, lq);
        float *d = ds + (size_t)i * C;
        for (int k = 0; k < C; k++) {
            double p = exp(lp[k]);
            if (p > 0)
                total += p * (lp[k] - lq[k]);
            d[k] += (float)(g * (exp(lq[k]) - p));
        }
    }
    loss[0] += (float)(weight * total / B);
}

static void cpu_nt_kl(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y,
                      const float *keep, float weight, float *loss, float *ddst)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *la = loss_buf(c, C);
    if (!la)
        return;
    double *lq = la + C;
    double total = 0, g = (double)weight / B;
    for (int i = 0; i < B; i++) {
        if (bad_label(c, "nt_kl", y[i], C))
            return;
        if (keep[i] == 0.0f)
            continue;
        double kp = keep[i];
        log_softmax_row(C, src + (size_t)i * C, 1.0, y[i], la);
        log_softmax_row(C, dst + (size_t)i * C, 1.0, y[i], lq);
        float *d = ddst + (size_t)i * C;
        double row = 0;
        for (int k = 0; k < C; k++) {
            double a = exp(la[k]);
            if (a > 0)
                row += a * (la[k] - lq[k]);
            if (k != y[i]) /* the target logit is multiplied by 0: no gradient */
                d[k] += (float)(g * kp * (exp(lq[k]) - a));
        }
        total += kp * row;
    }
    loss[0] += (float)(weight * total / B);
}

static void cpu_nkd(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y, float temp,
                    float gamma, float weight, float *loss, float *ds)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *lt = loss_buf(c, C);
    if (!lt)
        return;
    double *ls = lt + C, *nt = lt + 2 * C, *ns = lt + 3 * C;
    double total = 0, g = (double)weight / B;
    for (int i = 0; i < B; i++) {
        if (bad_label(c, "nkd", y[i], C))
            return;
        int yi = y[i];
        const float *ti = t + (size_t)i * C, *si = s + (size_t)i * C;
        log_softmax_row(C, ti, 1.0, -1, lt);
        log_softmax_row(C, si, 1.0, -1, ls);
        log_softmax_excl(C, ti, 1.0 / temp, yi, nt);
        log_softmax_excl(C, si, 1.0 / temp, yi, ns);
        double ty = exp(lt[yi]);
        double row = -ty * ls[yi], non = 0;
        float *d = ds + (size_t)i * C;
        for (int k = 0; k < C; k++) {
            /* target term: d(-ty log S_y)/ds_k = ty (S_k - [k == y]) */
            double gk = ty * (exp(ls[k]) - (k == yi));
            if (k != yi) {
                double pt = exp(nt[k]);
                if (pt > 0)
                    non += pt * ns[k];
                /* non-target term: gamma temp^2 * (1/temp) (N(S)_k - N(T)_k) */
                gk += gamma * temp * (exp(ns[k]) - pt);
            }
            d[k] += (float)(g * gk);
        }
        total += row - gamma * (double)temp * temp * non;
    }
    loss[0] += (float)(weight * total / B);
}

static void cpu_kendall_select(be_ctx *b, int B, int C, const float *a, const float *c, float omega, float *tau,
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

static void cpu_argmax(be_ctx *b, int B, int C, const float *z, int32_t *pred)
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

static void cpu_sgd(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    sgd_job J = {p, m, g, lr, momentum};
    par_range((cpu_ctx *)b, n, sgd_r, &J);
}

/* ---------------------------------------------------------------- inputs */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else
        bits = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

typedef struct spec_job {
    size_t len;
    const uint16_t *half;
    int standardize;
    float *out;
} spec_job;

static void spec_task(void *arg, size_t i, int worker)
{
    (void)worker;
    const spec_job *J = arg;
    const uint16_t *h = J->half + i * J->len;
    float *o = J->out + i * J->len;
    for (size_t k = 0; k < J->len; k++)
        o[k] = half_to_float(h[k]);
    if (!J->standardize || J->len == 0)
        return;
    double s = 0, ss = 0;
    for (size_t k = 0; k < J->len; k++)
        s += o[k];
    double mean = s / J->len;
    for (size_t k = 0; k < J->len; k++)
        ss += (o[k] - mean) * (o[k] - mean);
    double inv = 1.0 / (sqrt(ss / J->len) + 1e-9);
    for (size_t k = 0; k < J->len; k++)
        o[k] = (float)((o[k] - mean) * inv);
}

static void cpu_prep_spec(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    spec_job J = {len, half, standardize, out};
    cpu_parallel(c, (size_t)n, spec_task, &J);
}

typedef struct frame_job {
    const be_crop *crops;
    const uint8_t *src;
    int oh, ow;
    const float *mean, *std;
    float *out;
} frame_job;

/* PyTorch's source index for align_corners=False: clamp((dst + 0.5) * scale - 0.5, 0). */
static void bilinear_index(int dst, double scale, int in, int *i0, int *i1, float *l1)
{
    double src = (dst + 0.5) * scale - 0.5;
    if (src < 0)
        src = 0;
    int i = (int)src;
    if (i > in - 1)
        i = in - 1;
    double l = src - i;
    if (l > 1)
        l = 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = (float)l;
}

static void frame_task(void *arg, size_t f, int worker)
{
    (void)worker;
    const frame_job *J = arg;
    const be_crop *cr = &J->crops[f];
    const uint8_t *img = J->src + cr->offset;
    size_t plane = (size_t)J->oh * J->ow;
    float *out = J->out + f * 3 * plane;
    double sy = (double)cr->h / J->oh, sx = (double)cr->w / J->ow;
    for (int oy = 0; oy < J->oh; oy++) {
        int y0, y1;
        float ly;
        bilinear_index(oy, sy, cr->h, &y0, &y1, &ly);
        const uint8_t *r0 = img + ((size_t)(cr->y + y0) * cr->src_w + cr->x) * 3;
        const uint8_t *r1 = img + ((size_t)(cr->y + y1) * cr->src_w + cr->x) * 3;
        for (int ox = 0; ox < J->ow; ox++) {
            int x0, x1;
            float lx;
            bilinear_index(ox, sx, cr->w, &x0, &x1, &lx);
            int dx = cr->flip ? J->ow - 1 - ox : ox;
            for (int ch = 0; ch < 3; ch++) {
                float top = (1 - lx) * r0[x0 * 3 + ch] + lx * r0[x1 * 3 + ch];
                float bot = (1 - lx) * r1[x0 * 3 + ch] + lx * r1[x1 * 3 + ch];
                float v = (1 - ly) * top + ly * bot;
                out[ch * plane + (size_t)oy * J->ow + dx] = (v / 255.0f - J->mean[ch]) / J->std[ch];
            }
        }
    }
}

static void cpu_prep_frames(be_ctx *b, int n, const be_crop *crops, const uint8_t *src, int oh, int ow,
                            const float mean[3], const float std[3], float *out)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    for (int f = 0; f < n; f++) {
        const be_crop *cr = &crops[f];
        if (cr->w <= 0 || cr->h <= 0 || cr->x < 0 || cr->y < 0 || cr->x + cr->w > cr->src_w ||
            cr->y + cr->h > cr->src_h) {
            cpu_fail(c, "prep_frames: crop %d (%d,%d %dx%d) outside the %dx%d image", f, cr->x, cr->y, cr->w,
                     cr->h, cr->src_w, cr->src_h);
            return;
        }
    }
    frame_job J = {crops, src, oh, ow, mean, std, out};
    cpu_parallel(c, (size_t)n, frame_task, &J);
}

/* ---------------------------------------------------------------- staged inputs */

/* The ops run synchronously on the calling thread: a staged copy is a plain
 * copy, and there is nothing to wait for or release. */
static void cpu_stage_copy(be_ctx *b, int slot, void *dst, const void *src, size_t bytes)
{
    (void)slot;
    cpu_memcpy(b, dst, src, bytes);
}

static void cpu_stage_nothing(be_ctx *b, int slot)
{
    (void)b;
    (void)slot;
}

/* The ops use every core: input preparation gets few threads. */
static int cpu_input_threads(be_ctx *b, int cores)
{
    (void)b;
    return cores < 2 ? cores : 2;
}

/* ---------------------------------------------------------------- table */

static const be_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .status = cpu_status,
    .sync = cpu_sync,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .zero = cpu_zero,
    .copy = cpu_memcpy,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_free,
    .stage_copy = cpu_stage_copy,
    .stage_wait = cpu_stage_nothing,
    .stage_release = cpu_stage_nothing,
    .input_threads = cpu_input_threads,
    .conv_fwd = cpu_conv_fwd,
    .conv_bwd_data = cpu_conv_bwd_data,
    .conv_bwd_filter = cpu_conv_bwd_filter,
    .bn_fwd_train = cpu_bn_fwd_train,
    .bn_fwd_eval = cpu_bn_fwd_eval,
    .bn_bwd = cpu_bn_bwd,
    .bn_stats_partial = cpu_bn_stats_partial,
    .bn_stats_finalize = cpu_bn_stats_finalize,
    .bn_fwd_apply = cpu_bn_fwd_apply,
    .bn_bwd_partial = cpu_bn_bwd_partial,
    .bn_bwd_apply = cpu_bn_bwd_apply,
    .relu_fwd = cpu_relu_fwd,
    .relu_bwd = cpu_relu_bwd,
    .leaky_fwd = cpu_leaky_fwd,
    .leaky_bwd = cpu_leaky_bwd,
    .maxpool_fwd = cpu_maxpool_fwd,
    .maxpool_bwd = cpu_maxpool_bwd,
    .avgpool_fwd = cpu_avgpool_fwd,
    .avgpool_bwd = cpu_avgpool_bwd,
    .resize_fwd = cpu_resize_fwd,
    .resize_bwd = cpu_resize_bwd,
    .adapool_fwd = cpu_adapool_fwd,
    .adapool_bwd = cpu_adapool_bwd,
    .att_fwd = cpu_att_fwd,
    .att_bwd = cpu_att_bwd,
    .mse = cpu_mse,
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .ce = cpu_ce,
    .kl = cpu_kl,
    .nt_kl = cpu_nt_kl,
    .nkd = cpu_nkd,
    .kendall_select = cpu_kendall_select,
    .argmax = cpu_argmax,
    .sgd = cpu_sgd,
    .prep_spec = cpu_prep_spec,
    .prep_frames = cpu_prep_frames,
    /* no device name, statistics or profile */
};

#define CPU_MAX_THREADS 1024

be_ctx *be_cpu_create(int threads, cm_err *err)
{
    if (threads > CPU_MAX_THREADS) {
        cm_err_set(err, "bad thread count %d (at most %d)", threads, CPU_MAX_THREADS);
        return NULL;
    }
    if (threads <= 0)
        threads = cm_ncpu();
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    c->base.ops = &cpu_ops;
    c->threads = threads;
    if (threads > 1 && !(c->pool = pool_create(threads - 1)))
        c->threads = 1;
    /* Our tasks call sgemm concurrently, one per thread: OpenBLAS's own
     * threads would only compete with them (and spin in sched_yield). */
    openblas_set_num_threads(1);
    return &c->base;
}
