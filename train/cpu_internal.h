/* cpu_internal: the CPU backend's context and helpers shared by its files
 * (cpu_backend.c: memory, element-wise ops, norms, pools, losses, inputs;
 * cpu_conv.c: convolutions). Not part of the backend interface. */
#ifndef TRAIN_CPU_INTERNAL_H
#define TRAIN_CPU_INTERNAL_H

#include <stddef.h>

#include "common/cm_err.h"
#include "train/backend.h"

typedef struct cpu_ctx {
    be_ctx base;      /* first member: the ops table */
    int threads;      /* worker threads for our own loops and for OpenBLAS */
    int failed;       /* sticky failure flag, message in err */
    cm_err err;
    float *ws;        /* workspace (im2col columns, gathered tensors), grown as needed */
    size_t ws_cap;    /* floats */
} cpu_ctx;

/* Records the first failure (sticky). */
void cpu_fail(cpu_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Workspace of at least `floats` floats (64-byte aligned), NULL after a
 * recorded failure. Contents are not preserved across growth. */
float *cpu_workspace(cpu_ctx *c, size_t floats);

/* Runs fn(ctx, i, worker) for i in [0, n) on the context's threads. */
void cpu_parallel(cpu_ctx *c, size_t n, void (*fn)(void *ctx, size_t i, int worker), void *arg);

void cpu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y);
void cpu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx);
void cpu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw);

#endif
