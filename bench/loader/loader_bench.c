/* loader_bench: samples/s of train's loader alone (no model, no step): one or
 * more passes over a split of an ingested folder, each batch taken and given
 * back at once. With --prep 1 each batch also goes through ld_device_upload on
 * the CPU backend (spectrogram standardisation, crop + bilinear resize + flip +
 * ImageNet normalisation), i.e. all the preparation a Python reader does on the
 * CPU; with --prep 0 only the host side (HDF5 reads, JPEG decoding, crop draws),
 * which is what the CPU does when the device prepares the batch (CUDA).
 * Prints one JSON line.
 * Usage: loader_bench DIR [--split train] [--batch 64] [--threads 2]
 *                     [--prep-threads 0] [--augment 1] [--prep 1] [--image-size 224]
 *                     [--passes 1] [--visual-only 0] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_progress.h"
#include "train/loader.h"
#include "train/loader_test.h"

typedef struct bench_opts {
    const char *dir, *split;
    int batch, threads, prep_threads, augment, prep, image_size, passes, visual_only;
} bench_opts;

static int parse(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.split = "train", .batch = 64, .threads = 2, .augment = 1, .prep = 1, .image_size = 224,
                      .passes = 1};
    if (argc < 2 || argv[1][0] == '-')
        return -1;
    o->dir = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--split")) o->split = v;
        else if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--prep-threads")) o->prep_threads = atoi(v);
        else if (!strcmp(a, "--augment")) o->augment = atoi(v);
        else if (!strcmp(a, "--prep")) o->prep = atoi(v);
        else if (!strcmp(a, "--image-size")) o->image_size = atoi(v);
        else if (!strcmp(a, "--passes")) o->passes = atoi(v);
        else if (!strcmp(a, "--visual-only")) o->visual_only = atoi(v);
        else
            return -1;
    }
    return (argc % 2 == 0 && o->batch > 0 && o->threads > 0 && o->passes > 0 && o->image_size > 0) ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_opts o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: loader_bench DIR [--split S] [--batch B] [--threads N] [--prep-threads N] "
                        "[--augment 0|1] [--prep 0|1] [--image-size S] [--passes P] [--visual-only 0|1]\n");
        return 2;
    }
    cm_err err = {{0}};
    int rc = 1;
    ld_data *d = ld_data_open(o.dir, o.split, &err);
    be_ctx *be = d ? be_cpu_create(o.prep_threads, &err) : NULL;
    ld_opts lo = {.batch = o.batch, .augment = o.augment, .shuffle = 1, .drop_last = 1, .threads = o.threads,
                  .need_audio = !o.visual_only, .need_visual = 1};
    ld_loader *l = be ? ld_loader_create(d, be, &lo, &err) : NULL;
    ld_device *dv = l && o.prep ? ld_device_create(be, ld_data_meta(d), o.batch, o.image_size, lo.need_audio, 1, &err) : NULL;
    if (!l || (o.prep && !dv)) {
        fprintf(stderr, "loader_bench: %s: %s\n", o.dir, err.msg);
        goto out;
    }
    tr_rng rng;
    tr_rng_seed(&rng, 1);
    long long samples = 0;
    double t0 = cm_now();
    for (int p = 0; p < o.passes; p++) {
        if (ld_loader_start(l, &rng, 0, &err) != 0)
            goto fail;
        ld_host_batch *hb;
        int r;
        while ((r = ld_loader_next(l, &hb, &err)) == 1) {
            tr_batch b;
            if (dv && ld_device_upload(dv, hb, &b, &err) != 0) {
                ld_loader_release(l, hb);
                goto fail;
            }
            be->ops->sync(be);
            samples += hb->B;
            ld_loader_release(l, hb);
        }
        if (r < 0)
            goto fail;
    }
    double s = cm_now() - t0;
    printf("{\"impl\": \"c\", \"threads\": %d, \"prep\": %d, \"augment\": %d, \"batch\": %d, \"samples\": %lld, "
           "\"seconds\": %.4f, \"samples_per_s\": %.2f}\n",
           o.threads, o.prep, o.augment, o.batch, samples, s, samples / s);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "loader_bench: %s: %s\n", o.dir, err.msg);
out:
    ld_device_destroy(dv);
    ld_loader_destroy(l);
    if (be)
        be->ops->destroy(be);
    ld_data_close(d);
    return rc;
}
