/* conv_bench: times the CPU backend's convolution passes on one shape.
 *
 *   conv_bench N C H W K KH STRIDE PAD [REPS [THREADS [CLOCK]]]
 *
 * CLOCK: wall (default) or cpu (the calling thread's CPU time: with THREADS 1
 * it does not count the time other processes take from us on a shared
 * machine). The OpenBLAS kernel set in use is printed on stderr ("openblas:
 * Cooperlake"); OPENBLAS_CORETYPE in the environment overrides its choice.
 *
 * Prints one line: "fwd_ms bwd_data_ms bwd_filter_ms" (fastest of REPS runs: the machine may be shared,
 * after one warm-up run that also grows the workspace). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cm_progress.h"
#include "kernels/kernels.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

char *openblas_get_corename(void); /* OpenBLAS */

static int use_cpu_clock;

static double now(void)
{
    if (!use_cpu_clock)
        return cm_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: conv_bench N C H W K KH STRIDE PAD [REPS [THREADS [wall|cpu]]]\n");
        return 2;
    }
    be_conv_shape s = {atoi(argv[1]), atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
                       atoi(argv[6]), atoi(argv[6]), atoi(argv[7]), atoi(argv[8])};
    int reps = argc > 9 ? atoi(argv[9]) : 5, threads = argc > 10 ? atoi(argv[10]) : 0;
    use_cpu_clock = argc > 11 && strcmp(argv[11], "cpu") == 0;
    fprintf(stderr, "openblas: %s\n", openblas_get_corename());
    if (reps < 1 || reps > 1000)
        reps = 5;
    cm_err err;
    be_ctx *b = be_cpu_create(threads, &err);
    if (!b) {
        fprintf(stderr, "conv_bench: %s\n", err.msg);
        return 1;
    }
    int oh = (s.h + 2 * s.pad - s.kh) / s.stride + 1, ow = (s.w + 2 * s.pad - s.kw) / s.stride + 1;
    size_t nx = (size_t)s.n * s.c * s.h * s.w, nw = (size_t)s.k * s.c * s.kh * s.kw, ny = (size_t)s.n * s.k * oh * ow;
    float *x = b->ops->alloc(b, nx * 4), *w = b->ops->alloc(b, nw * 4), *y = b->ops->alloc(b, ny * 4);
    float *dx = b->ops->alloc(b, nx * 4), *dw = b->ops->alloc(b, nw * 4), *dy = b->ops->alloc(b, ny * 4);
    if (!x || !w || !y || !dx || !dw || !dy) {
        fprintf(stderr, "conv_bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < nw; i++)
        w[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < ny; i++)
        dy[i] = (float)((i * 97u) % 1000) / 1000.0f - 0.5f;
    double *t = calloc((size_t)3 * reps, sizeof *t);
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        b->ops->conv_fwd(b, &s, x, w, y);
        double t1 = now();
        b->ops->conv_bwd_data(b, &s, dy, w, dx);
        double t2 = now();
        b->ops->conv_bwd_filter(b, &s, x, dy, dw);
        double t3 = now();
        if (r >= 0) {
            t[r] = t1 - t0;
            t[reps + r] = t2 - t1;
            t[2 * reps + r] = t3 - t2;
        }
    }
    for (int k = 0; k < 3; k++)
        qsort(t + k * reps, reps, sizeof *t, cmp);
    printf("%.3f %.3f %.3f\n", t[0] * 1e3, t[reps] * 1e3, t[2 * reps] * 1e3);
    if (b->ops->status(b, &err) < 0) {
        fprintf(stderr, "conv_bench: %s\n", err.msg);
        return 1;
    }
    b->ops->destroy(b);
    free(t);
    return 0;
}
