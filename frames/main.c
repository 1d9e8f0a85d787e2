/* frames: sample frames of videos by timestamp, write JPEG folders or .npy. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <stddef.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "common/cm_file.h"
#include "common/cm_npy.h"
#include "common/cm_opts.h"
#include "common/cm_pool.h"
#include "frames/frames.h"

typedef struct job {
    char **inputs;
    int n_inputs;
    const char *out;
    int npy_single, npy_multi;
    fr_request req;
    double at[FR_MAX_FRAMES];
    int quality;
    int print_ts;
    int verbose, quiet;
    fr_jpeg **jpeg; /* one per worker */
    pthread_mutex_t lock;
    int failed;
} job;

/* --at T1,T2,...: at most FR_MAX_FRAMES finite times. */
typedef struct times {
    double t[FR_MAX_FRAMES];
    int n;
} times;

static int parse_times(const char *s, void *field, cm_err *err)
{
    times *tm = field;
    tm->n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double t = strtod(p, &end);
        if (end == p || errno || !isfinite(t))
            return cm_err_set(err, "\"%s\" is not a list of times in seconds (T1,T2,...)", s);
        if (tm->n >= FR_MAX_FRAMES)
            return cm_err_set(err, "more than %d times", FR_MAX_FRAMES);
        tm->t[tm->n++] = t;
        if (*end == ',')
            end++;
        else if (*end)
            return cm_err_set(err, "\"%s\" is not a list of times in seconds (T1,T2,...)", s);
        p = end;
    }
    return tm->n > 0 ? 0 : cm_err_set(err, "no time given");
}

/* Is `dir` a folder this command wrote (only frame_*.jpg inside)? */
static int is_frames_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int ok = 1;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (strncmp(e->d_name, "frame_", 6) != 0 || !cm_has_suffix(e->d_name, ".jpg")) {
            ok = 0;
            break;
        }
    }
    closedir(d);
    return ok;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[CM_PATH_MAX];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fwrite(data, 1, n, f) != n;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

/* Writes all frames into a temporary folder beside `final`, then renames it
 * into place (replacing an earlier frames folder). */
static int write_folder(job *jb, fr_jpeg *jpeg, const char *final, const fr_image *imgs, int n, cm_err *err)
{
    char tmp[CM_PATH_MAX], p[CM_PATH_MAX];
    size_t len = strlen(final);
    while (len > 1 && final[len - 1] == '/')
        len--;
    const char *slash = memrchr(final, '/', len);
    int dirlen = slash ? (int)(slash - final + 1) : 0;
    if (snprintf(tmp, sizeof tmp, "%.*s.%.*s.tmp.XXXXXX", dirlen, final, (int)(len - dirlen), final + dirlen) >=
        (int)sizeof tmp)
        return cm_err_set(err, "output path too long");
    if (!mkdtemp(tmp))
        return cm_err_set(err, "cannot create a folder beside %s: %s", final, strerror(errno));
    for (int i = 0; i < n; i++) {
        uint8_t *buf;
        size_t nb;
        if (fr_jpeg_encode(jpeg, &imgs[i], jb->quality, &buf, &nb, err) != 0) {
            remove_tree(tmp);
            return -1;
        }
        int rc = snprintf(p, sizeof p, "%s/frame_%02d.jpg", tmp, i) >= (int)sizeof p ? -1 : write_file(p, buf, nb);
        free(buf);
        if (rc != 0) {
            int e = errno;
            remove_tree(tmp);
            return cm_err_set(err, "cannot write %s: %s", p, strerror(e));
        }
    }
    char fin[CM_PATH_MAX];
    snprintf(fin, sizeof fin, "%.*s", (int)len, final);
    if (rename(tmp, fin) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY && errno != ENOTDIR && errno != EISDIR) {
            int e = errno;
            remove_tree(tmp);
            return cm_err_set(err, "cannot rename into %s: %s", fin, strerror(e));
        }
        if (!cm_is_dir(fin) || !is_frames_dir(fin)) {
            remove_tree(tmp);
            return cm_err_set(err, "%s exists and is not a frames folder (not replaced)", fin);
        }
        char old[CM_PATH_MAX];
        snprintf(old, sizeof old, "%.*s.%.*s.old.XXXXXX", dirlen, final, (int)(len - dirlen), final + dirlen);
        if (!mkdtemp(old) || rename(fin, old) != 0 || rename(tmp, fin) != 0) {
            int e = errno;
            remove_tree(tmp);
            return cm_err_set(err, "cannot replace %s: %s", fin, strerror(e));
        }
        remove_tree(old);
    }
    return 0;
}

static int write_npy(const char *path, const fr_image *imgs, int n, cm_err *err)
{
    for (int i = 1; i < n; i++)
        if (imgs[i].width != imgs[0].width || imgs[i].height != imgs[0].height)
            return cm_err_set(err, "frames differ in size (%dx%d, %dx%d): cannot stack them", imgs[0].width,
                              imgs[0].height, imgs[i].width, imgs[i].height);
    size_t one = (size_t)imgs[0].width * imgs[0].height * 3;
    uint8_t *all = malloc(one * n);
    if (!all)
        return cm_err_set(err, "out of memory");
    for (int i = 0; i < n; i++)
        memcpy(all + one * i, imgs[i].rgb, one);
    size_t shape[4] = {(size_t)n, (size_t)imgs[0].height, (size_t)imgs[0].width, 3};
    int rc = cm_npy_write(path, "|u1", shape, 4, all, err);
    free(all);
    return rc;
}

/* An input's name as it appears on an output line (--print-timestamps,
 * stderr): a backslash, a newline, a tab, a carriage return and the other
 * control bytes (below 0x20, and 0x7f) would break the line or its fields,
 * so they are written \\, \n, \t, \r and \xHH (two lower-case hex
 * digits); every other byte (spaces, UTF-8) as it is. out holds 4*len+1. */
static char *escape_name(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(4 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (*p == '\\' || *p == '\n' || *p == '\t' || *p == '\r') {
            *o++ = '\\';
            *o++ = *p == '\n' ? 'n' : *p == '\t' ? 't' : *p == '\r' ? 'r' : '\\';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += sprintf(o, "\\x%02x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o = 0;
    return out;
}

static void do_input(void *ctx, size_t index, int worker)
{
    job *jb = ctx;
    const char *in = jb->inputs[index];
    fr_image imgs[FR_MAX_FRAMES];
    int n = 0;
    cm_err err = {{0}};
    cm_trunc trunc;
    fr_request req = jb->req;
    int decoded = 0;
    req.truncation = &trunc;
    if (jb->verbose) /* counting drains the reorder window before each flush: only when asked */
        req.decoded = &decoded;
    int rc = fr_extract(in, &req, imgs, &n, &err);
    if (rc == 0 && jb->out) {
        char path[CM_PATH_MAX], base[CM_PATH_MAX];
        cm_basename_noext(base, sizeof base, in);
        if (jb->npy_single) {
            rc = write_npy(jb->out, imgs, n, &err);
        } else if (jb->npy_multi) {
            rc = snprintf(path, sizeof path, "%s/%s.npy", jb->out, base) >= (int)sizeof path
                     ? cm_err_set(&err, "output path too long")
                     : write_npy(path, imgs, n, &err);
        } else if (jb->n_inputs == 1) {
            rc = write_folder(jb, jb->jpeg[worker], jb->out, imgs, n, &err);
        } else {
            rc = snprintf(path, sizeof path, "%s/%s", jb->out, base) >= (int)sizeof path
                     ? cm_err_set(&err, "output path too long")
                     : write_folder(jb, jb->jpeg[worker], path, imgs, n, &err);
        }
    }
    char *name = escape_name(in);
    const char *shown = name ? name : "(out of memory)";
    pthread_mutex_lock(&jb->lock);
    if (rc != 0) {
        fprintf(stderr, "frames: %s: %s\n", shown, err.msg);
        jb->failed++;
    } else if (trunc.truncated && !jb->quiet) {
        char b[96];
        cm_trunc_format(&trunc, b, sizeof b);
        fprintf(stderr, "frames: %s: warning: %s (kept: --allow-truncated)\n", shown, b);
    }
    if (rc == 0 && jb->verbose)
        fprintf(stderr, "frames: %s: %d frames decoded\n", shown, decoded);
    if (rc == 0 && jb->print_ts) {
        for (int i = 0; i < n; i++)
            printf("%s %d %.6f %.6f\n", shown, i, imgs[i].time, imgs[i].pts);
        fflush(stdout);
    }
    pthread_mutex_unlock(&jb->lock);
    free(name);
    for (int i = 0; i < n; i++)
        fr_image_free(&imgs[i]);
}

/* The command line, parsed. */
typedef struct cli {
    const char *out;
    int npy, count, short_side, quality, threads, no_skip, print_ts, allow_truncated;
    double start, end;
    times at;
} cli;

#define OFF(f) offsetof(cli, f)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt opts[] = {
    {"output", 'o', CM_STR, OFF(out), NULL, NULL, "PATH",
     "output. A folder: frame_00.jpg, frame_01.jpg, ... (with several inputs: one subfolder per input, named after "
     "the input file without its extension). FILE.npy (one input): RGB uint8 array of shape [F, H, W, 3]. Without "
     "-o nothing is written."},
    {"npy", 0, CM_FLAG, OFF(npy), NULL, NULL, NULL, "with several inputs and -o DIR: write DIR/<name>.npy per input"},
    {"count", 0, CM_INT, OFF(count), NULL, "1", "F",
     "F frames at the centres of F equal parts of the clip or of the segment --start/--end",
     CM_IN(1, FR_MAX_FRAMES)},
    {"start", 0, CM_DBL, OFF(start), NULL, NULL, "S", "segment start in seconds (--start alone: to the end)"},
    {"end", 0, CM_DBL, OFF(end), NULL, NULL, "E", "segment end in seconds (E <= S: the whole clip)"},
    {"at", 0, CM_FN, OFF(at), NULL, NULL, "T1,T2,...", "explicit times in seconds (overrides --count/--start/--end)",
     .parse = parse_times},
    {"short-side", 0, CM_INT, OFF(short_side), NULL, NULL, "N",
     "resize so that the shorter side is N pixels, aspect kept (libswscale: area when shrinking, bicubic when "
     "enlarging)", CM_IN(1, 65536)},
    {"quality", 0, CM_INT, OFF(quality), NULL, "90", "Q", "JPEG quality (4:2:0 TurboJPEG)", CM_IN(1, 100)},
    {"threads", 0, CM_INT, OFF(threads), NULL, "1", "N", "decoder threads per input", CM_IN(1, 64)},
    {"no-skip", 0, CM_FLAG, OFF(no_skip), NULL, NULL, NULL,
     "decode every frame on the way to a target (by default frames that no other frame references are skipped; "
     "same pixels)"},
    {"print-timestamps", 0, CM_FLAG, OFF(print_ts), NULL, NULL, NULL,
     "one line per frame on stdout: INPUT INDEX ASKED PTS (seconds, 6 decimals; PTS is the presentation time of "
     "the returned frame). In INPUT (here and on stderr) a backslash, newline, tab and carriage return are written "
     "\\\\, \\n, \\t, \\r, other control bytes \\xHH; spaces are kept (read the last three fields from the right)"},
    {"allow-truncated", 0, CM_FLAG, OFF(allow_truncated), NULL, NULL, NULL,
     "keep a truncated input (its readable video ends more than max(0.5 s, 5%) before the duration the file "
     "declares, or before --end): frames from the readable part, a warning on stderr. Without it such an input "
     "fails (\"truncated: decoded A s of B s\")"},
};
#pragma GCC diagnostic pop

static const char about[] =
    "Picks frames of each video by timestamp, decodes exactly those frames (seek to the\n"
    "keyframe before each, decode forward) and writes them as JPEG or as a .npy array.\n"
    "The frame at time T is the one `ffmpeg -i INPUT -ss T -frames:v 1` gives: the first\n"
    "frame whose timestamp is >= T, times counted in seconds from the start of the file\n"
    "(its start time subtracted, as ffmpeg does); past the last frame: the last frame.\n"
    "Rotation metadata is applied (as ffmpeg's autorotate).";

static const char epilog[] =
    "Exit status: 0 all inputs done, 1 some inputs failed (one line each on stderr:\n"
    "\"frames: INPUT: reason\"; the others are processed; no partial outputs), 2 usage error.";

/* Parses the options into jb; -1: go on, else the exit status. */
static int parse_args(int argc, char **argv, job *jb, int *jobs, int *npy)
{
    cli c = {0};
    cm_opts_default(opts, sizeof opts / sizeof *opts, &c);
    const cm_opt_group groups[] = {{NULL, opts, sizeof opts / sizeof *opts, &c}};
    const cm_cli cl = {.prog = "frames", .usage = "usage: frames [options] INPUT...", .about = about,
                       .epilog = epilog, .std = CM_STD_QUIET | CM_STD_VERBOSE | CM_STD_JOBS,
                       .jobs_help = "inputs processed in parallel (default 1)",
                       .quiet_help = "no warnings (a kept truncated input); errors are still printed",
                       .verbose_help = "show FFmpeg's warnings (decoding errors of damaged files), and per input on "
                                       "stderr: \"frames: INPUT: N frames decoded\"",
                       .min_pos = 1, .max_pos = -1, .pos_name = "INPUT", .groups = groups, .ngroups = 1};
    cm_args a;
    int rc = cm_cli_run(&cl, argc, argv, &a);
    if (rc < 0) {
        jb->out = c.out;
        *npy = c.npy;
        *jobs = a.jobs ? a.jobs : 1;
        jb->req.count = c.count;
        jb->req.short_side = c.short_side;
        jb->req.threads = c.threads;
        jb->quality = c.quality;
        jb->req.flags |= c.no_skip ? FR_NO_SKIP : 0;
        jb->print_ts = c.print_ts;
        jb->req.allow_truncated = c.allow_truncated;
        jb->verbose = a.verbose;
        jb->quiet = a.quiet;
        if (a.verbose)
            av_log_set_level(AV_LOG_WARNING);
        if (c.at.n) {
            memcpy(jb->at, c.at.t, sizeof jb->at);
            jb->req.n_at = c.at.n;
            jb->req.at = jb->at;
        }
        int have_start = cm_args_given(&a, "start"), have_end = cm_args_given(&a, "end");
        jb->inputs = a.pos; /* kept for the run (freed at exit) */
        a.pos = NULL;
        jb->n_inputs = a.npos;
        jb->req.start = c.start;
        jb->req.end = have_end ? c.end : (have_start ? INFINITY : 0);
    }
    cm_args_free(&a);
    return rc;
}

/* The output kind (-o FILE.npy, -o DIR --npy, JPEG folders); -1: go on, else the exit status. */
static int check_outputs(job *jb, int npy)
{
    if (jb->out && cm_has_suffix(jb->out, ".npy")) {
        if (jb->n_inputs > 1) {
            fprintf(stderr, "frames: -o FILE.npy takes one input (use -o DIR --npy for several)\n");
            return 2;
        }
        jb->npy_single = 1;
    } else if (npy) {
        if (!jb->out) {
            fprintf(stderr, "frames: --npy needs -o DIR\n");
            return 2;
        }
        jb->npy_multi = 1;
    }
    /* Outputs are named after the inputs: names must not collide. */
    for (int i = 0; jb->out && jb->n_inputs > 1 && i < jb->n_inputs; i++)
        for (int k = 0; k < i; k++) {
            char a[CM_PATH_MAX], b[CM_PATH_MAX];
            cm_basename_noext(a, sizeof a, jb->inputs[i]);
            cm_basename_noext(b, sizeof b, jb->inputs[k]);
            if (!strcmp(a, b)) {
                char *ek = escape_name(jb->inputs[k]), *ei = escape_name(jb->inputs[i]);
                char *eo = escape_name(jb->out), *ea = escape_name(a);
                fprintf(stderr, "frames: %s and %s would write the same output %s/%s\n", ek ? ek : "?",
                        ei ? ei : "?", eo ? eo : "?", ea ? ea : "?");
                free(ek);
                free(ei);
                free(eo);
                free(ea);
                return 2;
            }
        }
    return -1;
}

/* Creates the folder that will hold the outputs (-o DIR, or the parent of -o FILE). 0 or 1 (printed). */
static int make_out_folder(const job *jb)
{
    if (!jb->out)
        return 0;
    char parent[CM_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", jb->out);
    if (jb->n_inputs <= 1) {
        size_t len = strlen(parent);
        while (len > 1 && parent[len - 1] == '/')
            parent[--len] = 0;
        char *s = strrchr(parent, '/');
        if (s)
            *(s == parent ? s + 1 : s) = 0;
        else
            parent[0] = 0;
    }
    cm_err err = {{0}};
    if (parent[0] && cm_mkdirs(parent, &err) != 0) {
        fprintf(stderr, "frames: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* One JPEG encoder per thread, the inputs in parallel; the exit status. */
static int run_inputs(job *jb, int jobs)
{
    if (jobs > jb->n_inputs)
        jobs = jb->n_inputs;
    cm_err err = {{0}};
    int rc = 0, made = 0;
    jb->jpeg = calloc((size_t)jobs, sizeof *jb->jpeg);
    for (; jb->jpeg && made < jobs; made++)
        if (!(jb->jpeg[made] = fr_jpeg_create(&err))) {
            fprintf(stderr, "frames: %s\n", err.msg);
            rc = 1;
            break;
        }
    if (!jb->jpeg) {
        fprintf(stderr, "frames: out of memory\n");
        return 1;
    }
    if (rc == 0) {
        pthread_mutex_init(&jb->lock, NULL);
        cm_parallel_for((size_t)jb->n_inputs, jobs, do_input, jb);
        pthread_mutex_destroy(&jb->lock);
        rc = jb->failed ? 1 : 0;
    }
    for (int i = 0; i < made; i++)
        fr_jpeg_destroy(jb->jpeg[i]);
    free(jb->jpeg);
    return rc;
}

int main(int argc, char **argv)
{
    job jb;
    memset(&jb, 0, sizeof jb);
    /* Decoder warnings would drown the one line per bad input. */
    av_log_set_level(AV_LOG_QUIET);
    int jobs = 1, npy = 0, rc = parse_args(argc, argv, &jb, &jobs, &npy);
    if (rc < 0)
        rc = check_outputs(&jb, npy);
    if (rc < 0)
        rc = make_out_folder(&jb);
    if (rc == 0)
        rc = run_inputs(&jb, jobs);
    free(jb.inputs);
    return rc;
}
