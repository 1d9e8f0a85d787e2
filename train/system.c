/* system: the networks of one run, the list of trained parts, one step (the
 * method's part of it through its row of train/methods.c), SGD. See
 * system.h and docs/FORMAT.md, "Checkpoints". */
#include "train/system.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/methods.h"
#include "train/opts.h"
#include "train/system_internal.h"
#include "train/system_test.h"

/* The option table (train/opts.c) holds the defaults of every field an
 * option decides; the rest describe the data (AVE's spectrogram shape). */
void tr_config_default(tr_config *c)
{
    memset(c, 0, sizeof *c);
    tr_opts o;
    tr_opts_default(&o);
    tr_opts_config(&o, c);
    c->n_classes = 0;
    c->frames = 1;
    c->visual_mode = TR_VISUAL_STACK;
    c->spec_bins = 257;
    c->spec_frames = 1004;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int build_resnet(tr_system *s, tr_resnet *n, const char *group, tr_modality mod, int depth, cm_err *err)
{
    const tr_config *c = &s->cfg;
    int in_c, h, w, F = 1;
    if (mod == TR_AUDIO) {
        in_c = 1;
        h = c->spec_bins;
        w = c->spec_frames;
    } else {
        h = w = c->image_size;
        if (c->visual_mode == TR_VISUAL_FOLD) {
            in_c = 3;
            F = c->frames;
        } else {
            in_c = 3 * c->frames;
        }
    }
    return tr_resnet_build(n, &s->mem, group, depth, c->width, in_c, h, w, F, c->n_classes,
                           c->max_batch, err);
}

/* The backward passes of a step and the scratch of each (resnet.h, "memory
 * plan"). The networks trained by backpropagation go in ascending order of
 * their activation arenas; each borrows, as its scratch, the arena of a
 * network that is done (its backward pass finished, or a frozen teacher with
 * none) when one is large enough, else the system's scratch (NULL here).
 * With the usual audio teacher and visual student, the student goes first on
 * the small system scratch and the teacher then works in the student's arena.
 * The order changes no result: the networks share no gradient. */
static int backward_plan(tr_system *s, tr_resnet *order[2], float *region[2])
{
    tr_resnet *dead[2];
    int nd = 0, n = 0;
    if (s->has_student)
        order[n++] = &s->student;
    if (s->has_teacher) {
        if (s->teacher_sgd)
            order[n++] = &s->teacher;
        else
            dead[nd++] = &s->teacher;
    }
    if (n == 2 && order[1]->act_count < order[0]->act_count) {
        tr_resnet *t = order[0];
        order[0] = order[1];
        order[1] = t;
    }
    for (int i = 0; i < n; i++) {
        region[i] = NULL;
        size_t need = tr_resnet_scratch_floats(order[i]);
        for (int j = 0; j < nd; j++)
            if (dead[j]->act_count >= need)
                region[i] = dead[j]->act;
        dead[nd++] = order[i];
    }
    return n;
}

static int check_config(const tr_config *c, cm_err *err)
{
    int sd = c->student_depth ? c->student_depth : c->depth, td = c->teacher_depth ? c->teacher_depth : c->depth;
    if (sd != 18 && sd != 50)
        return cm_err_set(err, "student depth %d: 18 or 50", sd);
    if (td != 18 && td != 50)
        return cm_err_set(err, "teacher depth %d: 18 or 50", td);
    if (c->width < 1 || c->width > 4096)
        return cm_err_set(err, "width %d out of range", c->width);
    if (c->n_classes < 2)
        return cm_err_set(err, "%d classes: at least 2 needed", c->n_classes);
    if (c->frames < 1)
        return cm_err_set(err, "%d frames: at least 1 needed", c->frames);
    if (c->max_batch < 1)
        return cm_err_set(err, "max_batch %d: at least 1", c->max_batch);
    if (!tr_methods_of(c))
        return cm_err_set(err, "unknown method %d", (int)c->method);
    if (c->proxy < TR_PROXY_FA || c->proxy > TR_PROXY_CFA)
        return cm_err_set(err, "unknown proxy kind %d", (int)c->proxy);
    if (c->teacher_update < TR_TEACHER_FULL || c->teacher_update > TR_TEACHER_FROZEN)
        return cm_err_set(err, "unknown teacher update %d", (int)c->teacher_update);
    const tr_method_def *m = tr_methods_of(c);
    if (m->student && m->teacher && c->student == c->teacher)
        return cm_err_set(err, "student and teacher see the same modality");
    if (!(c->kd_temp > 0) || !(c->nkd_temp > 0))
        return cm_err_set(err, "temperatures must be positive");
    return 0;
}

static void add_index(tr_system *s, tr_reg *r)
{
    if (!r->t)
        return;
    for (int i = 0; i < r->nt; i++) {
        if (r->t[i].kind == TT_NBT)
            continue;
        s->idx[s->nidx].reg = r;
        s->idx[s->nidx].t = i;
        snprintf(s->idx[s->nidx].name, sizeof s->idx[s->nidx].name, "%s/%s", r->group, r->t[i].name);
        s->nidx++;
    }
}

/* The networks the method needs, in the teacher's mode, as the first parts. */
static int build_networks(tr_system *s, cm_err *err)
{
    const tr_method_def *m = s->method;
    tr_config *c = &s->cfg;
    s->has_student = m->student;
    s->has_teacher = m->teacher;
    if (m->teacher_mode) /* else a frozen pretrained teacher in evaluation mode */
        m->teacher_mode(s, &s->teacher_train, &s->teacher_full, &s->teacher_sgd);
    if (s->has_student && (build_resnet(s, &s->student, "student", c->student, c->student_depth, err) < 0 ||
                           tr_parts_add(&s->parts, &s->student.reg, 1, 0, 1, err) < 0))
        return -1;
    if (s->has_teacher &&
        (build_resnet(s, &s->teacher, "teacher", c->teacher, c->teacher_depth, err) < 0 ||
         tr_parts_add(&s->parts, &s->teacher.reg, s->teacher_sgd, s->teacher_full ? 0 : s->teacher.reg.top_off,
                      s->teacher_train, err) < 0))
        return -1;
    s->n_net_parts = s->parts.n;
    return 0;
}

/* The method's parts: appended by its build, one for each group its row names. */
static int build_method(tr_system *s, cm_err *err)
{
    const tr_method_def *m = s->method;
    if (m->build && m->build(s, err) < 0)
        return -1;
    int ng = 0;
    while (ng < TR_METHOD_MAX_GROUPS && m->groups[ng])
        ng++;
    if (s->parts.n - s->n_net_parts != ng)
        return cm_err_set(err, "method %s: %d parts built, %d groups declared", tr_methods_name_of(m),
                          s->parts.n - s->n_net_parts, ng);
    for (int i = 0; i < ng; i++)
        if (strcmp(s->parts.p[s->n_net_parts + i].reg->group, m->groups[i]) != 0)
            return cm_err_set(err, "method %s: part %s built where %s is declared", tr_methods_name_of(m),
                              s->parts.p[s->n_net_parts + i].reg->group, m->groups[i]);
    return 0;
}

/* One scratch buffer (scratch, max_act floats): the transient downsample BN
 * output of the forward passes and the backward scratch of the networks
 * that cannot borrow a dead arena. */
static void plan_scratch(tr_system *s)
{
    tr_resnet *order[2];
    float *region[2];
    int nb = backward_plan(s, order, region);
    s->max_act = 1;
    if (s->has_student && s->student.tmp_need > s->max_act)
        s->max_act = s->student.tmp_need;
    if (s->has_teacher && s->teacher.tmp_need > s->max_act)
        s->max_act = s->teacher.tmp_need;
    for (int i = 0; i < nb; i++)
        if (!region[i] && tr_resnet_scratch_floats(order[i]) > s->max_act)
            s->max_act = tr_resnet_scratch_floats(order[i]);
    s->scratch = tr_mem_floats(&s->mem, s->max_act);
    s->student.tmp = s->teacher.tmp = s->scratch;
}

/* Every part initialised from `seed` and its group's name, and the tests' index. */
static int init_parts(tr_system *s, uint64_t seed, cm_err *err)
{
    size_t ntot = 0;
    for (int i = 0; i < s->parts.n; i++)
        ntot += (size_t)s->parts.p[i].reg->nt;
    s->idx = calloc(ntot ? ntot : 1, sizeof *s->idx);
    if (!s->idx)
        return cm_err_set(err, "out of memory");
    for (int i = 0; i < s->parts.n; i++) {
        tr_reg *r = s->parts.p[i].reg;
        tr_rng rng;
        tr_rng_seed(&rng, seed ^ hash_str(r->group));
        tr_reg_init(r, s->be, &rng);
        add_index(s, r);
    }
    return 0;
}

tr_system *tr_system_create(be_ctx *be, const tr_config *cfg, uint64_t seed, cm_err *err)
{
    if (check_config(cfg, err) < 0)
        return NULL;
    tr_system *s = calloc(1, sizeof *s);
    if (!s) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    s->be = be;
    s->cfg = *cfg;
    s->mem.be = be;
    s->ddp.be = be;
    s->method = tr_methods_of(cfg);
    tr_config *c = &s->cfg;
    if (!c->student_depth) /* 0: --depth decides */
        c->student_depth = c->depth;
    if (!c->teacher_depth)
        c->teacher_depth = c->depth;
    if (build_networks(s, err) < 0 || build_method(s, err) < 0)
        goto fail;
    plan_scratch(s);
    size_t BC = (size_t)c->max_batch * c->n_classes;
    s->dz_s = tr_mem_floats(&s->mem, BC);
    s->dz_t = tr_mem_floats(&s->mem, BC);
    s->loss = tr_mem_floats(&s->mem, TR_MAX_TERMS);
    s->pred = (int32_t *)tr_mem_floats(&s->mem, (size_t)c->max_batch);
    if (s->mem.failed) {
        cm_err_set(err, "out of device memory");
        goto fail;
    }
    s->h_pred = malloc((size_t)c->max_batch * sizeof(int32_t));
    s->h_labels = malloc((size_t)c->max_batch * sizeof(int32_t));
    if (!s->h_pred || !s->h_labels) {
        cm_err_set(err, "out of memory");
        goto fail;
    }
    if (init_parts(s, seed, err) < 0 || be->ops->status(be, err) < 0)
        goto fail;
    return s;
fail:
    tr_system_destroy(s);
    return NULL;
}
void tr_system_destroy(tr_system *s)
{
    if (!s)
        return;
    if (s->be)
        s->be->ops->sync(s->be);
    if (s->method && s->method->destroy)
        s->method->destroy(s);
    tr_mem_free_all(&s->mem);
    tr_reg_free(&s->student.reg);
    tr_reg_free(&s->teacher.reg);
    free(s->student.blk);
    free(s->teacher.blk);
    free(s->h_pred);
    free(s->h_labels);
    free(s->idx);
    tr_ddp_free(&s->ddp);
    free(s);
}

int64_t tr_system_steps(const tr_system *s)
{
    return s->step;
}

void tr_system_set_steps(tr_system *s, int64_t steps)
{
    s->step = steps;
}

static const float *input_of(const tr_batch *b, tr_modality m)
{
    return m == TR_AUDIO ? b->audio : b->visual;
}

static const char *modality_name(tr_modality m)
{
    return m == TR_AUDIO ? "audio" : "visual";
}

static int check_batch(const tr_system *s, const tr_batch *b, cm_err *err)
{
    if (b->B < 1 || b->B > s->cfg.max_batch)
        return cm_err_set(err, "batch of %d samples (1 to %d allowed)", b->B, s->cfg.max_batch);
    if (!b->labels)
        return cm_err_set(err, "batch without labels");
    if (s->has_student && !input_of(b, s->cfg.student))
        return cm_err_set(err, "batch without %s input for the student", modality_name(s->cfg.student));
    if (s->has_teacher && !input_of(b, s->cfg.teacher))
        return cm_err_set(err, "batch without %s input for the teacher", modality_name(s->cfg.teacher));
    return 0;
}

static int count_correct(tr_system *s, int B, int C, const float *z)
{
    s->be->ops->argmax(s->be, B, C, z, s->pred);
    s->be->ops->to_host(s->be, s->h_pred, s->pred, (size_t)B * sizeof(int32_t));
    int n = 0;
    for (int i = 0; i < B; i++)
        n += s->h_pred[i] == s->h_labels[i];
    return n;
}

/* Backward passes of every trained part (after the losses): the method's
 * parts first, then the networks with what the method sends into their
 * features. Data parallel: each part's average starts when its gradients
 * are final. */
static void step_backward(tr_system *s, int B)
{
    be_ctx *be = s->be;
    const tr_method_def *m = s->method;
    if (m->backward) /* before the networks': a frozen teacher's arena may be lent as scratch */
        m->backward(s, B);
    for (int i = s->n_net_parts; i < s->parts.n; i++)
        if (s->parts.p[i].sgd)
            tr_ddp_grads_ready(&s->ddp, s->parts.p[i].reg, s->parts.p[i].off);
    tr_resnet *order[2];
    float *region[2];
    int nb = backward_plan(s, order, region);
    for (int i = 0; i < nb; i++) {
        int t = order[i] == &s->teacher;
        tr_feat_grad fg = {{NULL}, NULL};
        if (m->feat_grad)
            m->feat_grad(s, order[i], &fg);
        tr_resnet_backward(order[i], be, B, t ? s->dz_t : s->dz_s, &fg, t ? s->teacher_full : 1,
                           region[i] ? region[i] : s->scratch);
        tr_ddp_grads_ready(&s->ddp, &order[i]->reg, t && !s->teacher_full ? order[i]->reg.top_off : 0);
    }
}

/* The step's figures; data parallel: those of the global batch. */
static int step_stats(tr_system *s, const tr_batch *b, const tr_step_out *z, const char **names, const double *hl,
                      int nt, double total, tr_stats *st, cm_err *err)
{
    be_ctx *be = s->be;
    int B = b->B, C = s->cfg.n_classes;
    memset(st, 0, sizeof *st);
    st->loss = total;
    st->n_terms = nt;
    for (int i = 0; i < nt; i++) {
        st->term_name[i] = names[i];
        st->term[i] = hl[i];
    }
    be->ops->to_host(be, s->h_labels, b->labels, (size_t)B * sizeof(int32_t));
    st->correct_student = s->has_student ? count_correct(s, B, C, z->zs) : -1;
    st->correct_teacher = s->has_teacher ? count_correct(s, B, C, z->zt) : -1;
    st->kept = s->method->kept ? s->method->kept(s, B) : -1;
    st->samples = B;
    if (!tr_ddp_multi(&s->ddp))
        return 0;
    double v[4] = {st->correct_student, st->correct_teacher, st->kept >= 0 ? st->kept * B : 0, B};
    if (tr_ddp_sum(&s->ddp, v, 4, err) != 0)
        return -1;
    if (st->correct_student >= 0)
        st->correct_student = (int)v[0];
    if (st->correct_teacher >= 0)
        st->correct_teacher = (int)v[1];
    if (st->kept >= 0)
        st->kept = (float)(v[2] / v[3]);
    st->samples = (int)v[3];
    return 0;
}

/* The forward passes: the networks, then the method's parts. */
static void step_forward(tr_system *s, const tr_batch *b, tr_step_out *z)
{
    const tr_config *c = &s->cfg;
    if (s->has_teacher)
        z->zt = tr_resnet_forward(&s->teacher, s->be, input_of(b, c->teacher), b->B, s->teacher_train);
    if (s->has_student)
        z->zs = tr_resnet_forward(&s->student, s->be, input_of(b, c->student), b->B, 1);
    if (s->method->forward)
        s->method->forward(s, b->B, z);
}

/* The loss terms on the host, checked finite (their sum in *total). */
static int step_check(tr_system *s, const char **names, const double *hl, int nt, long long stepno, double *total,
                      cm_err *err)
{
    double sum = 0;
    for (int i = 0; i < nt; i++) {
        if (!isfinite(hl[i]))
            return cm_err_set(err, "step %lld: non-finite loss (%s = %g); no parameter was changed", stepno,
                              names[i], hl[i]);
        sum += hl[i];
    }
    if (!isfinite(sum))
        return cm_err_set(err, "step %lld: non-finite total loss; no parameter was changed", stepno);
    *total = sum;
    (void)s;
    return 0;
}

int tr_system_step(tr_system *s, const tr_batch *b, float lr, tr_stats *st, cm_err *err)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    int B = b->B;
    long long stepno = (long long)s->step + 1;
    if (check_batch(s, b, err) < 0)
        return cm_err_prefix(err, "step %lld", stepno);
    const char *two = s->method->needs_two ? s->method->needs_two(s) : NULL;
    if (two && B < 2)
        return cm_err_set(err, "step %lld: a batch of 1 sample: the %s batch norm needs at least 2", stepno, two);
    size_t BC = (size_t)B * c->n_classes;
    const char *names[TR_MAX_TERMS];
    tr_parts_buffers(&s->parts, be, 0);
    o->zero(be, s->loss, TR_MAX_TERMS * sizeof(float));
    o->zero(be, s->dz_s, BC * sizeof(float));
    o->zero(be, s->dz_t, BC * sizeof(float));
    s->last_B = B;
    tr_step_out z = {0};
    step_forward(s, b, &z);
    int nt = s->method->losses(s, B, b->labels, &z, names);
    step_backward(s, B);
    float hf[TR_MAX_TERMS];
    double hl[TR_MAX_TERMS];
    o->to_host(be, hf, s->loss, TR_MAX_TERMS * sizeof(float));
    for (int i = 0; i < TR_MAX_TERMS; i++)
        hl[i] = hf[i];
    if (s->method->terms64) /* the terms it sums in double (review's HCL) */
        s->method->terms64(s, hl);
    if (o->status(be, err) < 0 || tr_ddp_reduce_step(&s->ddp, &s->parts, hl, nt, err) != 0) {
        tr_parts_buffers(&s->parts, be, 1);
        return cm_err_prefix(err, "step %lld", stepno);
    }
    double total = 0;
    if (step_check(s, names, hl, nt, stepno, &total, err) < 0) {
        tr_parts_buffers(&s->parts, be, 1);
        o->sync(be);
        return -1;
    }
    tr_parts_sgd(&s->parts, be, lr, c->momentum);
    if (st && step_stats(s, b, &z, names, hl, nt, total, st, err) != 0)
        return cm_err_prefix(err, "step %lld", stepno);
    if (o->status(be, err) < 0)
        return cm_err_prefix(err, "step %lld", stepno);
    s->step++;
    return 0;
}

int tr_system_eval(tr_system *s, const tr_batch *b, int32_t *pred_student, int32_t *pred_teacher,
                   float *logits_student, float *logits_teacher, cm_err *err)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    int B = b->B, C = c->n_classes;
    if (b->B < 1 || b->B > c->max_batch)
        return cm_err_set(err, "batch of %d samples (1 to %d allowed)", b->B, c->max_batch);
    s->last_B = B;
    for (int k = 0; k < 2; k++) {
        int has = k == 0 ? s->has_student : s->has_teacher;
        int32_t *pred = k == 0 ? pred_student : pred_teacher;
        float *logits = k == 0 ? logits_student : logits_teacher;
        if (!has) {
            if (pred)
                for (int i = 0; i < B; i++)
                    pred[i] = -1;
            continue;
        }
        if (!pred && !logits)
            continue;
        tr_modality m = k == 0 ? c->student : c->teacher;
        const float *x = input_of(b, m);
        if (!x)
            return cm_err_set(err, "batch without %s input", modality_name(m));
        tr_resnet *n = k == 0 ? &s->student : &s->teacher;
        const float *z = tr_resnet_forward(n, be, x, B, 0);
        if (pred) {
            o->argmax(be, B, C, z, s->pred);
            o->to_host(be, pred, s->pred, (size_t)B * sizeof(int32_t));
        }
        if (logits)
            o->to_host(be, logits, z, (size_t)B * C * sizeof(float));
    }
    return o->status(be, err);
}

/* ---- data parallel (train/ddp.c over the list of parts) ---- */

void tr_system_set_comm(tr_system *s, cl_comm *comm)
{
    tr_ddp_set_comm(&s->ddp, comm, s->cfg.sync_bn, &s->mem, &s->parts);
}

int tr_system_broadcast(tr_system *s, cm_err *err)
{
    return tr_ddp_broadcast(&s->ddp, &s->parts, &s->step, err);
}

int tr_system_check_same(tr_system *s, cm_err *err)
{
    return tr_ddp_check_same(&s->ddp, &s->parts, err);
}

/* ---- inspection (system_test.h) ---- */

int tr_system_regs(tr_system *s, tr_reg *regs[TR_MAX_PARTS])
{
    for (int i = 0; i < s->parts.n; i++)
        regs[i] = s->parts.p[i].reg;
    return s->parts.n;
}

void tr_system_outputs(const tr_system *s, tr_outputs *out)
{
    memset(out, 0, sizeof *out);
    out->B = s->last_B;
    if (s->has_student)
        out->z_student = s->student.logits;
    if (s->has_teacher)
        out->z_teacher = s->teacher.logits;
    if (s->method->outputs)
        s->method->outputs(s, out);
}

size_t tr_system_num_tensors(const tr_system *s)
{
    return s->nidx;
}

int tr_system_tensor(const tr_system *s, size_t i, const char **name, size_t *count, float **value,
                     float **grad)
{
    if (i >= s->nidx)
        return -1;
    const tr_reg *r = s->idx[i].reg;
    const tr_tensor *t = &r->t[s->idx[i].t];
    if (name)
        *name = s->idx[i].name;
    if (count)
        *count = t->count;
    if (t->kind == TT_PARAM) {
        if (value)
            *value = r->w + t->off;
        if (grad)
            *grad = r->g + t->off;
    } else {
        if (value)
            *value = r->buf + t->off;
        if (grad)
            *grad = NULL;
    }
    return 0;
}
