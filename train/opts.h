/* opts: the options of the `train` command. One table (train/opts.c, rows of
 * common/cm_opts.h: the grammar, --help and the checks every command shares) holds
 * each option's name, type, default, allowed values or range, whether it is
 * saved in RUN/options.json (restored by --resume), and the field of the
 * method configuration (tr_config) it sets; parsing, --help, options.json,
 * the checks and tr_config_default all read it. */
#ifndef TRAIN_OPTS_H
#define TRAIN_OPTS_H

#include <stdio.h>

#include "common/cm_err.h"

struct tr_config;

typedef struct tr_opts {
    /* inputs and outputs */
    const char *data, *out, *resume, *init, *teacher_ckpt, *dump_batches;
    /* the method and the networks */
    const char *method, *teacher_update, *student, *teacher, *proxy, *visual_mode;
    int pretrain, depth, student_depth, teacher_depth, width, image_size;
    double lambda1, lambda2, lambda3, omega, kd_temp, nkd_gamma, nkd_temp;
    /* optimisation and data order */
    const char *schedule;
    int epochs, batch_size, eval_from, no_augment, no_shuffle;
    const char *bad_samples;
    long long seed;
    double lr, momentum;
    int lr_horizon;          /* poly's horizon in epochs (0: epochs) */
    const char *best_tie;    /* "first" | "last": the best epoch among equal validation accuracies */
    const char *spec_standardize; /* "auto" | "off" */
    /* execution (a run's results do not depend on these) */
    const char *device;
    int steps, threads, loader_threads, force, dump_count, checkpoint_every;
    double checkpoint_minutes;
    /* the backend (be_options; a run's results depend on tf32 and bn only within rounding) */
    const char *tf32, *bn, *cudnn_find;
    int cudnn_workspace_mb, profile;
    int help;
    int sync_bn;
    /* user-facing additions: evaluation (--eval), the teacher's start, --version */
    const char *eval, *split, *network, *teacher_init;
    int version;
    int quiet, verbose; /* -q, -v: this invocation's console, never saved */
    char *owned[64]; /* strings restored by tr_opts_from_json */
    int n_owned;
} tr_opts;

/* ---- parsing and help ---- */

/* Every option at its default. */
void tr_opts_default(tr_opts *o);
/* Parses argv. Returns 0, or -1 with a usage message. `given` (may be NULL)
 * receives a malloc'd NUL-terminated list of the option names given. */
int tr_opts_parse(tr_opts *o, int argc, char **argv, char ***given, cm_err *err);
void tr_opts_help(FILE *f);
/* "train (c2kd) 0.1, git revision abc123" (common/cm_opts.h). */
void tr_opts_version(FILE *f);
/* The range of each numeric option and the combinations that exclude each
 * other; -1 with a usage message naming the option. */
int tr_opts_check(const tr_opts *o, cm_err *err);

/* ---- RUN/options.json and --resume ---- */

/* The options that define a run, as JSON (malloc'd; NULL when out of memory). */
char *tr_opts_to_json(const tr_opts *o);
/* Restores options from JSON written by tr_opts_to_json (strings owned by o:
 * tr_opts_release). Each value is checked against the table (type, allowed
 * values, integer range); -1 names the first bad one. Absent keys keep o's
 * values. */
int tr_opts_from_json(tr_opts *o, const char *json, cm_err *err);
/* Frees the strings tr_opts_from_json allocated. */
void tr_opts_release(tr_opts *o);
/* 1 when option `name` may be given together with --resume. */
int tr_opts_resume_override(const char *name);
/* Applies the options named in `given` from `src` onto `dst`. */
void tr_opts_apply(tr_opts *dst, const tr_opts *src, char **given);

/* ---- the method configuration ---- */

/* Sets the fields of c that options decide (method, modalities, depth,
 * width, image size, proxy, teacher update, loss weights, momentum, batch
 * size); the data-dependent fields and visual_mode are left as they are. */
void tr_opts_config(const tr_opts *o, struct tr_config *c);

#endif
