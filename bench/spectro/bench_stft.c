/* bench_stft: time of the spectrogram maths alone (sp_stft_compute on a
 * fixed-length signal already in memory), per clip, median of many runs.
 * usage: bench_stft [duration_s=10] [reps=200] */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

#include "common/cm_progress.h"
#include "spectro/spectro.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    sp_params p;
    sp_params_default(&p);
    if (argc > 1)
        p.duration = atof(argv[1]);
    int reps = argc > 2 ? atoi(argv[2]) : 200;
    if (reps < 1)
        reps = 1;
    char wp[4096];
    cm_err err;
    sp_stft *s = sp_stft_create(&p, sp_default_wisdom_path(wp, sizeof wp) == 0 ? wp : NULL, &err);
    if (!s) {
        fprintf(stderr, "bench_stft: %s\n", err.msg);
        return 1;
    }
    size_t n = sp_target_samples(&p), T = sp_num_frames(&p, n), B = sp_num_bins(&p);
    float *x = malloc(n * sizeof *x), *out = malloc(T * B * sizeof *out);
    double *t = malloc((size_t)reps * sizeof *t);
    unsigned r = 12345;
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = 0.3f * sinf(0.05f * (float)i) + 0.2f * ((float)(r >> 8) / 16777216.0f - 0.5f);
    }
    for (int k = 0; k < 3; k++)
        sp_stft_compute(s, x, n, out, &err);
    for (int k = 0; k < reps; k++) {
        double t0 = cm_now();
        sp_stft_compute(s, x, n, out, &err);
        t[k] = cm_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("stft %zux%zu (%.1f s at %d Hz): median %.3f ms, min %.3f ms over %d runs\n", B, T, p.duration,
           p.sample_rate, t[reps / 2] * 1e3, t[0] * 1e3, reps);
    free(x);
    free(out);
    free(t);
    sp_stft_destroy(s);
    return 0;
}
