#include "common/cm_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pool_run {
    size_t n;
    atomic_size_t next;
    cm_task_fn fn;
    void *ctx;
} pool_run;

typedef struct pool_worker {
    pool_run *run;
    int id;
} pool_worker;

static void *pool_main(void *arg)
{
    pool_worker *w = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&w->run->next, 1);
        if (i >= w->run->n)
            break;
        w->run->fn(w->run->ctx, i, w->id);
    }
    return NULL;
}

int cm_parallel_for(size_t n, int jobs, cm_task_fn fn, void *ctx)
{
    pool_run run = {.n = n, .fn = fn, .ctx = ctx};
    atomic_init(&run.next, 0);
    if (jobs > (int)n)
        jobs = (int)n;
    if (jobs <= 1) {
        pool_worker w = {&run, 0};
        pool_main(&w);
        return 0;
    }
    pthread_t *th = calloc((size_t)jobs, sizeof *th);
    pool_worker *ws = calloc((size_t)jobs, sizeof *ws);
    int started = 0, rc = 0;
    if (th && ws) {
        for (; started < jobs - 1; started++) {
            ws[started] = (pool_worker){&run, started + 1};
            if (pthread_create(&th[started], NULL, pool_main, &ws[started]) != 0) {
                rc = -1;
                break;
            }
        }
    } else {
        rc = -1;
    }
    pool_worker self = {&run, 0};
    pool_main(&self);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(ws);
    return rc;
}

int cm_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
