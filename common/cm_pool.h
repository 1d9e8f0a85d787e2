/* cm_pool: run a function over indices 0..n-1 on several threads. */
#ifndef CM_POOL_H
#define CM_POOL_H

#include <stddef.h>

/* fn(ctx, index, worker): worker is in [0, jobs). Items are handed out in
 * index order, one at a time, to whichever thread is free. */
typedef void (*cm_task_fn)(void *ctx, size_t index, int worker);

/* Runs fn for every index with `jobs` threads (jobs <= 1: on the calling
 * thread). Returns 0, or -1 when threads could not be started (then the
 * remaining items are run on the calling thread). */
int cm_parallel_for(size_t n, int jobs, cm_task_fn fn, void *ctx);

/* Number of online processors (at least 1). */
int cm_ncpu(void);

#endif
