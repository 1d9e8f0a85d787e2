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

#include "backend/backend.h"
#include "train/system.h"
#include "train/system_internal.h"

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
    tr_reg *rc[4], *rg[4];
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
    return pre ? "pretrain" : m == TR_NONE ? "none" : m == TR_KD ? "kd" : m == TR_NKD ? "nkd" : "c2kd";
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
    const float *lc[4] = {oc.z_student, oc.z_teacher, oc.p_student, oc.p_teacher};
    const float *lx[4] = {ox.z_student, ox.z_teacher, ox.p_student, ox.p_teacher};
    static const char *ln[4] = {"z_student", "z_teacher", "p_student", "p_teacher"};
    for (int k = 0; k < 4; k++)
        if (lc[k] && lx[k]) add_tv(r, C_OUT, rel_dev(cpu, bx, lc[k], lx[k], (size_t)B * classes), ln[k]);
    if (stc->n_terms != stx->n_terms) r->layout_bad++;
    for (int t = 0; t < stc->n_terms && t < stx->n_terms; t++) {
        double te = fabs((double)stx->term[t] - stc->term[t]) / (fabs(stc->term[t]) > 1e-3 ? fabs(stc->term[t]) : 1e-3);
        add_tv(r, C_LOSS, te, stc->term_name[t]);
    }
    tr_reg *rc[4], *rx[4];
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

int main(int argc, char **argv)
{
    int bn_cudnn = 0;
    int tf32 = 1, width = 16, B = 16, nsteps = 5, S = 64, bins = 64, T = 96, classes = 10, nfree = 5;
    double K = 4, crel = -1;
    int ncontrol = 4;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) goto usage;
        if (!strcmp(argv[i], "--tf32")) tf32 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bn")) bn_cudnn = !strcmp(argv[++i], "cudnn");
        else if (!strcmp(argv[i], "--width")) width = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) nsteps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size")) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bins")) bins = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames")) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--free")) nfree = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--K")) K = atof(argv[++i]);
        else if (!strcmp(argv[i], "--control-rel")) crel = atof(argv[++i]);
        else if (!strcmp(argv[i], "--controls")) ncontrol = atoi(argv[++i]);
        else goto usage;
    }
    if (crel < 0) crel = tf32 ? 1.0 / 8192 : 0; /* 0: one ulp */
    double tol[NCAT];
    tol[C_LOSS] = tf32 ? 5e-3 : 1e-4;
    tol[C_OUT] = tol[C_TAU] = tf32 ? 5e-3 : 1e-4;
    tol[C_RUN] = tf32 ? 2e-2 : 1e-3;
    tol[C_GRAD] = tol[C_MOM] = tol[C_UPD] = tf32 ? 5e-2 : 2e-3;
    /* categories bounded by the control: the backward ones; with TF32 also
     * tau (a rank statistic: two logits within TF32 rounding swap, tau moves
     * by 2/(C(C-1)/2)) */
    int cond[NCAT] = {0};
    cond[C_GRAD] = cond[C_MOM] = cond[C_UPD] = 1;
    cond[C_TAU] = tf32;
    step_rec *recs = calloc(64 * (size_t)(nsteps > 0 ? nsteps : 1), sizeof *recs);
    int nrec = 0;
    cm_err err = {{0}};
    be_ctx *cpu = be_cpu_create(0, &err);
    if (!cpu) { fprintf(stderr, "steps: cpu backend: %s\n", err.msg); return 2; }
    be_options bopt;
    be_options_default(&bopt);
    bopt.tf32 = tf32;
    bopt.bn = bn_cudnn ? BE_BN_CUDNN : BE_BN_OWN;
    be_ctx *gpu = getenv("C2KD_GPUTEST_ON_CPU") ? be_cpu_create(0, &err) /* harness self-check */
                                               : be_cuda_create(&bopt, &err);
    if (!gpu) { fprintf(stderr, "steps: cuda backend: %s\n", err.msg); return 2; }
    printf("# steps: %s, tf32 %s; ResNet-18 width %d, batch %d, visual 3x%dx%d, audio 1x%dx%d, %d classes, %d steps from the same state\n",
           gpu->ops->device_name ? gpu->ops->device_name(gpu) : "CPU backend as the device (C2KD_GPUTEST_ON_CPU)", tf32 ? "on" : "off",
           width, B, S, S, bins, T, classes, nsteps);
    printf("# tolerances (relative): loss terms %.0e, logits/tau %.0e, running stats %.0e (unconditional); gradients, momenta, "
           "parameter updates max(%.0e, K=%g x control)\n",
           tol[C_LOSS], tol[C_OUT], tol[C_RUN], tol[C_GRAD], K);
    printf("# batch norm: %s (--bn)\n", bn_cudnn ? "cuDNN" : "own kernels");
    if (crel > 0) printf("# control: CPU system on the batch with every input value multiplied by 1 +- %.3g (fixed pattern)\n", crel);
    else printf("# control: CPU system on the batch with every input value moved one ulp up or down (fixed pattern)\n");

    size_t na = (size_t)B * bins * T, nv = (size_t)B * 3 * S * S;
    float *audio = malloc(na * 4), *visual = malloc(nv * 4), *paudio = malloc(na * 4), *pvisual = malloc(nv * 4);
    int32_t *labels = malloc((size_t)B * 4);
    dev_batch dc, dg, dp;
    /* the CPU backend's "device" memory is host memory: the same calls work on both */
    dc.audio = cpu->ops->alloc(cpu, na * 4); dc.visual = cpu->ops->alloc(cpu, nv * 4); dc.labels = cpu->ops->alloc(cpu, (size_t)B * 4);
    dp.audio = cpu->ops->alloc(cpu, na * 4); dp.visual = cpu->ops->alloc(cpu, nv * 4); dp.labels = cpu->ops->alloc(cpu, (size_t)B * 4);
    dg.audio = gpu->ops->alloc(gpu, na * 4); dg.visual = gpu->ops->alloc(gpu, nv * 4); dg.labels = gpu->ops->alloc(gpu, (size_t)B * 4);
    if (!dc.audio || !dc.visual || !dc.labels || !dg.audio || !dg.visual || !dg.labels || !dp.audio || !dp.visual || !dp.labels) {
        fprintf(stderr, "steps: cannot allocate the batch\n");
        return 2;
    }
    cmp G = {0}, X = {0}, Xp = {0};

    struct { int pre; tr_method m; } runs[] = {{1, TR_C2KD}, {0, TR_NONE}, {0, TR_KD}, {0, TR_NKD}, {0, TR_C2KD}};
    for (size_t mi = 0; mi < sizeof runs / sizeof runs[0]; mi++) {
        const char *mn = mname(runs[mi].pre, runs[mi].m);
        tr_config cfg;
        tr_config_default(&cfg);
        cfg.pretrain = runs[mi].pre;
        cfg.method = runs[mi].m;
        cfg.width = width;
        cfg.n_classes = classes;
        cfg.image_size = S;
        cfg.spec_bins = bins;
        cfg.spec_frames = T;
        cfg.max_batch = B;
        tr_system *sc = tr_system_create(cpu, &cfg, 7, &err);
        if (!sc) { fprintf(stderr, "steps: %s: cpu system: %s\n", mn, err.msg); return 2; }
        tr_system *sg = tr_system_create(gpu, &cfg, 7, &err);
        if (!sg) { fprintf(stderr, "steps: %s: cuda system: %s\n", mn, err.msg); return 2; }
        tr_system *sp = tr_system_create(cpu, &cfg, 7, &err);
        if (!sp) { fprintf(stderr, "steps: %s: control system: %s\n", mn, err.msg); return 2; }
        tr_system *s0 = tr_system_create(cpu, &cfg, 7, &err); /* the state before the step, for the controls */
        if (!s0) { fprintf(stderr, "steps: %s: control system: %s\n", mn, err.msg); return 2; }
        tr_batch bc = {B, dc.audio, dc.visual, dc.labels}, bg = {B, dg.audio, dg.visual, dg.labels},
                 bp = {B, dp.audio, dp.visual, dp.labels};
        int mfail = 0, skipped = 0;
        worst wg[NCAT], wx[NCAT];
        memset(wg, 0, sizeof wg);
        memset(wx, 0, sizeof wx);
        double worst_ratio = 0; /* backward categories: gpu error / bound */
        size_t nt = tr_system_num_tensors(sc);
        for (int s = 0; s < nsteps; s++) {
            for (size_t i = 0; i < na; i++) audio[i] = gauss();
            for (size_t i = 0; i < nv; i++) visual[i] = gauss();
            for (int i = 0; i < B; i++) labels[i] = (int32_t)(next_u64() % classes);
            cpu->ops->to_device(cpu, dc.audio, audio, na * 4);
            cpu->ops->to_device(cpu, dc.visual, visual, nv * 4);
            cpu->ops->to_device(cpu, dc.labels, labels, (size_t)B * 4);
            gpu->ops->to_device(gpu, dg.audio, audio, na * 4);
            gpu->ops->to_device(gpu, dg.visual, visual, nv * 4);
            gpu->ops->to_device(gpu, dg.labels, labels, (size_t)B * 4);
            cpu->ops->sync(cpu);
            gpu->ops->sync(gpu);
            if (copy_state(sc, sg, cpu, gpu) || copy_state(sc, s0, cpu, cpu)) {
                printf("FAIL %s: the systems differ in layout\n", mn);
                mfail++;
                break;
            }
            float *before[4] = {NULL, NULL, NULL, NULL};
            {
                tr_reg *rb[4];
                int nrb = tr_system_regs(sc, rb);
                for (int k = 0; k < nrb; k++) {
                    before[k] = malloc(rb[k]->np * 4 + 4);
                    cpu->ops->to_host(cpu, before[k], rb[k]->w, rb[k]->np * 4);
                }
            }
            tr_stats stc, stg, stp;
            memset(&stc, 0, sizeof stc);
            memset(&stg, 0, sizeof stg);
            memset(&stp, 0, sizeof stp);
            float lr = 0.01f;
            if (tr_system_step(sc, &bc, lr, &stc, &err)) { printf("FAIL %s step %d cpu: %s\n", mn, s, err.msg); mfail++; break; }
            if (tr_system_step(sg, &bg, lr, &stg, &err)) { printf("FAIL %s step %d cuda: %s\n", mn, s, err.msg); mfail++; break; }
            measure(cpu, sc, &stc, gpu, sg, &stg, before, B, classes, &G);
            /* the control: ncontrol perturbation patterns, worst of them per category */
            memset(X.w, 0, sizeof X.w);
            X.mask_diff = X.layout_bad = 0;
            double ctl_loss = 0;
            int cfail = 0;
            for (int pat = 0; pat < ncontrol && !cfail; pat++) {
                perturb(audio, paudio, na, crel, pat);
                perturb(visual, pvisual, nv, crel, pat);
                cpu->ops->to_device(cpu, dp.audio, paudio, na * 4);
                cpu->ops->to_device(cpu, dp.visual, pvisual, nv * 4);
                cpu->ops->to_device(cpu, dp.labels, labels, (size_t)B * 4);
                cpu->ops->sync(cpu);
                memset(&stp, 0, sizeof stp);
                if (copy_state(s0, sp, cpu, cpu) || tr_system_step(sp, &bp, lr, &stp, &err)) {
                    printf("FAIL %s step %d control: %s\n", mn, s, err.msg);
                    cfail = 1;
                    break;
                }
                measure(cpu, sc, &stc, cpu, sp, &stp, before, B, classes, &Xp);
                for (int c = 0; c < NCAT; c++) note(&X.w[c], Xp.w[c].v, Xp.w[c].name);
                if (Xp.mask_diff > X.mask_diff) X.mask_diff = Xp.mask_diff;
                X.layout_bad += Xp.layout_bad;
                ctl_loss = fmax(ctl_loss, rel_err(stp.loss, stc.loss));
            }
            if (cfail) { mfail++; for (int k = 0; k < 4; k++) free(before[k]); break; }
            for (int k = 0; k < 4; k++) free(before[k]);
            printf("%s step %d: loss cpu %.6f cuda %.6f rel %.2e (control %.2e)", mn, s, stc.loss, stg.loss,
                   rel_err(stg.loss, stc.loss), ctl_loss);
            if (stc.kept >= 0) printf("  kept cpu %.4f cuda %.4f control %.4f", stc.kept, stg.kept, stp.kept);
            printf("\n");
            if (G.layout_bad) { printf("FAIL %s step %d: loss terms or num_batches_tracked differ\n", mn, s); mfail++; }
            /* forward quantities: unconditional */
            if (G.mask_diff > 1) { printf("FAIL %s step %d: kept mask differs in %d samples\n", mn, s, G.mask_diff); mfail++; }
            int skip = G.mask_diff == 1;
            if (skip)
                printf("     %s step %d: kept mask differs in 1 sample (tau within rounding of omega): downstream comparisons skipped\n", mn, s);
            for (int i = 0; i < G.ntv; i++) {
                const tval *t = &G.tv[i];
                if (cond[t->cat] || (skip && t->cat != C_OUT && t->cat != C_TAU)) continue;
                if (!(t->v <= tol[t->cat])) {
                    printf("FAIL %s step %d: %s %s rel %.3e > %.0e\n", mn, s, CAT_NAME[t->cat], t->name, t->v, tol[t->cat]);
                    mfail++;
                }
            }
            if (skip) { skipped++; note(&wg[C_OUT], G.w[C_OUT].v, G.w[C_OUT].name); continue; }
            /* backward quantities: bounded by the control (judged at the end, over the run) */
            double bound[NCAT];
            int ctl_ok = X.mask_diff == 0 && !X.layout_bad;
            step_rec *rec = &recs[nrec++];
            snprintf(rec->method, sizeof rec->method, "%s", mn);
            rec->step = s;
            rec->ctl_ok = ctl_ok;
            memcpy(rec->g, G.w, sizeof G.w);
            memcpy(rec->x, X.w, sizeof X.w);
            printf("     %-8s %-9s %-10s %-40s %-10s %-40s %s\n", "", "category", "cuda", "(worst tensor)", "control", "(worst tensor)",
                   "same-step bound");
            for (int c = 0; c < NCAT; c++) {
                bound[c] = cond[c] ? fmax(tol[c], ctl_ok ? K * X.w[c].v : 0) : tol[c];
                int bad = !(G.w[c].v <= bound[c]);
                if (cond[c] && bound[c] > 0 && G.w[c].v / bound[c] > worst_ratio) worst_ratio = G.w[c].v / bound[c];
                if (G.w[c].name[0] || X.w[c].name[0])
                    printf("     %-8s %-9s %.3e  %-40s %.3e  %-40s %.1e%s\n", bad ? (cond[c] ? "over" : "FAIL") : "", CAT_NAME[c],
                           G.w[c].v, G.w[c].name, X.w[c].v, X.w[c].name, bound[c],
                           cond[c] && !ctl_ok ? " (control mask differs: stated only)" : "");
                note(&wg[c], G.w[c].v, G.w[c].name);
                note(&wx[c], X.w[c].v, X.w[c].name);
            }
            int shown = 0;
            for (int i = 0; i < G.ntv && shown < 6; i++) {
                const tval *t = &G.tv[i];
                if (!cond[t->cat] || t->v <= bound[t->cat]) continue;
                printf("     over %s step %d: %s %s rel %.3e > same-step bound %.2e\n", mn, s, CAT_NAME[t->cat], t->name, t->v,
                       bound[t->cat]);
                shown++;
            }
            if (s == nsteps - 1)
                for (int t = 0; t < stc.n_terms && t < stg.n_terms; t++)
                    printf("     %-28s cpu %.6f cuda %.6f control %.6f\n", stc.term_name[t], stc.term[t], stg.term[t], stp.term[t]);
        }
        printf("%-4s %s: %d steps from the same state (%d skipped), %zu tensors; worst rel cuda (control): loss %.2e (%.2e), "
               "logits %.2e (%.2e), running %.2e (%.2e), grad %.2e (%.2e) [%s], momentum %.2e (%.2e), update %.2e (%.2e); "
               "worst backward error / same-step bound %.2f\n",
               mfail ? "FAIL" : "ok", mn, nsteps, skipped, nt, wg[C_LOSS].v, wx[C_LOSS].v, wg[C_OUT].v, wx[C_OUT].v, wg[C_RUN].v,
               wx[C_RUN].v, wg[C_GRAD].v, wx[C_GRAD].v, wg[C_GRAD].name, wg[C_MOM].v, wx[C_MOM].v, wg[C_UPD].v, wx[C_UPD].v,
               worst_ratio);
        failures += mfail;
        /* free-running (information only): from the same state, nfree steps on one batch each side */
        if (nfree > 0 && !mfail && copy_state(sc, sg, cpu, gpu) == 0) {
            printf("  free-running %d steps (information, not checked):", nfree);
            for (int s = 0; s < nfree; s++) {
                tr_stats stc, stg;
                if (tr_system_step(sc, &bc, 0.01f, &stc, &err) || tr_system_step(sg, &bg, 0.01f, &stg, &err)) break;
                printf(" %.1e", rel_err(stg.loss, stc.loss));
            }
            printf(" (loss rel per step)\n");
        }
        tr_system_destroy(sc);
        tr_system_destroy(sg);
        tr_system_destroy(sp);
        tr_system_destroy(s0);
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
    {
        double xmax[NCAT] = {0};
        int ctl_flips = 0, flips = 0, bfail = 0;
        for (int i = 0; i < nrec; i++) {
            int f = 0;
            for (int c = 0; c < NCAT; c++) {
                if (!cond[c] || !recs[i].ctl_ok) continue;
                if (recs[i].x[c].v > xmax[c]) xmax[c] = recs[i].x[c].v;
                if (recs[i].x[c].v > tol[c]) f = 1;
            }
            ctl_flips += f;
        }
        printf("# control over the run (worst of %d patterns per step): ", ncontrol);
        for (int c = 0; c < NCAT; c++)
            if (cond[c]) printf("%s %.2e  ", CAT_NAME[c], xmax[c]);
        printf("; %d of %d steps with a control error above the stated tolerance\n", ctl_flips, nrec);
        for (int i = 0; i < nrec; i++) {
            int f = 0;
            for (int c = 0; c < NCAT; c++) {
                if (!cond[c]) continue;
                double same = fmax(tol[c], recs[i].ctl_ok ? K * recs[i].x[c].v : 0), run = fmax(tol[c], K * xmax[c]);
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
               tf32 ? ", tau" : "", flips, allowed, K);
        failures += bfail;
    }
    free(recs);
    free(G.tv);
    free(X.tv);
    free(Xp.tv);
    be_stats bst = {0};
    if (gpu->ops->stats) gpu->ops->stats(gpu, &bst);
    printf("# peak device bytes %zu\n", bst.peak_bytes);
    cpu->ops->free(cpu, dc.audio); cpu->ops->free(cpu, dc.visual); cpu->ops->free(cpu, dc.labels);
    cpu->ops->free(cpu, dp.audio); cpu->ops->free(cpu, dp.visual); cpu->ops->free(cpu, dp.labels);
    gpu->ops->free(gpu, dg.audio); gpu->ops->free(gpu, dg.visual); gpu->ops->free(gpu, dg.labels);
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    free(audio);
    free(visual);
    free(paudio);
    free(pvisual);
    free(labels);
    printf("# steps: %d failures\n", failures);
    return failures ? 1 : 0;
usage:
    fprintf(stderr, "usage: steps [--tf32 0|1] [--bn own|cudnn] [--width W] [--batch B] [--steps N] [--size S] [--bins H] [--frames T] [--free N] "
                    "[--K K] [--control-rel R] [--controls N]\n");
    return 2;
}
