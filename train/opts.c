/* opts: the option table of `train`. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/methods.h"
#include "train/opts.h"
#include "train/config.h"

typedef enum { O_STR, O_INT, O_LL, O_DBL, O_FLAG } opt_type;
/* The range a numeric option must lie in. */
typedef enum { R_ANY = 0, R_GE, R_GT, R_UNIT_OPEN } opt_range; /* >= lo; > lo; [lo, hi) */
/* The tr_config field an option sets: int, float, index in `choices`, modality. */
typedef enum { C_NONE = 0, C_INT, C_FLOAT, C_ENUM, C_MOD } cfg_kind;

typedef struct opt_def {
    const char *name;
    opt_type type;
    size_t off;
    const char *choices; /* "a|b|c" or NULL */
    const char *def;     /* the default, as it would be given (NULL: empty, 0) */
    int saved;           /* part of RUN/options.json */
    int resume_ok;       /* may be given with --resume */
    const char *arg, *help;
    opt_range range;
    double lo, hi;
    cfg_kind cfg;
    size_t cfg_off;
} opt_def;

#define OFF(f) offsetof(tr_opts, f)
#define CFG(kind, f) .cfg = kind, .cfg_off = offsetof(tr_config, f)
#define AT_LEAST(x) .range = R_GE, .lo = (x)

/* Defaults are given once, here; --help prints them. Fields left out of a
 * row (range, cfg) are zero: no range, no tr_config field. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const opt_def defs[] = {
    {"data", O_STR, OFF(data), NULL, NULL, 1, 1, "DIR", "ingested folder (index.json + shards) with train, test and optionally val splits (required)"},
    {"out", O_STR, OFF(out), NULL, NULL, 1, 0, "RUN", "output folder: metrics.jsonl, curves.svg, last.h5, best.h5, result.json, options.json, eval/ (best.h5 evaluated on test); with --eval: eval.json, predictions.tsv, confusion.svg (required)"},
    {"method", O_STR, OFF(method), tr_methods_choices + 1, "c2kd", 1, 0, "M", "distillation method (each one below; shake, review: docs/METHODS.md)", CFG(C_ENUM, method)},
    {"pretrain", O_FLAG, OFF(pretrain), NULL, NULL, 1, 0, NULL, "train the teacher network alone with CE (its best-validation checkpoint is RUN/best.h5)", CFG(C_INT, pretrain)},
    {"teacher-ckpt", O_STR, OFF(teacher_ckpt), NULL, NULL, 1, 0, "FILE", "load the teacher's weights (teacher/ group) from FILE, e.g. a --pretrain run's best.h5"},
    {"teacher-update", O_STR, OFF(teacher_update), "full|top|frozen", "full", 1, 0, "U", "what of the teacher is trained (top: layer4 + fc; frozen: nothing, eval mode)", CFG(C_ENUM, teacher_update)},
    {"student", O_STR, OFF(student), "visual|audio", "visual", 1, 0, "MOD", "student modality", CFG(C_MOD, student)},
    {"teacher", O_STR, OFF(teacher), "audio|visual", "audio", 1, 0, "MOD", "teacher modality", CFG(C_MOD, teacher)},
    {"lambda1", O_DBL, OFF(lambda1), NULL, "1", 1, 0, "X", "c2kd weight of teacher<->teacher-proxy KL", CFG(C_FLOAT, lambda1)},
    {"lambda2", O_DBL, OFF(lambda2), NULL, "1", 1, 0, "X", "c2kd weight of student<->student-proxy KL", CFG(C_FLOAT, lambda2)},
    {"lambda3", O_DBL, OFF(lambda3), NULL, "1", 1, 0, "X", "c2kd weight of proxy<->proxy non-target KL", CFG(C_FLOAT, lambda3)},
    {"omega", O_DBL, OFF(omega), NULL, "0", 1, 0, "X", "selection threshold: keep a sample when Kendall tau > omega", CFG(C_FLOAT, omega)},
    {"kd-temp", O_DBL, OFF(kd_temp), NULL, "4", 1, 0, "T", "KD temperature", CFG(C_FLOAT, kd_temp)},
    {"nkd-gamma", O_DBL, OFF(nkd_gamma), NULL, "1.5", 1, 0, "G", "NKD gamma", CFG(C_FLOAT, nkd_gamma)},
    {"nkd-temp", O_DBL, OFF(nkd_temp), NULL, "1", 1, 0, "T", "NKD temperature lambda", CFG(C_FLOAT, nkd_temp)},
    {"proxy", O_STR, OFF(proxy), "fa|none|cfa", "fa", 1, 0, "P", "proxy head (fa: pool, 1x1 conv, BN, LeakyReLU, linear)", CFG(C_ENUM, proxy)},
    {"depth", O_INT, OFF(depth), "18|50", "18", 1, 0, "D", "ResNet depth of both networks, 18 or 50", CFG(C_INT, depth)},
    {"student-depth", O_INT, OFF(student_depth), "0|18|50", NULL, 1, 0, "D", "the student's ResNet depth (0: --depth)", CFG(C_INT, student_depth)},
    {"teacher-depth", O_INT, OFF(teacher_depth), "0|18|50", NULL, 1, 0, "D", "the teacher's ResNet depth (0: --depth)", CFG(C_INT, teacher_depth)},
    {"width", O_INT, OFF(width), NULL, "64", 1, 0, "W", "base channels", AT_LEAST(1), CFG(C_INT, width)},
    {"visual-mode", O_STR, OFF(visual_mode), "auto|stack|fold", "auto", 1, 0, "V", "frames stacked on channels or folded into the batch (auto: fold when F > 1)"},
    {"image-size", O_INT, OFF(image_size), NULL, "224", 1, 0, "S", "side of the network's input frames", AT_LEAST(8), CFG(C_INT, image_size)},
    {"epochs", O_INT, OFF(epochs), NULL, "100", 1, 1, "N", "epochs; with --resume a larger N extends the run (saved in its options.json): the poly schedule is recomputed for the new total from the first epoch not yet trained on, lr(e) = 1e-4 + (lr - 1e-4)(1 - e/N)^0.9; the epochs already trained keep the rates they had", AT_LEAST(1)},
    {"batch-size", O_INT, OFF(batch_size), NULL, "64", 1, 0, "B", "batch size, per rank under mpirun/srun; training drops the last partial batch. With N ranks each epoch's order (shuffled, or shard order with --no-shuffle) is cut to a multiple of N and rank r takes positions i with i mod N = r (DistributedSampler, drop_last)", AT_LEAST(1), CFG(C_INT, max_batch)},
    {"lr", O_DBL, OFF(lr), NULL, "0.01", 1, 0, "X", "initial learning rate", .range = R_GT, .lo = 0},
    {"schedule", O_STR, OFF(schedule), "poly|const", "poly", 1, 0, "S", "poly: lr = 1e-4 + (lr - 1e-4)(1 - e/epochs)^0.9 per epoch; const"},
    {"momentum", O_DBL, OFF(momentum), NULL, "0.9", 1, 0, "X", "SGD momentum", .range = R_UNIT_OPEN, .lo = 0, .hi = 1, CFG(C_FLOAT, momentum)},
    {"seed", O_LL, OFF(seed), NULL, "1", 1, 0, "N", "seed of the initialisation, the shuffle and the augmentation"},
    {"eval-from", O_INT, OFF(eval_from), NULL, "1", 1, 0, "E", "evaluate (and pick the best epoch) only after epochs >= E, counted from 1", AT_LEAST(0)},
    /* the authors' protocol (docs/METHOD.md, "Protocol"): tools/reproduce sets these */
    {"lr-horizon", O_INT, OFF(lr_horizon), NULL, "0", 1, 0, "N", "the poly schedule's horizon in epochs: lr = 1e-4 + (lr - 1e-4)(1 - e/N)^0.9, 1e-4 from epoch N on (0: --epochs; the authors' code: 100 whatever the epochs)", AT_LEAST(0)},
    {"best-tie", O_STR, OFF(best_tie), "first|last", "first", 1, 0, "T", "the best epoch among equal validation accuracies: the first or the last (the authors' distillation runs: last)"},
    {"spec-standardize", O_STR, OFF(spec_standardize), "auto|off", "auto", 1, 0, "S", "auto: each spectrogram standardised, (X - mean) / (std + 1e-9), unless the ingest recipe did it; off: used as stored (the authors' code)"},
    {"bad-samples", O_STR, OFF(bad_samples), "stop|skip", "stop", 1, 0, "B", "a bad sample (checksum mismatch, JPEG that does not decode): stop: exit 1 naming it; skip: report it once on stderr (each time in metrics.jsonl) and leave it out: in training its place takes the next good sample of the epoch's order (full batches), in evaluation it is dropped (accuracies over the good samples)"},
    {"no-augment", O_FLAG, OFF(no_augment), NULL, NULL, 1, 0, NULL, "training frames use the evaluation transform (resize, no crop or flip)"},
    {"no-shuffle", O_FLAG, OFF(no_shuffle), NULL, NULL, 1, 0, NULL, "training batches in shard order"},
    {"sync-bn", O_FLAG, OFF(sync_bn), NULL, NULL, 1, 0, NULL, "under mpirun/srun: batch norm in training with the statistics of the global batch, every rank's samples (PyTorch's SyncBatchNorm: per-channel sums all-reduced in the forward and backward pass); without it each rank uses its own batch's statistics (DDP's default). One process: the same as without, within float32 rounding", CFG(C_INT, sync_bn)},
    {"init", O_STR, OFF(init), NULL, NULL, 1, 0, "CKPT", "start from the weights in CKPT (fresh optimiser state)"},
    {"resume", O_STR, OFF(resume), NULL, NULL, 0, 1, "RUN", "continue RUN exactly (its options.json and last.h5); only --data, --epochs (to extend it), --steps, --threads, --loader-threads, --device, --checkpoint-every, --checkpoint-minutes and the CUDA options may be given too"},
    {"steps", O_INT, OFF(steps), NULL, "0", 0, 1, "N", "stop after N steps in all (a test aid; last.h5 is saved; 0: no limit)", AT_LEAST(0)},
    {"checkpoint-every", O_INT, OFF(checkpoint_every), NULL, "0", 0, 1, "N", "also save last.h5 every N steps (0: by time only); a killed run resumes from it", AT_LEAST(0)},
    {"checkpoint-minutes", O_DBL, OFF(checkpoint_minutes), NULL, "10", 0, 1, "M", "also save last.h5 when M minutes have passed since the last save (0: never by time)", AT_LEAST(0)},
    {"device", O_STR, OFF(device), "auto|cpu|cuda", "auto", 1, 1, "D", "backend (auto: CUDA when available, else the CPU with a notice)"},
    {"threads", O_INT, OFF(threads), NULL, "0", 1, 1, "N", "compute threads of the CPU backend (0: all cores)", AT_LEAST(0)},
    {"tf32", O_STR, OFF(tf32), "on|off", "on", 1, 1, "T", "CUDA: TF32 tensor cores in convolutions and matrix products (off: full float32)"},
    {"bn", O_STR, OFF(bn), "own|cudnn", "own", 1, 1, "BN", "CUDA: batch norm by the project's deterministic kernels or cuDNN's"},
    {"cudnn-workspace-mb", O_INT, OFF(cudnn_workspace_mb), NULL, "1024", 1, 1, "N", "CUDA: cap of the cuDNN convolution workspace in MiB", AT_LEAST(0)},
    {"cudnn-find", O_STR, OFF(cudnn_find), "on|off", "on", 1, 1, "F", "CUDA: time every convolution algorithm once per shape (off: cuDNN's heuristic choice)"},
    {"profile", O_FLAG, OFF(profile), NULL, NULL, 0, 1, NULL, "CUDA: time every op and the staged input copies; writes RUN/profile.md (slower)"},
    {"loader-threads", O_INT, OFF(loader_threads), NULL, "0", 0, 1, "N", "loader threads (JPEG decoding; 0: as the backend suggests: 2 on the CPU, 12 with a GPU, at most the cores)", AT_LEAST(0)},
    {"dump-batches", O_STR, OFF(dump_batches), NULL, NULL, 0, 1, "DIR", "write the first --dump-count prepared training batches as .npy into DIR (a test aid)"},
    {"dump-count", O_INT, OFF(dump_count), NULL, "-1", 0, 1, "N", "batches written by --dump-batches (-1: all)", AT_LEAST(-1)},
    {"teacher-init", O_STR, OFF(teacher_init), "checkpoint|random", "checkpoint", 1, 0, "I", "the teacher of a distillation method (every --method but none): checkpoint: from --teacher-ckpt (required); random: the random initialisation of --seed (for tests; distilling from it teaches nothing)"},
    {"eval", O_STR, OFF(eval), NULL, NULL, 0, 0, "CKPT", "evaluate the checkpoint CKPT (e.g. RUN/best.h5) on --split of --data instead of training; writes eval.json (top-1, top-5, per-class accuracy, confusion matrix), predictions.tsv and confusion.svg into --out"},
    {"split", O_STR, OFF(split), NULL, "test", 0, 0, "S", "with --eval: the split evaluated"},
    {"network", O_STR, OFF(network), "auto|student|teacher", "auto", 0, 0, "N", "with --eval: the network evaluated (auto: the one the checkpoint's run trained: the teacher of a --pretrain run, else the student)"},
    {"version", O_FLAG, OFF(version), NULL, NULL, 0, 1, NULL, "print the version and the git revision it was built from"},
    {"force", O_FLAG, OFF(force), NULL, NULL, 0, 0, NULL, "allow --out to name a folder that already holds a run (its files are replaced)"},
    {"help", O_FLAG, OFF(help), NULL, NULL, 0, 1, NULL, "this help"},
};
#pragma GCC diagnostic pop
#define NDEFS (sizeof defs / sizeof *defs)

static const opt_def *find(const char *name)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (strcmp(defs[i].name, name) == 0)
            return &defs[i];
    return NULL;
}

/* Index of v in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *v)
{
    size_t n = strlen(v);
    int k = 0;
    for (const char *p = choices; *p; k++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return k;
        if (!e)
            break;
        p = e + 1;
    }
    return -1;
}

static void *field_of(tr_opts *o, const opt_def *d)
{
    return (char *)o + d->off;
}

static const void *cfield_of(const tr_opts *o, const opt_def *d)
{
    return (const char *)o + d->off;
}

static int set_value(tr_opts *o, const opt_def *d, const char *v, cm_err *err)
{
    char *end = NULL;
    void *field = field_of(o, d);
    if (d->choices && choice_index(d->choices, v) < 0)
        return cm_err_set(err, "--%s: \"%s\" is not one of %s", d->name, v, d->choices);
    errno = 0;
    switch (d->type) {
    case O_STR:
        *(const char **)field = v;
        return 0;
    case O_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < -1000000000L || x > 1000000000L)
            return cm_err_set(err, "--%s: \"%s\" is not an integer", d->name, v);
        *(int *)field = (int)x;
        return 0;
    }
    case O_LL: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return cm_err_set(err, "--%s: \"%s\" is not an integer", d->name, v);
        *(long long *)field = x;
        return 0;
    }
    case O_DBL: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return cm_err_set(err, "--%s: \"%s\" is not a finite number", d->name, v);
        *(double *)field = x;
        return 0;
    }
    case O_FLAG:
        *(int *)field = 1;
        return 0;
    }
    return 0;
}

void tr_opts_default(tr_opts *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < NDEFS; i++)
        if (defs[i].def)
            set_value(o, &defs[i], defs[i].def, NULL); /* the table's defaults are valid */
}

/* One argument: --name, --name=value or --name value (consumes argv[*i + 1]). */
static int parse_one(tr_opts *o, int argc, char **argv, int *i, const opt_def **out, cm_err *err)
{
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0)
        a = "--help";
    if (strncmp(a, "--", 2) != 0)
        return cm_err_set(err, "unexpected argument \"%s\"", a);
    char name[64];
    const char *eq = strchr(a + 2, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (len >= sizeof name)
        len = sizeof name - 1;
    memcpy(name, a + 2, len);
    name[len] = 0;
    const opt_def *d = find(name);
    if (!d)
        return cm_err_set(err, "unknown option --%s", name);
    const char *v = NULL;
    if (d->type != O_FLAG) {
        if (eq)
            v = eq + 1;
        else if (*i + 1 < argc)
            v = argv[++*i];
        else
            return cm_err_set(err, "--%s needs a value", name);
    } else if (eq) {
        return cm_err_set(err, "--%s takes no value", name);
    }
    *out = d;
    return set_value(o, d, v ? v : "", err);
}

int tr_opts_parse(tr_opts *o, int argc, char **argv, char ***given, cm_err *err)
{
    char **g = calloc((size_t)argc + 1, sizeof *g);
    int ng = 0;
    if (given)
        *given = NULL;
    if (!g)
        return cm_err_set(err, "out of memory");
    for (int i = 1; i < argc; i++) {
        const opt_def *d = NULL;
        if (parse_one(o, argc, argv, &i, &d, err) != 0) {
            free(g);
            return -1;
        }
        g[ng++] = (char *)d->name;
    }
    if (given)
        *given = g;
    else
        free(g);
    return 0;
}

void tr_opts_help(FILE *f)
{
    fprintf(f, "usage: train --data DIR --out RUN [options]\n"
               "       train --resume RUN [--epochs N] [--steps N] [--threads N] [--device D]\n"
               "       train --eval CKPT --data DIR --out EVALDIR [--split test] [--network auto]\n"
               "       train --version\n\n"
               "Trains a cross-modal distillation run (C2KD, KD, NKD, ReviewKD, SHAKE or no KD) or pretrains a\n"
               "teacher on the shards of an ingested folder. Evaluates on val and test after\n"
               "every epoch (test serves as val when there is no val split); the result is\n"
               "the test top-1 at the best validation epoch.\n\noptions:\n");
    for (size_t i = 0; i < NDEFS; i++) {
        const opt_def *d = &defs[i];
        char left[64];
        /* an option with a fixed set of values shows them in place of its placeholder */
        const char *arg = d->choices ? d->choices : d->arg;
        snprintf(left, sizeof left, "--%s%s%s", d->name, arg ? " " : "", arg ? arg : "");
        if (strlen(left) > 24)
            fprintf(f, "  %s\n  %-24s %s", left, "", d->help);
        else
            fprintf(f, "  %-24s %s", left, d->help);
        fprintf(f, d->def ? " (default %s)\n" : "\n", d->def);
    }
    fprintf(f, "\nmethods (--method; --pretrain trains the teacher alone):\n");
    for (int i = 0; i < tr_methods_options(); i++) {
        const char *name = NULL;
        const tr_method_def *m = tr_methods_row(i, &name);
        fprintf(f, "  %-24s %s\n", name, m->help);
    }
    fprintf(f, "\ndata parallel: `mpirun -np N train ...` or `srun train ...` runs N ranks (docs/DISTRIBUTED.md);\n"
               "a plain run loads no MPI. Launcher-level settings, read from the environment by every rank:\n"
               "  C2KD_DIST_TIMEOUT=S    end every rank when a collective has not finished after S seconds (600)\n"
               "  C2KD_DIST_OVERLAP=0    average gradients after the whole backward pass (default: overlapped)\n"
               "  C2KD_DIST=0            ignore the launcher (each process trains alone)\n"
               "  C2KD_DIST_PLUGIN=PATH  the MPI/NCCL plugin (default: ../lib/c2kd_collective.so from the binary)\n");
    fprintf(f, "\nexit status: 0 done, 1 failed (bad data, checkpoint, non-finite loss), 2 usage error\n");
}

static double number_of(const tr_opts *o, const opt_def *d)
{
    const void *field = cfield_of(o, d);
    switch (d->type) {
    case O_INT:
    case O_FLAG:
        return *(const int *)field;
    case O_LL:
        return (double)*(const long long *)field;
    case O_DBL:
        return *(const double *)field;
    default:
        return 0;
    }
}

int tr_opts_check(const tr_opts *o, cm_err *err)
{
    if (!o->data)
        return cm_err_set(err, "--data DIR is required");
    if (!o->out)
        return cm_err_set(err, "--out RUN is required");
    for (size_t i = 0; i < NDEFS; i++) {
        const opt_def *d = &defs[i];
        double v = number_of(o, d);
        if (d->range == R_GE && !(v >= d->lo))
            return cm_err_set(err, "--%s must be >= %g (got %g)", d->name, d->lo, v);
        if (d->range == R_GT && !(v > d->lo))
            return cm_err_set(err, "--%s must be > %g (got %g)", d->name, d->lo, v);
        if (d->range == R_UNIT_OPEN && !(v >= d->lo && v < d->hi))
            return cm_err_set(err, "--%s must be in [%g, %g) (got %g)", d->name, d->lo, d->hi, v);
    }
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
        const opt_def *d = &defs[i];
        if (!d->saved)
            continue;
        if (d->type == O_STR) {
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
static int restore_one(tr_opts *o, const opt_def *d, const cJSON *v, cm_err *err)
{
    void *field = field_of(o, d);
    if (d->type == O_STR) {
        if (cJSON_IsNull(v)) {
            *(const char **)field = NULL;
            return 0;
        }
        if (!cJSON_IsString(v) || (d->choices && choice_index(d->choices, v->valuestring) < 0))
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
    if (d->type == O_DBL) {
        *(double *)field = x;
        return 0;
    }
    double lim = d->type == O_LL ? 9007199254740992.0 : d->type == O_FLAG ? 1 : 1e9;
    if (x != floor(x) || x < (d->type == O_FLAG ? 0 : -lim) || x > lim)
        return cm_err_set(err, "option \"%s\": %g is not %s", d->name, x, d->type == O_FLAG ? "0 or 1" : "an integer in range");
    char text[32];
    snprintf(text, sizeof text, "%.0f", x);
    if (d->choices && choice_index(d->choices, text) < 0)
        return cm_err_set(err, "option \"%s\": %s is not one of %s", d->name, text, d->choices);
    if (d->type == O_LL)
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
        const cJSON *v = defs[i].saved ? cJSON_GetObjectItemCaseSensitive(j, defs[i].name) : NULL;
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
    const opt_def *d = find(name);
    return d && d->resume_ok;
}

static size_t value_size(opt_type t)
{
    return t == O_STR ? sizeof(const char *) : t == O_LL ? sizeof(long long) : t == O_DBL ? sizeof(double) : sizeof(int);
}

void tr_opts_apply(tr_opts *dst, const tr_opts *src, char **given)
{
    for (char **g = given; g && *g; g++) {
        const opt_def *d = find(*g);
        if (d)
            memcpy(field_of(dst, d), cfield_of(src, d), value_size(d->type));
    }
}

void tr_opts_config(const tr_opts *o, tr_config *c)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const opt_def *d = &defs[i];
        void *f = (char *)c + d->cfg_off;
        const char *s = d->type == O_STR ? *(const char *const *)cfield_of(o, d) : NULL;
        switch (d->cfg) {
        case C_NONE:
            break;
        case C_INT:
            *(int *)f = (int)number_of(o, d);
            break;
        case C_FLOAT:
            *(float *)f = (float)number_of(o, d);
            break;
        case C_ENUM: /* each enum lists its values in the order of the option's choices */
            *(int *)f = s ? choice_index(d->choices, s) : 0;
            break;
        case C_MOD:
            *(tr_modality *)f = s && strcmp(s, "audio") == 0 ? TR_AUDIO : TR_VISUAL;
            break;
        }
    }
}
