/* method_c2kd: C²KD's proxies and its step (method_c2kd.h, docs/METHOD.md). */
#include "train/method_c2kd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/system_internal.h"

/* ---------------------------------------------------------------- proxy */
int tr_proxy_build(tr_proxy *p, tr_mem *mem, const char *group, int kind, int C, int h, int w, int F,
                   int classes, int max_batch, cm_err *err)
{
    memset(p, 0, sizeof *p);
    tr_reg *r = &p->reg;
    snprintf(r->group, sizeof r->group, "%s", group);
    p->kind = kind;
    p->C = C;
    p->hw = h * w;
    p->F = F < 1 ? 1 : F;
    p->classes = classes;
    p->max_batch = max_batch;
    size_t BC = (size_t)max_batch * C;
    switch (kind) {
    case TR_PROXY_FA:
        tr_add_linear(r, &p->l1, "conv.", C, C, 0);
        tr_add_bn(r, mem, &p->b1, "bn.", C);
        break;
    case TR_PROXY_CFA:
        tr_add_linear(r, &p->l1, "conv1.", C, C, 0);
        tr_add_bn(r, mem, &p->b1, "bn1.", C);
        tr_add_linear(r, &p->l2, "conv2.", C, C, 0);
        tr_add_bn(r, mem, &p->b2, "bn2.", C);
        break;
    case TR_PROXY_NONE:
        break;
    default:
        return cm_err_set(err, "unknown proxy kind %d", kind);
    }
    tr_add_linear(r, &p->fc, "fc.", C, classes, 1);
    r->top_off = 0;
    p->pooled = tr_mem_floats(mem, BC);
    p->dpooled = tr_mem_floats(mem, BC);
    p->h1 = tr_mem_floats(mem, BC);
    p->y1 = tr_mem_floats(mem, BC);
    p->a1 = tr_mem_floats(mem, BC);
    p->h2 = tr_mem_floats(mem, BC);
    p->y2 = tr_mem_floats(mem, BC);
    p->d1 = tr_mem_floats(mem, BC);
    p->d2 = tr_mem_floats(mem, BC);
    p->logits = tr_mem_floats(mem, (size_t)max_batch * classes);
    p->dfeat = tr_mem_floats(mem, BC * p->F * p->hw);
    if (mem->failed || tr_fold_build(&p->fold, mem, mem->be, p->F, C, max_batch) < 0)
        return cm_err_set(err, "%s: out of device memory", group);
    return tr_reg_alloc(r, mem, err);
}

const float *tr_proxy_forward(tr_proxy *p, be_ctx *be, const float *feat, int B, int train)
{
    const be_ops *o = be->ops;
    const tr_reg *r = &p->reg;
    size_t BC = (size_t)B * p->C;
    p->feat = feat;
    tr_pool_fwd(be, &p->fold, B, p->hw, feat, p->pooled);
    switch (p->kind) {
    case TR_PROXY_FA:
        tr_lin_fwd(r, be, &p->l1, B, p->pooled, p->h1);
        tr_bn_fwd(r, be, &p->b1, B, 1, p->h1, p->y1, train);
        o->leaky_fwd(be, BC, 0.1f, p->y1, p->a1);
        tr_lin_fwd(r, be, &p->fc, B, p->a1, p->logits);
        break;
    case TR_PROXY_CFA:
        tr_lin_fwd(r, be, &p->l1, B, p->pooled, p->h1);
        tr_bn_fwd(r, be, &p->b1, B, 1, p->h1, p->y1, train);
        tr_lin_fwd(r, be, &p->l2, B, p->y1, p->h2);
        tr_bn_fwd(r, be, &p->b2, B, 1, p->h2, p->y2, train);
        o->relu_fwd(be, BC, p->y2, p->y2);
        tr_lin_fwd(r, be, &p->fc, B, p->y2, p->logits);
        break;
    default:
        tr_lin_fwd(r, be, &p->fc, B, p->pooled, p->logits);
        break;
    }
    return p->logits;
}

void tr_proxy_backward(tr_proxy *p, be_ctx *be, int B, const float *dlogits, int need_dfeat)
{
    const be_ops *o = be->ops;
    const tr_reg *r = &p->reg;
    size_t BC = (size_t)B * p->C;
    float *dpool = need_dfeat ? p->dpooled : NULL;
    switch (p->kind) {
    case TR_PROXY_FA:
        tr_lin_bwd(r, be, &p->fc, B, p->a1, dlogits, p->d1);
        o->leaky_bwd(be, BC, 0.1f, p->y1, p->d1, p->d1);
        tr_bn_bwd(r, be, &p->b1, B, 1, p->h1, p->d1, p->d2);
        tr_lin_bwd(r, be, &p->l1, B, p->pooled, p->d2, dpool);
        break;
    case TR_PROXY_CFA:
        tr_lin_bwd(r, be, &p->fc, B, p->y2, dlogits, p->d1);
        o->relu_bwd(be, BC, p->y2, p->d1, p->d1);
        tr_bn_bwd(r, be, &p->b2, B, 1, p->h2, p->d1, p->d2);
        tr_lin_bwd(r, be, &p->l2, B, p->y1, p->d2, p->d1);
        tr_bn_bwd(r, be, &p->b1, B, 1, p->h1, p->d1, p->d2);
        tr_lin_bwd(r, be, &p->l1, B, p->pooled, p->d2, dpool);
        break;
    default:
        tr_lin_bwd(r, be, &p->fc, B, p->pooled, dlogits, dpool);
        break;
    }
    if (need_dfeat)
        tr_pool_bwd(be, &p->fold, B, p->hw, p->dpooled, p->dfeat);
}

/* ---------------------------------------------------------------- the method */

typedef struct c2kd_state {
    tr_proxy sproxy, tproxy;
    float *dp_s, *dp_t;   /* gradients of the proxies' logits */
    float *tau, *keep;    /* the selection [max_batch] */
    float *h_keep;        /* host [max_batch] */
} c2kd_state;

static void c2kd_teacher(const tr_system *s, int *train, int *full, int *sgd)
{
    tr_teacher_update u = s->cfg.teacher_update;
    *train = u != TR_TEACHER_FROZEN;
    *full = u == TR_TEACHER_FULL;
    *sgd = u != TR_TEACHER_FROZEN;
}

static int build_proxy(tr_system *s, tr_proxy *p, const char *group, const tr_resnet *n, cm_err *err)
{
    int counts = s->cfg.proxy != TR_PROXY_NONE; /* without a batch norm no counter advances */
    if (tr_proxy_build(p, &s->mem, group, s->cfg.proxy, n->l3_c, n->l3_h, n->l3_w, n->F, s->cfg.n_classes,
                       s->cfg.max_batch, err) < 0)
        return -1;
    return tr_parts_add(&s->parts, &p->reg, 1, 0, counts, err);
}

static int c2kd_build(tr_system *s, cm_err *err)
{
    c2kd_state *m = calloc(1, sizeof *m);
    if (!m)
        return cm_err_set(err, "out of memory");
    s->ms = m;
    size_t B = (size_t)s->cfg.max_batch, BC = B * s->cfg.n_classes;
    if (build_proxy(s, &m->sproxy, "student_proxy", &s->student, err) < 0 ||
        build_proxy(s, &m->tproxy, "teacher_proxy", &s->teacher, err) < 0)
        return -1;
    m->dp_s = tr_mem_floats(&s->mem, BC);
    m->dp_t = tr_mem_floats(&s->mem, BC);
    m->tau = tr_mem_floats(&s->mem, B);
    m->keep = tr_mem_floats(&s->mem, B);
    m->h_keep = malloc(B * sizeof(float));
    if (s->mem.failed || !m->h_keep)
        return cm_err_set(err, "out of memory for the selection");
    return 0;
}

static void c2kd_destroy(tr_system *s)
{
    c2kd_state *m = s->ms;
    if (!m)
        return;
    tr_reg_free(&m->sproxy.reg);
    tr_reg_free(&m->tproxy.reg);
    free(m->h_keep);
    free(m);
    s->ms = NULL;
}

static const char *c2kd_needs_two(const tr_system *s)
{
    return s->cfg.proxy != TR_PROXY_NONE ? "proxies'" : NULL;
}

static void c2kd_forward(tr_system *s, int B, const tr_step_out *z)
{
    c2kd_state *m = s->ms;
    size_t BC = (size_t)B * s->cfg.n_classes;
    (void)z;
    s->be->ops->zero(s->be, m->dp_s, BC * sizeof(float));
    s->be->ops->zero(s->be, m->dp_t, BC * sizeof(float));
    tr_proxy_forward(&m->tproxy, s->be, tr_resnet_layer3(&s->teacher), B, 1);
    tr_proxy_forward(&m->sproxy, s->be, tr_resnet_layer3(&s->student), B, 1);
}

/* c2kd's terms (c2kd-method.md); returns the number of terms. */
static int c2kd_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    c2kd_state *m = s->ms;
    be_ctx *be = s->be;
    const be_ops *o = be->ops;
    const tr_config *c = &s->cfg;
    int C = c->n_classes, nt = 0;
    float *L = s->loss;
    const float *ps = m->sproxy.logits, *pt = m->tproxy.logits;
    o->kendall_select(be, B, C, pt, ps, c->omega, m->tau, m->keep);
    /* L_T */
    names[nt] = "ce_teacher";
    o->ce(be, B, C, z->zt, y, 1.0f, L + nt++, s->dz_t);
    names[nt] = "kl_teacher_to_proxy"; /* KL(σ(sg z_t) ‖ σ(p_t)) */
    o->kl(be, B, C, z->zt, pt, 1.0f, c->lambda1, L + nt++, m->dp_t);
    names[nt] = "kl_proxy_to_teacher"; /* KL(σ(sg p_t) ‖ σ(z_t)) */
    o->kl(be, B, C, pt, z->zt, 1.0f, c->lambda1, L + nt++, s->dz_t);
    names[nt] = "nt_teacher_proxy"; /* NT(p_t ← sg p_s) */
    o->nt_kl(be, B, C, ps, pt, y, m->keep, c->lambda3, L + nt++, m->dp_t);
    /* L_S */
    names[nt] = "ce_student";
    o->ce(be, B, C, z->zs, y, 1.0f, L + nt++, s->dz_s);
    names[nt] = "kl_student_to_proxy"; /* KL(σ(sg z_s) ‖ σ(p_s)) */
    o->kl(be, B, C, z->zs, ps, 1.0f, c->lambda2, L + nt++, m->dp_s);
    names[nt] = "kl_proxy_to_student"; /* KL(σ(sg p_s) ‖ σ(z_s)) */
    o->kl(be, B, C, ps, z->zs, 1.0f, c->lambda2, L + nt++, s->dz_s);
    names[nt] = "nt_student_proxy"; /* NT(p_s ← sg p_t) */
    o->nt_kl(be, B, C, pt, ps, y, m->keep, c->lambda3, L + nt++, m->dp_s);
    return nt;
}

static void c2kd_backward(tr_system *s, int B)
{
    c2kd_state *m = s->ms;
    tr_proxy_backward(&m->tproxy, s->be, B, m->dp_t, s->teacher_full);
    tr_proxy_backward(&m->sproxy, s->be, B, m->dp_s, 1);
}

/* Each proxy's gradient into its network's layer3 output. */
static void c2kd_feat_grad(const tr_system *s, const tr_resnet *net, tr_feat_grad *fg)
{
    const c2kd_state *m = s->ms;
    fg->stage[2] = net == &s->teacher ? m->tproxy.dfeat : m->sproxy.dfeat;
}

static float c2kd_kept(tr_system *s, int B)
{
    c2kd_state *m = s->ms;
    s->be->ops->to_host(s->be, m->h_keep, m->keep, (size_t)B * sizeof(float));
    int k = 0;
    for (int i = 0; i < B; i++)
        k += m->h_keep[i] > 0.5f;
    return (float)k / (float)B;
}

static void c2kd_outputs(const tr_system *s, tr_outputs *out)
{
    const c2kd_state *m = s->ms;
    out->p_student = m->sproxy.logits;
    out->p_teacher = m->tproxy.logits;
    out->tau = m->tau;
    out->keep = m->keep;
}

tr_proxy *tr_c2kd_proxy(tr_system *s, int teacher)
{
    c2kd_state *m = s->method == &tr_method_c2kd ? s->ms : NULL;
    return !m ? NULL : teacher ? &m->tproxy : &m->sproxy;
}

const tr_method_def tr_method_c2kd = {
    .help = "C2KD: proxies, on-the-fly selection, bidirectional distillation (docs/METHOD.md)",
    .student = 1,
    .teacher = 1,
    .groups = {"student_proxy", "teacher_proxy"},
    .teacher_mode = c2kd_teacher,
    .build = c2kd_build,
    .destroy = c2kd_destroy,
    .needs_two = c2kd_needs_two,
    .forward = c2kd_forward,
    .losses = c2kd_losses,
    .backward = c2kd_backward,
    .feat_grad = c2kd_feat_grad,
    .kept = c2kd_kept,
    .outputs = c2kd_outputs,
};
