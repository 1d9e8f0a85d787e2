/* spectro: media files -> log spectrograms (.npy / .h5). See --help. */
#define TOOL_NAME "spectro"
#include <errno.h>
#include <getopt.h>
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
#include "common/cm_parse.h"
#include "common/cm_pool.h"
#include "common/cm_progress.h"
#include "spectro/spectro.h"
#include "h5/h5.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: spectro [options] INPUT... -o OUT\n"
"\n"
"Decodes the audio of each INPUT (any file FFmpeg opens), downmixes to mono,\n"
"resamples to --sample-rate, takes the segment [--start, --end) if given, tiles\n"
"it (repeats it) to --duration seconds or cuts it, clips samples to [-1, 1], and\n"
"computes the spectrogram of scipy.signal.spectrogram(x, fs, nperseg=WINDOW,\n"
"noverlap=OVERLAP) (periodic Tukey(0.25) window, per-segment mean removal,\n"
"density scaling, one-sided), then log(S + 1e-7). Output: float32 [bins, T]\n"
"(frequency first), 257 x 1004 for the defaults. Times are on the file's clock,\n"
"from its start time as `ffmpeg -ss` counts them: audio that starts after the\n"
"file (after its video) is preceded by silence, audio before it is cut.\n"
"\n"
"Output:\n"
"  -o, --output OUT      one INPUT: OUT ending in .npy (NumPy) or .h5 (HDF5, dataset\n"
"                        'spectrogram' with the parameters as attributes);\n"
"                        otherwise OUT is a folder (created) that receives\n"
"                        <input name without extension>.npy for each INPUT\n"
"      --fsync           flush each output to disk before renaming it into place\n"
"                        (survives power loss; costs several ms per file)\n"
"Processing:\n"
"  -j, --jobs N          inputs processed in parallel (default: all cores)\n"
"      --sample-rate HZ  target sample rate (default 16000)\n"
"      --duration S      length after tiling/cutting, seconds (default 10)\n"
"      --start S         segment start, seconds (default 0)\n"
"      --end S           segment end, seconds (default: end of the audio)\n"
"      --window N        FFT/segment length, nperseg (default 512)\n"
"      --overlap N       overlap between segments, noverlap (default 353)\n"
"      --window-fn F     tukey25 (periodic Tukey 0.25, scipy's default; default;\n"
"                        'tukey' and 'tukey0.25' are accepted spellings)\n"
"                        or hann (periodic Hann)\n"
"      --scale S         density: |FFT|^2 / (fs * sum(w^2)), one-sided (default);\n"
"                        magnitude: |FFT| unscaled (librosa's |STFT|)\n"
"      --no-detrend      keep each segment's mean (scipy detrend=False)\n"
"      --no-log          write S itself instead of log(S + eps)\n"
"      --log-eps E       epsilon inside the log (default 1e-7)\n"
"      --normalize M     none (default) or clip: (X - mean) / (std + 1e-9) per clip\n"
"      --allow-truncated keep an input whose decoded audio ends more than max(0.5 s, 5%%)\n"
"                        before the duration the file declares or before --end (a warning\n"
"                        on stderr); without it such an input fails with\n"
"                        'truncated: decoded A s of B s'\n"
"FFT planning:\n"
"      --wisdom FILE     FFTW wisdom file read and updated (default:\n"
"                        $C2KD_FFTW_WISDOM, else $XDG_CACHE_HOME/c2kd/fftw-wisdom-f32,\n"
"                        else ~/.cache/c2kd/fftw-wisdom-f32)\n"
"      --no-wisdom       neither read nor write wisdom\n"
"      --fftw-planner P  measure (default), estimate, patient or exhaustive: FFTW's\n"
"                        planning effort (the result differs by float32 rounding only)\n"
"Debugging:\n"
"      --samples         write the decoded mono samples at --sample-rate (before the\n"
"                        segment and length are applied) as float32 [n] instead of\n"
"                        the spectrogram (.npy only)\n"
"Reporting:\n"
"      --timing          print time per stage (decode, length, spectrogram, write) on stderr\n"
"  -q, --quiet           no progress display\n"
"  -v, --verbose         let FFmpeg print its warnings\n"
"  -h, --help            this help\n"
"\n"
"A bad input (missing, not media, truncated/corrupt, no audio stream, zero-length\n"
"audio) gets one line 'spectro: INPUT: reason' on stderr and no output file; the\n"
"other inputs are still processed. Exit status: 0 all done, 1 some inputs failed,\n"
"2 usage error. Outputs are written under a temporary name and renamed when complete.\n");
}

enum { O_SR = 256, O_DUR, O_START, O_END, O_WIN, O_OVL, O_WFN, O_SCALE, O_NODET, O_NOLOG,
       O_EPS, O_NORM, O_WISDOM, O_NOWISDOM, O_TIMING, O_SAMPLES, O_FSYNC, O_TRUNC, O_PLANNER };

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
            ok = h5_attr_write(d, "sample_rate", H5T_NATIVE_INT, 0, &p->sample_rate) == 0 &&
                 h5_attr_write(d, "duration", H5T_NATIVE_DOUBLE, 0, &p->duration) == 0 &&
                 h5_attr_write(d, "window", H5T_NATIVE_INT, 0, &p->window) == 0 &&
                 h5_attr_write(d, "overlap", H5T_NATIVE_INT, 0, &p->overlap) == 0 &&
                 h5_attr_str(d, "window_fn", sp_window_name(p->window_kind)) == 0 &&
                 h5_attr_str(d, "scale", sp_scale_name(p->scale)) == 0 &&
                 h5_attr_write(d, "detrend", H5T_NATIVE_INT, 0, &p->detrend) == 0 &&
                 h5_attr_write(d, "log", H5T_NATIVE_INT, 0, &p->log) == 0 &&
                 h5_attr_write(d, "log_eps", H5T_NATIVE_DOUBLE, 0, &p->log_eps) == 0 &&
                 h5_attr_str(d, "normalize", sp_norm_name(p->normalize)) == 0 &&
                 h5_attr_write(d, "start", H5T_NATIVE_DOUBLE, 0, &start) == 0 &&
                 h5_attr_write(d, "end", H5T_NATIVE_DOUBLE, 0, &end) == 0 &&
                 h5_attr_str(d, "source", source) == 0;
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

/* Options into c: 0, 1 for --help (printed), 2 for a usage error (printed). */
static int parse_args(int argc, char **argv, cli *c)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"jobs", required_argument, 0, 'j'},
        {"sample-rate", required_argument, 0, O_SR}, {"duration", required_argument, 0, O_DUR},
        {"start", required_argument, 0, O_START}, {"end", required_argument, 0, O_END},
        {"window", required_argument, 0, O_WIN}, {"overlap", required_argument, 0, O_OVL},
        {"window-fn", required_argument, 0, O_WFN}, {"scale", required_argument, 0, O_SCALE},
        {"no-detrend", no_argument, 0, O_NODET}, {"no-log", no_argument, 0, O_NOLOG},
        {"log-eps", required_argument, 0, O_EPS}, {"normalize", required_argument, 0, O_NORM},
        {"wisdom", required_argument, 0, O_WISDOM}, {"no-wisdom", no_argument, 0, O_NOWISDOM},
        {"fftw-planner", required_argument, 0, O_PLANNER},
        {"timing", no_argument, 0, O_TIMING}, {"samples", no_argument, 0, O_SAMPLES},
        {"fsync", no_argument, 0, O_FSYNC}, {"allow-truncated", no_argument, 0, O_TRUNC},
        {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    sp_params *p = &c->p;
    int o;
    const char *bad = NULL;
    while ((o = getopt_long(argc, argv, "o:j:qvh", opts, NULL)) != -1) {
        switch (o) {
        case 'o': c->out = optarg; break;
        case 'j': if (cm_parse_int(optarg, 1, INT_MAX, &c->jobs)) bad = "-j needs a positive integer"; break;
        case O_SR: if (cm_parse_int(optarg, INT_MIN, INT_MAX, &p->sample_rate)) bad = "--sample-rate needs an integer"; break;
        case O_DUR: if (cm_parse_double(optarg, -HUGE_VAL, HUGE_VAL, &p->duration)) bad = "--duration needs a number"; break;
        case O_START: if (cm_parse_double(optarg, 0, HUGE_VAL, &c->start)) bad = "--start needs a number >= 0"; break;
        case O_END: if (cm_parse_double(optarg, 0, HUGE_VAL, &c->end)) bad = "--end needs a number >= 0"; break;
        case O_WIN: if (cm_parse_int(optarg, INT_MIN, INT_MAX, &p->window)) bad = "--window needs an integer"; break;
        case O_OVL: if (cm_parse_int(optarg, INT_MIN, INT_MAX, &p->overlap)) bad = "--overlap needs an integer"; break;
        case O_WFN: if (sp_window_parse(optarg, &p->window_kind)) bad = "--window-fn is tukey25 or hann"; break;
        case O_SCALE: if (sp_scale_parse(optarg, &p->scale)) bad = "--scale is density or magnitude"; break;
        case O_NODET: p->detrend = 0; break;
        case O_NOLOG: p->log = 0; break;
        case O_EPS: if (cm_parse_double(optarg, -HUGE_VAL, HUGE_VAL, &p->log_eps)) bad = "--log-eps needs a number"; break;
        case O_NORM: if (sp_norm_parse(optarg, &p->normalize)) bad = "--normalize is none or clip"; break;
        case O_WISDOM: c->wisdom = optarg; break;
        case O_NOWISDOM: c->no_wisdom = 1; break;
        case O_PLANNER: if (sp_planner_parse(optarg, &c->planner)) bad = "--fftw-planner is measure, estimate, patient or exhaustive"; break;
        case O_TIMING: c->timing = 1; break;
        case O_SAMPLES: c->samples_only = 1; break;
        case O_FSYNC: c->sync = 1; break;
        case O_TRUNC: c->allow_truncated = 1; break;
        case 'q': c->quiet = 1; break;
        case 'v': c->verbose = 1; break;
        case 'h': usage(stdout); return 1;
        default: fprintf(stderr, "Try '%s --help' for the options.\n", TOOL_NAME); return 2;
        }
        if (bad) {
            fprintf(stderr, "spectro: %s\n", bad);
            return 2;
        }
    }
    c->nin = argc - optind;
    c->inputs = argv + optind;
    return 0;
}

/* Usage errors of a parsed command line: 0, or 2 (printed). */
static int check_args(const cli *c)
{
    cm_err err = {{0}};
    if (c->nin < 1 || !c->out) {
        fprintf(stderr, "spectro: %s\nTry 'spectro --help'.\n", c->nin < 1 ? "no input" : "no output (-o OUT)");
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
    cli c = {.end = -1};
    sp_params_default(&c.p);
    int rc = parse_args(argc, argv, &c);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if ((rc = check_args(&c)) != 0)
        return rc;
    char **outputs = plan_outputs(&c, &rc);
    if (!outputs)
        return rc;
    sp_set_ffmpeg_log(c.verbose);
    h5_quiet_begin(&(h5_quiet){0}); /* for the whole run: the command reports HDF5 failures */
    double tplan = 0;
    sp_stft *stft = make_stft(&c, &tplan);
    rc = stft ? run_inputs(&c, stft, outputs, tplan) : 1;
    sp_stft_destroy(stft);
    free_outputs(outputs, c.nin);
    return rc;
}
