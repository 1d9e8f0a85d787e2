/* steps: training steps of every method (pretrain, none, kd, nkd, c2kd)
 * through tr_system (train/system.h) on the CPU backend and on the CUDA
 * backend, each step compared FROM THE SAME STATE: before every step the CPU
 * system's whole state (parameters, momenta, BN running statistics,
 * num_batches_tracked, the step counter) is copied into the CUDA system; both
 * run one step on the same fresh random batch; then the step's loss terms,
 * logits, the c2kd selection (tau, kept mask), every parameter gradient and
 * every updated tensor (parameters, momenta, running statistics) are compared.
 * (Free-running trajectories drift apart after 2-3 steps in float32 alone:
 * ReLU inputs near zero flip; a free-running run is printed for information
 * only, with --free N.) Exit 1 when a comparison fails, 2 when a backend or
 * system cannot be created.
 *
 *   steps [--tf32 0|1] [--width W] [--batch B] [--steps N] [--size S] [--bins H] [--frames T] [--free N]
 *
 * A reduced ResNet-18 pair (width 16, visual 64x64, audio 64x96, 10 classes,
 * batch 16) keeps the CPU side short. Tolerances (stated; relative, per
 * tensor ||gpu-cpu|| / ||cpu||):
 *                    float32   TF32
 *   loss terms        1e-4     5e-3   (|a-b| / max(|a|, 1e-3))
 *   logits, tau       1e-4     5e-3
 *   gradients         2e-3     5e-2
 *   momenta           2e-3     5e-2   (after the step: 0.9 m + g)
 *   updates           2e-3     5e-2   (p_after - p_before: -lr m, lr 0.01)
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

#include "kernels/cuda_backend.h"
#include "train/backend.h"
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

int main(int argc, char **argv)
{
    int tf32 = 1, width = 16, B = 16, nsteps = 5, S = 64, bins = 64, T = 96, classes = 10, nfree = 5;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) goto usage;
        if (!strcmp(argv[i], "--tf32")) tf32 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--width")) width = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) nsteps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size")) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bins")) bins = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames")) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--free")) nfree = atoi(argv[++i]);
        else goto usage;
    }
    const double tol_loss = tf32 ? 5e-3 : 1e-4, tol_out = tf32 ? 5e-3 : 1e-4, tol_grad = tf32 ? 5e-2 : 2e-3,
                 tol_mom = tf32 ? 5e-2 : 2e-3, tol_par = tf32 ? 5e-2 : 2e-3, tol_buf = tf32 ? 2e-2 : 1e-3;
    cm_err err = {{0}};
    be_ctx *cpu = be_cpu_create(0, &err);
    if (!cpu) { fprintf(stderr, "steps: cpu backend: %s\n", err.msg); return 2; }
    be_ctx *gpu = getenv("C2KD_GPUTEST_ON_CPU") ? be_cpu_create(0, &err) /* harness self-check */
                                               : be_cuda_create_ex(0, tf32, &err);
    if (!gpu) { fprintf(stderr, "steps: cuda backend: %s\n", err.msg); return 2; }
    printf("# steps: %s, tf32 %s; ResNet-18 width %d, batch %d, visual 3x%dx%d, audio 1x%dx%d, %d classes, %d steps from the same state\n",
           be_cuda_device_name(gpu), tf32 ? "on" : "off", width, B, S, S, bins, T, classes, nsteps);
    printf("# tolerances (relative): loss terms %.0e, logits/tau %.0e, gradients %.0e, momenta %.0e, parameter updates %.0e, running stats %.0e\n",
           tol_loss, tol_out, tol_grad, tol_mom, tol_par, tol_buf);

    size_t na = (size_t)B * bins * T, nv = (size_t)B * 3 * S * S;
    float *audio = malloc(na * 4), *visual = malloc(nv * 4);
    int32_t *labels = malloc((size_t)B * 4);
    dev_batch dc, dg;
    /* the CPU backend's "device" memory is host memory: the same calls work on both */
    dc.audio = cpu->ops->alloc(cpu, na * 4); dc.visual = cpu->ops->alloc(cpu, nv * 4); dc.labels = cpu->ops->alloc(cpu, (size_t)B * 4);
    dg.audio = gpu->ops->alloc(gpu, na * 4); dg.visual = gpu->ops->alloc(gpu, nv * 4); dg.labels = gpu->ops->alloc(gpu, (size_t)B * 4);
    if (!dc.audio || !dc.visual || !dc.labels || !dg.audio || !dg.visual || !dg.labels) {
        fprintf(stderr, "steps: cannot allocate the batch\n");
        return 2;
    }

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
        tr_batch bc = {B, dc.audio, dc.visual, dc.labels}, bg = {B, dg.audio, dg.visual, dg.labels};
        int mfail = 0, skipped = 0;
        worst wl = {0, ""}, wo = {0, ""}, wg = {0, ""}, wm = {0, ""}, wp = {0, ""}, wb = {0, ""};
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
            if (copy_state(sc, sg, cpu, gpu)) { printf("FAIL %s: the two systems differ in layout\n", mn); mfail++; break; }
            float *before[4] = {NULL, NULL, NULL, NULL};
            {
                tr_reg *rb[4];
                int nrb = tr_system_regs(sc, rb);
                for (int k = 0; k < nrb; k++) {
                    before[k] = malloc(rb[k]->np * 4 + 4);
                    cpu->ops->to_host(cpu, before[k], rb[k]->w, rb[k]->np * 4);
                }
            }
            tr_stats stc, stg;
            memset(&stc, 0, sizeof stc);
            memset(&stg, 0, sizeof stg);
            float lr = 0.01f;
            if (tr_system_step(sc, &bc, lr, &stc, &err)) { printf("FAIL %s step %d cpu: %s\n", mn, s, err.msg); mfail++; break; }
            if (tr_system_step(sg, &bg, lr, &stg, &err)) { printf("FAIL %s step %d cuda: %s\n", mn, s, err.msg); mfail++; break; }
            double e = rel_err(stg.loss, stc.loss);
            printf("%s step %d: loss cpu %.6f cuda %.6f rel %.2e", mn, s, stc.loss, stg.loss, e);
            if (stc.kept >= 0) printf("  kept cpu %.4f cuda %.4f", stc.kept, stg.kept);
            printf("\n");
            /* the selection */
            int differ = 0;
            tr_outputs oc, og;
            tr_system_outputs(sc, &oc);
            tr_system_outputs(sg, &og);
            if (oc.keep) {
                float kc[4096], kg[4096];
                int nb = B < 4096 ? B : 4096;
                cpu->ops->to_host(cpu, kc, oc.keep, (size_t)nb * 4);
                gpu->ops->to_host(gpu, kg, og.keep, (size_t)nb * 4);
                for (int i = 0; i < nb; i++) differ += kc[i] != kg[i];
                if (differ > 1) { printf("FAIL %s step %d: kept mask differs in %d samples\n", mn, s, differ); mfail++; }
                else if (differ) printf("     %s step %d: kept mask differs in 1 sample (tau within rounding of omega): downstream comparisons skipped\n", mn, s);
                double r = rel_dev(cpu, gpu, oc.tau, og.tau, (size_t)B);
                note(&wo, r, "tau");
                if (!(r <= tol_out)) { printf("FAIL %s step %d: tau rel %.3e\n", mn, s, r); mfail++; }
            }
            /* logits */
            const float *lc[4] = {oc.z_student, oc.z_teacher, oc.p_student, oc.p_teacher};
            const float *lg[4] = {og.z_student, og.z_teacher, og.p_student, og.p_teacher};
            static const char *ln[4] = {"z_student", "z_teacher", "p_student", "p_teacher"};
            for (int k = 0; k < 4; k++) {
                if (!lc[k] || !lg[k]) continue;
                double r = rel_dev(cpu, gpu, lc[k], lg[k], (size_t)B * classes);
                note(&wo, r, ln[k]);
                if (!(r <= tol_out)) { printf("FAIL %s step %d: logits %s rel %.3e\n", mn, s, ln[k], r); mfail++; }
            }
            if (differ) {
                for (int k = 0; k < 4; k++) free(before[k]);
                skipped++;
                continue;
            }
            /* loss terms */
            if (stc.n_terms != stg.n_terms) { printf("FAIL %s step %d: %d vs %d loss terms\n", mn, s, stc.n_terms, stg.n_terms); mfail++; }
            for (int t = 0; t < stc.n_terms && t < stg.n_terms; t++) {
                double te = fabs((double)stg.term[t] - stc.term[t]) / (fabs(stc.term[t]) > 1e-3 ? fabs(stc.term[t]) : 1e-3);
                note(&wl, te, stc.term_name[t]);
                int bad = !(te <= tol_loss);
                if (bad || s == nsteps - 1)
                    printf("  %-4s %-28s cpu %.6f cuda %.6f rel %.2e\n", bad ? "FAIL" : "", stc.term_name[t], stc.term[t], stg.term[t], te);
                if (bad) mfail++;
            }
            /* gradients and updated tensors */
            tr_reg *rc[4], *rg[4];
            int nr = tr_system_regs(sc, rc);
            tr_system_regs(sg, rg);
            for (int k = 0; k < nr; k++) {
                for (int j = 0; j < rc[k]->nt; j++) {
                    const tr_tensor *t = &rc[k]->t[j];
                    char nm[128];
                    snprintf(nm, sizeof nm, "%s/%s", rc[k]->group, t->name);
                    if (t->kind == TT_NBT) {
                        if (rc[k]->nbt != rg[k]->nbt) { printf("FAIL %s step %d: %s %lld vs %lld\n", mn, s, nm, (long long)rc[k]->nbt, (long long)rg[k]->nbt); mfail++; }
                        continue;
                    }
                    if (t->kind == TT_BUFFER) {
                        double r = rel_dev(cpu, gpu, rc[k]->buf + t->off, rg[k]->buf + t->off, t->count);
                        note(&wb, r, nm);
                        if (!(r <= tol_buf)) { printf("FAIL %s step %d: running stat %s rel %.3e\n", mn, s, nm, r); mfail++; }
                        continue;
                    }
                    /* gradients of parameters that are not trained (frozen teacher, top mode) are not computed */
                    double rgd = rel_dev(cpu, gpu, rc[k]->g + t->off, rg[k]->g + t->off, t->count);
                    double rm = rel_dev(cpu, gpu, rc[k]->m + t->off, rg[k]->m + t->off, t->count);
                    double rp = rel_update(cpu, gpu, rc[k]->w + t->off, rg[k]->w + t->off, before[k] + t->off, t->count);
                    int trained = !(sc->has_teacher && rc[k] == &sc->teacher.reg && !sc->teacher_sgd);
                    if (trained) {
                        note(&wg, rgd, nm);
                        note(&wm, rm, nm);
                        if (!(rgd <= tol_grad)) { printf("FAIL %s step %d: gradient %s rel %.3e\n", mn, s, nm, rgd); mfail++; }
                        if (!(rm <= tol_mom)) { printf("FAIL %s step %d: momentum %s rel %.3e\n", mn, s, nm, rm); mfail++; }
                    }
                    note(&wp, rp, nm);
                    if (!(rp <= tol_par)) { printf("FAIL %s step %d: parameter update %s rel %.3e\n", mn, s, nm, rp); mfail++; }
                }
            }
            for (int k = 0; k < 4; k++) free(before[k]);
        }
        printf("%-4s %s: %d steps from the same state (%d skipped), %zu tensors; worst rel: loss %.2e (%s), logits %.2e (%s), "
               "grad %.2e (%s), momentum %.2e (%s), update %.2e (%s), running %.2e (%s)\n",
               mfail ? "FAIL" : "ok", mn, nsteps, skipped, nt, wl.v, wl.name, wo.v, wo.name, wg.v, wg.name, wm.v, wm.name,
               wp.v, wp.name, wb.v, wb.name);
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
    }
    printf("# peak device bytes %zu\n", be_cuda_peak_bytes(gpu));
    cpu->ops->free(cpu, dc.audio); cpu->ops->free(cpu, dc.visual); cpu->ops->free(cpu, dc.labels);
    gpu->ops->free(gpu, dg.audio); gpu->ops->free(gpu, dg.visual); gpu->ops->free(gpu, dg.labels);
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    free(audio);
    free(visual);
    free(labels);
    printf("# steps: %d failures\n", failures);
    return failures ? 1 : 0;
usage:
    fprintf(stderr, "usage: steps [--tf32 0|1] [--width W] [--batch B] [--steps N] [--size S] [--bins H] [--frames T] [--free N]\n");
    return 2;
}
