/* sp_process: the one path from a file to its spectrogram (decode -> fix
 * length -> STFT), and the default wisdom path. */
#include "spectro/spectro.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/cm_progress.h"

int sp_file_spectrogram(const sp_stft *s, const char *path, const sp_read_opts *opts, float *fixed, float *out,
                        sp_file_report *report, cm_err *err)
{
    const sp_params *p = sp_stft_params(s);
    sp_file_report none = {0};
    sp_file_report *r = report ? report : &none;
    r->decoded = 0;
    size_t n = 0, target = sp_target_samples(p);
    if (sp_num_frames(p, target) == 0)
        return cm_err_set(err, "duration %g s is shorter than one window", p->duration);
    sp_read_opts ro = opts ? *opts : (sp_read_opts){.end = -1};
    ro.keep = target; /* only the segment's first `target` samples are needed */
    float *x = NULL, *own = NULL;
    double t0 = cm_now(), t1;
    if (sp_decode_audio(path, p->sample_rate, &ro, &x, &n, err) != 0)
        return -1;
    r->decoded = 1;
    t1 = cm_now();
    r->seconds[0] += t1 - t0;
    if (!fixed && !(fixed = own = malloc(target * sizeof *fixed))) {
        free(x);
        return cm_err_set(err, "out of memory");
    }
    int rc = sp_fix_length(x, n, p->sample_rate, 0, -1, fixed, target, err); /* x: the segment */
    free(x);
    t0 = cm_now();
    if (rc == 0) {
        r->seconds[1] += t0 - t1;
        rc = sp_stft_compute(s, fixed, target, out, err);
        if (rc == 0)
            r->seconds[2] += cm_now() - t0;
    }
    free(own);
    return rc;
}

int sp_process_file(const sp_stft *s, const char *path, const sp_read_opts *opts,
                    float **spec, size_t *bins, size_t *frames, cm_err *err)
{
    const sp_params *p = sp_stft_params(s);
    *spec = NULL;
    size_t T = sp_num_frames(p, sp_target_samples(p)), B = sp_num_bins(p);
    if (T == 0)
        return cm_err_set(err, "duration %g s is shorter than one window", p->duration);
    float *out = malloc(T * B * sizeof *out);
    if (!out)
        return cm_err_set(err, "out of memory");
    if (sp_file_spectrogram(s, path, opts, NULL, out, NULL, err) != 0) {
        free(out);
        return -1;
    }
    *spec = out;
    *bins = B;
    *frames = T;
    return 0;
}

int sp_default_wisdom_path(char *out, size_t n)
{
    const char *env = getenv("C2KD_FFTW_WISDOM");
    int w;
    if (env && *env)
        w = snprintf(out, n, "%s", env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env)
        w = snprintf(out, n, "%s/c2kd/fftw-wisdom-f32", env);
    else if ((env = getenv("HOME")) && *env)
        w = snprintf(out, n, "%s/.cache/c2kd/fftw-wisdom-f32", env);
    else
        return -1;
    return w > 0 && (size_t)w < n ? 0 : -1;
}
