/* collective: launcher detection, plugin loading, collectives with a watchdog.
 * See collective.h. */
#include "collective/collective.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collective/cl_plugin.h"

struct cl_comm {
    int rank, size, local_rank;
    void *dl;
    const cl_plugin *p;
    void *gpu;
    double gpu_seconds;
    /* non-blocking averages started, waited for by cl_wait_all */
    struct {
        float *buf;  /* host averages: scaled by 1/size after the wait */
        size_t n;
        void *req;
    } pend[CL_MAX_PENDING];
    int npend, gpu_pend;
    long long started;
    /* watchdog */
    double timeout;
    cl_timeout_fn on_timeout;
    void *arg;
    pthread_t th;
    int th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
    const char *busy;   /* collective in progress, or NULL */
    double since;
};

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cl_launched(void)
{
    const char *off = getenv("C2KD_DIST");
    if (off && strcmp(off, "0") == 0)
        return 0;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                                       "MV2_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    const char *st = getenv("SLURM_STEP_NUM_TASKS");
    return st && atoi(st) > 1;
}

/* build/lib/c2kd_collective.so beside the program's folder, or $C2KD_DIST_PLUGIN. */
static void plugin_path(char *out, size_t n)
{
    const char *env = getenv("C2KD_DIST_PLUGIN");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) {
        snprintf(out, n, "c2kd_collective.so");
        return;
    }
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    snprintf(out, n, "%s/../lib/c2kd_collective.so", exe);
}

static void *watchdog(void *a)
{
    cl_comm *c = a;
    pthread_mutex_lock(&c->mu);
    while (!c->quit) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += 1;
        pthread_cond_timedwait(&c->cv, &c->mu, &t);
        if (c->busy && mono() - c->since > c->timeout) {
            const char *what = c->busy;
            double s = mono() - c->since;
            pthread_mutex_unlock(&c->mu);
            c->on_timeout(c->arg, what, s);
            pthread_mutex_lock(&c->mu);
            c->busy = NULL;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void watch(cl_comm *c, const char *what)
{
    if (!c->th_started)
        return;
    pthread_mutex_lock(&c->mu);
    c->busy = what;
    c->since = mono();
    pthread_mutex_unlock(&c->mu);
}

static int load_plugin(cl_comm *c, cm_err *err)
{
    char path[PATH_MAX + 32];
    plugin_path(path, sizeof path);
    c->dl = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!c->dl)
        return cm_err_set(err, "launched as one of several ranks, but the MPI plugin cannot be loaded: %s", dlerror());
    const cl_plugin *(*get)(void) = (const cl_plugin *(*)(void))dlsym(c->dl, "c2kd_collective_plugin");
    if (!get || !(c->p = get()) || c->p->version != CL_PLUGIN_VERSION)
        return cm_err_set(err, "%s: not a c2kd collective plugin of this version", path);
    char msg[CL_MSG];
    if (c->p->init(&c->rank, &c->size, &c->local_rank, msg) != 0) {
        c->p = NULL;
        return cm_err_set(err, "%s", msg);
    }
    return 0;
}

cl_comm *cl_create(double timeout_s, cl_timeout_fn on_timeout, void *arg, cm_err *err)
{
    cl_comm *c = calloc(1, sizeof *c);
    if (!c) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    c->size = 1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (!cl_launched())
        return c;
    if (load_plugin(c, err) != 0) {
        cl_destroy(c);
        return NULL;
    }
    if (timeout_s > 0 && on_timeout) {
        c->timeout = timeout_s;
        c->on_timeout = on_timeout;
        c->arg = arg;
        if (pthread_create(&c->th, NULL, watchdog, c) == 0)
            c->th_started = 1;
    }
    return c;
}

void cl_destroy(cl_comm *c)
{
    if (!c)
        return;
    if (c->th_started) {
        pthread_mutex_lock(&c->mu);
        c->quit = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->th, NULL);
    }
    if (c->p) {
        if (c->gpu)
            c->p->gpu_destroy(c->gpu);
        c->p->finalize();
    }
    /* The plugin stays loaded: MPI libraries do not support being unloaded. */
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

int cl_rank(const cl_comm *c)
{
    return c->rank;
}

int cl_size(const cl_comm *c)
{
    return c->size;
}

int cl_active(const cl_comm *c)
{
    return c->p != NULL;
}

int cl_local_rank(const cl_comm *c)
{
    return c->local_rank;
}

static int done(cl_comm *c, int rc, const char *msg, cm_err *err)
{
    watch(c, NULL);
    return rc == 0 ? 0 : cm_err_set(err, "rank %d: %s", c->rank, msg);
}

static int allreduce(cl_comm *c, void *buf, size_t n, int type, cl_op op, cm_err *err)
{
    if (!c->p || n == 0)
        return 0;
    char msg[CL_MSG] = "";
    watch(c, "all-reduce");
    return done(c, c->p->allreduce(buf, n, type, (int)op, msg), msg, err);
}

int cl_allreduce_f64(cl_comm *c, double *buf, size_t n, cl_op op, cm_err *err)
{
    return allreduce(c, buf, n, CL_T_F64, op, err);
}

int cl_allreduce_i64(cl_comm *c, int64_t *buf, size_t n, cl_op op, cm_err *err)
{
    return allreduce(c, buf, n, CL_T_I64, op, err);
}

int cl_average_f32(cl_comm *c, float *buf, size_t n, cm_err *err)
{
    if (allreduce(c, buf, n, CL_T_F32, CL_SUM, err) != 0)
        return -1;
    if (c->size > 1) {
        float inv = 1.0f / (float)c->size;
        for (size_t i = 0; i < n; i++)
            buf[i] *= inv;
    }
    return 0;
}

int cl_bcast(cl_comm *c, void *buf, size_t bytes, int root, cm_err *err)
{
    if (!c->p || bytes == 0)
        return 0;
    char msg[CL_MSG] = "";
    watch(c, "broadcast");
    return done(c, c->p->bcast(buf, bytes, root, msg), msg, err);
}

void cl_abort(cl_comm *c, int code)
{
    if (c && c->p)
        c->p->abort(code);
}

int cl_gpu_init(cl_comm *c, int device, size_t bucket_bytes, cm_err *err)
{
    if (!c->p || c->gpu)
        return 0;
    char msg[CL_MSG] = "";
    watch(c, "NCCL set-up");
    c->gpu = c->p->gpu_create(device, bucket_bytes ? bucket_bytes : (size_t)25 << 20, msg);
    return done(c, c->gpu ? 0 : -1, msg, err);
}

int cl_gpu_ready(const cl_comm *c)
{
    return c->gpu != NULL;
}

int cl_gpu_average(cl_comm *c, float *dev, size_t n, cm_err *err)
{
    if (!c->p || n == 0)
        return 0;
    if (!c->gpu)
        return cm_err_set(err, "rank %d: NCCL not initialised", c->rank);
    char msg[CL_MSG] = "";
    double s = 0;
    watch(c, "NCCL all-reduce");
    int rc = c->p->gpu_allreduce(c->gpu, dev, n, 1, &s, msg);
    c->gpu_seconds += s;
    return done(c, rc, msg, err);
}

int cl_gpu_bcast(cl_comm *c, void *dev, size_t bytes, int root, cm_err *err)
{
    if (!c->p || bytes == 0)
        return 0;
    if (!c->gpu)
        return cm_err_set(err, "rank %d: NCCL not initialised", c->rank);
    char msg[CL_MSG] = "";
    watch(c, "NCCL broadcast");
    return done(c, c->p->gpu_bcast(c->gpu, dev, bytes, root, msg), msg, err);
}

int cl_iaverage_f32(cl_comm *c, float *buf, size_t n, cm_err *err)
{
    if (!c->p || n == 0)
        return 0;
    if (c->npend == CL_MAX_PENDING)
        return cm_err_set(err, "rank %d: more than %d non-blocking all-reduces", c->rank, CL_MAX_PENDING);
    char msg[CL_MSG] = "";
    watch(c, "all-reduce (start)");
    int k = c->npend++;
    c->pend[k].buf = buf;
    c->pend[k].n = n;
    c->pend[k].req = NULL;
    int rc = c->p->iallreduce(buf, n, CL_T_F32, CL_P_SUM, &c->pend[k].req, msg);
    c->started++;
    return done(c, rc, msg, err);
}

int cl_gpu_iaverage(cl_comm *c, float *dev, size_t n, void *stream, cm_err *err)
{
    if (!c->p || n == 0)
        return 0;
    if (!c->gpu)
        return cm_err_set(err, "rank %d: NCCL not initialised", c->rank);
    char msg[CL_MSG] = "";
    watch(c, "NCCL all-reduce (start)");
    c->gpu_pend = 1;
    c->started++;
    return done(c, c->p->gpu_iallreduce(c->gpu, dev, n, 1, stream, msg), msg, err);
}

int cl_wait_all(cl_comm *c, cm_err *err)
{
    char msg[CL_MSG] = "", more[CL_MSG];
    int rc = 0;
    watch(c, "all-reduce");
    for (int k = 0; k < c->npend; k++) { /* every request waited for and freed; the first failure told */
        if (c->p->wait(c->pend[k].req, rc ? more : msg) != 0)
            rc = -1;
        if (rc == 0 && c->size > 1) {
            float inv = 1.0f / (float)c->size, *b = c->pend[k].buf;
            for (size_t i = 0; i < c->pend[k].n; i++)
                b[i] *= inv;
        }
    }
    c->npend = 0;
    if (c->gpu_pend) {
        double s = 0;
        c->gpu_pend = 0;
        if (rc == 0 && c->p->gpu_wait(c->gpu, &s, msg) != 0)
            rc = -1;
        c->gpu_seconds += s;
    }
    return done(c, rc, msg, err);
}

long long cl_started(const cl_comm *c)
{
    return c->started;
}

double cl_gpu_take_seconds(cl_comm *c)
{
    double s = c->gpu_seconds;
    c->gpu_seconds = 0;
    return s;
}
