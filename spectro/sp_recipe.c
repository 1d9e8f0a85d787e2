/* sp_recipe: the spectrogram settings, one table (see spectro.h). */
#include "spectro/spectro.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define OFF(f) offsetof(sp_params, f)

_Static_assert(sizeof(sp_window) == sizeof(int) && sizeof(sp_scale) == sizeof(int) && sizeof(sp_norm) == sizeof(int),
               "CHOICE rows write an int");

/* One row per sp_params field: the spectro option, the preset key, the
 * recipe JSON key and the .h5 attribute are the same name (key: '_', option:
 * '-'). A CHOICE row lists its values in the order of the field's enum. The
 * order of the rows is the order of the recipe JSON's keys (the recipe's text
 * is hashed into ingest's resume bookkeeping: keep it). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt settings[] = {
    {"sample-rate", 0, CM_INT, OFF(sample_rate), NULL, "16000", "HZ", "target sample rate", CM_IN(1000, 384000),
     .key = "sample_rate"},
    {"duration", 0, CM_DBL, OFF(duration), NULL, "10", "S",
     "length after tiling/cutting, seconds; at most 1e9 samples", CM_ABOVE(0)},
    {"window", 0, CM_INT, OFF(window), NULL, "512", "N", "FFT/segment length, nperseg", CM_IN(8, 65536)},
    {"overlap", 0, CM_INT, OFF(overlap), NULL, "353", "N", "overlap between segments, noverlap; less than --window",
     CM_IN(0, 65535)},
    {"window-kind", 0, CM_CHOICE, OFF(window_kind), "tukey25|hann", "tukey25", NULL,
     "tukey25: periodic Tukey(0.25), scipy's default; hann: periodic Hann ('tukey' and 'tukey0.25' are older "
     "spellings of tukey25)",
     .aliases = "window-fn", .value_aliases = "tukey=tukey25|tukey0.25=tukey25", .key = "window_kind"},
    {"scale", 0, CM_CHOICE, OFF(scale), "density|magnitude", "density", NULL,
     "density: |FFT|^2 / (fs * sum(w^2)), one-sided; magnitude: |FFT| unscaled (librosa's |STFT|)"},
    {"detrend", 0, CM_BOOL, OFF(detrend), NULL, "1", NULL, "remove each segment's mean (scipy detrend='constant')"},
    {"log", 0, CM_BOOL, OFF(log), NULL, "1", NULL, "write log(S + log_eps) (--no-log: S itself)"},
    {"log-eps", 0, CM_DBL, OFF(log_eps), NULL, "1e-7", "E", "epsilon inside the log", CM_ABOVE(0), .key = "log_eps"},
    {"normalize", 0, CM_CHOICE, OFF(normalize), "none|clip", "none", NULL,
     "clip: (X - mean) / (std + 1e-9) per clip"},
};
#pragma GCC diagnostic pop
#define NSET (sizeof settings / sizeof *settings)

const cm_opt *sp_settings(size_t *n)
{
    *n = NSET;
    return settings;
}

void sp_params_default(sp_params *p)
{
    memset(p, 0, sizeof *p);
    cm_opts_default(settings, NSET, p);
}

int sp_params_set(sp_params *p, const char *key, const char *v, cm_err *err)
{
    const cm_opt *o = cm_opt_find(settings, NSET, key);
    if (!o)
        return 1;
    return cm_opt_set(o, p, v, 1, err);
}

int sp_params_check(const sp_params *p, cm_err *err)
{
    for (size_t i = 0; i < NSET; i++) {
        const cm_opt *o = &settings[i];
        if (cm_opt_check(o, p, 1, err) != 0)
            return -1;
        char buf[64];
        if (o->type == CM_CHOICE && !cm_opt_text(o, p, buf, sizeof buf))
            return cm_err_set(err, "%s: not one of %s", cm_opt_key(o), o->choices);
    }
    if (p->overlap >= p->window)
        return cm_err_set(err, "overlap %d must be smaller than window %d", p->overlap, p->window);
    if (p->duration * p->sample_rate > 1e9)
        return cm_err_set(err, "duration %g s at %d Hz is more than 1e9 samples", p->duration, p->sample_rate);
    return 0;
}

int sp_params_each(const sp_params *p, sp_setting_fn fn, void *ctx)
{
    for (size_t i = 0; i < NSET; i++) {
        const cm_opt *o = &settings[i];
        char buf[64];
        const char *text = o->type == CM_CHOICE ? cm_opt_text(o, p, buf, sizeof buf) : NULL;
        int is_int = o->type == CM_INT || o->type == CM_BOOL;
        if (fn(ctx, cm_opt_key(o), text, cm_opt_number(o, p), is_int) != 0)
            return -1;
    }
    return 0;
}
