/* spectro: audio of any media file -> 16 kHz mono -> fixed length -> log spectrogram.
 *
 * Public API used by the `spectro` command and by `ingest`. Thread safety:
 * sp_decode_audio and sp_fix_length are reentrant; an sp_stft is created once
 * (FFTW planning is serialised inside) and may then be used by many threads at
 * once through sp_stft_compute, each with its own output buffer.
 */
#ifndef SPECTRO_H
#define SPECTRO_H

#include <stddef.h>

#include "common/cm_err.h"
#include "common/cm_media.h"
#include "common/cm_opts.h"

typedef enum sp_window { SP_WINDOW_TUKEY25 = 0, SP_WINDOW_HANN = 1 } sp_window;
typedef enum sp_scale { SP_SCALE_DENSITY = 0, SP_SCALE_MAGNITUDE = 1 } sp_scale;
typedef enum sp_norm { SP_NORM_NONE = 0, SP_NORM_CLIP = 1 } sp_norm;

typedef struct sp_params {
    int sample_rate;   /* 16000 */
    double duration;   /* seconds after tiling/cutting: 10 (AVE, VGGSound), 3 (CREMA-D) */
    int window;        /* nperseg, 512 */
    int overlap;       /* noverlap, 353 (hop = window - overlap) */
    sp_window window_kind; /* periodic Tukey(0.25) as scipy's default */
    sp_scale scale;    /* density power spectrum (scipy) or magnitude |X| */
    int detrend;       /* 1: subtract each segment's mean (scipy "constant") */
    int log;           /* 1: log(S + log_eps) */
    double log_eps;    /* 1e-7 */
    sp_norm normalize; /* per-clip standardisation (x-mean)/(std+1e-9) */
} sp_params;

/* The settings: one table (spectro/sp_recipe.c), one row per field of
 * sp_params with its name, type, default, bounds and help. The spectro
 * command's options (--sample-rate ... --normalize), the presets' keys
 * (manifests/NAME.conf), the recipe JSON of the shards and spectro's .h5
 * attributes all use it, under one name per setting: the key (sample_rate,
 * duration, window, overlap, window_kind, scale, detrend, log, log_eps,
 * normalize; the option is the key with '-' for '_'). Older names are read
 * too: window_fn (--window-fn, the .h5 attribute before), and the values
 * "tukey" and "tukey0.25" of window_kind. */
const cm_opt *sp_settings(size_t *n);
/* The published recipe: 16 kHz, 10 s, 512/353, Tukey(0.25), density, detrend, log, no norm. */
void sp_params_default(sp_params *p);
/* Sets the setting named key (its key, option name or an older name) from
 * text, checked against the table: 0, -1 (bad value, err names the key), or 1
 * when key is not a spectrogram setting. */
int sp_params_set(sp_params *p, const char *key, const char *v, cm_err *err);
/* Calls fn for each setting in the table's order: its key, and its value as
 * text (a choice) or as a number (is_int: an integer). Stops at the first
 * non-zero return (-1). */
typedef int (*sp_setting_fn)(void *ctx, const char *key, const char *text, double num, int is_int);
int sp_params_each(const sp_params *p, sp_setting_fn fn, void *ctx);

/* How one file is read. {.end = -1} (or a NULL pointer) are the defaults. */
typedef struct sp_read_opts {
    double start, end;     /* the segment the audio must cover (end <= start or end < 0: the whole clip) */
    int allow_truncated;   /* 1: audio that ends early is kept (the caller warns from *truncation) */
    cm_trunc *truncation;  /* out, optional: the audio's coverage */
    double *end_s;         /* out, optional: where the audio ends on the file's clock, seconds (when
                            * decoding stopped after the kept samples: from the packets' timestamps) */
    size_t keep;           /* 0: *samples is the whole audio from the file's time 0; > 0: only
                            * the segment's samples, at most `keep` of them (*samples[0] is the
                            * segment's first sample, as sp_fix_length would take it): decoding
                            * stops after them, memory is bounded by `keep` whatever the file's
                            * length (pass the target length: tiling a shorter segment needs all
                            * of it, a longer one is cut to the target) */
} sp_read_opts;

/* Decodes the first audio stream of `path`, downmixes to mono and resamples to
 * `sample_rate` with libswresample (flushed). Samples are on the file's clock
 * (common/cm_media.h, cm_av_clock_offset): sample i is at file time
 * i / sample_rate; audio that starts after the file's time 0 is preceded by
 * silence, audio before it is cut (sp_decode.c says exactly how, as the
 * ffmpeg program). *samples is malloc'd (free()),
 * *n > 0 on success. Errors: missing file, not media, no audio stream,
 * corrupt data, zero-length audio, truncated: the decoded audio ends more
 * than max(CM_TRUNC_MIN_S, CM_TRUNC_FRAC x expected) before the duration the
 * file declares for the audio stream (cm_av_declared_duration) or before
 * opts->end ("truncated: decoded 1.96 s of 8.17 s"), or reading stopped at a
 * cut packet; kept when opts->allow_truncated. err->msg does not include the
 * path (the caller prefixes it). */
int sp_decode_audio(const char *path, int sample_rate, const sp_read_opts *opts, float **samples, size_t *n,
                    cm_err *err);

/* Takes the segment [start, end) seconds of x (end <= start or end < 0: the
 * whole signal; a segment beyond the end is clamped; an empty segment is an
 * error), tiles it until `target` samples, cuts, and clips to [-1, 1].
 * out has room for target samples. */
int sp_fix_length(const float *x, size_t n, int sample_rate, double start, double end,
                  float *out, size_t target, cm_err *err);

/* Number of frames T for n samples: (n - window) / (window - overlap) + 1 (0 if n < window). */
size_t sp_num_frames(const sp_params *p, size_t n);
/* Number of frequency bins: window / 2 + 1. */
size_t sp_num_bins(const sp_params *p);

typedef struct sp_stft sp_stft;

/* Plans the transform for p (FFTW float, wisdom read from and saved to
 * wisdom_path when not NULL). */
sp_stft *sp_stft_create(const sp_params *p, const char *wisdom_path, cm_err *err);
/* FFTW's planner effort: measure (the default: FFTW times candidate algorithms
 * and keeps the fastest, so the plan can differ between runs and machines),
 * estimate (no timing), patient, exhaustive. The spectrogram must not depend on
 * it beyond float32 rounding (tests/oracle/test_spectro.py::test_fftw_plans). */
typedef enum { SP_PLAN_MEASURE, SP_PLAN_ESTIMATE, SP_PLAN_PATIENT, SP_PLAN_EXHAUSTIVE } sp_planner;
/* Their names in the enum's order: the choices of spectro's --fftw-planner row. */
#define SP_PLANNER_CHOICES "measure|estimate|patient|exhaustive"
/* sp_stft_create with the planner effort given. */
sp_stft *sp_stft_create_planned(const sp_params *p, const char *wisdom_path, sp_planner planner, cm_err *err);
void sp_stft_destroy(sp_stft *s);

/* out: [bins, T] row-major (frequency first, as scipy), T = sp_num_frames(n).
 * Applies log and normalisation per the params. Thread-safe. */
int sp_stft_compute(const sp_stft *s, const float *x, size_t n, float *out, cm_err *err);

/* What sp_file_spectrogram did (optional, for callers that report it). */
typedef struct sp_file_report {
    int decoded;           /* 1: the audio was decoded (a truncation kept by opts->allow_truncated
                            * is then in *opts->truncation, for the caller's warning) */
    double seconds[3];     /* added, for each stage that completed: decode, fix length, spectrogram */
} sp_file_report;

/* The one path from a file to its spectrogram, taken by sp_process_file, the
 * spectro command and ingest: decode (opts as sp_decode_audio, NULL: the whole
 * clip, strict; keep is set to the target length whatever opts says: only the
 * segment's samples are kept and decoding stops after them), fix the length
 * to p->duration (the segment [opts->start, opts->end) tiled or cut), and
 * the spectrogram of the stft's parameters p into out ([bins, frames] floats:
 * sp_num_bins(p) x sp_num_frames(p, sp_target_samples(p))). fixed: scratch of
 * sp_target_samples(p) floats reused across calls (NULL: allocated here).
 * report: optional. 0 or -1 (err: the reason, without the path). */
int sp_file_spectrogram(const sp_stft *s, const char *path, const sp_read_opts *opts, float *fixed, float *out,
                        sp_file_report *report, cm_err *err);

/* sp_file_spectrogram into a malloc'd *spec [*bins, *frames]. */
int sp_process_file(const sp_stft *s, const char *path, const sp_read_opts *opts,
                    float **spec, size_t *bins, size_t *frames, cm_err *err);

/* ---- additions (spectro owner) ---- */

/* 0 when p is usable (every setting within the table's bounds, overlap <
 * window, at most 1e9 samples), else -1 with the reason (sp_stft_create
 * checks it too). */
int sp_params_check(const sp_params *p, cm_err *err);
/* Samples after fixing the length: round(duration * sample_rate). */
size_t sp_target_samples(const sp_params *p);
/* The parameters an sp_stft was created with. */
const sp_params *sp_stft_params(const sp_stft *s);
/* Default FFTW wisdom file: $C2KD_FFTW_WISDOM, else $XDG_CACHE_HOME/c2kd/fftw-wisdom-f32,
 * else $HOME/.cache/c2kd/fftw-wisdom-f32; 0, or -1 when no location is known. */
int sp_default_wisdom_path(char *out, size_t n);
/* FFmpeg logs to stderr by default; a library must not print, so commands
 * (spectro, ingest) call this once at start: it sets av_log's level to
 * quiet (verbose = 0) or warnings (verbose = 1). Process-wide. */
void sp_set_ffmpeg_log(int verbose);

#endif
