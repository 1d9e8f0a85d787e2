/* ddp: the data-parallel parts of a step (ddp.h, system.h "data parallel"):
 * gradient and loss averaging over ranks, the initial broadcast and the check
 * that every rank holds the same weights. */
#include "train/ddp.h"

#include <stdlib.h>
#include <string.h>

static int multi(const tr_ddp *d)
{
    return d->comm && cl_active(d->comm);
}

int tr_ddp_multi(const tr_ddp *d)
{
    return multi(d);
}

/* --sync-bn: the sums of every batch norm summed over ranks (a world of 1: as they are). */
static int bnsync_allreduce(void *arg, double *buf, size_t n)
{
    tr_ddp *d = arg;
    if (!multi(d))
        return 0;
    return cl_allreduce_f64(d->comm, buf, n, CL_SUM, &d->bnsync.err);
}

/* Scratch for the largest batch norm (the most channels of any buffer), and
 * every part pointed at it. A failure is reported by the first step. */
static void bnsync_setup(tr_ddp *d, tr_mem *mem, const tr_parts *l)
{
    tr_bnsync *b = &d->bnsync;
    size_t maxc = 1;
    for (int i = 0; i < l->n; i++)
        for (int t = 0; t < l->p[i].reg->nt; t++)
            if (l->p[i].reg->t[t].kind == TT_BUFFER && l->p[i].reg->t[t].count > maxc)
                maxc = l->p[i].reg->t[t].count;
    b->allreduce = bnsync_allreduce;
    b->arg = d;
    free(b->h);
    b->h = malloc((2 * maxc + 1) * sizeof(double));
    b->dev = (double *)tr_mem_floats(mem, 4 * maxc);
    if (!b->h || !b->dev) {
        b->failed = 1;
        cm_err_set(&b->err, "out of memory (batch-norm sums)");
    }
    for (int i = 0; i < l->n; i++)
        l->p[i].reg->sync = b;
}

void tr_ddp_set_comm(tr_ddp *d, cl_comm *comm, int sync_bn, tr_mem *mem, const tr_parts *l)
{
    const char *ov = getenv("C2KD_DIST_OVERLAP");
    d->comm = comm;
    d->overlap = !(ov && strcmp(ov, "0") == 0);
    if (sync_bn && !d->bnsync.allreduce)
        bnsync_setup(d, mem, l);
}

void tr_ddp_free(tr_ddp *d)
{
    free(d->bnsync.h);
    d->bnsync.h = NULL;
}

static int on_gpu(const tr_ddp *d)
{
    return strcmp(d->be->ops->name, "cpu") != 0;
}

/* Averages n floats of device memory over ranks. */
static int average(tr_ddp *d, float *p, size_t n, cm_err *err)
{
    if (!on_gpu(d))
        return cl_average_f32(d->comm, p, n, err);
    return cl_gpu_average(d->comm, p, n, err);
}

static int bcast(tr_ddp *d, void *p, size_t bytes, cm_err *err)
{
    if (!on_gpu(d))
        return cl_bcast(d->comm, p, bytes, 0, err);
    return cl_gpu_bcast(d->comm, p, bytes, 0, err);
}

/* The stream NCCL orders its work after (CUDA), or NULL. */
static void *compute_stream(tr_ddp *d)
{
    return d->be->ops->native_stream ? d->be->ops->native_stream(d->be) : NULL;
}

void tr_ddp_grads_ready(tr_ddp *d, tr_reg *r, size_t off)
{
    if (!multi(d) || !d->overlap || d->ovl_failed || (on_gpu(d) && !compute_stream(d)))
        return;
    int rc = on_gpu(d) ? cl_gpu_iaverage(d->comm, r->g + off, r->np - off, compute_stream(d), &d->ovl_err)
                       : cl_iaverage_f32(d->comm, r->g + off, r->np - off, &d->ovl_err);
    d->ovl_started++;
    if (rc != 0)
        d->ovl_failed = 1;
}

/* Waits for the averages started during the backward pass (all of them,
 * also after a failure to start one, which is the error told). */
static int wait_grads(tr_ddp *d, cm_err *err)
{
    int failed = d->ovl_failed;
    d->ovl_started = d->ovl_failed = 0;
    int rc = cl_wait_all(d->comm, err);
    return failed ? cm_err_set(err, "%s", d->ovl_err.msg) : rc;
}

/* The loss terms' mean over the ranks, in double. */
static int average_terms(tr_ddp *d, double *hl, int nt, cm_err *err)
{
    if (cl_allreduce_f64(d->comm, hl, (size_t)nt, CL_SUM, err) != 0)
        return -1;
    for (int i = 0; i < nt; i++)
        hl[i] /= cl_size(d->comm);
    return 0;
}

int tr_ddp_reduce_step(tr_ddp *d, const tr_parts *l, double *hl, int nt, cm_err *err)
{
    if (d->bnsync.failed)
        return cm_err_set(err, "--sync-bn: %s", d->bnsync.err.msg);
    if (!multi(d))
        return 0;
    if (d->ovl_started) /* every gradient SGD uses was started by the backward pass */
        return wait_grads(d, err) != 0 ? -1 : average_terms(d, hl, nt, err);
    if (average_terms(d, hl, nt, err) != 0)
        return -1;
    if (on_gpu(d))
        d->be->ops->sync(d->be); /* NCCL runs on its own stream */
    for (int i = 0; i < l->n; i++) {
        const tr_part *p = &l->p[i];
        if (p->sgd && average(d, p->reg->g + p->off, p->reg->np - p->off, err) != 0)
            return -1;
    }
    return 0;
}

int tr_ddp_sum(tr_ddp *d, double *v, int n, cm_err *err)
{
    if (!multi(d))
        return 0;
    return cl_allreduce_f64(d->comm, v, (size_t)n, CL_SUM, err);
}

int tr_ddp_broadcast(tr_ddp *d, const tr_parts *l, int64_t *step, cm_err *err)
{
    if (!multi(d))
        return 0;
    d->be->ops->sync(d->be);
    if (on_gpu(d) && !cl_gpu_ready(d->comm))
        return cm_err_set(err, "NCCL not initialised for a CUDA run");
    for (int i = 0; i < l->n; i++) {
        tr_reg *r = l->p[i].reg;
        if (bcast(d, r->w, r->np * sizeof(float), err) != 0 || bcast(d, r->m, r->np * sizeof(float), err) != 0 ||
            bcast(d, r->buf, r->nb * sizeof(float), err) != 0 ||
            cl_bcast(d->comm, &r->nbt, sizeof r->nbt, 0, err) != 0)
            return cm_err_prefix(err, "broadcast of %s", r->group);
    }
    if (cl_bcast(d->comm, step, sizeof *step, 0, err) != 0)
        return -1;
    return tr_ddp_check_same(d, l, err);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Hash of n device floats. */
static int hash_dev(tr_ddp *d, const float *p, size_t n, uint64_t *h, cm_err *err)
{
    if (!n)
        return 0;
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return cm_err_set(err, "out of memory");
    d->be->ops->to_host(d->be, tmp, p, n * sizeof *tmp);
    *h = fnv(*h, tmp, n * sizeof *tmp);
    free(tmp);
    return 0;
}

int tr_ddp_check_same(tr_ddp *d, const tr_parts *l, cm_err *err)
{
    if (!multi(d))
        return 0;
    d->be->ops->sync(d->be);
    for (int i = 0; i < l->n; i++) {
        tr_reg *r = l->p[i].reg;
        /* Running statistics: rank 0's, as DDP's broadcast_buffers (they only
         * matter in evaluation mode, so sending them here equals DDP's send
         * before every forward pass). */
        if (bcast(d, r->buf, r->nb * sizeof(float), err) != 0 || cl_bcast(d->comm, &r->nbt, sizeof r->nbt, 0, err) != 0)
            return cm_err_prefix(err, "broadcast of %s statistics", r->group);
        uint64_t h = 1469598103934665603ULL;
        if (hash_dev(d, r->w, r->np, &h, err) != 0)
            return -1;
        int64_t v[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)}; /* max and -min in one call */
        if (cl_allreduce_i64(d->comm, v, 2, CL_MAX, err) != 0)
            return -1;
        if (v[0] != -v[1])
            return cm_err_set(err, "the ranks hold different %s weights", r->group);
    }
    return 0;
}
