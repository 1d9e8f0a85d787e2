/* sp_process: the whole pipeline for one file, and the default wisdom path. */
#include "spectro/spectro.h"

#include <stdio.h>
#include <stdlib.h>

int sp_process_file(const sp_stft *s, const char *path, const sp_read_opts *opts,
                    float **spec, size_t *bins, size_t *frames, cm_err *err)
{
    const sp_params *p = sp_stft_params(s);
    *spec = NULL;
    float *x = NULL, *fixed = NULL, *out = NULL;
    size_t n = 0, target = sp_target_samples(p);
    size_t T = sp_num_frames(p, target), B = sp_num_bins(p);
    if (T == 0)
        return cm_err_set(err, "duration %g s is shorter than one window", p->duration);
    sp_read_opts ro = opts ? *opts : (sp_read_opts){.end = -1};
    ro.keep = target; /* only the segment's first `target` samples are needed */
    if (sp_decode_audio(path, p->sample_rate, &ro, &x, &n, err) != 0)
        return -1;
    fixed = malloc(target * sizeof *fixed);
    out = malloc(T * B * sizeof *out);
    if (!fixed || !out) {
        cm_err_set(err, "out of memory");
        goto fail;
    }
    if (sp_fix_length(x, n, p->sample_rate, 0, -1, fixed, target, err) != 0)
        goto fail;
    if (sp_stft_compute(s, fixed, target, out, err) != 0)
        goto fail;
    free(x);
    free(fixed);
    *spec = out;
    *bins = B;
    *frames = T;
    return 0;
fail:
    free(x);
    free(fixed);
    free(out);
    return -1;
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
