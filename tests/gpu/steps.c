/* steps: training steps of every method (pretrain, none, kd, nkd, c2kd)
 * through tr_system (train/system.h) on the CPU backend and on the CUDA
 * backend, each step compared FROM THE SAME STATE: before every step the CPU
 * system's whole state (parameters, momenta, BN running statistics,
 * num_batches_tracked, the step counter) is copied into the CUDA system; both
 * run one step on the same fresh random batch; then the step's loss terms,
 * logits, the c2kd selection (tau, kept mask), every parameter gradient and
 * every updated tensor (parameters, momenta, running statistics) are compared.
 *
 * The control. These networks are tiny (width 16; the deepest maps are 2x2
 * to 2x3), so a single ReLU input or max-pool near-tie whose side changes
 * with float32 rounding moves a sizeable share of a gradient: gradients are
 * not Lipschitz in the rounding. To measure how much, a THIRD system (CPU
 * backend, same state) runs each step on the same batch perturbed at the
 * size of rounding differences: every input value moved by one ulp
 * (float32) up or down by a fixed pattern; TF32 runs: by a relative 2^-13
 * (its logits then differ by ~7e-4 relative, the size of the CUDA
 * backend's TF32 logits error measured on an H100, 5.6e-4). ncontrol
 * (--controls, default 4) patterns per step; the worst of them counts. Its difference from the CPU system (the "control") is
 * what float32 arithmetic alone does to this step; the CUDA backend is held
 * to the same standard:
 *   forward quantities (unconditional): loss terms, logits, tau, the kept
 *     mask, running statistics must meet the stated tolerances below;
 *   backward quantities (gradients, momenta, parameter updates; with TF32
 *     also tau, a rank statistic): per step and category, the worst
 *     tensor's error should be
 *        <= max(stated tolerance, K * the control's worst error of the same
 *           step and category),  K = 4 (--K).
 *     A ReLU/max-pool flip is a discrete event that strikes different steps
 *     under different perturbations, so a step above its own bound is
 *     "flip-like" and accepted when (a) it is within K x the largest control
 *     error of the run in that category and (b) flip-like steps are no more
 *     frequent than steps where a control exceeded the stated tolerance
 *     (at least 1 allowed). See the run-level judgement at the end of main.
 *   (When the control's own kept mask differs, its step gives no bound: the
 *   stated tolerance alone applies.)
 * Free-running trajectories drift apart after 2-3 steps in float32 alone;
 * a free-running run is printed for information only, with --free N.
 * Exit 1 when a comparison fails, 2 when a backend or system cannot be
 * created.
 *
 *   steps [--tf32 0|1] [--width W] [--batch B] [--steps N] [--size S] [--bins H] [--frames T] [--free N]
 *         [--K K] [--control-rel R]   (R > 0: relative input perturbation of the control instead of 1 ulp / 2^-11)
 *
 * A reduced ResNet-18 pair (width 16, visual 64x64, audio 64x96, 10 classes,
 * batch 16) keeps the CPU side short. Tolerances (stated; relative, per
 * tensor ||gpu-cpu|| / ||cpu||):
 *                    float32   TF32
 *   loss terms        1e-4     5e-3   (|a-b| / max(|a|, 1e-3))
 *   logits, tau       1e-4     5e-3
 *   gradients         2e-3     5e-2   (or K x control)
 *   momenta           2e-3     5e-2   (after the step: 0.9 m + g; or K x control)
 *   updates           2e-3     5e-2   (p_after - p_before: -lr m, lr 0.01; or K x control)
 *   running stats     1e-3     2e-2   (0.9 r + 0.1 batch statistic; r starts at 0 / 1)
 * The kept mask must be equal; a sample whose tau sits within rounding of
 * omega may flip: a difference of one sample is reported and that step's
 * downstream comparisons are skipped (more than one is a failure).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/methods.h"
#include "train/system.h"
#include "train/system_internal.h"
#include "train/system_test.h"

static uint64_t rng_s = 12345;
static uint64_t next_u64(void)
{
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float gauss(void)
{
    double u = ((next_u64() >> 11) + 1.0) * (1.0 / 9007199254740994.0), v = (next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static int failures;

static double rel_err(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-6 ? fabs(b) : 1e-6); }

typedef struct dev_batch {
    float *audio, *visual;
    int32_t *labels;
} dev_batch;

typedef struct worst {
    double v;
    char name[128];
} worst;

static void note(worst *w, double v, const char *name)
{
    if (v > w->v || !w->name[0]) {
        w->v = v;
        snprintf(w->name, sizeof w->name, "%s", name);
    }
}

/* ||gpu - cpu|| / ||cpu|| of n floats at device pointers pc (cpu backend) and pg (gpu backend). */
static double rel_dev(be_ctx *cpu, be_ctx *gpu, const float *pc, const float *pg, size_t n)
{
    float *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
    cpu->ops->to_host(cpu, a, pc, n * 4);
    gpu->ops->to_host(gpu, b, pg, n * 4);
    double num = 0, den = 0;
    int nan = 0;
    for (size_t k = 0; k < n; k++) {
        if (isnan(a[k]) != isnan(b[k])) nan = 1;
        if (isnan(a[k]) && isnan(b[k])) continue;
        double d = (double)b[k] - a[k];
        num += d * d;
        den += (double)a[k] * a[k];
    }
    free(a);
    free(b);
    if (nan) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Relative error of the update: ||(pg - p0) - (pc - p0)|| / ||pc - p0|| (p0 on the host). */
static double rel_update(be_ctx *cpu, be_ctx *gpu, const float *pc, const float *pg, const float *p0, size_t n)
{
    float *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
    cpu->ops->to_host(cpu, a, pc, n * 4);
    gpu->ops->to_host(gpu, b, pg, n * 4);
    double num = 0, den = 0;
    int nan = 0;
    for (size_t k = 0; k < n; k++) {
        if (isnan(a[k]) || isnan(b[k])) nan = 1;
        double ua = (double)a[k] - p0[k], ub = (double)b[k] - p0[k];
        num += (ub - ua) * (ub - ua);
        den += ua * ua;
    }
    free(a);
    free(b);
    if (nan) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Copies the whole training state of sc (cpu) into sg (gpu). */
static int copy_state(tr_system *sc, tr_system *sg, be_ctx *cpu, be_ctx *gpu)
{
    tr_reg *rc[TR_MAX_PARTS], *rg[TR_MAX_PARTS];
    int nc = tr_system_regs(sc, rc), ng = tr_system_regs(sg, rg);
    if (nc != ng) return -1;
    for (int i = 0; i < nc; i++) {
        if (rc[i]->np != rg[i]->np || rc[i]->nb != rg[i]->nb) return -1;
        size_t n = rc[i]->np > rc[i]->nb ? rc[i]->np : rc[i]->nb;
        float *h = malloc(n * 4 + 4);
        cpu->ops->to_host(cpu, h, rc[i]->w, rc[i]->np * 4);
        gpu->ops->to_device(gpu, rg[i]->w, h, rg[i]->np * 4);
        gpu->ops->sync(gpu);
        cpu->ops->to_host(cpu, h, rc[i]->m, rc[i]->np * 4);
        gpu->ops->to_device(gpu, rg[i]->m, h, rg[i]->np * 4);
        gpu->ops->sync(gpu);
        if (rc[i]->nb) {
            cpu->ops->to_host(cpu, h, rc[i]->buf, rc[i]->nb * 4);
            gpu->ops->to_device(gpu, rg[i]->buf, h, rg[i]->nb * 4);
            gpu->ops->sync(gpu);
        }
        rg[i]->nbt = rc[i]->nbt;
        free(h);
    }
    tr_system_set_steps(sg, tr_system_steps(sc));
    return 0;
}

static const char *mname(int pre, tr_method m)
{
    return pre ? "pretrain" : tr_methods_name(m);
}


enum { C_LOSS, C_OUT, C_RUN, C_TAU, C_GRAD, C_MOM, C_UPD, NCAT };
static const char *CAT_NAME[NCAT] = {"loss", "logits", "running", "tau", "grad", "momentum", "update"};

/* One step's worst errors, kept for the run-level judgement. */
typedef struct step_rec {
    char method[16];
    int step, ctl_ok;
    worst g[NCAT], x[NCAT];
} step_rec;

typedef struct tval {
    int cat;
    double v;
    char name[128];
} tval;

/* One system (x) against the CPU reference (c) after one step from the same state. */
typedef struct cmp {
    worst w[NCAT];
    int mask_diff, layout_bad;
    tval *tv;
    int ntv, cap;
} cmp;

static void add_tv(cmp *r, int cat, double v, const char *name)
{
    note(&r->w[cat], v, name);
    if (r->ntv == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->tv = realloc(r->tv, (size_t)r->cap * sizeof *r->tv);
    }
    tval *t = &r->tv[r->ntv++];
    t->cat = cat;
    t->v = v;
    snprintf(t->name, sizeof t->name, "%s", name);
}

static void measure(be_ctx *cpu, tr_system *sc, const tr_stats *stc, be_ctx *bx, tr_system *sx, const tr_stats *stx,
                    float **before, int B, int classes, cmp *r)
{
    int ntv_keep = 0;
    tval *keep_tv = r->tv;
    int cap = r->cap;
    memset(r, 0, sizeof *r);
    r->tv = keep_tv;
    r->cap = cap;
    r->ntv = ntv_keep;
    tr_outputs oc, ox;
    tr_system_outputs(sc, &oc);
    tr_system_outputs(sx, &ox);
    if (oc.keep) {
        float kc[4096], kx[4096];
        int nb = B < 4096 ? B : 4096;
        cpu->ops->to_host(cpu, kc, oc.keep, (size_t)nb * 4);
        bx->ops->to_host(bx, kx, ox.keep, (size_t)nb * 4);
        for (int i = 0; i < nb; i++) r->mask_diff += kc[i] != kx[i];
        add_tv(r, C_TAU, rel_dev(cpu, bx, oc.tau, ox.tau, (size_t)B), "tau");
    }
    const float *lc[5] = {oc.z_student, oc.z_teacher, oc.p_student, oc.p_teacher, oc.h_shadow};
    const float *lx[5] = {ox.z_student, ox.z_teacher, ox.p_student, ox.p_teacher, ox.h_shadow};
    static const char *ln[5] = {"z_student", "z_teacher", "p_student", "p_teacher", "h_shadow"};
    for (int k = 0; k < 5; k++)
        if (lc[k] && lx[k]) add_tv(r, C_OUT, rel_dev(cpu, bx, lc[k], lx[k], (size_t)B * classes), ln[k]);
    if (stc->n_terms != stx->n_terms) r->layout_bad++;
    for (int t = 0; t < stc->n_terms && t < stx->n_terms; t++) {
        double te = fabs((double)stx->term[t] - stc->term[t]) / (fabs(stc->term[t]) > 1e-3 ? fabs(stc->term[t]) : 1e-3);
        add_tv(r, C_LOSS, te, stc->term_name[t]);
    }
    tr_reg *rc[TR_MAX_PARTS], *rx[TR_MAX_PARTS];
    int nr = tr_system_regs(sc, rc);
    if (tr_system_regs(sx, rx) != nr) { r->layout_bad++; return; }
    for (int k = 0; k < nr; k++) {
        for (int j = 0; j < rc[k]->nt; j++) {
            const tr_tensor *t = &rc[k]->t[j];
            char nm[128];
            snprintf(nm, sizeof nm, "%s/%s", rc[k]->group, t->name);
            if (t->kind == TT_NBT) {
                if (rc[k]->nbt != rx[k]->nbt) r->layout_bad++;
                continue;
            }
            if (t->kind == TT_BUFFER) {
                add_tv(r, C_RUN, rel_dev(cpu, bx, rc[k]->buf + t->off, rx[k]->buf + t->off, t->count), nm);
                continue;
            }
            /* gradients of parameters that are not trained (frozen teacher, top mode) are not computed */
            int trained = !(sc->has_teacher && rc[k] == &sc->teacher.reg && !sc->teacher_sgd);
            if (trained) {
                add_tv(r, C_GRAD, rel_dev(cpu, bx, rc[k]->g + t->off, rx[k]->g + t->off, t->count), nm);
                add_tv(r, C_MOM, rel_dev(cpu, bx, rc[k]->m + t->off, rx[k]->m + t->off, t->count), nm);
            }
            add_tv(r, C_UPD, rel_update(cpu, bx, rc[k]->w + t->off, rx[k]->w + t->off, before[k] + t->off, t->count), nm);
        }
    }
}

/* A fixed up/down pattern (not the batch generator: the batches stay those of earlier runs). */
static int pattern_up(size_t i, int pat)
{
    uint64_t z = (uint64_t)i * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull * (uint64_t)(pat + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (int)((z ^ (z >> 31)) & 1);
}
/* rel <= 0: one ulp up or down; else x * (1 +- rel). */
static void perturb(const float *x, float *y, size_t n, double rel, int pat)
{
    for (size_t i = 0; i < n; i++) {
        int up = pattern_up(i, pat);
        if (rel <= 0) y[i] = nextafterf(x[i], up ? INFINITY : -INFINITY);
        else y[i] = (float)((double)x[i] * (up ? 1.0 + rel : 1.0 - rel));
    }
}

/* ---------------------------------------------------------------- the run */

/* Settings, backends and buffers of one run. */
typedef struct run_ctx {
    int tf32, bn_cudnn, width, B, nsteps, S, bins, T, classes, nfree, ncontrol;
    double K, crel;
    double tol[NCAT];
    int cond[NCAT]; /* categories bounded by the control */
    be_ctx *cpu, *gpu;
    size_t na, nv;
    float *audio, *visual, *paudio, *pvisual;
    int32_t *labels;
    dev_batch dc, dg, dp; /* the batch on the CPU, on the GPU, perturbed (control) */
    cmp G, X, Xp;
    step_rec *recs;
    int nrec;
} run_ctx;

/* One method's systems and results. */
typedef struct method_run {
    const char *mn;
    tr_system *sc, *sg, *sp, *s0; /* cpu, cuda, control, the state before the step */
    tr_batch bc, bg, bp;
    int mfail, skipped;
    worst wg[NCAT], wx[NCAT];
    double worst_ratio; /* backward categories: gpu error / bound */
} method_run;

static int parse_args(run_ctx *r, int argc, char **argv)
{
    *r = (run_ctx){.tf32 = 1, .width = 16, .B = 16, .nsteps = 5, .S = 64, .bins = 64, .T = 96, .classes = 10,
                   .nfree = 5, .K = 4, .crel = -1, .ncontrol = 4};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return -1;
        if (!strcmp(argv[i], "--tf32")) r->tf32 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bn")) r->bn_cudnn = !strcmp(argv[++i], "cudnn");
        else if (!strcmp(argv[i], "--width")) r->width = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) r->B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) r->nsteps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size")) r->S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bins")) r->bins = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames")) r->T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--free")) r->nfree = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--K")) r->K = atof(argv[++i]);
        else if (!strcmp(argv[i], "--control-rel")) r->crel = atof(argv[++i]);
        else if (!strcmp(argv[i], "--controls")) r->ncontrol = atoi(argv[++i]);
        else return -1;
    }
    return 0;
}

static void set_tolerances(run_ctx *r)
{
    int tf32 = r->tf32;
    if (r->crel < 0) r->crel = tf32 ? 1.0 / 8192 : 0; /* 0: one ulp */
    r->tol[C_LOSS] = tf32 ? 5e-3 : 1e-4;
    r->tol[C_OUT] = r->tol[C_TAU] = tf32 ? 5e-3 : 1e-4;
    r->tol[C_RUN] = tf32 ? 2e-2 : 1e-3;
    r->tol[C_GRAD] = r->tol[C_MOM] = r->tol[C_UPD] = tf32 ? 5e-2 : 2e-3;
    /* categories bounded by the control: the backward ones; with TF32 also
     * tau (a rank statistic: two logits within TF32 rounding swap, tau moves
     * by 2/(C(C-1)/2)) */
    memset(r->cond, 0, sizeof r->cond);
    r->cond[C_GRAD] = r->cond[C_MOM] = r->cond[C_UPD] = 1;
    r->cond[C_TAU] = tf32;
}

static void print_header(const run_ctx *r)
{
    printf("# steps: %s, tf32 %s; ResNet-18 width %d, batch %d, visual 3x%dx%d, audio 1x%dx%d, %d classes, %d steps from the same state\n",
           r->gpu->ops->device_name ? r->gpu->ops->device_name(r->gpu) : "CPU backend as the device (C2KD_GPUTEST_ON_CPU)",
           r->tf32 ? "on" : "off", r->width, r->B, r->S, r->S, r->bins, r->T, r->classes, r->nsteps);
    printf("# tolerances (relative): loss terms %.0e, logits/tau %.0e, running stats %.0e (unconditional); gradients, momenta, "
           "parameter updates max(%.0e, K=%g x control)\n",
           r->tol[C_LOSS], r->tol[C_OUT], r->tol[C_RUN], r->tol[C_GRAD], r->K);
    printf("# batch norm: %s (--bn)\n", r->bn_cudnn ? "cuDNN" : "own kernels");
    if (r->crel > 0) printf("# control: CPU system on the batch with every input value multiplied by 1 +- %.3g (fixed pattern)\n", r->crel);
    else printf("# control: CPU system on the batch with every input value moved one ulp up or down (fixed pattern)\n");
}

/* Backends and buffers; 0, or 2 (the exit status) with a message. */
static int open_run(run_ctx *r)
{
    cm_err err = {{0}};
    r->recs = calloc(64 * (size_t)(r->nsteps > 0 ? r->nsteps : 1), sizeof *r->recs);
    r->cpu = be_cpu_create(0, &err);
    if (!r->cpu) { fprintf(stderr, "steps: cpu backend: %s\n", err.msg); return 2; }
    be_options bopt;
    be_options_default(&bopt);
    bopt.tf32 = r->tf32;
    bopt.bn = r->bn_cudnn ? BE_BN_CUDNN : BE_BN_OWN;
    r->gpu = getenv("C2KD_GPUTEST_ON_CPU") ? be_cpu_create(0, &err) /* harness self-check */
                                           : be_cuda_create(&bopt, &err);
    if (!r->gpu) { fprintf(stderr, "steps: cuda backend: %s\n", err.msg); return 2; }
    print_header(r);
    be_ctx *cpu = r->cpu, *gpu = r->gpu;
    size_t na = r->na = (size_t)r->B * r->bins * r->T, nv = r->nv = (size_t)r->B * 3 * r->S * r->S, nl = (size_t)r->B * 4;
    r->audio = malloc(na * 4), r->visual = malloc(nv * 4), r->paudio = malloc(na * 4), r->pvisual = malloc(nv * 4);
    r->labels = malloc(nl);
    /* the CPU backend's "device" memory is host memory: the same calls work on both */
    dev_batch *dc = &r->dc, *dg = &r->dg, *dp = &r->dp;
    dc->audio = cpu->ops->alloc(cpu, na * 4); dc->visual = cpu->ops->alloc(cpu, nv * 4); dc->labels = cpu->ops->alloc(cpu, nl);
    dp->audio = cpu->ops->alloc(cpu, na * 4); dp->visual = cpu->ops->alloc(cpu, nv * 4); dp->labels = cpu->ops->alloc(cpu, nl);
    dg->audio = gpu->ops->alloc(gpu, na * 4); dg->visual = gpu->ops->alloc(gpu, nv * 4); dg->labels = gpu->ops->alloc(gpu, nl);
    if (!dc->audio || !dc->visual || !dc->labels || !dg->audio || !dg->visual || !dg->labels || !dp->audio || !dp->visual ||
        !dp->labels) {
        fprintf(stderr, "steps: cannot allocate the batch\n");
        return 2;
    }
    return 0;
}

static void close_run(run_ctx *r)
{
    be_ctx *cpu = r->cpu, *gpu = r->gpu;
    free(r->recs);
    free(r->G.tv);
    free(r->X.tv);
    free(r->Xp.tv);
    be_stats bst = {0};
    if (gpu->ops->stats) gpu->ops->stats(gpu, &bst);
    printf("# peak device bytes %zu\n", bst.peak_bytes);
    cpu->ops->free(cpu, r->dc.audio); cpu->ops->free(cpu, r->dc.visual); cpu->ops->free(cpu, r->dc.labels);
    cpu->ops->free(cpu, r->dp.audio); cpu->ops->free(cpu, r->dp.visual); cpu->ops->free(cpu, r->dp.labels);
    gpu->ops->free(gpu, r->dg.audio); gpu->ops->free(gpu, r->dg.visual); gpu->ops->free(gpu, r->dg.labels);
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    free(r->audio);
    free(r->visual);
    free(r->paudio);
    free(r->pvisual);
    free(r->labels);
}

/* A fresh random batch, on both backends. */
static void new_batch(run_ctx *r)
{
    be_ctx *cpu = r->cpu, *gpu = r->gpu;
    for (size_t i = 0; i < r->na; i++) r->audio[i] = gauss();
    for (size_t i = 0; i < r->nv; i++) r->visual[i] = gauss();
    for (int i = 0; i < r->B; i++) r->labels[i] = (int32_t)(next_u64() % r->classes);
    cpu->ops->to_device(cpu, r->dc.audio, r->audio, r->na * 4);
    cpu->ops->to_device(cpu, r->dc.visual, r->visual, r->nv * 4);
    cpu->ops->to_device(cpu, r->dc.labels, r->labels, (size_t)r->B * 4);
    gpu->ops->to_device(gpu, r->dg.audio, r->audio, r->na * 4);
    gpu->ops->to_device(gpu, r->dg.visual, r->visual, r->nv * 4);
    gpu->ops->to_device(gpu, r->dg.labels, r->labels, (size_t)r->B * 4);
    cpu->ops->sync(cpu);
    gpu->ops->sync(gpu);
}

/* The control of step s: ncontrol perturbation patterns, worst of them per
 * category into r->X; *stp is the last pattern's step. -1 when one failed. */
static int run_control(run_ctx *r, method_run *m, int s, const tr_stats *stc, tr_stats *stp, float **before,
                       double *ctl_loss)
{
    be_ctx *cpu = r->cpu;
    cm_err err = {{0}};
    memset(r->X.w, 0, sizeof r->X.w);
    r->X.mask_diff = r->X.layout_bad = 0;
    *ctl_loss = 0;
    for (int pat = 0; pat < r->ncontrol; pat++) {
        perturb(r->audio, r->paudio, r->na, r->crel, pat);
        perturb(r->visual, r->pvisual, r->nv, r->crel, pat);
        cpu->ops->to_device(cpu, r->dp.audio, r->paudio, r->na * 4);
        cpu->ops->to_device(cpu, r->dp.visual, r->pvisual, r->nv * 4);
        cpu->ops->to_device(cpu, r->dp.labels, r->labels, (size_t)r->B * 4);
        cpu->ops->sync(cpu);
        memset(stp, 0, sizeof *stp);
        if (copy_state(m->s0, m->sp, cpu, cpu) || tr_system_step(m->sp, &m->bp, 0.01f, stp, &err)) {
            printf("FAIL %s step %d control: %s\n", m->mn, s, err.msg);
            return -1;
        }
        measure(cpu, m->sc, stc, cpu, m->sp, stp, before, r->B, r->classes, &r->Xp);
        for (int c = 0; c < NCAT; c++) note(&r->X.w[c], r->Xp.w[c].v, r->Xp.w[c].name);
        if (r->Xp.mask_diff > r->X.mask_diff) r->X.mask_diff = r->Xp.mask_diff;
        r->X.layout_bad += r->Xp.layout_bad;
        *ctl_loss = fmax(*ctl_loss, rel_err(stp->loss, stc->loss));
    }
    return 0;
}

/* Forward quantities of step s: unconditional. 1 when the step's downstream
 * comparisons are skipped (one kept sample differs). */
static int judge_forward(run_ctx *r, method_run *m, int s)
{
    const cmp *G = &r->G;
    if (G->layout_bad) { printf("FAIL %s step %d: loss terms or num_batches_tracked differ\n", m->mn, s); m->mfail++; }
    if (G->mask_diff > 1) { printf("FAIL %s step %d: kept mask differs in %d samples\n", m->mn, s, G->mask_diff); m->mfail++; }
    int skip = G->mask_diff == 1;
    if (skip)
        printf("     %s step %d: kept mask differs in 1 sample (tau within rounding of omega): downstream comparisons skipped\n", m->mn, s);
    for (int i = 0; i < G->ntv; i++) {
        const tval *t = &G->tv[i];
        if (r->cond[t->cat] || (skip && t->cat != C_OUT && t->cat != C_TAU)) continue;
        if (!(t->v <= r->tol[t->cat])) {
            printf("FAIL %s step %d: %s %s rel %.3e > %.0e\n", m->mn, s, CAT_NAME[t->cat], t->name, t->v, r->tol[t->cat]);
            m->mfail++;
        }
    }
    return skip;
}

/* Backward quantities of step s: bounded by the control (judged at the end,
 * over the run); recorded and printed here. */
static void judge_backward(run_ctx *r, method_run *m, int s)
{
    const cmp *G = &r->G, *X = &r->X;
    double bound[NCAT];
    int ctl_ok = X->mask_diff == 0 && !X->layout_bad;
    step_rec *rec = &r->recs[r->nrec++];
    snprintf(rec->method, sizeof rec->method, "%s", m->mn);
    rec->step = s;
    rec->ctl_ok = ctl_ok;
    memcpy(rec->g, G->w, sizeof G->w);
    memcpy(rec->x, X->w, sizeof X->w);
    printf("     %-8s %-9s %-10s %-40s %-10s %-40s %s\n", "", "category", "cuda", "(worst tensor)", "control", "(worst tensor)",
           "same-step bound");
    for (int c = 0; c < NCAT; c++) {
        int cond = r->cond[c];
        bound[c] = cond ? fmax(r->tol[c], ctl_ok ? r->K * X->w[c].v : 0) : r->tol[c];
        int bad = !(G->w[c].v <= bound[c]);
        if (cond && bound[c] > 0 && G->w[c].v / bound[c] > m->worst_ratio) m->worst_ratio = G->w[c].v / bound[c];
        if (G->w[c].name[0] || X->w[c].name[0])
            printf("     %-8s %-9s %.3e  %-40s %.3e  %-40s %.1e%s\n", bad ? (cond ? "over" : "FAIL") : "", CAT_NAME[c],
                   G->w[c].v, G->w[c].name, X->w[c].v, X->w[c].name, bound[c],
                   cond && !ctl_ok ? " (control mask differs: stated only)" : "");
        note(&m->wg[c], G->w[c].v, G->w[c].name);
        note(&m->wx[c], X->w[c].v, X->w[c].name);
    }
    int shown = 0;
    for (int i = 0; i < G->ntv && shown < 6; i++) {
        const tval *t = &G->tv[i];
        if (!r->cond[t->cat] || t->v <= bound[t->cat]) continue;
        printf("     over %s step %d: %s %s rel %.3e > same-step bound %.2e\n", m->mn, s, CAT_NAME[t->cat], t->name, t->v,
               bound[t->cat]);
        shown++;
    }
}

/* Step s of method m from the same state on both backends and the control;
 * -1 stops the method's steps. */
static int one_step(run_ctx *r, method_run *m, int s)
{
    be_ctx *cpu = r->cpu, *gpu = r->gpu;
    cm_err err = {{0}};
    new_batch(r);
    if (copy_state(m->sc, m->sg, cpu, gpu) || copy_state(m->sc, m->s0, cpu, cpu)) {
        printf("FAIL %s: the systems differ in layout\n", m->mn);
        m->mfail++;
        return -1;
    }
    float *before[TR_MAX_PARTS] = {NULL};
    tr_reg *rb[TR_MAX_PARTS];
    int nrb = tr_system_regs(m->sc, rb);
    for (int k = 0; k < nrb; k++) {
        before[k] = malloc(rb[k]->np * 4 + 4);
        cpu->ops->to_host(cpu, before[k], rb[k]->w, rb[k]->np * 4);
    }
    tr_stats stc, stg, stp;
    memset(&stc, 0, sizeof stc);
    memset(&stg, 0, sizeof stg);
    memset(&stp, 0, sizeof stp);
    double ctl_loss = 0;
    int rc = 0;
    if (tr_system_step(m->sc, &m->bc, 0.01f, &stc, &err)) { printf("FAIL %s step %d cpu: %s\n", m->mn, s, err.msg); rc = -1; }
    else if (tr_system_step(m->sg, &m->bg, 0.01f, &stg, &err)) { printf("FAIL %s step %d cuda: %s\n", m->mn, s, err.msg); rc = -1; }
    if (rc == 0) {
        measure(cpu, m->sc, &stc, gpu, m->sg, &stg, before, r->B, r->classes, &r->G);
        rc = run_control(r, m, s, &stc, &stp, before, &ctl_loss);
    }
    for (int k = 0; k < TR_MAX_PARTS; k++) free(before[k]);
    if (rc != 0) {
        m->mfail++;
        return -1;
    }
    printf("%s step %d: loss cpu %.6f cuda %.6f rel %.2e (control %.2e)", m->mn, s, stc.loss, stg.loss,
           rel_err(stg.loss, stc.loss), ctl_loss);
    if (stc.kept >= 0) printf("  kept cpu %.4f cuda %.4f control %.4f", stc.kept, stg.kept, stp.kept);
    printf("\n");
    if (judge_forward(r, m, s)) {
        m->skipped++;
        note(&m->wg[C_OUT], r->G.w[C_OUT].v, r->G.w[C_OUT].name);
        return 0;
    }
    judge_backward(r, m, s);
    if (s == r->nsteps - 1)
        for (int t = 0; t < stc.n_terms && t < stg.n_terms; t++)
            printf("     %-28s cpu %.6f cuda %.6f control %.6f\n", stc.term_name[t], stc.term[t], stg.term[t], stp.term[t]);
    return 0;
}

/* Free-running (information only): from the same state, nfree steps on one batch each side. */
static void free_running(run_ctx *r, method_run *m)
{
    cm_err err = {{0}};
    if (r->nfree <= 0 || m->mfail || copy_state(m->sc, m->sg, r->cpu, r->gpu) != 0) return;
    printf("  free-running %d steps (information, not checked):", r->nfree);
    for (int s = 0; s < r->nfree; s++) {
        tr_stats stc, stg;
        if (tr_system_step(m->sc, &m->bc, 0.01f, &stc, &err) || tr_system_step(m->sg, &m->bg, 0.01f, &stg, &err)) break;
        printf(" %.1e", rel_err(stg.loss, stc.loss));
    }
    printf(" (loss rel per step)\n");
}

/* Every step of one method; 0, or 2 (the exit status) when a system cannot be made. */
static int run_method(run_ctx *r, int pre, tr_method method)
{
    cm_err err = {{0}};
    method_run m;
    memset(&m, 0, sizeof m);
    m.mn = mname(pre, method);
    tr_config cfg;
    tr_config_default(&cfg);
    cfg.pretrain = pre;
    cfg.method = method;
    cfg.width = r->width;
    cfg.n_classes = r->classes;
    cfg.image_size = r->S;
    cfg.spec_bins = r->bins;
    cfg.spec_frames = r->T;
    cfg.max_batch = r->B;
    tr_system **sys[4] = {&m.sc, &m.sg, &m.sp, &m.s0}; /* s0: the state before the step, for the controls */
    const char *what[4] = {"cpu system", "cuda system", "control system", "control system"};
    for (int i = 0; i < 4; i++) {
        *sys[i] = tr_system_create(i == 1 ? r->gpu : r->cpu, &cfg, 7, &err);
        if (!*sys[i]) { fprintf(stderr, "steps: %s: %s: %s\n", m.mn, what[i], err.msg); return 2; }
    }
    m.bc = (tr_batch){r->B, r->dc.audio, r->dc.visual, r->dc.labels};
    m.bg = (tr_batch){r->B, r->dg.audio, r->dg.visual, r->dg.labels};
    m.bp = (tr_batch){r->B, r->dp.audio, r->dp.visual, r->dp.labels};
    size_t nt = tr_system_num_tensors(m.sc);
    for (int s = 0; s < r->nsteps; s++)
        if (one_step(r, &m, s) != 0) break;
    printf("%-4s %s: %d steps from the same state (%d skipped), %zu tensors; worst rel cuda (control): loss %.2e (%.2e), "
           "logits %.2e (%.2e), running %.2e (%.2e), grad %.2e (%.2e) [%s], momentum %.2e (%.2e), update %.2e (%.2e); "
           "worst backward error / same-step bound %.2f\n",
           m.mfail ? "FAIL" : "ok", m.mn, r->nsteps, m.skipped, nt, m.wg[C_LOSS].v, m.wx[C_LOSS].v, m.wg[C_OUT].v,
           m.wx[C_OUT].v, m.wg[C_RUN].v, m.wx[C_RUN].v, m.wg[C_GRAD].v, m.wx[C_GRAD].v, m.wg[C_GRAD].name, m.wg[C_MOM].v,
           m.wx[C_MOM].v, m.wg[C_UPD].v, m.wx[C_UPD].v, m.worst_ratio);
    failures += m.mfail;
    free_running(r, &m);
    for (int i = 0; i < 4; i++) tr_system_destroy(*sys[i]);
    return 0;
}

/* Run-level judgement of the categories bounded by the control. A step
 * whose error exceeds K x its own control is "flip-like" (a ReLU /
 * max-pool decision on the other side: such events are discrete and
 * strike different steps under different perturbations). It is accepted
 * when (a) its error stays within K x the largest control error of the
 * run in that category (the size a rounding-level perturbation is shown
 * to cause in this configuration) and (b) flip-like steps are no more
 * frequent than the control's: their number must not exceed
 * max(1, the number of steps where some control pattern exceeded the
 * stated tolerance). */
static void judge_run(const run_ctx *r)
{
    double xmax[NCAT] = {0};
    int ctl_flips = 0, flips = 0, bfail = 0;
    const step_rec *recs = r->recs;
    for (int i = 0; i < r->nrec; i++) {
        int f = 0;
        for (int c = 0; c < NCAT; c++) {
            if (!r->cond[c] || !recs[i].ctl_ok) continue;
            if (recs[i].x[c].v > xmax[c]) xmax[c] = recs[i].x[c].v;
            if (recs[i].x[c].v > r->tol[c]) f = 1;
        }
        ctl_flips += f;
    }
    printf("# control over the run (worst of %d patterns per step): ", r->ncontrol);
    for (int c = 0; c < NCAT; c++)
        if (r->cond[c]) printf("%s %.2e  ", CAT_NAME[c], xmax[c]);
    printf("; %d of %d steps with a control error above the stated tolerance\n", ctl_flips, r->nrec);
    for (int i = 0; i < r->nrec; i++) {
        int f = 0;
        for (int c = 0; c < NCAT; c++) {
            if (!r->cond[c]) continue;
            double same = fmax(r->tol[c], recs[i].ctl_ok ? r->K * recs[i].x[c].v : 0), run = fmax(r->tol[c], r->K * xmax[c]);
            if (recs[i].g[c].v <= same) continue;
            f = 1;
            int ok = recs[i].g[c].v <= run;
            printf("%s %s step %d: %s %.3e (%s) above K x its own control %.2e: flip-like; run-level bound %.2e\n",
                   ok ? "    " : "FAIL", recs[i].method, recs[i].step, CAT_NAME[c], recs[i].g[c].v, recs[i].g[c].name,
                   recs[i].x[c].v, run);
            if (!ok) bfail++;
        }
        flips += f;
    }
    int allowed = ctl_flips > 1 ? ctl_flips : 1;
    if (flips > allowed) {
        printf("FAIL backward: %d flip-like steps, more than the control's %d\n", flips, allowed);
        bfail++;
    }
    printf("%-4s backward (gradients, momenta, updates%s): %d flip-like steps (allowed %d), K = %g\n", bfail ? "FAIL" : "ok",
           r->tf32 ? ", tau" : "", flips, allowed, r->K);
    failures += bfail;
}

int main(int argc, char **argv)
{
    run_ctx r;
    if (parse_args(&r, argc, argv) != 0) {
        fprintf(stderr, "usage: steps [--tf32 0|1] [--bn own|cudnn] [--width W] [--batch B] [--steps N] [--size S] [--bins H] "
                        "[--frames T] [--free N] [--K K] [--control-rel R] [--controls N]\n");
        return 2;
    }
    set_tolerances(&r);
    int rc = open_run(&r);
    if (rc != 0) return rc;
    struct { int pre; tr_method m; } runs[] = {{1, TR_C2KD}, {0, TR_NONE}, {0, TR_KD}, {0, TR_NKD}, {0, TR_C2KD}, {0, TR_SHAKE}, {0, TR_REVIEW}};
    for (size_t mi = 0; mi < sizeof runs / sizeof runs[0]; mi++)
        if ((rc = run_method(&r, runs[mi].pre, runs[mi].m)) != 0) return rc;
    judge_run(&r);
    close_run(&r);
    printf("# steps: %d failures\n", failures);
    return failures ? 1 : 0;
}
