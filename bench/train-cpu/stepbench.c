/* stepbench: seconds per tr_system_step of the C trainer (CPU backend) on
 * random data. Prints one line per timed step: "c <seconds>".
 * Usage: stepbench [--method c2kd] [--batch 16] [--width 64] [--bins 257] [--time 1004]
 *                  [--image 224] [--classes 28] [--warmup 1] [--reps 3] [--threads N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_progress.h"
#include "train/rng.h"
#include "train/system.h"

int main(int argc, char **argv)
{
    tr_config c;
    tr_config_default(&c);
    c.n_classes = 28;
    int B = 16, warm = 1, reps = 3, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--method")) c.method = !strcmp(v, "none") ? TR_NONE : !strcmp(v, "kd") ? TR_KD : !strcmp(v, "nkd") ? TR_NKD : TR_C2KD;
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--width")) c.width = atoi(v);
        else if (!strcmp(a, "--bins")) c.spec_bins = atoi(v);
        else if (!strcmp(a, "--time")) c.spec_frames = atoi(v);
        else if (!strcmp(a, "--image")) c.image_size = atoi(v);
        else if (!strcmp(a, "--classes")) c.n_classes = atoi(v);
        else if (!strcmp(a, "--warmup")) warm = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else {
            fprintf(stderr, "stepbench: unknown option %s\n", a);
            return 2;
        }
    }
    c.max_batch = B;
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(threads, &err);
    tr_system *s = be ? tr_system_create(be, &c, 1, &err) : NULL;
    if (!s) {
        fprintf(stderr, "stepbench: %s\n", err.msg);
        return 1;
    }
    size_t na = (size_t)B * c.spec_bins * c.spec_frames, nv = (size_t)B * 3 * c.image_size * c.image_size;
    float *h = malloc((na > nv ? na : nv) * sizeof(float));
    tr_rng r;
    tr_rng_seed(&r, 5);
    for (size_t i = 0; i < (na > nv ? na : nv); i++)
        h[i] = (float)tr_rng_normal(&r);
    int32_t y[1024];
    for (int i = 0; i < B; i++)
        y[i] = (int32_t)(tr_rng_next(&r) % (uint64_t)c.n_classes);
    float *da = be->ops->alloc(be, na * sizeof(float)), *dv = be->ops->alloc(be, nv * sizeof(float));
    int32_t *dy = be->ops->alloc(be, (size_t)B * sizeof(int32_t));
    be->ops->to_device(be, da, h, na * sizeof(float));
    be->ops->to_device(be, dv, h, nv * sizeof(float));
    be->ops->to_device(be, dy, y, (size_t)B * sizeof(int32_t));
    be->ops->sync(be);
    tr_batch b = {.B = B, .audio = da, .visual = dv, .labels = dy};
    for (int i = 0; i < warm + reps; i++) {
        double t0 = cm_now();
        if (tr_system_step(s, &b, 1e-3f, NULL, &err) < 0) {
            fprintf(stderr, "stepbench: %s\n", err.msg);
            return 1;
        }
        be->ops->sync(be);
        if (i >= warm)
            printf("c %.4f\n", cm_now() - t0);
        fflush(stdout);
    }
    tr_system_destroy(s);
    be->ops->destroy(be);
    free(h);
    return 0;
}
