/* cpu_internal: the CPU backend's context and helpers shared by its files
 * (cpu_backend.c: memory, thread pool, element-wise ops, norms, pools,
 * losses, inputs; cpu_conv.c: convolutions). Not part of the backend interface. */
#ifndef BACKEND_CPU_INTERNAL_H
#define BACKEND_CPU_INTERNAL_H

#include <stddef.h>

#include "common/cm_err.h"
#include "backend/backend.h"

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

void cpu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y);
void cpu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx);
void cpu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw);

/* ReviewKD's ops (cpu_review.c); semantics in backend/backend.h. */
void cpu_resize_fwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y);
void cpu_resize_bwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx);
void cpu_adapool_fwd(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y);
void cpu_adapool_bwd(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx);
void cpu_att_fwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *z, const float *bias,
                 float *a, float *r);
void cpu_att_bwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *a, const float *dr,
                 float *du, float *dv, float *dz, float *dbias);
void cpu_mse(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx);

#endif
