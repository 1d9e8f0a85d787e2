/* opts: the options of the `train` command, one table that gives parsing,
 * --help, and the copy saved in RUN/options.json (restored by --resume). */
#ifndef TRAIN_OPTS_H
#define TRAIN_OPTS_H

#include <stdio.h>

#include "common/cm_err.h"

typedef struct tr_opts {
    const char *data, *out, *resume, *init, *teacher_ckpt, *device, *dump_batches;
    const char *method, *teacher_update, *student, *teacher, *proxy, *visual_mode, *schedule;
    int pretrain, depth, width, epochs, batch_size, eval_from, steps, threads, loader_threads, image_size;
    int no_augment, no_shuffle, force, dump_count;
    long long seed;
    double lambda1, lambda2, lambda3, omega, kd_temp, nkd_gamma, nkd_temp, lr, momentum;
    /* backend (be_options) */
    const char *tf32, *bn, *cudnn_find;
    int cudnn_workspace_mb, profile;
    int help;
    char *owned[64];   /* strings restored by tr_opts_from_json */
    int n_owned;
} tr_opts;

void tr_opts_default(tr_opts *o);
/* Parses argv. Returns 0, or -1 with a usage message. `given` (may be NULL)
 * receives a malloc'd NUL-terminated list of the option names given. */
int tr_opts_parse(tr_opts *o, int argc, char **argv, char ***given, cm_err *err);
void tr_opts_help(FILE *f);
/* The options that define a run, as JSON (malloc'd). */
char *tr_opts_to_json(const tr_opts *o);
/* Restores options from JSON written by tr_opts_to_json (strings owned by o:
 * tr_opts_release). */
int tr_opts_from_json(tr_opts *o, const char *json, cm_err *err);
/* Frees the strings tr_opts_from_json allocated. */
void tr_opts_release(tr_opts *o);
/* 1 when option `name` may be given together with --resume. */
int tr_opts_resume_override(const char *name);
/* Applies the options named in `given` from `src` onto `dst`. */
void tr_opts_apply(tr_opts *dst, const tr_opts *src, char **given);

#endif
