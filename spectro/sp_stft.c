/* sp_stft: fixed length, window, planned FFTW transform, log spectrogram.
 *
 * Layout of the computation (sp_stft_compute): frames are handled in blocks
 * of SP_BLOCK. Each frame of a block is copied into a row of a small aligned
 * buffer with its mean removed and the window applied; one batched FFTW r2c
 * plan (howmany = SP_BLOCK, planned once in sp_stft_create) transforms the
 * block; the power (or magnitude) of each bin is scaled and written
 * transposed into out[bin, frame]. A last pass applies a vectorisable log and
 * the optional per-clip standardisation. The last block is padded with zero
 * frames, so one plan serves any signal length. */
#include "spectro/spectro.h"
#include "spectro/sp_internal.h"

#include <errno.h>
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_file.h"

#define SP_BLOCK 32

/* FFTW's planner and wisdom are process-wide: every planner call is made
 * under this lock (fftwf_execute_* with new arrays needs no lock). */
static pthread_mutex_t sp_planner_lock = PTHREAD_MUTEX_INITIALIZER;

struct sp_stft {
    sp_params p;
    int nfft;        /* window length */
    int hop;
    int bins;        /* nfft / 2 + 1 */
    int odist;       /* complex stride between transforms in the output buffer */
    float *win;      /* window, nfft values */
    float *scale;    /* per-bin factor applied to |X|^2 (density) or |X| (magnitude) */
    fftwf_plan plan; /* batched r2c, SP_BLOCK transforms */
};

size_t sp_num_frames(const sp_params *p, size_t n)
{
    size_t w = (size_t)p->window, hop = (size_t)(p->window - p->overlap);
    return n < w ? 0 : (n - w) / hop + 1;
}

size_t sp_num_bins(const sp_params *p) { return (size_t)p->window / 2 + 1; }

size_t sp_target_samples(const sp_params *p)
{
    return (size_t)llround(p->duration * p->sample_rate);
}

/* Periodic windows as scipy.signal.get_window(..., fftbins=True): the
 * symmetric window of length n + 1 without its last point. */
void sp_make_window(sp_window kind, int n, double *w)
{
    int m = n + 1; /* symmetric length */
    if (kind == SP_WINDOW_HANN) {
        for (int i = 0; i < n; i++)
            w[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / (m - 1));
        return;
    }
    const double alpha = 0.25;
    int width = (int)floor(alpha * (m - 1) / 2.0);
    for (int i = 0; i < n; i++) {
        if (i <= width)
            w[i] = 0.5 * (1.0 + cos(M_PI * (-1.0 + 2.0 * i / alpha / (m - 1))));
        else if (i < m - width - 1)
            w[i] = 1.0;
        else
            w[i] = 0.5 * (1.0 + cos(M_PI * (-2.0 / alpha + 1.0 + 2.0 * i / alpha / (m - 1))));
    }
}

void sp_segment_bounds(int sample_rate, double start, double end, double *a, double *b)
{
    *a = 0;
    *b = INFINITY;
    if (end > start && end >= 0) {
        *a = floor((start > 0 ? start : 0) * sample_rate + 0.5);
        *b = floor(end * sample_rate + 0.5);
    } else if (start > 0) {
        /* start without end: from start to the end of the signal */
        *a = floor(start * sample_rate + 0.5);
    }
}

int sp_fix_length(const float *x, size_t n, int sample_rate, double start, double end,
                  float *out, size_t target, cm_err *err)
{
    double a, b;
    sp_segment_bounds(sample_rate, start, end, &a, &b);
    size_t i0 = a >= (double)n ? n : (size_t)a, i1 = b >= (double)n ? n : (size_t)b;
    if (i1 <= i0)
        return cm_err_set(err, "empty segment [%g, %g) s of %.3f s of audio", start, end,
                          (double)n / sample_rate);
    size_t len = i1 - i0;
    const float *seg = x + i0;
    for (size_t done = 0; done < target;) {
        size_t k = target - done < len ? target - done : len;
        memcpy(out + done, seg, k * sizeof *out);
        done += k;
    }
    for (size_t i = 0; i < target; i++) {
        float v = out[i];
        out[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
    }
    return 0;
}

/* ---- wisdom ---- */

static int read_wisdom(const char *path)
{
    if (!path || !cm_is_file(path))
        return 0;
    /* A corrupt file is rejected by the parser; FFTW then plans as without it. */
    return fftwf_import_wisdom_from_filename(path);
}

static void write_wisdom(const char *path)
{
    char dir[CM_PATH_MAX], tmp[CM_PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof dir)
        return;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (cm_mkdirs(dir, NULL) != 0)
            return;
    }
    if (cm_tmp_path(tmp, sizeof tmp, path, NULL) != 0)
        return;
    if (!fftwf_export_wisdom_to_filename(tmp)) {
        unlink(tmp);
        return;
    }
    cm_rename_commit(tmp, path, NULL); /* removes tmp on failure */
}

sp_stft *sp_stft_create(const sp_params *p, const char *wisdom_path, cm_err *err)
{
    return sp_stft_create_planned(p, wisdom_path, SP_PLAN_MEASURE, err);
}

sp_stft *sp_stft_create_planned(const sp_params *p, const char *wisdom_path, sp_planner planner, cm_err *err)
{
    if (sp_params_check(p, err) != 0)
        return NULL;
    sp_stft *s = calloc(1, sizeof *s);
    if (!s) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    s->p = *p;
    s->nfft = p->window;
    s->hop = p->window - p->overlap;
    s->bins = p->window / 2 + 1;
    s->odist = (s->bins + 3) & ~3; /* keep every transform's output 32-byte aligned */
    s->win = malloc((size_t)s->nfft * sizeof *s->win);
    s->scale = malloc((size_t)s->bins * sizeof *s->scale);
    double *wd = malloc((size_t)s->nfft * sizeof *wd);
    float *in = fftwf_malloc(sizeof(float) * (size_t)s->nfft * SP_BLOCK);
    fftwf_complex *out = fftwf_malloc(sizeof(fftwf_complex) * (size_t)s->odist * SP_BLOCK);
    if (!s->win || !s->scale || !wd || !in || !out) {
        cm_err_set(err, "out of memory");
        goto fail;
    }
    sp_make_window(p->window_kind, s->nfft, wd);
    double ss = 0;
    for (int i = 0; i < s->nfft; i++) {
        s->win[i] = (float)wd[i];
        ss += wd[i] * wd[i];
    }
    for (int k = 0; k < s->bins; k++) {
        if (p->scale == SP_SCALE_DENSITY) {
            /* scipy: |X|^2 / (fs * sum w^2), one-sided bins doubled except DC
             * and (for even lengths) Nyquist */
            int dbl = k > 0 && !(s->nfft % 2 == 0 && k == s->bins - 1);
            s->scale[k] = (float)((dbl ? 2.0 : 1.0) / (p->sample_rate * ss));
        } else {
            s->scale[k] = 1.0f; /* plain |X| (librosa's |STFT|) */
        }
    }

    pthread_mutex_lock(&sp_planner_lock);
    char *before = NULL;
    if (wisdom_path) {
        read_wisdom(wisdom_path);
        before = fftwf_export_wisdom_to_string();
    }
    int n = s->nfft;
    static const unsigned flags[] = {FFTW_MEASURE, FFTW_ESTIMATE, FFTW_PATIENT, FFTW_EXHAUSTIVE};
    s->plan = fftwf_plan_many_dft_r2c(1, &n, SP_BLOCK, in, NULL, 1, s->nfft, out, NULL, 1, s->odist,
                                      flags[planner]);
    if (s->plan && wisdom_path) {
        char *after = fftwf_export_wisdom_to_string();
        if (after && (!before || strcmp(before, after) != 0))
            write_wisdom(wisdom_path);
        free(after);
    }
    free(before);
    pthread_mutex_unlock(&sp_planner_lock);
    if (!s->plan) {
        cm_err_set(err, "FFTW could not plan a transform of length %d", n);
        goto fail;
    }
    free(wd);
    fftwf_free(in);
    fftwf_free(out);
    return s;
fail:
    free(wd);
    fftwf_free(in);
    fftwf_free(out);
    sp_stft_destroy(s);
    return NULL;
}

void sp_stft_destroy(sp_stft *s)
{
    if (!s)
        return;
    if (s->plan) {
        pthread_mutex_lock(&sp_planner_lock);
        fftwf_destroy_plan(s->plan);
        pthread_mutex_unlock(&sp_planner_lock);
    }
    free(s->win);
    free(s->scale);
    free(s);
}

const sp_params *sp_stft_params(const sp_stft *s) { return &s->p; }

/* ---- vectorisable natural log ----
 * x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(u), u = (m-1)/(m+1),
 * |u| <= 0.1716, atanh series to u^11 (truncation < 2e-9 relative). Branch-free,
 * so the compiler vectorises the loop; valid for positive normal x (inputs
 * here are >= log_eps > 0; denormals/zero are never passed). */
static inline float sp_logf(float x)
{
    union { float f; uint32_t u; } v = {x};
    int32_t e = (int32_t)(v.u >> 23) - 127;
    v.u = (v.u & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    float m = v.f;
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float u = (m - 1.0f) / (m + 1.0f);
    float u2 = u * u;
    float poly = 1.0f + u2 * (1.0f / 3 + u2 * (1.0f / 5 + u2 * (1.0f / 7 + u2 * (1.0f / 9 + u2 * (1.0f / 11)))));
    return (float)e * 0.693147180559945f + 2.0f * u * poly;
}

typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));

/* The same computation on 8 lanes with GCC vector extensions (AVX2 when the
 * CPU has it, two SSE halves otherwise). */
static inline __attribute__((always_inline)) void sp_logf8(v8sf *px)
{
    v8sf x = *px;
    const v8si one_bits = {0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000,
                           0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000};
    v8si u = (v8si)x;
    v8si e = (u >> 23) - 127;
    v8sf m = (v8sf)((u & 0x007fffff) | one_bits);
    v8si big = m > 1.41421356f;        /* -1 where true */
    m = m * (v8sf)(one_bits - (big & 0x00800000)); /* halve where big */
    e = e - big;
    v8sf uu = (m - 1.0f) / (m + 1.0f);
    v8sf u2 = uu * uu;
    v8sf poly = 1.0f + u2 * (1.0f / 3 + u2 * (1.0f / 5 + u2 * (1.0f / 7 + u2 * (1.0f / 9 + u2 * (1.0f / 11)))));
    *px = __builtin_convertvector(e, v8sf) * 0.693147180559945f + 2.0f * uu * poly;
}

__attribute__((target_clones("avx2", "default")))
void sp_log_inplace(float *x, size_t n, float eps)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8sf v;
        memcpy(&v, x + i, sizeof v);
        v = v + eps;
        sp_logf8(&v);
        memcpy(x + i, &v, sizeof v);
    }
    for (; i < n; i++)
        x[i] = sp_logf(x[i] + eps);
}

/* Copies frames [t0, t0 + nb) into rows of `in`, mean removed, windowed;
 * rows nb..SP_BLOCK-1 are zero. */
__attribute__((target_clones("avx2", "default")))
static void fill_block(const sp_stft *s, const float *x, size_t t0, int nb, float *in)
{
    const int n = s->nfft;
    const float *w = s->win;
    for (int r = 0; r < nb; r++) {
        const float *f = x + (t0 + (size_t)r) * (size_t)s->hop;
        float *row = in + (size_t)r * n;
        float mean = 0;
        if (s->p.detrend) {
            float acc[8] = {0};
            int i = 0;
            for (; i + 8 <= n; i += 8)
                for (int j = 0; j < 8; j++)
                    acc[j] += f[i + j];
            for (; i < n; i++)
                acc[0] += f[i];
            mean = (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) / n;
        }
        for (int i = 0; i < n; i++)
            row[i] = (f[i] - mean) * w[i];
    }
    if (nb < SP_BLOCK)
        memset(in + (size_t)nb * n, 0, sizeof(float) * (size_t)n * (size_t)(SP_BLOCK - nb));
}

/* out[k, t0 + r] = scale[k] * |X_r[k]|^2 (or |X_r[k]|) for the nb frames of the block. */
static void store_block(const sp_stft *s, const fftwf_complex *X, size_t t0, int nb, size_t T,
                        float *out)
{
    const int bins = s->bins;
    const int mag = s->p.scale == SP_SCALE_MAGNITUDE;
    float tile[SP_BLOCK];
    for (int k = 0; k < bins; k++) {
        const float sc = s->scale[k];
        for (int r = 0; r < nb; r++) {
            const float *c = X[(size_t)r * s->odist + k];
            float pw = c[0] * c[0] + c[1] * c[1];
            tile[r] = (mag ? sqrtf(pw) : pw) * sc;
        }
        memcpy(out + (size_t)k * T + t0, tile, sizeof(float) * (size_t)nb);
    }
}

void sp_standardize(float *x, size_t n)
{
    if (n == 0)
        return;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    double mean = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        ss += d * d;
    }
    double sd = sqrt(ss / (double)n);
    float fm = (float)mean, inv = (float)(1.0 / (sd + 1e-9));
    for (size_t i = 0; i < n; i++)
        x[i] = (x[i] - fm) * inv;
}

int sp_stft_compute(const sp_stft *s, const float *x, size_t n, float *out, cm_err *err)
{
    size_t T = sp_num_frames(&s->p, n);
    if (T == 0)
        return cm_err_set(err, "signal of %zu samples is shorter than the window (%d)", n, s->nfft);
    float *in = fftwf_malloc(sizeof(float) * (size_t)s->nfft * SP_BLOCK);
    fftwf_complex *X = fftwf_malloc(sizeof(fftwf_complex) * (size_t)s->odist * SP_BLOCK);
    if (!in || !X) {
        fftwf_free(in);
        fftwf_free(X);
        return cm_err_set(err, "out of memory");
    }
    for (size_t t0 = 0; t0 < T; t0 += SP_BLOCK) {
        int nb = T - t0 < SP_BLOCK ? (int)(T - t0) : SP_BLOCK;
        fill_block(s, x, t0, nb, in);
        fftwf_execute_dft_r2c(s->plan, in, X);
        store_block(s, X, t0, nb, T, out);
    }
    fftwf_free(in);
    fftwf_free(X);
    size_t total = T * (size_t)s->bins;
    if (s->p.log)
        sp_log_inplace(out, total, (float)s->p.log_eps);
    if (s->p.normalize == SP_NORM_CLIP)
        sp_standardize(out, total);
    return 0;
}
