/* opts: the option table of `train`. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_opts.h"
#include "train/methods.h"
#include "train/opts.h"
#include "train/config.h"

/* The tr_config field an option sets (cm_opt.ext, at cm_opt.ext_off): int,
 * float, index in `choices`, modality. */
typedef enum { C_NONE = 0, C_INT, C_FLOAT, C_ENUM, C_MOD } cfg_kind;
/* Row marks (cm_opt.flags): kept in RUN/options.json; may be given with --resume. */
enum { SAVED = CM_OPT_USER1, RESUME = CM_OPT_USER2 };

#define OFF(f) offsetof(tr_opts, f)
#define CFG(kind, f) .ext = kind, .ext_off = offsetof(tr_config, f)
#define AT_LEAST(x) CM_MIN(x)

/* Defaults are given once, here; --help prints them. Fields left out of a
 * row (range, cfg) are zero: no range, no tr_config field. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt defs[] = {
    {"data", 0, CM_STR, OFF(data), NULL, NULL, "DIR", "ingested folder (index.json + shards) with train, test and optionally val splits (required)", .flags = SAVED | RESUME},
    {"out", 0, CM_STR, OFF(out), NULL, NULL, "RUN", "output folder: metrics.jsonl, curves.svg, last.h5, best.h5, result.json, options.json, eval/ (best.h5 evaluated on test); with --eval: eval.json, predictions.tsv, confusion.svg (required)", .flags = SAVED},
    {"method", 0, CM_STR, OFF(method), tr_methods_choices + 1, "c2kd", "M", "distillation method (each one below; shake, review: docs/METHODS.md)", .flags = SAVED, CFG(C_ENUM, method)},
    {"pretrain", 0, CM_FLAG, OFF(pretrain), NULL, NULL, NULL, "train the teacher network alone with CE (its best-validation checkpoint is RUN/best.h5)", .flags = SAVED, CFG(C_INT, pretrain)},
    {"teacher-ckpt", 0, CM_STR, OFF(teacher_ckpt), NULL, NULL, "FILE", "load the teacher's weights (teacher/ group) from FILE, e.g. a --pretrain run's best.h5", .flags = SAVED},
    {"teacher-update", 0, CM_STR, OFF(teacher_update), "full|top|frozen", "full", "U", "what of the teacher is trained (top: layer4 + fc; frozen: nothing, eval mode)", .flags = SAVED, CFG(C_ENUM, teacher_update)},
    {"student", 0, CM_STR, OFF(student), "visual|audio", "visual", "MOD", "student modality", .flags = SAVED, CFG(C_MOD, student)},
    {"teacher", 0, CM_STR, OFF(teacher), "audio|visual", "audio", "MOD", "teacher modality", .flags = SAVED, CFG(C_MOD, teacher)},
    {"lambda1", 0, CM_DBL, OFF(lambda1), NULL, "1", "X", "c2kd weight of teacher<->teacher-proxy KL", .flags = SAVED, CFG(C_FLOAT, lambda1)},
    {"lambda2", 0, CM_DBL, OFF(lambda2), NULL, "1", "X", "c2kd weight of student<->student-proxy KL", .flags = SAVED, CFG(C_FLOAT, lambda2)},
    {"lambda3", 0, CM_DBL, OFF(lambda3), NULL, "1", "X", "c2kd weight of proxy<->proxy non-target KL", .flags = SAVED, CFG(C_FLOAT, lambda3)},
    {"omega", 0, CM_DBL, OFF(omega), NULL, "0", "X", "selection threshold: keep a sample when Kendall tau > omega", .flags = SAVED, CFG(C_FLOAT, omega)},
    {"kd-temp", 0, CM_DBL, OFF(kd_temp), NULL, "4", "T", "KD temperature", .flags = SAVED, CFG(C_FLOAT, kd_temp)},
    {"nkd-gamma", 0, CM_DBL, OFF(nkd_gamma), NULL, "1.5", "G", "NKD gamma", .flags = SAVED, CFG(C_FLOAT, nkd_gamma)},
    {"nkd-temp", 0, CM_DBL, OFF(nkd_temp), NULL, "1", "T", "NKD temperature lambda", .flags = SAVED, CFG(C_FLOAT, nkd_temp)},
    {"proxy", 0, CM_STR, OFF(proxy), "fa|none|cfa", "fa", "P", "proxy head (fa: pool, 1x1 conv, BN, LeakyReLU, linear)", .flags = SAVED, CFG(C_ENUM, proxy)},
    {"depth", 0, CM_INT, OFF(depth), "18|50", "18", "D", "ResNet depth of both networks, 18 or 50", .flags = SAVED, CFG(C_INT, depth)},
    {"student-depth", 0, CM_INT, OFF(student_depth), "0|18|50", NULL, "D", "the student's ResNet depth (0: --depth)", .flags = SAVED, CFG(C_INT, student_depth)},
    {"teacher-depth", 0, CM_INT, OFF(teacher_depth), "0|18|50", NULL, "D", "the teacher's ResNet depth (0: --depth)", .flags = SAVED, CFG(C_INT, teacher_depth)},
    {"width", 0, CM_INT, OFF(width), NULL, "64", "W", "base channels", .flags = SAVED, AT_LEAST(1), CFG(C_INT, width)},
    {"visual-mode", 0, CM_STR, OFF(visual_mode), "auto|stack|fold", "auto", "V", "frames stacked on channels or folded into the batch (auto: fold when F > 1)", .flags = SAVED},
    {"image-size", 0, CM_INT, OFF(image_size), NULL, "224", "S", "side of the network's input frames", .flags = SAVED, AT_LEAST(8), CFG(C_INT, image_size)},
    {"epochs", 0, CM_INT, OFF(epochs), NULL, "100", "N", "epochs; with --resume a larger N extends the run (saved in its options.json): the poly schedule is recomputed for the new total from the first epoch not yet trained on, lr(e) = 1e-4 + (lr - 1e-4)(1 - e/N)^0.9; the epochs already trained keep the rates they had", .flags = SAVED | RESUME, AT_LEAST(1)},
    {"batch-size", 0, CM_INT, OFF(batch_size), NULL, "64", "B", "batch size, per rank under mpirun/srun; training drops the last partial batch. With N ranks each epoch's order (shuffled, or shard order with --no-shuffle) is cut to a multiple of N and rank r takes positions i with i mod N = r (DistributedSampler, drop_last)", .flags = SAVED, AT_LEAST(1), CFG(C_INT, max_batch)},
    {"lr", 0, CM_DBL, OFF(lr), NULL, "0.01", "X", "initial learning rate", .flags = SAVED, CM_ABOVE(0)},
    {"schedule", 0, CM_STR, OFF(schedule), "poly|const", "poly", "S", "poly: lr = 1e-4 + (lr - 1e-4)(1 - e/epochs)^0.9 per epoch; const", .flags = SAVED},
    {"momentum", 0, CM_DBL, OFF(momentum), NULL, "0.9", "X", "SGD momentum", .flags = SAVED, .range = CM_LO | CM_HI_OPEN, .lo = 0, .hi = 1, CFG(C_FLOAT, momentum)},
    {"seed", 0, CM_LL, OFF(seed), NULL, "1", "N", "seed of the initialisation, the shuffle and the augmentation", .flags = SAVED},
    {"eval-from", 0, CM_INT, OFF(eval_from), NULL, "1", "E", "evaluate (and pick the best epoch) only after epochs >= E, counted from 1", .flags = SAVED, AT_LEAST(0)},
    /* the authors' protocol (docs/METHOD.md, "Protocol"): tools/reproduce sets these */
    {"lr-horizon", 0, CM_INT, OFF(lr_horizon), NULL, "0", "N", "the poly schedule's horizon in epochs: lr = 1e-4 + (lr - 1e-4)(1 - e/N)^0.9, 1e-4 from epoch N on (0: --epochs; the authors' code: 100 whatever the epochs)", .flags = SAVED, AT_LEAST(0)},
    {"best-tie", 0, CM_STR, OFF(best_tie), "first|last", "first", "T", "the best epoch among equal validation accuracies: the first or the last (the authors' distillation runs: last)", .flags = SAVED},
    {"spec-standardize", 0, CM_STR, OFF(spec_standardize), "auto|off", "auto", "S", "auto: each spectrogram standardised, (X - mean) / (std + 1e-9), unless the ingest recipe did it; off: used as stored (the authors' code)", .flags = SAVED},
    {"bad-samples", 0, CM_STR, OFF(bad_samples), "stop|skip", "stop", "B", "a bad sample (checksum mismatch, JPEG that does not decode): stop: exit 1 naming it; skip: report it once on stderr (each time in metrics.jsonl) and leave it out: in training its place takes the next good sample of the epoch's order (full batches), in evaluation it is dropped (accuracies over the good samples)", .flags = SAVED},
    {"no-augment", 0, CM_FLAG, OFF(no_augment), NULL, NULL, NULL, "training frames use the evaluation transform (resize, no crop or flip)", .flags = SAVED},
    {"no-shuffle", 0, CM_FLAG, OFF(no_shuffle), NULL, NULL, NULL, "training batches in shard order", .flags = SAVED},
    {"sync-bn", 0, CM_FLAG, OFF(sync_bn), NULL, NULL, NULL, "under mpirun/srun: batch norm in training with the statistics of the global batch, every rank's samples (PyTorch's SyncBatchNorm: per-channel sums all-reduced in the forward and backward pass); without it each rank uses its own batch's statistics (DDP's default). One process: the same as without, within float32 rounding", .flags = SAVED, CFG(C_INT, sync_bn)},
    {"init", 0, CM_STR, OFF(init), NULL, NULL, "CKPT", "start from the weights in CKPT (fresh optimiser state)", .flags = SAVED},
    {"resume", 0, CM_STR, OFF(resume), NULL, NULL, "RUN", "continue RUN exactly (its options.json and last.h5); only --data, --epochs (to extend it), --steps, --threads, --loader-threads, --device, --checkpoint-every, --checkpoint-minutes and the CUDA options may be given too", .flags = RESUME},
    {"steps", 0, CM_INT, OFF(steps), NULL, "0", "N", "stop after N steps in all (a test aid; last.h5 is saved; 0: no limit)", .flags = RESUME, AT_LEAST(0)},
    {"checkpoint-every", 0, CM_INT, OFF(checkpoint_every), NULL, "0", "N", "also save last.h5 every N steps (0: by time only); a killed run resumes from it", .flags = RESUME, AT_LEAST(0)},
    {"checkpoint-minutes", 0, CM_DBL, OFF(checkpoint_minutes), NULL, "10", "M", "also save last.h5 when M minutes have passed since the last save (0: never by time)", .flags = RESUME, AT_LEAST(0)},
    {"device", 0, CM_STR, OFF(device), "auto|cpu|cuda", "auto", "D", "backend (auto: CUDA when available, else the CPU with a notice)", .flags = SAVED | RESUME},
    {"threads", 'j', CM_INT, OFF(threads), NULL, "0", "N", "compute threads of the CPU backend (0: all cores)", .aliases = "jobs", .flags = SAVED | RESUME, AT_LEAST(0)},
    {"tf32", 0, CM_STR, OFF(tf32), "on|off", "on", "T", "CUDA: TF32 tensor cores in convolutions and matrix products (off: full float32)", .flags = SAVED | RESUME},
    {"bn", 0, CM_STR, OFF(bn), "own|cudnn", "own", "BN", "CUDA: batch norm by the project's deterministic kernels or cuDNN's", .flags = SAVED | RESUME},
    {"cudnn-workspace-mb", 0, CM_INT, OFF(cudnn_workspace_mb), NULL, "1024", "N", "CUDA: cap of the cuDNN convolution workspace in MiB", .flags = SAVED | RESUME, AT_LEAST(0)},
    {"cudnn-find", 0, CM_STR, OFF(cudnn_find), "on|off", "on", "F", "CUDA: time every convolution algorithm once per shape (off: cuDNN's heuristic choice)", .flags = SAVED | RESUME},
    {"profile", 0, CM_FLAG, OFF(profile), NULL, NULL, NULL, "CUDA: time every op and the staged input copies; writes RUN/profile.md (slower)", .flags = RESUME},
    {"loader-threads", 0, CM_INT, OFF(loader_threads), NULL, "0", "N", "loader threads (JPEG decoding; 0: as the backend suggests: 2 on the CPU, 12 with a GPU, at most the cores)", .flags = RESUME, AT_LEAST(0)},
    {"dump-batches", 0, CM_STR, OFF(dump_batches), NULL, NULL, "DIR", "write the first --dump-count prepared training batches as .npy into DIR (a test aid)", .flags = RESUME},
    {"dump-count", 0, CM_INT, OFF(dump_count), NULL, "-1", "N", "batches written by --dump-batches (-1: all)", .flags = RESUME, AT_LEAST(-1)},
    {"teacher-init", 0, CM_STR, OFF(teacher_init), "checkpoint|random", "checkpoint", "I", "the teacher of a distillation method (every --method but none): checkpoint: from --teacher-ckpt (required); random: the random initialisation of --seed (for tests; distilling from it teaches nothing)", .flags = SAVED},
    {"eval", 0, CM_STR, OFF(eval), NULL, NULL, "CKPT", "evaluate the checkpoint CKPT (e.g. RUN/best.h5) on --split of --data instead of training; writes eval.json (top-1, top-5, per-class accuracy, confusion matrix), predictions.tsv and confusion.svg into --out", .flags = 0},
    {"split", 0, CM_STR, OFF(split), NULL, "test", "S", "with --eval: the split evaluated", .flags = 0},
    {"network", 0, CM_STR, OFF(network), "auto|student|teacher", "auto", "N", "with --eval: the network evaluated (auto: the one the checkpoint's run trained: the teacher of a --pretrain run, else the student)", .flags = 0},
    {"force", 0, CM_FLAG, OFF(force), NULL, NULL, NULL, "allow --out to name a folder that already holds a run (its files are replaced)", .flags = 0},
};
#pragma GCC diagnostic pop
#define NDEFS (sizeof defs / sizeof *defs)

static const cm_opt *find(const char *name)
{
    return cm_opt_find(defs, NDEFS, name);
}

static void *field_of(tr_opts *o, const cm_opt *d)
{
    return (char *)o + d->off;
}

static const void *cfield_of(const tr_opts *o, const cm_opt *d)
{
    return (const char *)o + d->off;
}

void tr_opts_default(tr_opts *o)
{
    memset(o, 0, sizeof *o);
    cm_opts_default(defs, NDEFS, o);
}

static const char usage[] =
    "usage: train --data DIR --out RUN [options]\n"
    "       train --resume RUN [--epochs N] [--steps N] [--threads N] [--device D]\n"
    "       train --eval CKPT --data DIR --out EVALDIR [--split test] [--network auto]\n"
    "       train --version";

static const char about[] =
    "Trains a cross-modal distillation run (C2KD, KD, NKD, ReviewKD, SHAKE or no KD) or pretrains a\n"
    "teacher on the shards of an ingested folder. Evaluates on val and test after\n"
    "every epoch (test serves as val when there is no val split); the result is\n"
    "the test top-1 at the best validation epoch.";

static const char epilog[] =
    "data parallel: `mpirun -np N train ...` or `srun train ...` runs N ranks (docs/DISTRIBUTED.md);\n"
    "a plain run loads no MPI. Launcher-level settings, read from the environment by every rank:\n"
    "  C2KD_DIST_TIMEOUT=S    end every rank when a collective has not finished after S seconds (600)\n"
    "  C2KD_DIST_OVERLAP=0    average gradients after the whole backward pass (default: overlapped)\n"
    "  C2KD_DIST=0            ignore the launcher (each process trains alone)\n"
    "  C2KD_DIST_PLUGIN=PATH  the MPI/NCCL plugin (default: ../lib/c2kd_collective.so from the binary)\n"
    "\n"
    "exit status: 0 done, 1 failed (bad data, checkpoint, non-finite loss), 2 usage error";

/* The command line of train: the table over o. */
static cm_cli the_cli(const cm_opt_group *g)
{
    return (cm_cli){.prog = "train", .usage = usage, .about = about, .epilog = epilog,
                    .std = CM_STD_QUIET | CM_STD_VERBOSE, .quiet_help = "no progress display and no notices",
                    .verbose_help = "print the run's options (as options.json holds them) at the start",
                    .max_pos = 0, .groups = g, .ngroups = 1};
}

int tr_opts_parse(tr_opts *o, int argc, char **argv, char ***given, cm_err *err)
{
    const cm_opt_group g = {NULL, defs, NDEFS, o};
    cm_cli cl = the_cli(&g);
    cm_args a;
    if (given)
        *given = NULL;
    if (cm_cli_parse(&cl, argc, argv, &a, err) != 0)
        return -1;
    o->help = a.help;
    o->version = a.version;
    o->quiet = a.quiet;
    o->verbose = a.verbose;
    /* the table's options given (the standard ones are not resumable settings) */
    char **gv = calloc((size_t)a.ngiven + 1, sizeof *gv);
    int ng = 0;
    for (int i = 0; gv && i < a.ngiven; i++)
        if (find(a.given[i]))
            gv[ng++] = (char *)a.given[i]; /* the table's own names: static */
    cm_args_free(&a);
    if (!gv)
        return cm_err_set(err, "out of memory");
    if (given)
        *given = gv;
    else
        free(gv);
    return 0;
}

void tr_opts_help(FILE *f)
{
    const cm_opt_group g = {NULL, defs, NDEFS, NULL};
    cm_cli cl = the_cli(&g);
    cl.epilog = NULL; /* after the methods */
    cm_cli_help(&cl, f);
    fprintf(f, "\nmethods (--method; --pretrain trains the teacher alone):\n");
    for (int i = 0; i < tr_methods_options(); i++) {
        const char *name = NULL;
        const tr_method_def *m = tr_methods_row(i, &name);
        char left[64];
        snprintf(left, sizeof left, "  %s", name);
        cm_help_item(f, left, m->help);
    }
    fprintf(f, "\n%s\n", epilog);
}

void tr_opts_version(FILE *f)
{
    const cm_opt_group g = {NULL, defs, NDEFS, NULL};
    cm_cli cl = the_cli(&g);
    cm_cli_version(&cl, f);
}

static double number_of(const tr_opts *o, const cm_opt *d)
{
    return cm_opt_number(d, o);
}

int tr_opts_check(const tr_opts *o, cm_err *err)
{
    if (!o->data)
        return cm_err_set(err, "--data DIR is required");
    if (!o->out)
        return cm_err_set(err, "--out RUN is required");
    for (size_t i = 0; i < NDEFS; i++)
        if (cm_opt_check(&defs[i], o, 0, err) != 0)
            return -1;
    if (o->pretrain && o->teacher_ckpt)
        return cm_err_set(err, "--pretrain trains the teacher from scratch; --teacher-ckpt does not apply");
    if (o->teacher_ckpt && o->teacher_init && strcmp(o->teacher_init, "random") == 0)
        return cm_err_set(err, "--teacher-init random and --teacher-ckpt exclude each other");
    if (o->eval && (o->resume || o->init || o->teacher_ckpt || o->pretrain))
        return cm_err_set(err, "--eval evaluates a checkpoint; --resume, --init, --teacher-ckpt and --pretrain do not apply");
    return 0;
}

char *tr_opts_to_json(const tr_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; j && i < NDEFS; i++) {
        const cm_opt *d = &defs[i];
        if (!(d->flags & SAVED))
            continue;
        if (d->type == CM_STR) {
            const char *s = *(const char *const *)cfield_of(o, d);
            if (s)
                cJSON_AddStringToObject(j, d->name, s);
            else
                cJSON_AddNullToObject(j, d->name);
        } else {
            cJSON_AddNumberToObject(j, d->name, number_of(o, d));
        }
    }
    char *s = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    return s;
}

/* One value of options.json into o: the table's type, choices and integer range. */
static int restore_one(tr_opts *o, const cm_opt *d, const cJSON *v, cm_err *err)
{
    void *field = field_of(o, d);
    if (d->type == CM_STR) {
        if (cJSON_IsNull(v)) {
            *(const char **)field = NULL;
            return 0;
        }
        if (!cJSON_IsString(v) || (d->choices && cm_choice_index(d->choices, v->valuestring) < 0))
            return cm_err_set(err, "option \"%s\": not %s", d->name, d->choices ? d->choices : "a string");
        if (o->n_owned >= (int)(sizeof o->owned / sizeof *o->owned))
            return cm_err_set(err, "too many options");
        char *c = strdup(v->valuestring);
        if (!c)
            return cm_err_set(err, "out of memory");
        o->owned[o->n_owned++] = c;
        *(const char **)field = c;
        return 0;
    }
    double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(x))
        return cm_err_set(err, "option \"%s\" has the wrong type (a finite number expected)", d->name);
    if (d->type == CM_DBL) {
        *(double *)field = x;
        return 0;
    }
    double lim = d->type == CM_LL ? 9007199254740992.0 : d->type == CM_FLAG ? 1 : 1e9;
    if (x != floor(x) || x < (d->type == CM_FLAG ? 0 : -lim) || x > lim)
        return cm_err_set(err, "option \"%s\": %g is not %s", d->name, x, d->type == CM_FLAG ? "0 or 1" : "an integer in range");
    char text[32];
    snprintf(text, sizeof text, "%.0f", x);
    if (d->choices && cm_choice_index(d->choices, text) < 0)
        return cm_err_set(err, "option \"%s\": %s is not one of %s", d->name, text, d->choices);
    if (d->type == CM_LL)
        *(long long *)field = (long long)x;
    else
        *(int *)field = (int)x;
    return 0;
}

int tr_opts_from_json(tr_opts *o, const char *json, cm_err *err)
{
    cJSON *j = cJSON_Parse(json);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cm_err_set(err, "not a JSON object");
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < NDEFS; i++) {
        const cJSON *v = (defs[i].flags & SAVED) ? cJSON_GetObjectItemCaseSensitive(j, defs[i].name) : NULL;
        if (v)
            rc = restore_one(o, &defs[i], v, err);
    }
    cJSON_Delete(j);
    return rc;
}

void tr_opts_release(tr_opts *o)
{
    for (int i = 0; i < o->n_owned; i++)
        free(o->owned[i]);
    o->n_owned = 0;
}

int tr_opts_resume_override(const char *name)
{
    const cm_opt *d = find(name);
    return d && (d->flags & RESUME);
}

static size_t value_size(cm_opt_type t)
{
    return t == CM_STR ? sizeof(const char *) : t == CM_LL ? sizeof(long long) : t == CM_DBL ? sizeof(double) : sizeof(int);
}

void tr_opts_apply(tr_opts *dst, const tr_opts *src, char **given)
{
    for (char **g = given; g && *g; g++) {
        const cm_opt *d = find(*g);
        if (d)
            memcpy(field_of(dst, d), cfield_of(src, d), value_size(d->type));
    }
}

void tr_opts_config(const tr_opts *o, tr_config *c)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const cm_opt *d = &defs[i];
        void *f = (char *)c + d->ext_off;
        const char *s = d->type == CM_STR ? *(const char *const *)cfield_of(o, d) : NULL;
        switch ((cfg_kind)d->ext) {
        case C_NONE:
            break;
        case C_INT:
            *(int *)f = (int)number_of(o, d);
            break;
        case C_FLOAT:
            *(float *)f = (float)number_of(o, d);
            break;
        case C_ENUM: /* each enum lists its values in the order of the option's choices */
            *(int *)f = s ? cm_choice_index(d->choices, s) : 0;
            break;
        case C_MOD:
            *(tr_modality *)f = s && strcmp(s, "audio") == 0 ? TR_AUDIO : TR_VISUAL;
            break;
        }
    }
}
