/* spectro: media files -> log spectrograms (.npy / .h5). See --help. */
#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <math.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_err.h"
#include "common/cm_file.h"
#include "common/cm_npy.h"
#include "common/cm_opts.h"
#include "common/cm_pool.h"
#include "common/cm_progress.h"
#include "common/cm_version.h"
#include "spectro/spectro.h"
#include "h5/h5.h"

#define NSTAGE 4
static const char *stage_names[NSTAGE] = {"decode", "length", "spectrogram", "write"};

typedef struct job {
    const sp_stft *stft;
    const sp_params *p;
    char **inputs;
    char **outputs;
    int h5;
    int samples_only;
    int sync;
    int allow_truncated;
    float **fixed, **spec;        /* per worker scratch, reused across inputs */
    double start, end;
    double (*stage_time)[NSTAGE]; /* per worker */
    int *failed;                  /* per input */
    pthread_mutex_t lock;         /* progress */
    cm_progress *progress;
    size_t done, nfailed;
} job;


/* One spectrogram setting as an attribute of the dataset, under the table's key
 * (a CHOICE as its text, an INT or BOOL as a native int, the others as a double). */
static int h5_setting(void *ctx, const char *key, const char *text, double num, int is_int)
{
    hid_t d = *(hid_t *)ctx;
    if (text)
        return h5_attr_str(d, key, text);
    int i = (int)num;
    return is_int ? h5_attr_write(d, key, H5T_NATIVE_INT, 0, &i) : h5_attr_write(d, key, H5T_NATIVE_DOUBLE, 0, &num);
}

static int write_h5(const char *path, const float *spec, size_t B, size_t T, const sp_params *p,
                    const char *source, double start, double end, cm_err *err)
{
    char tmp[CM_PATH_MAX];
    if (cm_tmp_path(tmp, sizeof tmp, path, err) != 0)
        return -1;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int ok = f >= 0;
    if (ok) {
        hsize_t dims[2] = {B, T};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t d = H5Dcreate2(f, "spectrogram", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, spec) >= 0;
        if (ok)
            ok = sp_params_each(p, h5_setting, &d) == 0 && h5_attr_write(d, "start", H5T_NATIVE_DOUBLE, 0, &start) == 0 &&
                 h5_attr_write(d, "end", H5T_NATIVE_DOUBLE, 0, &end) == 0 && h5_attr_str(d, "source", source) == 0 &&
                 h5_attr_str(d, "version", cm_version()) == 0 &&
                 h5_attr_str(d, "git_revision", cm_git_revision()) == 0;
        if (d >= 0)
            H5Dclose(d);
        H5Sclose(sp);
        if (H5Fclose(f) < 0)
            ok = 0;
    }
    if (!ok) {
        unlink(tmp);
        return cm_err_set(err, "%s: cannot write HDF5", path);
    }
    return cm_rename_commit(tmp, path, err);
}

/* .npy float32 writer: temporary name beside the output, renamed when
 * complete (a crash never leaves a file that looks whole). Unlike
 * cm_npy_write it fsyncs only with --fsync: a sync costs 5-10 ms per file
 * here, more than decoding and the spectrogram together. */
static int write_npy_f32(const char *path, const size_t *shape, int ndim, const float *data, int sync,
                         cm_err *err)
{
    if (sync)
        return cm_npy_write(path, "<f4", shape, ndim, data, err);
    char dict[256], tmp[CM_PATH_MAX];
    int w = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        w += snprintf(dict + w, sizeof dict - (size_t)w, "%zu,%s", shape[i], ndim > 1 && i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    w += snprintf(dict + w, sizeof dict - (size_t)w, "), }");
    size_t total = 10 + (size_t)w + 1, pad = (64 - total % 64) % 64, hlen = (size_t)w + pad + 1;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8)};
    if (cm_tmp_path(tmp, sizeof tmp, path, err) != 0)
        return -1;
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    if (ok) {
        ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)w, f) == (size_t)w;
        for (size_t i = 0; ok && i < pad; i++)
            ok = fputc(' ', f) != EOF;
        ok = ok && fputc('\n', f) != EOF && fwrite(data, sizeof(float), count, f) == count;
        if (fclose(f) != 0)
            ok = 0;
    }
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cm_err_set(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

/* The truncation warning of a kept (--allow-truncated) input. */
static void warn_truncated(const char *input, const cm_trunc *trunc)
{
    char b[96];
    cm_trunc_format(trunc, b, sizeof b);
    fprintf(stderr, "spectro: %s: warning: %s (kept: --allow-truncated)\n", input, b);
}

/* --samples: the decoded mono samples of the whole clip as .npy. */
static int write_samples(job *J, size_t i, double *st, cm_err *err)
{
    float *x = NULL;
    size_t n = 0;
    cm_trunc trunc;
    sp_read_opts ro = {.start = J->start, .end = J->end, .allow_truncated = J->allow_truncated, .truncation = &trunc};
    double t0 = cm_now();
    int rc = sp_decode_audio(J->inputs[i], J->p->sample_rate, &ro, &x, &n, err);
    if (rc == 0) {
        if (trunc.truncated)
            warn_truncated(J->inputs[i], &trunc);
        double t1 = cm_now();
        st[0] += t1 - t0;
        rc = write_npy_f32(J->outputs[i], &n, 1, x, J->sync, err);
        if (rc == 0)
            st[3] += cm_now() - t1;
    }
    free(x);
    return rc;
}

static void process_one(void *ctx, size_t i, int worker)
{
    job *J = ctx;
    const sp_params *p = J->p;
    cm_err err = {{0}};
    float *fixed = J->fixed[worker], *spec = J->spec[worker];
    size_t T = sp_num_frames(p, sp_target_samples(p)), B = sp_num_bins(p);
    double *st = J->stage_time[worker];
    int ok = 0;

    if (J->samples_only) {
        ok = write_samples(J, i, st, &err) == 0;
        goto done;
    }
    cm_trunc trunc;
    sp_read_opts ro = {.start = J->start, .end = J->end, .allow_truncated = J->allow_truncated, .truncation = &trunc};
    sp_file_report rep = {0};
    int rc = sp_file_spectrogram(J->stft, J->inputs[i], &ro, fixed, spec, &rep, &err);
    if (rep.decoded && trunc.truncated)
        warn_truncated(J->inputs[i], &trunc);
    for (int k = 0; k < 3; k++)
        st[k] += rep.seconds[k];
    if (rc != 0)
        goto done;
    double t0 = cm_now();
    if (J->h5) {
        if (write_h5(J->outputs[i], spec, B, T, p, J->inputs[i], J->start, J->end, &err) != 0)
            goto done;
    } else {
        size_t shape[2] = {B, T};
        if (write_npy_f32(J->outputs[i], shape, 2, spec, J->sync, &err) != 0)
            goto done;
    }
    st[3] += cm_now() - t0;
    ok = 1;
done:
    if (!ok) {
        J->failed[i] = 1;
        /* one line per bad input; write errors also name the output path */
        fprintf(stderr, "spectro: %s: %s\n", J->inputs[i], err.msg);
    }
    pthread_mutex_lock(&J->lock);
    J->done++;
    J->nfailed += !ok;
    if (J->progress)
        cm_progress_update(J->progress, J->done, J->nfailed, NULL);
    pthread_mutex_unlock(&J->lock);
}

/* The command line, parsed. */
typedef struct cli {
    sp_params p;
    const char *out, *wisdom;
    sp_planner planner;
    int jobs, no_wisdom, timing, quiet, verbose, samples_only, sync, allow_truncated;
    double start, end;
    int nin;
    char **inputs;
} cli;
_Static_assert(sizeof(sp_planner) == sizeof(int), "a CHOICE row writes an int");

#define OFF(f) offsetof(cli, f)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt output_opts[] = {
    {"output", 'o', CM_STR, OFF(out), NULL, NULL, "OUT",
     "one INPUT: OUT ending in .npy (NumPy) or .h5 (HDF5, dataset 'spectrogram' with the settings, the source, "
     "the segment and the version as attributes); otherwise OUT is a folder (created) that receives <input name "
     "without extension>.npy for each INPUT (required)"},
    {"fsync", 0, CM_FLAG, OFF(sync), NULL, NULL, NULL,
     "flush each output to disk before renaming it into place (survives power loss; costs several ms per file)"},
};
static const cm_opt segment_opts[] = {
    {"start", 0, CM_DBL, OFF(start), NULL, "0", "S", "segment start, seconds", CM_MIN(0)},
    {"end", 0, CM_DBL, OFF(end), NULL, NULL, "S", "segment end, seconds; without it: the end of the audio", CM_MIN(0)},
    {"allow-truncated", 0, CM_FLAG, OFF(allow_truncated), NULL, NULL, NULL,
     "keep an input whose decoded audio ends more than max(0.5 s, 5%) before the duration the file declares or "
     "before --end (a warning on stderr); without it such an input fails with 'truncated: decoded A s of B s'"},
};
static const cm_opt fft_opts[] = {
    {"wisdom", 0, CM_STR, OFF(wisdom), NULL, NULL, "FILE",
     "FFTW wisdom file read and updated (default: $C2KD_FFTW_WISDOM, else $XDG_CACHE_HOME/c2kd/fftw-wisdom-f32, "
     "else ~/.cache/c2kd/fftw-wisdom-f32)"},
    {"no-wisdom", 0, CM_FLAG, OFF(no_wisdom), NULL, NULL, NULL, "neither read nor write wisdom"},
    {"fftw-planner", 0, CM_CHOICE, OFF(planner), SP_PLANNER_CHOICES, "measure", NULL,
     "FFTW's planning effort (the result differs by float32 rounding only)"},
};
static const cm_opt report_opts[] = {
    {"samples", 0, CM_FLAG, OFF(samples_only), NULL, NULL, NULL,
     "write the decoded mono samples at --sample-rate (before the segment and length are applied) as float32 [n] "
     "instead of the spectrogram (.npy only)"},
    {"timing", 0, CM_FLAG, OFF(timing), NULL, NULL, NULL,
     "print time per stage (decode, length, spectrogram, write) on stderr"},
};
#pragma GCC diagnostic pop
#define N(t) (sizeof t / sizeof *t)

static const char about[] =
    "Decodes the audio of each INPUT (any file FFmpeg opens), downmixes to mono,\n"
    "resamples to --sample-rate, takes the segment [--start, --end) if given, tiles\n"
    "it (repeats it) to --duration seconds or cuts it, clips samples to [-1, 1], and\n"
    "computes the spectrogram of scipy.signal.spectrogram(x, fs, nperseg=WINDOW,\n"
    "noverlap=OVERLAP) (periodic Tukey(0.25) window, per-segment mean removal,\n"
    "density scaling, one-sided), then log(S + 1e-7). Output: float32 [bins, T]\n"
    "(frequency first), 257 x 1004 for the defaults. Times are on the file's clock,\n"
    "from its start time as `ffmpeg -ss` counts them: audio that starts after the\n"
    "file (after its video) is preceded by silence, audio before it is cut.";

static const char epilog[] =
    "The spectrogram settings are the keys of the presets (manifests/*.conf) and of\n"
    "the shards' recipe, with '_' for '-' (docs/FORMAT.md).\n"
    "A bad input (missing, not media, truncated/corrupt, no audio stream, zero-length\n"
    "audio) gets one line 'spectro: INPUT: reason' on stderr and no output file; the\n"
    "other inputs are still processed. Exit status: 0 all done, 1 some inputs failed,\n"
    "2 usage error. Outputs are written under a temporary name and renamed when complete.";

/* Options into c: -1 go on, else the exit status (help, version, usage error: printed). */
static int parse_args(int argc, char **argv, cli *c)
{
    size_t nset;
    const cm_opt *set = sp_settings(&nset);
    const cm_opt_group groups[] = {{"output", output_opts, N(output_opts), c},
                                   {"segment", segment_opts, N(segment_opts), c},
                                   {"spectrogram (preset and recipe keys: the names with '_')", set, nset, &c->p},
                                   {"FFT planning", fft_opts, N(fft_opts), c},
                                   {"debugging and reporting", report_opts, N(report_opts), c}};
    const cm_cli cl = {.prog = "spectro", .usage = "usage: spectro [options] INPUT... -o OUT", .about = about,
                       .epilog = epilog, .std = CM_STD_QUIET | CM_STD_VERBOSE | CM_STD_JOBS,
                       .jobs_help = "inputs processed in parallel (default: all cores)",
                       .verbose_help = "let FFmpeg print its warnings", .min_pos = 1, .max_pos = -1,
                       .pos_name = "INPUT", .groups = groups, .ngroups = N(groups)};
    cm_args a;
    int rc = cm_cli_run(&cl, argc, argv, &a);
    if (rc < 0) {
        c->quiet = a.quiet;
        c->verbose = a.verbose;
        c->jobs = a.jobs;
        c->nin = a.npos;
        c->inputs = a.pos; /* kept for the run (freed at exit) */
        a.pos = NULL;
    }
    cm_args_free(&a);
    return rc;
}

/* Usage errors of a parsed command line: 0, or 2 (printed). */
static int check_args(const cli *c)
{
    cm_err err = {{0}};
    if (!c->out) {
        fprintf(stderr, "spectro: no output (-o OUT; see --help)\n");
        return 2;
    }
    if (c->end >= 0 && c->end <= c->start) {
        fprintf(stderr, "spectro: --end must be greater than --start\n");
        return 2;
    }
    if (sp_params_check(&c->p, &err) != 0) {
        fprintf(stderr, "spectro: %s\n", err.msg);
        return 2;
    }
    if (sp_target_samples(&c->p) < (size_t)c->p.window) {
        fprintf(stderr, "spectro: --duration %g s is shorter than one window\n", c->p.duration);
        return 2;
    }
    int is_npy = cm_has_suffix(c->out, ".npy"), is_h5 = cm_has_suffix(c->out, ".h5");
    if ((is_npy || is_h5) && c->nin != 1) {
        fprintf(stderr, "spectro: %d inputs need a folder as OUT, not a %s file\n", c->nin, is_npy ? ".npy" : ".h5");
        return 2;
    }
    if (c->samples_only && is_h5) {
        fprintf(stderr, "spectro: --samples writes .npy files only\n");
        return 2;
    }
    if (!is_npy && !is_h5 && cm_is_file(c->out)) {
        fprintf(stderr, "spectro: %s: exists and is not a folder (use .npy or .h5 for one file)\n", c->out);
        return 2;
    }
    return 0;
}

static void free_outputs(char **outputs, int n)
{
    if (!outputs)
        return;
    for (int i = 0; i < n; i++)
        free(outputs[i]);
    free(outputs);
}

/* The output path of each input (OUT itself, or OUT/<name>.npy, the folder
 * created). NULL with *rc = 1 (out of memory, folder) or 2 (two inputs, one
 * output name), printed. */
static char **plan_outputs(const cli *c, int *rc)
{
    cm_err err = {{0}};
    *rc = 1;
    char **outputs = calloc((size_t)c->nin, sizeof *outputs);
    if (!outputs)
        return NULL;
    if (cm_has_suffix(c->out, ".npy") || cm_has_suffix(c->out, ".h5")) {
        if (!(outputs[0] = strdup(c->out))) {
            free(outputs);
            return NULL;
        }
        return outputs;
    }
    for (int i = 0; i < c->nin; i++) {
        char base[CM_PATH_MAX / 2];
        cm_basename_noext(base, sizeof base, c->inputs[i]);
        size_t len = strlen(c->out) + strlen(base) + 8;
        if (!(outputs[i] = malloc(len))) {
            free_outputs(outputs, c->nin);
            return NULL;
        }
        snprintf(outputs[i], len, "%s/%s.npy", c->out, base);
        for (int k = 0; k < i; k++)
            if (!strcmp(outputs[k], outputs[i])) {
                fprintf(stderr, "spectro: %s and %s would both write %s\n", c->inputs[k], c->inputs[i], outputs[i]);
                free_outputs(outputs, c->nin);
                *rc = 2;
                return NULL;
            }
    }
    if (cm_mkdirs(c->out, &err) != 0) {
        fprintf(stderr, "spectro: %s\n", err.msg);
        free_outputs(outputs, c->nin);
        return NULL;
    }
    return outputs;
}

/* Plans the transform (wisdom per the options); *tplan: seconds spent. */
static sp_stft *make_stft(const cli *c, double *tplan)
{
    cm_err err = {{0}};
    char wpath[CM_PATH_MAX];
    const char *wp = NULL;
    if (!c->no_wisdom) {
        if (c->wisdom)
            wp = c->wisdom;
        else if (sp_default_wisdom_path(wpath, sizeof wpath) == 0)
            wp = wpath;
    }
    double t0 = cm_now();
    sp_stft *stft = sp_stft_create_planned(&c->p, wp, c->planner, &err);
    *tplan = cm_now() - t0;
    if (!stft)
        fprintf(stderr, "spectro: %s\n", err.msg);
    return stft;
}

static void job_free(job *J, int jobs)
{
    for (int w = 0; w < jobs; w++) {
        if (J->fixed)
            free(J->fixed[w]);
        if (J->spec)
            free(J->spec[w]);
    }
    free(J->fixed);
    free(J->spec);
    free(J->stage_time);
    free(J->failed);
}

/* The per-worker scratch of a job: 0, or -1 (out of memory). */
static int job_alloc(job *J, const sp_params *p, int jobs, int nin)
{
    J->stage_time = calloc((size_t)jobs, sizeof *J->stage_time);
    J->failed = calloc((size_t)nin, sizeof *J->failed);
    J->fixed = calloc((size_t)jobs, sizeof *J->fixed);
    J->spec = calloc((size_t)jobs, sizeof *J->spec);
    if (!J->stage_time || !J->failed || !J->fixed || !J->spec)
        return -1;
    size_t target = sp_target_samples(p);
    for (int w = 0; w < jobs; w++) {
        J->fixed[w] = malloc(target * sizeof(float));
        J->spec[w] = malloc(sp_num_frames(p, target) * sp_num_bins(p) * sizeof(float));
        if (!J->fixed[w] || !J->spec[w])
            return -1;
    }
    return 0;
}

static void print_timing(const job *J, int nin, int jobs, double wall, double tplan)
{
    size_t ok = (size_t)nin - J->nfailed;
    fprintf(stderr, "spectro: timing: %d inputs (%zu ok), %d jobs, wall %.3f s, plan %.1f ms\n", nin, ok, jobs, wall,
            tplan * 1e3);
    for (int s = 0; s < NSTAGE; s++) {
        double tot = 0;
        for (int w = 0; w < jobs; w++)
            tot += J->stage_time[w][s];
        fprintf(stderr, "spectro: timing: %-12s %9.3f ms total, %8.3f ms per input\n", stage_names[s], tot * 1e3,
                ok ? tot * 1e3 / (double)ok : 0.0);
    }
}

/* Every input through the workers; the exit status (0, or 1 when some failed). */
static int run_inputs(const cli *c, const sp_stft *stft, char **outputs, double tplan)
{
    int nin = c->nin, jobs = c->jobs > 0 ? c->jobs : cm_ncpu();
    if (jobs > nin)
        jobs = nin;
    job J = {.stft = stft, .p = &c->p, .inputs = c->inputs, .outputs = outputs,
             .h5 = cm_has_suffix(c->out, ".h5"), .samples_only = c->samples_only, .sync = c->sync,
             .allow_truncated = c->allow_truncated, .start = c->start, .end = c->end};
    if (job_alloc(&J, &c->p, jobs, nin) != 0) {
        fprintf(stderr, "spectro: out of memory\n");
        job_free(&J, jobs);
        return 1;
    }
    pthread_mutex_init(&J.lock, NULL);
    if (!c->quiet && nin > 1 && isatty(STDERR_FILENO))
        J.progress = cm_progress_create(stderr, "spectro", (size_t)nin, 0.5);
    double t0 = cm_now();
    cm_parallel_for((size_t)nin, jobs, process_one, &J);
    double wall = cm_now() - t0;
    if (J.progress) {
        cm_progress_finish(J.progress, J.done, J.nfailed, NULL);
        cm_progress_destroy(J.progress);
    }
    if (c->timing)
        print_timing(&J, nin, jobs, wall, tplan);
    int rc = J.nfailed ? 1 : 0;
    pthread_mutex_destroy(&J.lock);
    job_free(&J, jobs);
    return rc;
}

int main(int argc, char **argv)
{
    char **outputs;
    cli c = {.end = -1};
    sp_params_default(&c.p);
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0)
        return rc;
    if ((rc = check_args(&c)) != 0 || !(outputs = plan_outputs(&c, &rc))) {
        free(c.inputs);
        return rc;
    }
    sp_set_ffmpeg_log(c.verbose);
    h5_quiet_begin(&(h5_quiet){0}); /* for the whole run: the command reports HDF5 failures */
    double tplan = 0;
    sp_stft *stft = make_stft(&c, &tplan);
    rc = stft ? run_inputs(&c, stft, outputs, tplan) : 1;
    sp_stft_destroy(stft);
    free_outputs(outputs, c.nin);
    free(c.inputs);
    return rc;
}
