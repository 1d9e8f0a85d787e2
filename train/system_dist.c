/* system_dist: the data-parallel parts of a step (system.h, "data parallel"):
 * gradient and loss averaging over ranks, the initial broadcast and the check
 * that every rank holds the same weights. */
#include <stdlib.h>
#include <string.h>

#include "train/system_internal.h"

static int multi(const tr_system *s)
{
    return s->comm && cl_active(s->comm);
}

/* --sync-bn: the sums of every batch norm summed over ranks (a world of 1: as they are). */
static int bnsync_allreduce(void *arg, double *buf, size_t n)
{
    tr_system *s = arg;
    if (!multi(s))
        return 0;
    return cl_allreduce_f64(s->comm, buf, n, CL_SUM, &s->bnsync.err);
}

/* Scratch for the largest batch norm (the most channels of any buffer), and
 * every network pointed at it. A failure is reported by the first step. */
static void bnsync_setup(tr_system *s)
{
    tr_bnsync *b = &s->bnsync;
    tr_reg *regs[TR_MAX_REGS];
    int nr = tr_system_regs(s, regs);
    size_t maxc = 1;
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < regs[i]->nt; t++)
            if (regs[i]->t[t].kind == TT_BUFFER && regs[i]->t[t].count > maxc)
                maxc = regs[i]->t[t].count;
    b->allreduce = bnsync_allreduce;
    b->arg = s;
    free(b->h);
    b->h = malloc((2 * maxc + 1) * sizeof(double));
    b->dev = (double *)tr_mem_floats(&s->mem, 4 * maxc);
    if (!b->h || !b->dev) {
        b->failed = 1;
        cm_err_set(&b->err, "out of memory (batch-norm sums)");
    }
    for (int i = 0; i < nr; i++)
        regs[i]->sync = b;
}

void tr_system_set_comm(tr_system *s, cl_comm *comm)
{
    const char *ov = getenv("C2KD_DIST_OVERLAP");
    s->comm = comm;
    s->overlap = !(ov && strcmp(ov, "0") == 0);
    if (s->cfg.sync_bn && !s->bnsync.allreduce)
        bnsync_setup(s);
}

static int on_gpu(const tr_system *s)
{
    return strcmp(s->be->ops->name, "cpu") != 0;
}

/* Averages n floats of device memory over ranks. */
static int average(tr_system *s, float *p, size_t n, cm_err *err)
{
    if (!on_gpu(s))
        return cl_average_f32(s->comm, p, n, err);
    return cl_gpu_average(s->comm, p, n, err);
}

static int bcast(tr_system *s, void *p, size_t bytes, cm_err *err)
{
    if (!on_gpu(s))
        return cl_bcast(s->comm, p, bytes, 0, err);
    return cl_gpu_bcast(s->comm, p, bytes, 0, err);
}

/* The stream NCCL orders its work after (CUDA), or NULL. */
static void *compute_stream(tr_system *s)
{
    return s->be->ops->native_stream ? s->be->ops->native_stream(s->be) : NULL;
}

void tr_dist_grads_ready(tr_system *s, tr_reg *r, size_t off)
{
    if (!multi(s) || !s->overlap || s->ovl_failed || (on_gpu(s) && !compute_stream(s)))
        return;
    int rc = on_gpu(s) ? cl_gpu_iaverage(s->comm, r->g + off, r->np - off, compute_stream(s), &s->ovl_err)
                       : cl_iaverage_f32(s->comm, r->g + off, r->np - off, &s->ovl_err);
    s->ovl_started++;
    if (rc != 0)
        s->ovl_failed = 1;
}

/* Waits for the averages started during the backward pass (all of them,
 * also after a failure to start one, which is the error told). */
static int wait_grads(tr_system *s, cm_err *err)
{
    int failed = s->ovl_failed;
    s->ovl_started = s->ovl_failed = 0;
    int rc = cl_wait_all(s->comm, err);
    return failed ? cm_err_set(err, "%s", s->ovl_err.msg) : rc;
}

int tr_dist_reduce_step(tr_system *s, float *hl, int nt, cm_err *err)
{
    if (s->bnsync.failed)
        return cm_err_set(err, "--sync-bn: %s", s->bnsync.err.msg);
    if (!multi(s))
        return 0;
    if (s->ovl_started) /* every gradient SGD uses was started by the backward pass */
        return wait_grads(s, err) != 0 ? -1 : cl_average_f32(s->comm, hl, (size_t)nt, err);
    if (cl_average_f32(s->comm, hl, (size_t)nt, err) != 0)
        return -1;
    if (on_gpu(s))
        s->be->ops->sync(s->be); /* NCCL runs on its own stream */
    if (s->has_student && average(s, s->student.reg.g, s->student.reg.np, err) != 0)
        return -1;
    if (s->has_teacher && s->teacher_sgd) {
        tr_reg *r = &s->teacher.reg;
        size_t off = s->teacher_full ? 0 : r->top_off;
        if (average(s, r->g + off, r->np - off, err) != 0)
            return -1;
    }
    if (s->has_proxies && (average(s, s->sproxy.reg.g, s->sproxy.reg.np, err) != 0 ||
                           average(s, s->tproxy.reg.g, s->tproxy.reg.np, err) != 0))
        return -1;
    if (s->has_shadow && average(s, s->shadow.reg.g, s->shadow.reg.np, err) != 0)
        return -1;
    if (s->has_review && average(s, s->review.reg.g, s->review.reg.np, err) != 0)
        return -1;
    return 0;
}

int tr_dist_reduce_stats(tr_system *s, tr_stats *st, int B, cm_err *err)
{
    st->samples = B;
    if (!multi(s))
        return 0;
    double v[4] = {st->correct_student, st->correct_teacher, st->kept >= 0 ? st->kept * B : 0, B};
    if (cl_allreduce_f64(s->comm, v, 4, CL_SUM, err) != 0)
        return -1;
    int n = cl_size(s->comm);
    if (st->correct_student >= 0)
        st->correct_student = (int)v[0];
    if (st->correct_teacher >= 0)
        st->correct_teacher = (int)v[1];
    if (st->kept >= 0)
        st->kept = (float)(v[2] / v[3]);
    st->samples = (int)v[3];
    (void)n;
    return 0;
}

int tr_system_broadcast(tr_system *s, cm_err *err)
{
    if (!multi(s))
        return 0;
    tr_reg *regs[TR_MAX_REGS];
    int nr = tr_system_regs(s, regs);
    s->be->ops->sync(s->be);
    if (on_gpu(s) && !cl_gpu_ready(s->comm))
        return cm_err_set(err, "NCCL not initialised for a CUDA run");
    for (int i = 0; i < nr; i++) {
        tr_reg *r = regs[i];
        if (bcast(s, r->w, r->np * sizeof(float), err) != 0 || bcast(s, r->m, r->np * sizeof(float), err) != 0 ||
            bcast(s, r->buf, r->nb * sizeof(float), err) != 0 ||
            cl_bcast(s->comm, &r->nbt, sizeof r->nbt, 0, err) != 0)
            return cm_err_prefix(err, "broadcast of %s", r->group);
    }
    if (cl_bcast(s->comm, &s->step, sizeof s->step, 0, err) != 0)
        return -1;
    return tr_system_check_same(s, err);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Hash of n device floats. */
static int hash_dev(tr_system *s, const float *p, size_t n, uint64_t *h, cm_err *err)
{
    if (!n)
        return 0;
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return cm_err_set(err, "out of memory");
    s->be->ops->to_host(s->be, tmp, p, n * sizeof *tmp);
    *h = fnv(*h, tmp, n * sizeof *tmp);
    free(tmp);
    return 0;
}

int tr_system_check_same(tr_system *s, cm_err *err)
{
    if (!multi(s))
        return 0;
    tr_reg *regs[TR_MAX_REGS];
    int nr = tr_system_regs(s, regs);
    s->be->ops->sync(s->be);
    for (int i = 0; i < nr; i++) {
        tr_reg *r = regs[i];
        /* Running statistics: rank 0's, as DDP's broadcast_buffers (they only
         * matter in evaluation mode, so sending them here equals DDP's send
         * before every forward pass). */
        if (bcast(s, r->buf, r->nb * sizeof(float), err) != 0 || cl_bcast(s->comm, &r->nbt, sizeof r->nbt, 0, err) != 0)
            return cm_err_prefix(err, "broadcast of %s statistics", r->group);
        uint64_t h = 1469598103934665603ULL;
        if (hash_dev(s, r->w, r->np, &h, err) != 0)
            return -1;
        int64_t v[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)}; /* max and -min in one call */
        if (cl_allreduce_i64(s->comm, v, 2, CL_MAX, err) != 0)
            return -1;
        if (v[0] != -v[1])
            return cm_err_set(err, "the ranks hold different %s weights", r->group);
    }
    return 0;
}
