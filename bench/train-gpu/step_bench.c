/* step_bench: time of one training step of our trainer on the CUDA backend
 * (tr_system_step, train/system.h) on random device data, and its peak GPU
 * memory; the PyTorch side is torch_step.py, the driver run.sh.
 *
 *   step_bench [--method none|kd|nkd|c2kd] [--batch 64] [--classes 50] [--width 64]
 *              [--warmup 3] [--steps 20] [--epoch-steps 403] [--tf32 0|1] [--json PATH]
 *              [--profile PATH] [--op-profile 0|1] [--bn own|cudnn]
 *
 * Default: C2KD, two ResNet-18s (visual student 3x224x224, audio teacher
 * 1x257x1004), batch 64, 50 classes (VGGSound-50), both networks trained.
 * Each step ends with the loss on the host (a device sync), as the trainer
 * does. Prints one JSON object (and writes it to --json).
 *
 * --profile PATH writes a Markdown report: the memory plan (what the model
 * allocates: activations per network, backward scratch, parameters with
 * gradients and momenta, proxies, batch, workspace) and, with --op-profile 1
 * (be_options.profile), the GPU time per op kind and the top shapes over the
 * timed steps, against the wall time of a step. --bn cudnn: cuDNN's batch norm.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_progress.h"
#include "kernels/kernels.h"
#include "train/profile.h"
#include "train/system.h"
#include "train/method_c2kd.h"
#include "train/system_internal.h"

static uint64_t rs = 99;
static float frand(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    /* sum of uniforms: roughly normal, cheap */
    float a = (float)(z & 0xffff) + (float)((z >> 16) & 0xffff) + (float)((z >> 32) & 0xffff) - 98302.5f;
    return a / 32768.f;
}

static double mib(size_t b) { return (double)b / 1048576.0; }

static size_t reg_bytes(const tr_reg *r) { return (3 * r->np + 2 * r->nb) * sizeof(float); }

/* The memory plan of the system, from its internals (train/model.h). */
static void write_memory(FILE *f, tr_system *s, be_ctx *be, size_t batch_bytes)
{
    size_t sum = 0, b;
    fprintf(f, "### Memory plan (device allocations of the step, MiB)\n\n| what | MiB |\n|---|---|\n");
    tr_resnet *nets[2] = {s->has_student ? &s->student : NULL, s->has_teacher ? &s->teacher : NULL};
    for (int i = 0; i < 2; i++) {
        if (!nets[i]) continue;
        tr_resnet *n = nets[i];
        b = n->act_count * sizeof(float);
        sum += b;
        fprintf(f, "| activations %s (%dx%dx%d input; one arena; stem_y inside layer1's region) | %.1f |\n", n->reg.group, n->in_c,
                n->in_h, n->in_w, mib(b));
        b = reg_bytes(&n->reg);
        sum += b;
        fprintf(f, "| parameters + gradients + momenta + BN buffers %s (%zu parameters) | %.1f |\n", n->reg.group, n->reg.np, mib(b));
        fprintf(f, "| (backward scratch need of %s: 2 x %.1f + %.1f) | (%.1f) |\n", n->reg.group, mib(n->pq * 4), mib(n->s_need * 4),
                mib(tr_resnet_scratch_floats(n) * 4));
    }
    b = s->max_act * sizeof(float);
    sum += b;
    fprintf(f, "| system scratch (transient downsample BN output; backward scratch of a network that borrows no dead arena) | %.1f |\n", mib(b));
    if (tr_c2kd_proxy(s, 0)) {
        tr_proxy *p[2] = {tr_c2kd_proxy(s, 0), tr_c2kd_proxy(s, 1)};
        b = 0;
        for (int i = 0; i < 2; i++)
            b += reg_bytes(&p[i]->reg) + (size_t)p[i]->max_batch * p[i]->C * p[i]->F * p[i]->hw * sizeof(float);
        sum += b;
        fprintf(f, "| proxies (parameters etc. + gradient to layer3) | %.1f |\n", mib(b));
    }
    sum += batch_bytes;
    fprintf(f, "| the batch (audio + visual + labels) | %.1f |\n", mib(batch_bytes));
    be_stats bst;
    be->ops->stats(be, &bst);
    b = bst.workspace_bytes;
    sum += b;
    fprintf(f, "| cuDNN workspace (limit %.0f) | %.1f |\n", mib(bst.workspace_limit), mib(b));
    size_t cur = bst.current_bytes;
    fprintf(f, "| other (small buffers, BN statistics, loss terms) | %.1f |\n", cur > sum ? mib(cur - sum) : 0.0);
    fprintf(f, "| **allocated now** | **%.1f** |\n| peak since the warm-up | %.1f |\n\n", mib(cur), mib(bst.peak_bytes));
}

/* The --profile report: memory plan, then the op profile when the backend was
 * made with one. */
static int write_report(const char *path, tr_system *s, be_ctx *be, const char *method, const tr_config *cfg, int tf32,
                        int steps, double mean, double first)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "step_bench: %s: cannot write\n", path);
        return -1;
    }
    int B = cfg->max_batch;
    size_t batch_bytes = ((size_t)B * cfg->spec_bins * cfg->spec_frames + (size_t)B * 3 * cfg->frames * cfg->image_size * cfg->image_size) * 4 +
                         (size_t)B * 4;
    fprintf(f, "## step_bench profile: %s, %s, batch %d, %d classes, width %d, tf32 %d\n\n", be->ops->device_name(be), method,
            B, cfg->n_classes, cfg->width, tf32);
    write_memory(f, s, be, batch_bytes);
    double gpu_ms = tr_profile_write(be, f, steps, 40);
    if (gpu_ms >= 0)
        fprintf(f, "\n- wall time per step (mean of %d profiled steps, events resolved in batches): %.3f ms; GPU time "
                   "inside the ops: %.3f ms (%.0f %%); the rest is the GPU waiting for the host (launch overhead, "
                   "host round trips)\n",
                steps, mean * 1e3, gpu_ms, mean > 0 ? 100.0 * gpu_ms / (mean * 1e3) : 0.0);
    else
        fprintf(f, "(no op profile: run with --op-profile 1)\n");
    be_stats bst;
    be->ops->stats(be, &bst);
    fprintf(f, "- first step (algorithm searches included): %.1f ms; searches %.2f s\n", first * 1e3, bst.setup_seconds);
    fclose(f);
    return 0;
}

/* A random batch on the host (pinned) and its copy on the device. */
static int random_batch(be_ctx *be, int B, int classes, size_t na, size_t nv, float **ha_, float **hv_, int32_t **hl_,
                        float **da_, float **dv_, int32_t **dl_)
{
    cm_err err = {{0}};
    float *ha = be->ops->host_alloc(be, na * 4), *hv = be->ops->host_alloc(be, nv * 4);
    int32_t *hl = be->ops->host_alloc(be, (size_t)B * 4);
    float *da = be->ops->alloc(be, na * 4), *dv = be->ops->alloc(be, nv * 4);
    int32_t *dl = be->ops->alloc(be, (size_t)B * 4);
    if (!ha || !hv || !hl || !da || !dv || !dl) {
        be->ops->status(be, &err);
        fprintf(stderr, "step_bench: cannot allocate the batch: %s\n", err.msg);
        return -1;
    }
    for (size_t i = 0; i < na; i++) ha[i] = frand();
    for (size_t i = 0; i < nv; i++) hv[i] = frand();
    for (int i = 0; i < B; i++) hl[i] = i % classes;
    be->ops->to_device(be, da, ha, na * 4);
    be->ops->to_device(be, dv, hv, nv * 4);
    be->ops->to_device(be, dl, hl, (size_t)B * 4);
    be->ops->sync(be);
    *ha_ = ha, *hv_ = hv, *hl_ = hl, *da_ = da, *dv_ = dv, *dl_ = dl;
    return 0;
}

/* n training steps on one batch; ts (may be NULL) receives each step's wall
 * time (the step ends with the loss on the host), first (may be NULL) the
 * first step's. */
static int run_steps(tr_system *s, const tr_batch *batch, int n, const char *what, double *ts, double *first, tr_stats *st)
{
    cm_err err = {{0}};
    for (int i = 0; i < n; i++) {
        double a = cm_now();
        if (tr_system_step(s, batch, 0.01f, st, &err)) {
            fprintf(stderr, "step_bench: %s %d: %s\n", what, i, err.msg);
            return -1;
        }
        if (ts) ts[i] = cm_now() - a;
        if (i == 0 && first) *first = cm_now() - a;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *method = "c2kd", *json = NULL, *profile = NULL;
    int B = 64, classes = 50, width = 64, warmup = 3, steps = 20, epoch = 403, tf32 = 1, op_profile = 0, bn_cudnn = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) goto usage;
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--classes")) classes = atoi(v);
        else if (!strcmp(a, "--width")) width = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--epoch-steps")) epoch = atoi(v);
        else if (!strcmp(a, "--tf32")) tf32 = atoi(v);
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--profile")) profile = v;
        else if (!strcmp(a, "--op-profile")) op_profile = atoi(v);
        else if (!strcmp(a, "--bn")) bn_cudnn = !strcmp(v, "cudnn");
        else goto usage;
    }
    if (B <= 0 || steps <= 0 || warmup < 1) goto usage;
    tr_config cfg;
    tr_config_default(&cfg);
    if (!strcmp(method, "none")) cfg.method = TR_NONE;
    else if (!strcmp(method, "kd")) cfg.method = TR_KD;
    else if (!strcmp(method, "nkd")) cfg.method = TR_NKD;
    else if (!strcmp(method, "c2kd")) cfg.method = TR_C2KD;
    else goto usage;
    cfg.n_classes = classes;
    cfg.width = width;
    cfg.max_batch = B;

    cm_err err = {{0}};
    size_t used0 = 0;
    be_options bo;
    be_options_default(&bo);
    bo.tf32 = tf32;
    bo.profile = op_profile;
    bo.bn = bn_cudnn ? BE_BN_CUDNN : BE_BN_OWN;
    be_ctx *be = be_cuda_create(&bo, &err);
    if (!be) {
        fprintf(stderr, "step_bench: %s\n", err.msg);
        return 2;
    }
    be_stats bst;
    be->ops->stats(be, &bst);
    used0 = bst.device_used_bytes;
    double t0 = cm_now();
    tr_system *s = tr_system_create(be, &cfg, 1, &err);
    if (!s) {
        fprintf(stderr, "step_bench: %s\n", err.msg);
        return 2;
    }
    size_t na = (size_t)B * cfg.spec_bins * cfg.spec_frames, nv = (size_t)B * 3 * cfg.frames * cfg.image_size * cfg.image_size;
    float *ha, *hv, *da, *dv;
    int32_t *hl, *dl;
    if (random_batch(be, B, classes, na, nv, &ha, &hv, &hl, &da, &dv, &dl) != 0)
        return 2;
    tr_batch batch = {B, da, dv, dl};
    tr_stats st;
    double t_create = cm_now() - t0;

    double first = 0;
    if (run_steps(s, &batch, warmup, "warm-up step", NULL, &first, &st) != 0)
        return 1;
    be->ops->stats(be, &bst);
    size_t peak_all = bst.peak_bytes;
    be->ops->reset_peak(be);
    be->ops->profile_reset(be);
    double *ts = malloc(sizeof(double) * steps);
    if (run_steps(s, &batch, steps, "step", ts, NULL, &st) != 0)
        return 1;
    double mean = 0;
    for (int i = 0; i < steps; i++) mean += ts[i];
    mean /= steps;
    qsort(ts, steps, sizeof *ts, cmp_d);
    double median = steps % 2 ? ts[steps / 2] : 0.5 * (ts[steps / 2 - 1] + ts[steps / 2]);
    if (profile && write_report(profile, s, be, method, &cfg, tf32, steps, mean, first) != 0)
        return 1;
    double epoch_s = -1;
    if (epoch > 0) {
        double a = cm_now();
        if (run_steps(s, &batch, epoch, "epoch step", NULL, NULL, &st) != 0)
            return 1;
        be->ops->sync(be);
        epoch_s = cm_now() - a;
    }
    be->ops->stats(be, &bst);
    size_t peak_steady = bst.peak_bytes, used = bst.device_used_bytes;
    if (be->ops->status(be, &err)) {
        fprintf(stderr, "step_bench: %s\n", err.msg);
        return 1;
    }
    char out[2048];
    snprintf(out, sizeof out,
             "{\"impl\": \"c2kd-cuda\", \"device\": \"%s\", \"method\": \"%s\", \"batch\": %d, \"classes\": %d, "
             "\"width\": %d, \"tf32\": %d, \"steps\": %d, \"step_median_ms\": %.3f, \"step_mean_ms\": %.3f, "
             "\"step_min_ms\": %.3f, \"first_step_ms\": %.1f, \"create_s\": %.3f, \"epoch_steps\": %d, \"epoch_s\": %.3f, "
             "\"peak_alloc_bytes\": %zu, \"peak_alloc_steady_bytes\": %zu, \"device_used_bytes\": %zu, "
             "\"device_used_before_bytes\": %zu, \"last_loss\": %.6f, \"kept\": %.4f}",
             be->ops->device_name(be), method, B, classes, width, tf32, steps, median * 1e3, mean * 1e3, ts[0] * 1e3,
             first * 1e3, t_create, epoch, epoch_s, peak_all > peak_steady ? peak_all : peak_steady, peak_steady, used,
             used0, st.loss, st.kept);
    printf("%s\n", out);
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f, "%s\n", out);
            fclose(f);
        }
    }
    free(ts);
    tr_system_destroy(s);
    be->ops->host_free(be, ha);
    be->ops->host_free(be, hv);
    be->ops->host_free(be, hl);
    be->ops->destroy(be);
    return 0;
usage:
    fprintf(stderr, "usage: step_bench [--method none|kd|nkd|c2kd] [--batch B] [--classes C] [--width W] [--warmup N] "
                    "[--steps N] [--epoch-steps N] [--tf32 0|1] [--json PATH] [--profile PATH] [--op-profile 0|1] "
                    "[--bn own|cudnn]\n");
    return 2;
}
