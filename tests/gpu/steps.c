/* steps: 5 full training steps of each method (none, kd, nkd, c2kd) through
 * tr_system (train/system.h) on the CPU backend and on the CUDA backend, from
 * the same initialisation (same seed) on the same random batch; compares the
 * loss terms of every step and every tensor (parameters, BN running
 * statistics) after the last step. Exit 1 when a comparison fails, 2 when a
 * backend or system cannot be created.
 *
 *   steps [--tf32 0|1] [--width W] [--batch B] [--steps N] [--size S] [--bins H] [--frames T]
 *
 * A reduced ResNet-18 pair (width 16, visual 64x64, audio 64x96, 10 classes,
 * batch 16) keeps the CPU side short. Tolerances (stated, relative):
 * float32: loss terms 1e-3, tensors ||gpu-cpu||/||cpu|| 1e-3;
 * TF32: loss terms 2e-2, tensors 2e-2. In c2kd the Kendall selection is a
 * discrete decision on proxy logits; a sample whose tau sits near omega can
 * flip under rounding, so the kept fractions are printed and a difference of
 * at most one sample per step is tolerated (reported).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_backend.h"
#include "train/backend.h"
#include "train/system.h"

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

static int upload(be_ctx *be, dev_batch *d, const float *audio, size_t na, const float *visual, size_t nv,
                  const int32_t *labels, int B)
{
    d->audio = be->ops->alloc(be, na * 4);
    d->visual = be->ops->alloc(be, nv * 4);
    d->labels = be->ops->alloc(be, (size_t)B * 4);
    if (!d->audio || !d->visual || !d->labels) return -1;
    be->ops->to_device(be, d->audio, audio, na * 4);
    be->ops->to_device(be, d->visual, visual, nv * 4);
    be->ops->to_device(be, d->labels, labels, (size_t)B * 4);
    be->ops->sync(be);
    return 0;
}

static const char *method_name(tr_method m)
{
    return m == TR_NONE ? "none" : m == TR_KD ? "kd" : m == TR_NKD ? "nkd" : "c2kd";
}

int main(int argc, char **argv)
{
    int tf32 = 1, width = 16, B = 16, nsteps = 5, S = 64, bins = 64, T = 96, classes = 10;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) goto usage;
        if (!strcmp(argv[i], "--tf32")) tf32 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--width")) width = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) nsteps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size")) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bins")) bins = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames")) T = atoi(argv[++i]);
        else goto usage;
    }
    double tol_loss = tf32 ? 2e-2 : 1e-3, tol_w = tf32 ? 2e-2 : 1e-3;
    cm_err err = {{0}};
    be_ctx *cpu = be_cpu_create(0, &err);
    if (!cpu) { fprintf(stderr, "steps: cpu backend: %s\n", err.msg); return 2; }
    be_ctx *gpu = getenv("C2KD_GPUTEST_ON_CPU") ? be_cpu_create(0, &err) /* harness self-check */
                                               : be_cuda_create_ex(0, tf32, &err);
    if (!gpu) { fprintf(stderr, "steps: cuda backend: %s\n", err.msg); return 2; }
    printf("# steps: %s, tf32 %s; ResNet-18 width %d, batch %d, visual 3x%dx%d, audio 1x%dx%d, %d classes, %d steps\n",
           be_cuda_device_name(gpu), tf32 ? "on" : "off", width, B, S, S, bins, T, classes, nsteps);
    printf("# tolerances: loss terms rel %.0e, tensors ||gpu-cpu||/||cpu|| %.0e\n", tol_loss, tol_w);

    size_t na = (size_t)B * bins * T, nv = (size_t)B * 3 * S * S;
    float *audio = malloc(na * 4), *visual = malloc(nv * 4);
    int32_t *labels = malloc((size_t)B * 4);
    for (size_t i = 0; i < na; i++) audio[i] = gauss();
    for (size_t i = 0; i < nv; i++) visual[i] = gauss();
    for (int i = 0; i < B; i++) labels[i] = (int32_t)(next_u64() % classes);

    dev_batch dc, dg;
    /* the CPU backend's "device" memory is host memory: upload works the same */
    if (upload(cpu, &dc, audio, na, visual, nv, labels, B) || upload(gpu, &dg, audio, na, visual, nv, labels, B)) {
        fprintf(stderr, "steps: cannot allocate the batch\n");
        return 2;
    }

    tr_method methods[] = {TR_NONE, TR_KD, TR_NKD, TR_C2KD};
    for (size_t mi = 0; mi < 4; mi++) {
        tr_config cfg;
        tr_config_default(&cfg);
        cfg.method = methods[mi];
        cfg.width = width;
        cfg.n_classes = classes;
        cfg.image_size = S;
        cfg.spec_bins = bins;
        cfg.spec_frames = T;
        cfg.max_batch = B;
        tr_system *sc = tr_system_create(cpu, &cfg, 7, &err);
        if (!sc) { fprintf(stderr, "steps: %s: cpu system: %s\n", method_name(methods[mi]), err.msg); return 2; }
        tr_system *sg = tr_system_create(gpu, &cfg, 7, &err);
        if (!sg) { fprintf(stderr, "steps: %s: cuda system: %s\n", method_name(methods[mi]), err.msg); return 2; }
        tr_batch bc = {B, dc.audio, dc.visual, dc.labels}, bg = {B, dg.audio, dg.visual, dg.labels};
        int mfail = 0;
        double worst_loss = 0;
        for (int s = 0; s < nsteps; s++) {
            tr_stats stc, stg;
            memset(&stc, 0, sizeof stc);
            memset(&stg, 0, sizeof stg);
            float lr = 0.01f;
            if (tr_system_step(sc, &bc, lr, &stc, &err)) { printf("FAIL %s step %d cpu: %s\n", method_name(methods[mi]), s, err.msg); mfail++; break; }
            if (tr_system_step(sg, &bg, lr, &stg, &err)) { printf("FAIL %s step %d cuda: %s\n", method_name(methods[mi]), s, err.msg); mfail++; break; }
            double e = rel_err(stg.loss, stc.loss);
            if (e > worst_loss) worst_loss = e;
            printf("%s step %d: loss cpu %.6f cuda %.6f rel %.2e", method_name(methods[mi]), s, stc.loss, stg.loss, e);
            if (stc.kept >= 0) printf("  kept cpu %.4f cuda %.4f", stc.kept, stg.kept);
            printf("\n");
            int kept_differs = stc.kept >= 0 && fabs(stc.kept - stg.kept) > 1e-6;
            if (fabs(stc.kept - stg.kept) * B > 1.01) { printf("FAIL %s step %d: kept fractions differ by more than one sample\n", method_name(methods[mi]), s); mfail++; }
            for (int t = 0; t < stc.n_terms && t < stg.n_terms; t++) {
                double te = fabs((double)stg.term[t] - stc.term[t]) / (fabs(stc.term[t]) > 1e-3 ? fabs(stc.term[t]) : 1e-3);
                int bad = te > tol_loss && !(kept_differs && strncmp(stc.term_name[t], "nt", 2) == 0);
                if (bad || s == nsteps - 1)
                    printf("  %-4s %-28s cpu %.6f cuda %.6f rel %.2e\n", bad ? "FAIL" : "", stc.term_name[t], stc.term[t], stg.term[t], te);
                if (bad) mfail++;
            }
            if (e > tol_loss && !kept_differs) { printf("FAIL %s step %d: total loss rel %.2e > %.0e\n", method_name(methods[mi]), s, e, tol_loss); mfail++; }
        }
        /* every tensor after the steps */
        size_t nt = tr_system_num_tensors(sc);
        double worst = 0;
        const char *worst_name = "";
        for (size_t i = 0; i < nt; i++) {
            const char *name, *name2;
            size_t cnt, cnt2;
            float *vc, *gc, *vg, *gg;
            if (tr_system_tensor(sc, i, &name, &cnt, &vc, &gc) || tr_system_tensor(sg, i, &name2, &cnt2, &vg, &gg)) continue;
            if (cnt != cnt2 || strcmp(name, name2)) { printf("FAIL tensor %zu: %s vs %s\n", i, name, name2); mfail++; continue; }
            if (strstr(name, "num_batches_tracked")) continue;
            float *a = malloc(cnt * 4 + 4), *b = malloc(cnt * 4 + 4);
            cpu->ops->to_host(cpu, a, vc, cnt * 4);
            gpu->ops->to_host(gpu, b, vg, cnt * 4);
            double num = 0, den = 0;
            for (size_t k = 0; k < cnt; k++) {
                double d = (double)b[k] - a[k];
                num += d * d;
                den += (double)a[k] * a[k];
            }
            double r = den > 0 ? sqrt(num / den) : sqrt(num);
            if (!(r <= tol_w)) { printf("FAIL %s tensor %s rel %.3e\n", method_name(methods[mi]), name, r); mfail++; }
            if (r > worst || !*worst_name) { worst = r; worst_name = name; }
            free(a);
            free(b);
        }
        printf("%-4s %s: %d steps, worst loss rel %.2e, worst tensor rel %.2e (%s), %zu tensors\n", mfail ? "FAIL" : "ok",
               method_name(methods[mi]), nsteps, worst_loss, worst, worst_name, nt);
        failures += mfail;
        tr_system_destroy(sc);
        tr_system_destroy(sg);
    }
    printf("# peak device bytes %zu\n", be_cuda_peak_bytes(gpu));
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    free(audio);
    free(visual);
    free(labels);
    printf("# steps: %d failures\n", failures);
    return failures ? 1 : 0;
usage:
    fprintf(stderr, "usage: steps [--tf32 0|1] [--width W] [--batch B] [--steps N] [--size S] [--bins H] [--frames T]\n");
    return 2;
}
