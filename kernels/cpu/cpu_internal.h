/* cpu_internal: the CPU backend's context and the helpers its files share
 * (context.c: context, thread pool, memory; the family files use them). The
 * ops themselves are declared in kernels/cpu/cpu_ops.h. Not part of the
 * kernels interface. */
#ifndef KERNELS_CPU_INTERNAL_H
#define KERNELS_CPU_INTERNAL_H

#include <stddef.h>

#include "common/cm_err.h"
#include "kernels/kernels.h"
#include "kernels/cpu/cpu_ops.h"

typedef struct cpu_pool cpu_pool;

typedef struct cpu_ctx {
    be_ctx base;      /* first member: the ops table */
    int threads;      /* worker threads for our loops (OpenBLAS itself runs single-threaded) */
    int failed;       /* sticky failure flag, message in err */
    cm_err err;
    float *ws;        /* workspace (im2col columns, gathered tensors), grown as needed */
    size_t ws_cap;    /* floats */
    cpu_pool *pool;   /* persistent threads (threads - 1 of them), NULL with one thread */
} cpu_ctx;

/* Records the first failure (sticky). */
void cpu_fail(cpu_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Workspace of at least `floats` floats (64-byte aligned), NULL after a
 * recorded failure. Contents are not preserved across growth. */
float *cpu_workspace(cpu_ctx *c, size_t floats);

/* Runs fn(ctx, i, worker) for i in [0, n) on the context's persistent
 * threads (worker in [0, threads)); returns when all are done. Items are
 * handed out dynamically, so anything that must be deterministic must depend
 * on i, not on worker. Called from inside a task it runs inline. */
void cpu_parallel(cpu_ctx *c, size_t n, void (*fn)(void *ctx, size_t i, int worker), void *arg);

/* Runs fn(arg, lo, hi) over [0, n) in chunks of CHUNK, on the context's
 * threads when n >= PAR_MIN (else on the calling thread, in one call). */
#define PAR_MIN 32768 /* element-wise loops shorter than this stay on the calling thread */
#define CHUNK 65536
typedef void (*range_fn)(void *arg, size_t lo, size_t hi);
void cpu_par_range(cpu_ctx *c, size_t n, range_fn fn, void *arg);

/* reduce.c: *s += Σ (p[i] - K), *ss += Σ (p[i] - K)² over n floats, in 8 double
 * lanes (vectorisable, the precision of one double accumulator). */
void cpu_sum_shift(const float *restrict p, size_t n, double K, double *s, double *ss);
/* *sdy += Σ g[i], *sdyx += Σ g[i] (x[i] - m), likewise. */
void cpu_sum_dy(const float *restrict x, const float *restrict g, size_t n, double m, double *sdy, double *sdyx);

/* The arguments of the element-wise loops (activation.c, elementwise.c). */
typedef struct ew_job {
    const float *x, *y, *dy;
    float *out;
    float alpha;
} ew_job;

#endif
