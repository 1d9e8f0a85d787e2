/* system: the networks of one run, the loss of one step per method, SGD.
 * See system.h and docs/FORMAT.md, "Checkpoints". */
#include "train/system.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/model.h"
#include "train/opts.h"
#include "train/system_internal.h"

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

/* The backward passes of a step and the scratch of each (model.h, "memory
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

static int build_proxy(tr_system *s, tr_proxy *p, const char *group, const tr_resnet *n, cm_err *err)
{
    return tr_proxy_build(p, &s->mem, group, s->cfg.proxy, n->l3_c, n->l3_h, n->l3_w, n->F,
                          s->cfg.n_classes, s->cfg.max_batch, err);
}

/* shake's layer-norm buffers (system_internal.h). */
static int shake_alloc(tr_system *s, cm_err *err)
{
    size_t B = (size_t)s->cfg.max_batch, BC = B * s->cfg.n_classes;
    float **per_row[] = {&s->ln_gamma, &s->ln_beta, &s->ln_rm, &s->ln_rv, &s->ln_dg, &s->ln_db,
                         &s->ln_mean[0], &s->ln_mean[1], &s->ln_mean[2], &s->ln_inv[0], &s->ln_inv[1], &s->ln_inv[2]};
    for (size_t i = 0; i < sizeof per_row / sizeof *per_row; i++)
        *per_row[i] = tr_mem_floats(&s->mem, B);
    for (int i = 0; i < 3; i++) {
        s->ln_z[i] = tr_mem_floats(&s->mem, BC);
        s->ln_dz[i] = tr_mem_floats(&s->mem, BC);
    }
    s->h_tmp = malloc((2 * BC + 1) * sizeof(float));
    if (s->mem.failed || !s->h_tmp)
        return cm_err_set(err, "out of memory for the shadow head's losses");
    for (size_t i = 0; i < B; i++)
        s->h_tmp[i] = 3.1415f;
    s->be->ops->to_device(s->be, s->ln_gamma, s->h_tmp, B * sizeof(float));
    s->be->ops->sync(s->be);
    return 0;
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
    if (c->method < TR_NONE || c->method > TR_REVIEW)
        return cm_err_set(err, "unknown method %d", (int)c->method);
    if (c->proxy < TR_PROXY_FA || c->proxy > TR_PROXY_CFA)
        return cm_err_set(err, "unknown proxy kind %d", (int)c->proxy);
    if (c->teacher_update < TR_TEACHER_FULL || c->teacher_update > TR_TEACHER_FROZEN)
        return cm_err_set(err, "unknown teacher update %d", (int)c->teacher_update);
    if (!c->pretrain && c->method != TR_NONE && c->student == c->teacher)
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
    tr_config *c = &s->cfg;
    if (!c->student_depth) /* 0: --depth decides */
        c->student_depth = c->depth;
    if (!c->teacher_depth)
        c->teacher_depth = c->depth;
    if (c->pretrain) {
        s->has_teacher = 1;
    } else {
        s->has_student = 1;
        s->has_teacher = c->method != TR_NONE;
        s->has_proxies = c->method == TR_C2KD;
        s->has_shadow = c->method == TR_SHAKE;
        s->has_review = c->method == TR_REVIEW;
    }
    /* Who trains, in which mode. */
    if (c->pretrain) {
        s->teacher_train = 1;
        s->teacher_full = 1;
        s->teacher_sgd = 1;
    } else if (c->method == TR_C2KD) {
        s->teacher_train = c->teacher_update != TR_TEACHER_FROZEN;
        s->teacher_full = c->teacher_update == TR_TEACHER_FULL;
        s->teacher_sgd = c->teacher_update != TR_TEACHER_FROZEN;
    } else {
        s->teacher_train = 0; /* kd / nkd / shake / review: frozen pretrained teacher in evaluation mode */
        s->teacher_full = 0;
        s->teacher_sgd = 0;
    }
    if (s->has_student && (build_resnet(s, &s->student, "student", c->student, c->student_depth, err) < 0))
        goto fail;
    if (s->has_teacher && (build_resnet(s, &s->teacher, "teacher", c->teacher, c->teacher_depth, err) < 0))
        goto fail;
    if (s->has_proxies) {
        if (build_proxy(s, &s->sproxy, "student_proxy", &s->student, err) < 0 ||
            build_proxy(s, &s->tproxy, "teacher_proxy", &s->teacher, err) < 0)
            goto fail;
    }
    if (s->has_shadow && (tr_shadow_build(&s->shadow, &s->mem, &s->teacher, c->max_batch, err) < 0 ||
                          shake_alloc(s, err) < 0))
        goto fail;
    if (s->has_review && tr_review_build(&s->review, &s->mem, &s->student, &s->teacher, c->max_batch, err) < 0)
        goto fail;
    size_t BC = (size_t)c->max_batch * c->n_classes;
    {
        /* One scratch buffer (scratch, max_act floats): the transient
         * downsample BN output of the forward passes and the backward scratch
         * of the networks that cannot borrow a dead arena. */
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
    s->dz_s = tr_mem_floats(&s->mem, BC);
    s->dz_t = tr_mem_floats(&s->mem, BC);
    s->dp_s = tr_mem_floats(&s->mem, BC);
    s->dp_t = tr_mem_floats(&s->mem, BC);
    s->loss = tr_mem_floats(&s->mem, TR_MAX_TERMS);
    s->loss64 = (double *)tr_mem_floats(&s->mem, 2 * TR_REVIEW_N); /* one allocation each: aligned */
    s->tau = tr_mem_floats(&s->mem, (size_t)c->max_batch);
    s->keep = tr_mem_floats(&s->mem, (size_t)c->max_batch);
    s->pred = (int32_t *)tr_mem_floats(&s->mem, (size_t)c->max_batch);
    if (s->mem.failed) {
        cm_err_set(err, "out of device memory");
        goto fail;
    }
    s->h_pred = malloc((size_t)c->max_batch * sizeof(int32_t));
    s->h_labels = malloc((size_t)c->max_batch * sizeof(int32_t));
    s->h_keep = malloc((size_t)c->max_batch * sizeof(float));
    size_t ntot = 0;
    tr_reg *regs[TR_MAX_REGS];
    int nr = tr_system_regs(s, regs);
    for (int i = 0; i < nr; i++)
        ntot += (size_t)regs[i]->nt;
    s->idx = calloc(ntot ? ntot : 1, sizeof *s->idx);
    if (!s->h_pred || !s->h_labels || !s->h_keep || !s->idx) {
        cm_err_set(err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < nr; i++) {
        tr_rng rng;
        tr_rng_seed(&rng, seed ^ hash_str(regs[i]->group));
        tr_reg_init(regs[i], be, &rng);
        add_index(s, regs[i]);
    }
    if (be->ops->status(be, err) < 0)
        goto fail;
    return s;
fail:
    tr_system_destroy(s);
    return NULL;
}

int tr_system_regs(tr_system *s, tr_reg *regs[TR_MAX_REGS])
{
    int n = 0;
    if (s->has_student)
        regs[n++] = &s->student.reg;
    if (s->has_teacher)
        regs[n++] = &s->teacher.reg;
    if (s->has_proxies) {
        regs[n++] = &s->sproxy.reg;
        regs[n++] = &s->tproxy.reg;
    }
    if (s->has_shadow)
        regs[n++] = &s->shadow.reg;
    if (s->has_review)
        regs[n++] = &s->review.reg;
    return n;
}

void tr_system_destroy(tr_system *s)
{
    if (!s)
        return;
    if (s->be)
        s->be->ops->sync(s->be);
    tr_mem_free_all(&s->mem);
    tr_reg_free(&s->student.reg);
    tr_reg_free(&s->teacher.reg);
    tr_reg_free(&s->sproxy.reg);
    tr_reg_free(&s->tproxy.reg);
    tr_reg_free(&s->shadow.reg);
    tr_reg_free(&s->review.reg);
    free(s->h_tmp);
    free(s->student.blk);
    free(s->teacher.blk);
    free(s->h_pred);
    free(s->h_labels);
    free(s->h_keep);
    free(s->idx);
    free(s->bnsync.h);
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

/* Running statistics are saved before the forward pass and restored when the
 * step fails, so that a failed step changes nothing. */
static void save_buffers(tr_system *s, int restore)
{
    tr_reg *regs[TR_MAX_REGS];
    int nr = tr_system_regs(s, regs);
    for (int i = 0; i < nr; i++) {
        if (!regs[i]->nb)
            continue;
        if (restore)
            s->be->ops->copy(s->be, regs[i]->buf, regs[i]->buf_save, regs[i]->nb * sizeof(float));
        else
            s->be->ops->copy(s->be, regs[i]->buf_save, regs[i]->buf, regs[i]->nb * sizeof(float));
    }
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

/* The forward outputs of one step. */
typedef struct step_out {
    const float *zs, *zt, *ps, *pt, *h;
} step_out;

/* c2kd's terms (c2kd-method.md); returns the number of terms. */
static int c2kd_losses(tr_system *s, int B, const int32_t *y, const step_out *z, const char **names)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    int C = c->n_classes, nt = 0;
    float *L = s->loss;
    o->kendall_select(be, B, C, z->pt, z->ps, c->omega, s->tau, s->keep);
    /* L_T */
    names[nt] = "ce_teacher";
    o->ce(be, B, C, z->zt, y, 1.0f, L + nt++, s->dz_t);
    names[nt] = "kl_teacher_to_proxy"; /* KL(σ(sg z_t) ‖ σ(p_t)) */
    o->kl(be, B, C, z->zt, z->pt, 1.0f, c->lambda1, L + nt++, s->dp_t);
    names[nt] = "kl_proxy_to_teacher"; /* KL(σ(sg p_t) ‖ σ(z_t)) */
    o->kl(be, B, C, z->pt, z->zt, 1.0f, c->lambda1, L + nt++, s->dz_t);
    names[nt] = "nt_teacher_proxy"; /* NT(p_t ← sg p_s) */
    o->nt_kl(be, B, C, z->ps, z->pt, y, s->keep, c->lambda3, L + nt++, s->dp_t);
    /* L_S */
    names[nt] = "ce_student";
    o->ce(be, B, C, z->zs, y, 1.0f, L + nt++, s->dz_s);
    names[nt] = "kl_student_to_proxy"; /* KL(σ(sg z_s) ‖ σ(p_s)) */
    o->kl(be, B, C, z->zs, z->ps, 1.0f, c->lambda2, L + nt++, s->dp_s);
    names[nt] = "kl_proxy_to_student"; /* KL(σ(sg p_s) ‖ σ(z_s)) */
    o->kl(be, B, C, z->ps, z->zs, 1.0f, c->lambda2, L + nt++, s->dz_s);
    names[nt] = "nt_student_proxy"; /* NT(p_s ← sg p_t) */
    o->nt_kl(be, B, C, z->pt, z->ps, y, s->keep, c->lambda3, L + nt++, s->dp_s);
    return nt;
}

/* 3.1415 * layer_norm(z) over the classes = batch norm of [1, B, C] with
 * gamma 3.1415, beta 0, eps 1e-7 (the running statistics are scratch). */
static void shake_ln(tr_system *s, int B, int i, const float *z)
{
    s->be->ops->bn_fwd_train(s->be, 1, B, s->cfg.n_classes, z, s->ln_gamma, s->ln_beta, s->ln_rm, s->ln_rv,
                             0.1f, 1e-7f, s->ln_z[i], s->ln_mean[i], s->ln_inv[i]);
}

static void shake_ln_bwd(tr_system *s, int B, int i, const float *z, float *dz)
{
    s->be->ops->bn_bwd(s->be, 1, B, s->cfg.n_classes, z, s->ln_dz[i], s->ln_gamma, s->ln_mean[i], s->ln_inv[i],
                       dz, s->ln_dg, s->ln_db);
}

/* SHAKE's terms on the normalised logits (system.h); the gradients go to the
 * raw logits of the student (dz_s) and of the shadow head (dp_t). */
static int shake_losses(tr_system *s, int B, const int32_t *y, const step_out *z, const char **names)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    int C = s->cfg.n_classes, nt = 0;
    size_t BC = (size_t)B * C;
    float T = s->cfg.kd_temp, *L = s->loss;
    const float *raw[3] = {z->zs, z->zt, z->h};
    for (int i = 0; i < 3; i++) {
        shake_ln(s, B, i, raw[i]);
        o->zero(be, s->ln_dz[i], BC * sizeof(float));
    }
    const float *ns = s->ln_z[0], *nz = s->ln_z[1], *nh = s->ln_z[2];
    names[nt] = "ce_student";
    o->ce(be, B, C, ns, y, 1.0f, L + nt++, s->ln_dz[0]);
    names[nt] = "kl_student_to_shadow"; /* T² KL_T(σ(sg z_s) ‖ σ(h)) */
    o->kl(be, B, C, ns, nh, T, T * T, L + nt++, s->ln_dz[2]);
    names[nt] = "kl_shadow_to_student"; /* T² KL_T(σ(sg h) ‖ σ(z_s)) */
    o->kl(be, B, C, nh, ns, T, T * T, L + nt++, s->ln_dz[0]);
    names[nt] = "ce_shadow";
    o->ce(be, B, C, nh, y, 1.0f, L + nt++, s->ln_dz[2]);
    /* MSE(h, sg z_t), mean over B*C: gradient 2 (h - z_t) / (B C); the value on the host */
    names[nt] = "mse_shadow_teacher";
    o->axpy(be, BC, 2.0f / (float)BC, nh, s->ln_dz[2]);
    o->axpy(be, BC, -2.0f / (float)BC, nz, s->ln_dz[2]);
    float *hh = s->h_tmp, *ht = s->h_tmp + BC;
    o->to_host(be, hh, nh, BC * sizeof(float));
    o->to_host(be, ht, nz, BC * sizeof(float));
    double sum = 0;
    for (size_t i = 0; i < BC; i++)
        sum += ((double)hh[i] - ht[i]) * ((double)hh[i] - ht[i]);
    s->h_tmp[2 * BC] = (float)(sum / (double)BC);
    o->to_device(be, L + nt++, s->h_tmp + 2 * BC, sizeof(float));
    o->sync(be);
    shake_ln_bwd(s, B, 0, z->zs, s->dz_s);
    shake_ln_bwd(s, B, 2, z->h, s->dp_t);
    return nt;
}

/* The loss terms of the configured method; returns their number. */
static int method_losses(tr_system *s, int B, const int32_t *y, const step_out *z, const char **names)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    int C = c->n_classes, nt = 0;
    float *L = s->loss;
    if (c->pretrain) {
        names[nt] = "ce_teacher";
        o->ce(be, B, C, z->zt, y, 1.0f, L + nt++, s->dz_t);
    } else if (c->method == TR_NONE) {
        names[nt] = "ce_student";
        o->ce(be, B, C, z->zs, y, 1.0f, L + nt++, s->dz_s);
    } else if (c->method == TR_KD) {
        names[nt] = "ce_student";
        o->ce(be, B, C, z->zs, y, 1.0f, L + nt++, s->dz_s);
        names[nt] = "kd";
        o->kl(be, B, C, z->zt, z->zs, c->kd_temp, c->kd_temp * c->kd_temp, L + nt++, s->dz_s);
    } else if (c->method == TR_NKD) {
        names[nt] = "ce_student";
        o->ce(be, B, C, z->zs, y, 1.0f, L + nt++, s->dz_s);
        names[nt] = "nkd";
        o->nkd(be, B, C, z->zt, z->zs, y, c->nkd_temp, c->nkd_gamma, 1.0f, L + nt++, s->dz_s);
    } else if (c->method == TR_SHAKE) {
        nt = shake_losses(s, B, y, z, names);
    } else if (c->method == TR_REVIEW) {
        static const char *hcl_names[TR_REVIEW_N] = {"hcl_layer1", "hcl_layer2", "hcl_layer3", "hcl_layer4",
                                                     "hcl_pool"};
        names[nt] = "ce_student";
        o->ce(be, B, C, z->zs, y, 1.0f, L + nt++, s->dz_s);
        for (int l = 0; l < TR_REVIEW_N; l++)
            names[nt + l] = hcl_names[l];
        s->loss64_at = nt;
        tr_review_backward(&s->review, be, B, 1.0f, s->loss64); /* weight 1: the authors' ImageNet default */
        nt += TR_REVIEW_N;
    } else {
        nt = c2kd_losses(s, B, y, z, names);
    }
    return nt;
}

/* Backward passes of every trained part (after the losses). */
static void step_backward(tr_system *s, int B)
{
    be_ctx *be = s->be;
    /* data parallel: each registry's average starts when its gradients are final */
    if (s->has_review) /* tr_review_backward ran with the losses */
        tr_dist_grads_ready(s, &s->review.reg, 0);
    if (s->has_proxies) {
        tr_proxy_backward(&s->tproxy, be, B, s->dp_t, s->teacher_full);
        tr_dist_grads_ready(s, &s->tproxy.reg, 0);
        tr_proxy_backward(&s->sproxy, be, B, s->dp_s, 1);
        tr_dist_grads_ready(s, &s->sproxy.reg, 0);
    }
    /* before the networks': the frozen teacher's arena (the head's input) may be lent as scratch */
    if (s->has_shadow) {
        tr_shadow_backward(&s->shadow, be, &s->teacher, B, s->dp_t);
        tr_dist_grads_ready(s, &s->shadow.reg, 0);
    }
    tr_resnet *order[2];
    float *region[2];
    int nb = backward_plan(s, order, region);
    for (int i = 0; i < nb; i++) {
        int t = order[i] == &s->teacher;
        tr_feat_grad fg = {{NULL}, NULL};
        if (s->has_proxies)
            fg.stage[2] = t ? s->tproxy.dfeat : s->sproxy.dfeat;
        if (s->has_review && !t)
            fg = s->review.grad;
        tr_resnet_backward(order[i], be, B, t ? s->dz_t : s->dz_s, &fg, t ? s->teacher_full : 1,
                           region[i] ? region[i] : s->scratch);
        tr_dist_grads_ready(s, &order[i]->reg, t && !s->teacher_full ? order[i]->reg.top_off : 0);
    }
}

/* SGD over every trained registry, and the BN batch counters. */
static void step_sgd(tr_system *s, float lr)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    if (s->has_student)
        o->sgd(be, s->student.reg.np, s->student.reg.w, s->student.reg.g, s->student.reg.m, lr, c->momentum);
    if (s->has_teacher && s->teacher_sgd) {
        tr_reg *r = &s->teacher.reg;
        size_t off = s->teacher_full ? 0 : r->top_off;
        o->sgd(be, r->np - off, r->w + off, r->g + off, r->m + off, lr, c->momentum);
    }
    tr_reg *extra[3];
    int ne = 0;
    if (s->has_proxies) {
        extra[ne++] = &s->sproxy.reg;
        extra[ne++] = &s->tproxy.reg;
    }
    if (s->has_shadow)
        extra[ne++] = &s->shadow.reg;
    if (s->has_review)
        extra[ne++] = &s->review.reg;
    for (int i = 0; i < ne; i++)
        o->sgd(be, extra[i]->np, extra[i]->w, extra[i]->g, extra[i]->m, lr, c->momentum);
    if (s->has_student)
        s->student.reg.nbt++;
    if (s->has_teacher && s->teacher_train)
        s->teacher.reg.nbt++;
    if (s->has_proxies && c->proxy != TR_PROXY_NONE) {
        s->sproxy.reg.nbt++;
        s->tproxy.reg.nbt++;
    }
    if (s->has_shadow)
        s->shadow.reg.nbt++;
    if (s->has_review)
        s->review.reg.nbt++;
}

static void step_stats(tr_system *s, const tr_batch *b, const step_out *z, const char **names, const double *hl,
                       int nt, double total, tr_stats *st)
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
    st->kept = -1;
    be->ops->to_host(be, s->h_labels, b->labels, (size_t)B * sizeof(int32_t));
    st->correct_student = s->has_student ? count_correct(s, B, C, z->zs) : -1;
    st->correct_teacher = s->has_teacher ? count_correct(s, B, C, z->zt) : -1;
    if (s->has_proxies) {
        be->ops->to_host(be, s->h_keep, s->keep, (size_t)B * sizeof(float));
        int k = 0;
        for (int i = 0; i < B; i++)
            k += s->h_keep[i] > 0.5f;
        st->kept = (float)k / (float)B;
    }
}

int tr_system_step(tr_system *s, const tr_batch *b, float lr, tr_stats *st, cm_err *err)
{
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    int B = b->B, C = c->n_classes;
    long long stepno = (long long)s->step + 1;
    if (check_batch(s, b, err) < 0)
        return cm_err_prefix(err, "step %lld", stepno);
    if (((s->has_proxies && c->proxy != TR_PROXY_NONE) || s->has_shadow || s->has_review) && B < 2)
        return cm_err_set(err, "step %lld: a batch of 1 sample: the %s batch norm needs at least 2", stepno,
                          s->has_shadow ? "shadow head's" : s->has_review ? "review modules'" : "proxies'");
    size_t BC = (size_t)B * C;
    const char *names[TR_MAX_TERMS];
    save_buffers(s, 0);
    o->zero(be, s->loss, TR_MAX_TERMS * sizeof(float));
    o->zero(be, s->loss64, TR_REVIEW_N * sizeof(double));
    float *grads[4] = {s->dz_s, s->dz_t, s->dp_s, s->dp_t};
    for (int i = 0; i < 4; i++)
        o->zero(be, grads[i], BC * sizeof(float));
    s->last_B = B;
    step_out z = {0};
    if (s->has_teacher)
        z.zt = tr_resnet_forward(&s->teacher, be, input_of(b, c->teacher), B, s->teacher_train);
    if (s->has_student)
        z.zs = tr_resnet_forward(&s->student, be, input_of(b, c->student), B, 1);
    if (s->has_proxies) {
        z.pt = tr_proxy_forward(&s->tproxy, be, tr_resnet_layer3(&s->teacher), B, 1);
        z.ps = tr_proxy_forward(&s->sproxy, be, tr_resnet_layer3(&s->student), B, 1);
    }
    if (s->has_shadow)
        z.h = tr_shadow_forward(&s->shadow, be, &s->teacher, B);
    if (s->has_review)
        tr_review_forward(&s->review, be, &s->student, &s->teacher, B);
    int nt = method_losses(s, B, b->labels, &z, names);
    step_backward(s, B);
    float hf[TR_MAX_TERMS];
    double hl[TR_MAX_TERMS], h64[TR_REVIEW_N];
    o->to_host(be, hf, s->loss, TR_MAX_TERMS * sizeof(float));
    for (int i = 0; i < TR_MAX_TERMS; i++)
        hl[i] = hf[i];
    if (s->has_review) {
        o->to_host(be, h64, s->loss64, sizeof h64);
        memcpy(hl + s->loss64_at, h64, sizeof h64);
    }
    if (o->status(be, err) < 0 || tr_dist_reduce_step(s, hl, nt, err) != 0) {
        save_buffers(s, 1);
        return cm_err_prefix(err, "step %lld", stepno);
    }
    double total = 0;
    for (int i = 0; i < nt; i++) {
        if (!isfinite(hl[i])) {
            save_buffers(s, 1);
            o->sync(be);
            return cm_err_set(err, "step %lld: non-finite loss (%s = %g); no parameter was changed",
                              stepno, names[i], (double)hl[i]);
        }
        total += hl[i];
    }
    if (!isfinite(total)) {
        save_buffers(s, 1);
        o->sync(be);
        return cm_err_set(err, "step %lld: non-finite total loss; no parameter was changed", stepno);
    }
    step_sgd(s, lr);
    if (st) {
        step_stats(s, b, &z, names, hl, nt, total, st);
        if (tr_dist_reduce_stats(s, st, B, err) != 0)
            return cm_err_prefix(err, "step %lld", stepno);
    }
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

void tr_system_outputs(const tr_system *s, tr_outputs *out)
{
    memset(out, 0, sizeof *out);
    out->B = s->last_B;
    if (s->has_student)
        out->z_student = s->student.logits;
    if (s->has_teacher)
        out->z_teacher = s->teacher.logits;
    if (s->has_proxies) {
        out->p_student = s->sproxy.logits;
        out->p_teacher = s->tproxy.logits;
        out->tau = s->tau;
        out->keep = s->keep;
    }
    if (s->has_shadow)
        out->h_shadow = s->shadow.logits;
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
