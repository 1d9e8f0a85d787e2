/* context (CPU): the CPU backend's context (kernels/kernels.h): sticky
 * failures, the workspace, the persistent thread pool, memory (plain host
 * memory, 64-byte aligned), staged inputs, creation. The ops are in the family
 * files beside this one (conv.c, batchnorm.c, ..., input.c: the order of
 * kernels/cpu/cpu_ops.h), the table in table.c. Reductions (batch-norm
 * statistics, softmax, losses, Kendall's tau) accumulate in double. Loops over
 * large tensors run on the context's threads; OpenBLAS runs single-threaded
 * inside them (be_cpu_create sets it to one thread). PyTorch semantics are
 * tested in tests/oracle/test_backend_ops.py. Mirrors kernels/cuda/context.cu.
 */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <cblas.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_pool.h"
#include "kernels/cpu/cpu_internal.h"

void openblas_set_num_threads(int num_threads);

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

void cpu_par_range(cpu_ctx *c, size_t n, range_fn fn, void *arg)
{
    if (n < PAR_MIN || c->threads <= 1) {
        fn(arg, 0, n);
        return;
    }
    range_job R = {fn, arg, n};
    cpu_parallel(c, (n + CHUNK - 1) / CHUNK, range_task, &R);
}

void cpu_destroy(be_ctx *b)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (!c)
        return;
    pool_destroy(c->pool);
    free(c->ws);
    free(c);
}

int cpu_status(be_ctx *b, cm_err *err)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (!c->failed)
        return 0;
    return cm_err_set(err, "%s", c->err.msg);
}

void cpu_sync(be_ctx *b)
{
    (void)b;
}

/* ---------------------------------------------------------------- memory */

void *cpu_alloc(be_ctx *b, size_t bytes)
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

void cpu_free(be_ctx *b, void *p)
{
    (void)b;
    free(p);
}

void cpu_memcpy(be_ctx *b, void *dst, const void *src, size_t bytes)
{
    (void)b;
    if (bytes)
        memmove(dst, src, bytes);
}

void cpu_zero(be_ctx *b, void *p, size_t bytes)
{
    (void)b;
    if (bytes)
        memset(p, 0, bytes);
}

void *cpu_host_alloc(be_ctx *b, size_t bytes)
{
    return cpu_alloc(b, bytes);
}

/* ---------------------------------------------------------------- staged inputs */

/* The ops run synchronously on the calling thread: a staged copy is a plain
 * copy, and there is nothing to wait for or release. */
void cpu_stage_copy(be_ctx *b, int slot, void *dst, const void *src, size_t bytes)
{
    (void)slot;
    cpu_memcpy(b, dst, src, bytes);
}

void cpu_stage_nothing(be_ctx *b, int slot)
{
    (void)b;
    (void)slot;
}

/* The ops use every core: input preparation gets few threads. */
int cpu_input_threads(be_ctx *b, int cores)
{
    (void)b;
    return cores < 2 ? cores : 2;
}

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
    c->base.ops = &cpu_ops_table;
    c->threads = threads;
    if (threads > 1 && !(c->pool = pool_create(threads - 1)))
        c->threads = 1;
    /* Our tasks call sgemm concurrently, one per thread: OpenBLAS's own
     * threads would only compete with them (and spin in sched_yield). */
    openblas_set_num_threads(1);
    return &c->base;
}
