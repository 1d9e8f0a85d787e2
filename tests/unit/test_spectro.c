/* Unit tests of the spectro library: window, frame count, detrend, scaling
 * (against a naive double-precision DFT computed here), log, normalisation,
 * fixed length, thread safety, wisdom handling and decoder errors on
 * hand-written WAV files. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cm_pool.h"
#include "spectro/sp_internal.h"
#include "spectro/spectro.h"

static char tmpdir[256];

/* FFmpeg's own log lines would clutter the test output. */
__attribute__((constructor)) static void quiet_ffmpeg(void) { sp_set_ffmpeg_log(0); }

static void mk_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_spectro.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static void tpath(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

/* ---- window ---- */

Test(window, tukey_matches_scipy_values)
{
    /* scipy.signal.get_window(('tukey', 0.25), 512) at these indices */
    static const int idx[] = {0, 1, 2, 10, 32, 63, 64, 65, 256, 448, 449, 450, 500, 511};
    static const double ref[] = {0.0, 6.02271897e-04, 2.40763666e-03, 5.90393678e-02, 0.5, 9.99397728e-01,
                                 1.0, 1.0, 1.0, 1.0, 9.99397728e-01, 9.97592363e-01, 8.42651938e-02,
                                 6.02271897e-04};
    double w[512];
    sp_make_window(SP_WINDOW_TUKEY25, 512, w);
    for (size_t i = 0; i < sizeof idx / sizeof *idx; i++)
        cr_expect(fabs(w[idx[i]] - ref[i]) < 1e-8, "w[%d] = %.10f, want %.10f", idx[i], w[idx[i]], ref[i]);
    double s = 0, s2 = 0;
    for (int i = 0; i < 512; i++) {
        s += w[i];
        s2 += w[i] * w[i];
    }
    /* periodic Tukey(0.25), 512: sum w = 448, sum w^2 = 432 (scipy) */
    cr_expect(fabs(s - 448.0) < 1e-9, "sum w = %.12f", s);
    cr_expect(fabs(s2 - 432.0) < 1e-9, "sum w^2 = %.12f", s2);
    /* periodic: w[i] == w[512 - i] */
    for (int i = 1; i < 512; i++)
        cr_expect(fabs(w[i] - w[512 - i]) < 1e-12);
}

Test(window, hann_periodic)
{
    double w[512];
    sp_make_window(SP_WINDOW_HANN, 512, w);
    double s2 = 0;
    for (int i = 0; i < 512; i++)
        s2 += w[i] * w[i];
    cr_expect(fabs(w[0]) < 1e-15 && fabs(w[256] - 1.0) < 1e-15);
    cr_expect(fabs(w[1] - 3.76490804e-05) < 1e-12, "w[1] = %g", w[1]);
    cr_expect(fabs(s2 - 192.0) < 1e-9, "sum w^2 = %.12f", s2); /* 3N/8 */
}

/* ---- shapes ---- */

Test(shape, frame_count)
{
    sp_params p;
    sp_params_default(&p);
    cr_expect_eq(sp_num_bins(&p), 257);
    cr_expect_eq(sp_num_frames(&p, 160000), 1004);
    cr_expect_eq(sp_num_frames(&p, 48000), 299);
    cr_expect_eq(sp_num_frames(&p, 512), 1);
    cr_expect_eq(sp_num_frames(&p, 511), 0);
    cr_expect_eq(sp_num_frames(&p, 512 + 158), 1);
    cr_expect_eq(sp_num_frames(&p, 512 + 159), 2);
    cr_expect_eq(sp_target_samples(&p), 160000);
    p.duration = 3;
    cr_expect_eq(sp_target_samples(&p), 48000);
}

Test(shape, bad_params_rejected)
{
    sp_params p;
    cm_err err;
    sp_params_default(&p);
    p.overlap = 512;
    cr_expect_eq(sp_params_check(&p, &err), -1);
    cr_expect_null(sp_stft_create(&p, NULL, &err));
    sp_params_default(&p);
    p.duration = 0;
    cr_expect_eq(sp_params_check(&p, &err), -1);
    sp_params_default(&p);
    p.window = 2;
    cr_expect_eq(sp_params_check(&p, &err), -1);
    sp_params_default(&p);
    cr_expect_eq(sp_params_check(&p, &err), 0);
}

/* ---- maths against a naive double-precision DFT ---- */

/* scipy's recipe for frame t of x, bin k, computed directly. */
static double ref_bin(const float *x, int t, int k, const sp_params *p)
{
    int n = p->window, hop = p->window - p->overlap;
    double *w = malloc(sizeof(double) * (size_t)n);
    sp_make_window(p->window_kind, n, w);
    const float *f = x + (size_t)t * hop;
    double mean = 0, s2 = 0;
    if (p->detrend) {
        for (int i = 0; i < n; i++)
            mean += f[i];
        mean /= n;
    }
    double re = 0, im = 0;
    for (int i = 0; i < n; i++) {
        double v = (f[i] - mean) * w[i];
        double a = -2.0 * M_PI * (double)k * i / n;
        re += v * cos(a);
        im += v * sin(a);
        s2 += w[i] * w[i];
    }
    free(w);
    double pw = re * re + im * im;
    if (p->scale == SP_SCALE_MAGNITUDE)
        return sqrt(pw);
    double sc = 1.0 / (p->sample_rate * s2);
    if (k > 0 && k < n / 2)
        sc *= 2;
    return pw * sc;
}

static float *test_signal(size_t n, unsigned seed)
{
    float *x = malloc(n * sizeof *x);
    unsigned r = seed;
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        /* offset (mean to remove) + tone + noise */
        x[i] = 0.2f + 0.4f * sinf(0.0731f * (float)i) + 0.1f * ((float)(r >> 8) / 16777216.0f - 0.5f);
    }
    return x;
}

static void check_against_ref(sp_params *p, size_t n)
{
    cm_err err;
    sp_stft *s = sp_stft_create(p, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    size_t T = sp_num_frames(p, n), B = sp_num_bins(p);
    float *x = test_signal(n, 7);
    float *out = malloc(T * B * sizeof *out);
    cr_assert_eq(sp_stft_compute(s, x, n, out, &err), 0, "%s", err.msg);
    const int frames[] = {0, 1, 31, 32, 33, (int)T - 1};
    double maxrel = 0;
    for (size_t fi = 0; fi < sizeof frames / sizeof *frames; fi++) {
        int t = frames[fi];
        double peak = 0;
        for (int k = 0; k < (int)B; k++)
            peak = fmax(peak, ref_bin(x, t, k, p));
        for (int k = 0; k < (int)B; k++) {
            double ref = ref_bin(x, t, k, p);
            double got = out[(size_t)k * T + (size_t)t];
            if (p->log) {
                cr_expect(fabs(got - log(ref + p->log_eps)) < 2e-3 + 1e-5 * fabs(log(ref + p->log_eps)),
                          "t=%d k=%d got %g want %g", t, k, got, log(ref + p->log_eps));
            } else {
                /* float FFT: error relative to the frame's largest bin */
                double rel = fabs(got - ref) / peak;
                maxrel = fmax(maxrel, rel);
                if (ref > 1e-3 * peak)
                    cr_expect(fabs(got - ref) <= 1e-4 * ref, "t=%d k=%d got %g want %g", t, k, got, ref);
            }
        }
    }
    cr_expect(maxrel < 1e-5, "max error relative to the peak %g", maxrel);
    free(x);
    free(out);
    sp_stft_destroy(s);
}

Test(maths, density_detrend_tukey_vs_naive_dft)
{
    sp_params p;
    sp_params_default(&p);
    p.log = 0;
    check_against_ref(&p, 16000); /* T = 98: three full blocks and a partial one */
}

Test(maths, log_density_vs_naive_dft)
{
    sp_params p;
    sp_params_default(&p);
    check_against_ref(&p, 12345);
}

Test(maths, magnitude_hann_no_detrend_vs_naive_dft)
{
    sp_params p;
    sp_params_default(&p);
    p.log = 0;
    p.window_kind = SP_WINDOW_HANN;
    p.scale = SP_SCALE_MAGNITUDE;
    p.detrend = 0;
    check_against_ref(&p, 8000);
}

Test(maths, odd_window_and_hop)
{
    sp_params p;
    sp_params_default(&p);
    p.log = 0;
    p.window = 400;
    p.overlap = 240;
    check_against_ref(&p, 9000);
}

Test(maths, detrend_removes_constant)
{
    sp_params p;
    sp_params_default(&p);
    p.log = 0;
    cm_err err;
    sp_stft *s = sp_stft_create(&p, NULL, &err);
    cr_assert_not_null(s);
    size_t n = 4000, T = sp_num_frames(&p, n), B = sp_num_bins(&p);
    float *x = malloc(n * sizeof *x), *out = malloc(T * B * sizeof *out);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.25f;
    cr_assert_eq(sp_stft_compute(s, x, n, out, &err), 0);
    for (size_t i = 0; i < T * B; i++)
        cr_assert(out[i] == 0.0f, "bin %zu = %g", i, out[i]);
    sp_stft_destroy(s);
    /* without detrend the DC bin is (c * sum w)^2 / (fs * sum w^2) */
    p.detrend = 0;
    s = sp_stft_create(&p, NULL, &err);
    cr_assert_eq(sp_stft_compute(s, x, n, out, &err), 0);
    double dc = pow(0.25 * 448.0, 2) / (16000.0 * 432.0);
    for (size_t t = 0; t < T; t++)
        cr_expect(fabs(out[t] - dc) < 1e-6 * dc, "frame %zu DC %g want %g", t, out[t], dc);
    sp_stft_destroy(s);
    free(x);
    free(out);
}

Test(maths, short_signal_is_an_error)
{
    sp_params p;
    sp_params_default(&p);
    cm_err err;
    sp_stft *s = sp_stft_create(&p, NULL, &err);
    float x[100] = {0}, out[257];
    cr_expect_eq(sp_stft_compute(s, x, 100, out, &err), -1);
    cr_expect(strstr(err.msg, "shorter") != NULL, "%s", err.msg);
    sp_stft_destroy(s);
}

Test(maths, vector_log_accuracy)
{
    size_t n = 100003;
    float *x = malloc(n * sizeof *x);
    double *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) {
        /* 1e-12 .. 1e6, log-spaced, plus exact powers of two */
        double v = (i % 97 == 0) ? ldexp(1.0, (int)(i % 60) - 40) : pow(10.0, -12.0 + 18.0 * (double)i / (double)n);
        x[i] = (float)v;
        ref[i] = log((double)x[i] + (double)1e-7f);
    }
    sp_log_inplace(x, n, 1e-7f);
    double maxerr = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(x[i] - ref[i]) / fmax(1.0, fabs(ref[i]));
        maxerr = fmax(maxerr, e);
    }
    cr_expect(maxerr < 5e-7, "max error %g", maxerr);
    free(x);
    free(ref);
}

Test(maths, clip_normalisation)
{
    size_t n = 5000;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(3.0 + 2.0 * sin(0.01 * (double)i) + 0.001 * (double)i);
    sp_standardize(x, n);
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        m += x[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= (double)n;
    cr_expect(fabs(m) < 1e-5, "mean %g", m);
    cr_expect(fabs(sqrt(v) - 1.0) < 1e-5, "std %g", sqrt(v));
    /* a constant clip stays finite: (x - mean) / (0 + 1e-9) = 0 */
    for (size_t i = 0; i < n; i++)
        x[i] = 5.0f;
    sp_standardize(x, n);
    for (size_t i = 0; i < n; i++)
        cr_assert(x[i] == 0.0f);
    free(x);
}

/* ---- fixed length ---- */

Test(length, tile_cut_segment_clip)
{
    cm_err err;
    float x[10], out[25];
    for (int i = 0; i < 10; i++)
        x[i] = (float)i * 0.3f - 1.2f; /* -1.2 .. 1.5: some beyond [-1, 1] */
    cr_assert_eq(sp_fix_length(x, 10, 1, 0, -1, out, 25, &err), 0);
    for (int i = 0; i < 25; i++) {
        float v = x[i % 10];
        v = v > 1 ? 1 : v < -1 ? -1 : v;
        cr_expect(out[i] == v, "tile %d: %g vs %g", i, out[i], v);
    }
    /* cut */
    cr_assert_eq(sp_fix_length(x, 10, 1, 0, -1, out, 4, &err), 0);
    for (int i = 0; i < 4; i++)
        cr_expect(out[i] == (x[i] < -1 ? -1 : x[i]));
    /* segment [2, 5) s at 1 Hz = samples 2, 3, 4, tiled */
    cr_assert_eq(sp_fix_length(x, 10, 1, 2, 5, out, 7, &err), 0);
    for (int i = 0; i < 7; i++)
        cr_expect(out[i] == x[2 + i % 3], "segment %d", i);
    /* a segment beyond the end is clamped */
    cr_assert_eq(sp_fix_length(x, 10, 1, 8, 50, out, 5, &err), 0);
    cr_expect(out[0] == 1.0f && out[1] == 1.0f && out[2] == 1.0f); /* 1.2, 1.5 clipped */
    /* at 16 kHz: [0.5, 0.75) s = samples 8000..11999 */
    size_t n = 16000;
    float *y = malloc(n * sizeof *y), *o = malloc(9000 * sizeof *o);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)i / 16000.0f;
    cr_assert_eq(sp_fix_length(y, n, 16000, 0.5, 0.75, o, 9000, &err), 0);
    cr_expect(o[0] == y[8000] && o[3999] == y[11999] && o[4000] == y[8000] && o[8999] == y[8000 + 4999 % 4000]);
    free(y);
    free(o);
}

Test(length, empty_segment_is_an_error)
{
    cm_err err;
    float x[10] = {0}, out[5];
    cr_expect_eq(sp_fix_length(x, 10, 1, 20, 30, out, 5, &err), -1);
    cr_expect(strstr(err.msg, "empty segment") != NULL, "%s", err.msg);
    cr_expect_eq(sp_fix_length(x, 10, 1000, 0.0001, 0.0004, out, 5, &err), -1);
}

/* ---- threads ---- */

typedef struct mt_ctx {
    const sp_stft *s;
    const float *x;
    size_t n, size;
    float *outs;
    int fails;
} mt_ctx;

static void mt_task(void *c, size_t i, int worker)
{
    (void)worker;
    mt_ctx *m = c;
    cm_err err;
    if (sp_stft_compute(m->s, m->x, m->n, m->outs + i * m->size, &err) != 0)
        __atomic_add_fetch(&m->fails, 1, __ATOMIC_RELAXED);
}

Test(threads, concurrent_compute_is_identical)
{
    sp_params p;
    sp_params_default(&p);
    p.normalize = SP_NORM_CLIP;
    cm_err err;
    sp_stft *s = sp_stft_create(&p, NULL, &err);
    size_t n = 48000, size = sp_num_frames(&p, n) * sp_num_bins(&p);
    float *x = test_signal(n, 3);
    mt_ctx m = {s, x, n, size, malloc(16 * size * sizeof(float)), 0};
    cr_assert_eq(cm_parallel_for(16, 4, mt_task, &m), 0);
    cr_assert_eq(m.fails, 0);
    for (int i = 1; i < 16; i++)
        cr_assert(memcmp(m.outs, m.outs + (size_t)i * size, size * sizeof(float)) == 0, "output %d differs", i);
    free(m.outs);
    free(x);
    sp_stft_destroy(s);
}

/* ---- wisdom ---- */

Test(wisdom, written_reused_and_garbage_tolerated, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char wp[600], sub[512];
    tpath(sub, sizeof sub, "cache/deeper");
    snprintf(wp, sizeof wp, "%s/wisdom", sub);
    sp_params p;
    sp_params_default(&p);
    p.window = 480; /* a size no other test plans, so the file gets something new */
    p.overlap = 320;
    cm_err err;
    size_t n = 16000, size = sp_num_frames(&p, n) * sp_num_bins(&p);
    float *x = test_signal(n, 5), *a = malloc(size * 4), *b = malloc(size * 4);
    sp_stft *s = sp_stft_create(&p, wp, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(sp_stft_compute(s, x, n, a, &err), 0);
    sp_stft_destroy(s);
    struct stat st;
    cr_assert_eq(stat(wp, &st), 0, "wisdom file not written");
    cr_expect_gt(st.st_size, 0);
    /* garbage wisdom: still plans, same numbers */
    FILE *f = fopen(wp, "w");
    fputs("(fftw-3.3.10 fftwf_wisdom #x12345678 garbage ((((", f);
    fclose(f);
    s = sp_stft_create(&p, wp, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(sp_stft_compute(s, x, n, b, &err), 0);
    sp_stft_destroy(s);
    for (size_t i = 0; i < size; i++)
        cr_assert(fabsf(a[i] - b[i]) <= 1e-5f * fmaxf(1.0f, fabsf(a[i])), "bin %zu", i);
    /* unwritable location: still fine */
    s = sp_stft_create(&p, "/proc/nonexistent/dir/wisdom", &err);
    cr_assert_not_null(s, "%s", err.msg);
    sp_stft_destroy(s);
    /* no temporary files left behind */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep -v '^wisdom$')\"", sub);
    cr_expect_eq(system(cmd), 0, "leftover temporary files in %s", sub);
    free(x);
    free(a);
    free(b);
}

/* ---- decoding: hand-written WAV files and bad inputs ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Writes a mono 16-bit PCM WAV of `n` samples; `claim` is the data size written in the header. */
static void write_wav(const char *path, const int16_t *s, size_t n, uint32_t claim, int rate)
{
    unsigned char h[44];
    memcpy(h, "RIFF", 4);
    put32(h + 4, 36 + claim);
    memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);
    h[20] = 1, h[21] = 0; /* PCM */
    h[22] = 1, h[23] = 0; /* mono */
    put32(h + 24, (uint32_t)rate);
    put32(h + 28, (uint32_t)rate * 2);
    h[32] = 2, h[33] = 0, h[34] = 16, h[35] = 0;
    memcpy(h + 36, "data", 4);
    put32(h + 40, claim);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(h, 1, 44, f);
    if (n)
        fwrite(s, 2, n, f);
    fclose(f);
}

Test(decode, wav_16k_mono_is_exact, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[512];
    tpath(path, sizeof path, "a.wav");
    int16_t s[3000];
    for (int i = 0; i < 3000; i++)
        s[i] = (int16_t)((i * 37) % 65536 - 32768);
    write_wav(path, s, 3000, 6000, 16000);
    float *x;
    size_t n;
    cm_err err;
    cr_assert_eq(sp_decode_audio(path, 16000, NULL, &x, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3000);
    for (int i = 0; i < 3000; i++)
        cr_assert(x[i] == (float)s[i] / 32768.0f, "sample %d: %g", i, x[i]);
    free(x);
    /* resampled to 8 kHz: half as many samples (flushed resampler) */
    cr_assert_eq(sp_decode_audio(path, 8000, NULL, &x, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1500);
    free(x);
}

/* opts.keep (issue 16): only the segment's samples, decoding stopped after
 * them; they are exactly the whole decoding's samples at the same indices
 * (sp_fix_length's rounding), resampled or not. */
Test(decode, keep_is_the_slice_of_the_whole, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[512];
    tpath(path, sizeof path, "k.wav");
    enum { N = 48000 };
    static int16_t s[N];
    for (int i = 0; i < N; i++)
        s[i] = (int16_t)(12000 * sin(0.011 * i + 0.00003 * i * (double)i / 7));
    write_wav(path, s, N, 2 * N, 16000);
    const struct {
        double start, end;
        size_t keep;
    } seg[] = {{0, -1, 1000}, {0, -1, 100000}, {0.5, 1.25, 100000}, {0.5, 1.25, 300},
               {1.0, -1, 5000}, {2.9, 4.0, 100000}, {0.10003, 0.2, 7}};
    for (int rate = 8000; rate <= 16000; rate += 8000) {
        float *x, *y;
        size_t n, m;
        cm_err err;
        cr_assert_eq(sp_decode_audio(path, rate, NULL, &x, &n, &err), 0, "%s", err.msg);
        for (size_t k = 0; k < sizeof seg / sizeof seg[0]; k++) {
            sp_read_opts o = {.start = seg[k].start, .end = seg[k].end, .keep = seg[k].keep,
                              .allow_truncated = 1};
            cr_assert_eq(sp_decode_audio(path, rate, &o, &y, &m, &err), 0, "%s", err.msg);
            size_t i0 = (size_t)floor(seg[k].start * rate + 0.5);
            size_t i1 = seg[k].end > 0 ? (size_t)floor(seg[k].end * rate + 0.5) : n;
            if (i1 > n)
                i1 = n;
            if (i1 - i0 > seg[k].keep)
                i1 = i0 + seg[k].keep;
            cr_assert_eq(m, i1 - i0, "rate %d segment %zu: %zu samples, expected %zu", rate, k, m, i1 - i0);
            cr_assert(memcmp(y, x + i0, m * sizeof *y) == 0, "rate %d segment %zu differs", rate, k);
            free(y);
        }
        /* past the end: empty, kept or not */
        sp_read_opts o = {.start = 3.5, .end = 4, .keep = 1000, .allow_truncated = 1};
        cr_expect_eq(sp_decode_audio(path, rate, &o, &y, &m, &err), -1);
        cr_expect(strstr(err.msg, "empty segment") != NULL, "%s", err.msg);
        free(x);
    }
}

static void expect_decode_error(const char *path, const char *what)
{
    float *x = (float *)1;
    size_t n = 7;
    cm_err err = {{0}};
    cr_expect_eq(sp_decode_audio(path, 16000, NULL, &x, &n, &err), -1, "%s decoded", path);
    cr_expect_null(x);
    cr_expect_eq(n, 0);
    cr_expect(strstr(err.msg, what) != NULL, "%s: message '%s' lacks '%s'", path, err.msg, what);
    cr_expect(strstr(err.msg, path) == NULL, "the message must not contain the path: %s", err.msg);
    cr_expect(strchr(err.msg, '\n') == NULL);
}

Test(decode, bad_inputs, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char p[512];
    tpath(p, sizeof p, "missing.mp4");
    expect_decode_error(p, "no such file");
    expect_decode_error(tmpdir, "is a directory");
    tpath(p, sizeof p, "empty.mp4");
    FILE *f = fopen(p, "wb");
    fclose(f);
    expect_decode_error(p, "empty file");
    tpath(p, sizeof p, "text.mp4");
    f = fopen(p, "wb");
    for (int i = 0; i < 200; i++)
        fputs("this is not a media file at all\n", f);
    fclose(f);
    expect_decode_error(p, "not a media file");
    tpath(p, sizeof p, "zero.wav");
    write_wav(p, NULL, 0, 0, 16000);
    expect_decode_error(p, "zero-length audio");
    /* header claims 20000 bytes, 100 present: truncated */
    int16_t s[50] = {0};
    tpath(p, sizeof p, "trunc.wav");
    write_wav(p, s, 50, 20000, 16000);
    expect_decode_error(p, "truncated");
}

Test(process, whole_pipeline_shape, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[512];
    tpath(path, sizeof path, "b.wav");
    int16_t s[4000];
    for (int i = 0; i < 4000; i++)
        s[i] = (int16_t)(8000 * sin(0.05 * i));
    write_wav(path, s, 4000, 8000, 16000);
    sp_params p;
    sp_params_default(&p);
    p.duration = 3;
    cm_err err;
    sp_stft *st = sp_stft_create(&p, NULL, &err);
    float *spec;
    size_t B, T;
    cr_assert_eq(sp_process_file(st, path, NULL, &spec, &B, &T, &err), 0, "%s", err.msg);
    cr_expect_eq(B, 257);
    cr_expect_eq(T, 299);
    for (size_t i = 0; i < B * T; i++)
        cr_assert(isfinite(spec[i]));
    free(spec);
    /* a segment wholly past the end of the audio is empty (kept or not); one that
     * starts inside and ends past the end is truncated (issue 13) unless kept */
    sp_read_opts seg = {.start = 5, .end = 6};
    cr_expect_eq(sp_process_file(st, path, &seg, &spec, &B, &T, &err), -1);
    cr_expect(strstr(err.msg, "empty segment") != NULL, "%s", err.msg);
    seg.allow_truncated = 1;
    cr_expect_eq(sp_process_file(st, path, &seg, &spec, &B, &T, &err), -1);
    cr_expect(strstr(err.msg, "empty segment") != NULL, "%s", err.msg);
    seg = (sp_read_opts){.start = 0.1, .end = 6};
    cr_expect_eq(sp_process_file(st, path, &seg, &spec, &B, &T, &err), -1);
    cr_expect(strstr(err.msg, "truncated: decoded 0.25 s of 6.00 s") != NULL, "%s", err.msg);
    seg.allow_truncated = 1;
    cr_expect_eq(sp_process_file(st, path, &seg, &spec, &B, &T, &err), 0, "%s", err.msg);
    free(spec);
    sp_stft_destroy(st);
}


/* The settings table: one name per setting, older names read, bounds in one place. */
Test(settings, one_table_for_cli_presets_recipe_attrs)
{
    sp_params p;
    cm_err err = {{0}};
    sp_params_default(&p);
    cr_assert(p.sample_rate == 16000 && p.duration == 10 && p.window == 512 && p.overlap == 353 &&
              p.window_kind == SP_WINDOW_TUKEY25 && p.scale == SP_SCALE_DENSITY && p.detrend == 1 && p.log == 1 &&
              p.log_eps == 1e-7 && p.normalize == SP_NORM_NONE);
    cr_assert_eq(sp_params_set(&p, "window_fn", "hann", &err), 0); /* the .h5 attribute before */
    cr_assert_eq(p.window_kind, SP_WINDOW_HANN);
    cr_assert_eq(sp_params_set(&p, "window_kind", "tukey0.25", &err), 0); /* an older value */
    cr_assert_eq(p.window_kind, SP_WINDOW_TUKEY25);
    cr_assert_eq(sp_params_set(&p, "sample-rate", "22050", &err), 0); /* the option's spelling */
    cr_assert_eq(p.sample_rate, 22050);
    cr_assert_eq(sp_params_set(&p, "frames", "3", &err), 1); /* not a spectrogram setting */
    cr_assert_eq(sp_params_set(&p, "window", "4", &err), -1);
    cr_assert_str_eq(err.msg, "window: 4 is not in [8, 65536]");
    cr_assert_eq(sp_params_set(&p, "log_eps", "0", &err), -1);
    cr_assert_eq(sp_params_set(&p, "detrend", "2", &err), -1);
    cr_assert_eq(sp_params_set(&p, "scale", "db", &err), -1);
    cr_assert_eq(p.window, 512);
    cr_assert_eq(sp_params_check(&p, &err), 0);
    p.window = 8; /* the table's bound is sp_stft's: the smallest window computes */
    p.overlap = 4;
    cr_assert_eq(sp_params_check(&p, &err), 0, "%s", err.msg);
    sp_stft *s = sp_stft_create(&p, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    sp_stft_destroy(s);
    p.overlap = 8;
    cr_assert_eq(sp_params_check(&p, &err), -1);
    size_t n;
    const cm_opt *t = sp_settings(&n);
    const char *keys[] = {"sample_rate", "duration", "window", "overlap", "window_kind", "scale", "detrend", "log",
                          "log_eps", "normalize"}; /* the recipe's order (hashed by ingest's resume) */
    cr_assert_eq(n, sizeof keys / sizeof *keys);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(cm_opt_key(&t[i]), keys[i]);
}

/* sp_file_spectrogram, the one path of sp_process_file, spectro and ingest:
 * with the caller's scratch and output it computes what decode -> fix length
 * -> STFT computes step by step (the same floats), reports that the audio was
 * decoded and the truncation it kept, and a failed decode is reported as such. */
Test(process, file_spectrogram_is_the_three_steps, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[512];
    tpath(path, sizeof path, "c.wav");
    int16_t s[4000];
    for (int i = 0; i < 4000; i++)
        s[i] = (int16_t)(6000 * sin(0.03 * i) + 2000 * cos(0.21 * i));
    write_wav(path, s, 4000, 8000, 16000);
    sp_params p;
    sp_params_default(&p);
    p.duration = 1;
    cm_err err;
    sp_stft *st = sp_stft_create(&p, NULL, &err);
    cr_assert_not_null(st, "%s", err.msg);
    size_t target = sp_target_samples(&p), BT = sp_num_bins(&p) * sp_num_frames(&p, target);
    float *fixed = malloc(target * sizeof *fixed), *a = malloc(BT * sizeof *a), *b = malloc(BT * sizeof *b);
    float *x = NULL;
    size_t n = 0;
    cm_trunc tr;
    sp_read_opts ro = {.start = 0.05, .end = 0.3, .truncation = &tr}, dec = ro;
    dec.keep = target;
    cr_assert_eq(sp_decode_audio(path, 16000, &dec, &x, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(sp_fix_length(x, n, 16000, 0, -1, fixed, target, &err), 0, "%s", err.msg);
    cr_assert_eq(sp_stft_compute(st, fixed, target, a, &err), 0, "%s", err.msg);
    free(x);
    sp_file_report rep = {0};
    cr_assert_eq(sp_file_spectrogram(st, path, &ro, fixed, b, &rep, &err), 0, "%s", err.msg);
    cr_expect(rep.decoded);
    cr_expect_not(tr.truncated);
    cr_expect(rep.seconds[0] >= 0 && rep.seconds[1] >= 0 && rep.seconds[2] >= 0);
    cr_expect_eq(memcmp(a, b, BT * sizeof *a), 0, "the one path differs from its three steps");
    memset(b, 0, BT * sizeof *b);
    cr_assert_eq(sp_file_spectrogram(st, path, &ro, NULL, b, NULL, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(a, b, BT * sizeof *a), 0, "own scratch: another result");
    /* kept truncated: decoded, the truncation reported for the caller's warning */
    ro = (sp_read_opts){.start = 0.1, .end = 6, .allow_truncated = 1, .truncation = &tr};
    rep = (sp_file_report){0};
    cr_assert_eq(sp_file_spectrogram(st, path, &ro, fixed, b, &rep, &err), 0, "%s", err.msg);
    cr_expect(rep.decoded && tr.truncated);
    /* not kept: the decode fails, nothing decoded */
    ro.allow_truncated = 0;
    rep = (sp_file_report){0};
    cr_expect_eq(sp_file_spectrogram(st, path, &ro, fixed, b, &rep, &err), -1);
    cr_expect_not(rep.decoded);
    cr_expect(strstr(err.msg, "truncated: decoded") != NULL, "%s", err.msg);
    free(fixed);
    free(a);
    free(b);
    sp_stft_destroy(st);
}
