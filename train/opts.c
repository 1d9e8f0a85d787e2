/* opts: the option table of `train`. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "train/opts.h"

typedef enum { O_STR, O_INT, O_LL, O_DBL, O_FLAG } opt_type;

typedef struct opt_def {
    const char *name;
    opt_type type;
    size_t off;
    const char *choices; /* "a|b|c" or NULL */
    int saved;           /* part of RUN/options.json */
    int resume_ok;       /* may be given with --resume */
    const char *arg, *help;
} opt_def;

#define OFF(f) offsetof(tr_opts, f)

static const opt_def defs[] = {
    {"data", O_STR, OFF(data), NULL, 1, 1, "DIR", "ingested folder (index.json + shards) with train, test and optionally val splits (required)"},
    {"out", O_STR, OFF(out), NULL, 1, 0, "RUN", "output folder: metrics.jsonl, curves.svg, last.h5, best.h5, result.json, options.json (required)"},
    {"method", O_STR, OFF(method), "none|kd|nkd|c2kd", 1, 0, "M", "distillation method (default c2kd)"},
    {"pretrain", O_FLAG, OFF(pretrain), NULL, 1, 0, NULL, "train the teacher network alone with CE (its best-validation checkpoint is RUN/best.h5)"},
    {"teacher-ckpt", O_STR, OFF(teacher_ckpt), NULL, 1, 0, "FILE", "load the teacher's weights (teacher/ group) from FILE, e.g. a --pretrain run's best.h5"},
    {"teacher-update", O_STR, OFF(teacher_update), "full|top|frozen", 1, 0, "U", "what of the teacher is trained (default full; top: layer4 + fc; frozen: nothing, eval mode)"},
    {"student", O_STR, OFF(student), "visual|audio", 1, 0, "MOD", "student modality (default visual)"},
    {"teacher", O_STR, OFF(teacher), "audio|visual", 1, 0, "MOD", "teacher modality (default audio)"},
    {"lambda1", O_DBL, OFF(lambda1), NULL, 1, 0, "X", "c2kd weight of teacher<->teacher-proxy KL (1)"},
    {"lambda2", O_DBL, OFF(lambda2), NULL, 1, 0, "X", "c2kd weight of student<->student-proxy KL (1)"},
    {"lambda3", O_DBL, OFF(lambda3), NULL, 1, 0, "X", "c2kd weight of proxy<->proxy non-target KL (1)"},
    {"omega", O_DBL, OFF(omega), NULL, 1, 0, "X", "selection threshold: keep a sample when Kendall tau > omega (0)"},
    {"kd-temp", O_DBL, OFF(kd_temp), NULL, 1, 0, "T", "KD temperature (4)"},
    {"nkd-gamma", O_DBL, OFF(nkd_gamma), NULL, 1, 0, "G", "NKD gamma (1.5)"},
    {"nkd-temp", O_DBL, OFF(nkd_temp), NULL, 1, 0, "T", "NKD temperature lambda (1)"},
    {"proxy", O_STR, OFF(proxy), "fa|none|cfa", 1, 0, "P", "proxy head (default fa: pool, 1x1 conv, BN, LeakyReLU, linear)"},
    {"depth", O_INT, OFF(depth), "18|50", 1, 0, "D", "ResNet depth, 18 or 50 (18)"},
    {"width", O_INT, OFF(width), NULL, 1, 0, "W", "base channels (64)"},
    {"visual-mode", O_STR, OFF(visual_mode), "auto|stack|fold", 1, 0, "V", "frames stacked on channels or folded into the batch (auto: fold when F > 1)"},
    {"image-size", O_INT, OFF(image_size), NULL, 1, 0, "S", "side of the network's input frames (224)"},
    {"epochs", O_INT, OFF(epochs), NULL, 1, 0, "N", "epochs (100)"},
    {"batch-size", O_INT, OFF(batch_size), NULL, 1, 0, "B", "batch size (64), per rank under mpirun/srun; training drops the last partial batch. With N ranks each epoch's order (shuffled, or shard order with --no-shuffle) is cut to a multiple of N and rank r takes positions i with i mod N = r (DistributedSampler, drop_last)"},
    {"lr", O_DBL, OFF(lr), NULL, 1, 0, "X", "initial learning rate (0.01)"},
    {"schedule", O_STR, OFF(schedule), "poly|const", 1, 0, "S", "poly: lr = 1e-4 + (lr - 1e-4)(1 - e/epochs)^0.9 per epoch (default); const"},
    {"momentum", O_DBL, OFF(momentum), NULL, 1, 0, "X", "SGD momentum (0.9)"},
    {"seed", O_LL, OFF(seed), NULL, 1, 0, "N", "seed of the initialisation, the shuffle and the augmentation (1)"},
    {"eval-from", O_INT, OFF(eval_from), NULL, 1, 0, "E", "evaluate (and pick the best epoch) only after epochs >= E, counted from 1 (1)"},
    {"no-augment", O_FLAG, OFF(no_augment), NULL, 1, 0, NULL, "training frames use the evaluation transform (resize, no crop or flip)"},
    {"no-shuffle", O_FLAG, OFF(no_shuffle), NULL, 1, 0, NULL, "training batches in shard order"},
    {"init", O_STR, OFF(init), NULL, 1, 0, "CKPT", "start from the weights in CKPT (fresh optimiser state)"},
    {"resume", O_STR, OFF(resume), NULL, 0, 1, "RUN", "continue RUN exactly (its options.json and last.h5); only --data, --steps, --threads, --loader-threads, --device and the CUDA options may be given too"},
    {"steps", O_INT, OFF(steps), NULL, 0, 1, "N", "stop after N steps in all (a test aid; last.h5 is saved)"},
    {"device", O_STR, OFF(device), "auto|cpu|cuda", 1, 1, "D", "backend (auto: CUDA when available, else the CPU with a notice)"},
    {"threads", O_INT, OFF(threads), NULL, 1, 1, "N", "compute threads of the CPU backend (0: all cores)"},
    {"tf32", O_STR, OFF(tf32), "on|off", 1, 1, "T", "CUDA: TF32 tensor cores in convolutions and matrix products (default on; off: full float32)"},
    {"bn", O_STR, OFF(bn), "own|cudnn", 1, 1, "BN", "CUDA: batch norm by the project's deterministic kernels (default own) or cuDNN's"},
    {"cudnn-workspace-mb", O_INT, OFF(cudnn_workspace_mb), NULL, 1, 1, "N", "CUDA: cap of the cuDNN convolution workspace in MiB (1024)"},
    {"cudnn-find", O_STR, OFF(cudnn_find), "on|off", 1, 1, "F", "CUDA: time every convolution algorithm once per shape (default on; off: cuDNN's heuristic choice)"},
    {"profile", O_FLAG, OFF(profile), NULL, 0, 1, NULL, "CUDA: time every op and the staged input copies; writes RUN/profile.md (slower)"},
    {"loader-threads", O_INT, OFF(loader_threads), NULL, 0, 1, "N", "loader threads (JPEG decoding; 0: as the backend suggests: 2 on the CPU, 12 with a GPU, at most the cores)"},
    {"dump-batches", O_STR, OFF(dump_batches), NULL, 0, 1, "DIR", "write the first --dump-count prepared training batches as .npy into DIR (a test aid)"},
    {"dump-count", O_INT, OFF(dump_count), NULL, 0, 1, "N", "batches written by --dump-batches (all)"},
    {"force", O_FLAG, OFF(force), NULL, 0, 0, NULL, "allow --out to name a folder that already holds a run (its files are replaced)"},
    {"help", O_FLAG, OFF(help), NULL, 0, 1, NULL, "this help"},
};
#define NDEFS (sizeof defs / sizeof *defs)

void tr_opts_default(tr_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = "c2kd";
    o->teacher_update = "full";
    o->student = "visual";
    o->teacher = "audio";
    o->proxy = "fa";
    o->visual_mode = "auto";
    o->schedule = "poly";
    o->device = "auto";
    o->depth = 18;
    o->width = 64;
    o->epochs = 100;
    o->batch_size = 64;
    o->eval_from = 1;
    o->image_size = 224;
    o->seed = 1;
    o->lambda1 = o->lambda2 = o->lambda3 = 1;
    o->omega = 0;
    o->kd_temp = 4;
    o->nkd_gamma = 1.5;
    o->nkd_temp = 1;
    o->lr = 0.01;
    o->momentum = 0.9;
    o->dump_count = -1;
    o->tf32 = "on";
    o->bn = "own";
    o->cudnn_find = "on";
    o->cudnn_workspace_mb = 1024;
}

static const opt_def *find(const char *name)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (strcmp(defs[i].name, name) == 0)
            return &defs[i];
    return NULL;
}

static int in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int set_value(tr_opts *o, const opt_def *d, const char *v, cm_err *err)
{
    char *end = NULL;
    void *field = (char *)o + d->off;
    if (d->choices && !in_choices(d->choices, v))
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
        if (!*v || *end || errno)
            return cm_err_set(err, "--%s: \"%s\" is not a number", d->name, v);
        *(double *)field = x;
        return 0;
    }
    case O_FLAG:
        *(int *)field = 1;
        return 0;
    }
    return 0;
}

int tr_opts_parse(tr_opts *o, int argc, char **argv, char ***given, cm_err *err)
{
    char **g = calloc((size_t)argc + 1, sizeof *g);
    int ng = 0;
    if (given)
        *given = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0)
            a = "--help";
        if (strncmp(a, "--", 2) != 0) {
            free(g);
            return cm_err_set(err, "unexpected argument \"%s\"", a);
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, a + 2, len);
        name[len] = 0;
        const opt_def *d = find(name);
        if (!d) {
            free(g);
            return cm_err_set(err, "unknown option --%s", name);
        }
        const char *v = NULL;
        if (d->type != O_FLAG) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else {
                free(g);
                return cm_err_set(err, "--%s needs a value", name);
            }
        } else if (eq) {
            free(g);
            return cm_err_set(err, "--%s takes no value", name);
        }
        if (set_value(o, d, v ? v : "", err) != 0) {
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
               "       train --resume RUN [--steps N] [--threads N] [--device D]\n\n"
               "Trains a cross-modal distillation run (C2KD, KD, NKD or no KD) or pretrains a\n"
               "teacher on the shards of an ingested folder. Evaluates on val and test after\n"
               "every epoch (test serves as val when there is no val split); the result is\n"
               "the test top-1 at the best validation epoch.\n\noptions:\n");
    for (size_t i = 0; i < NDEFS; i++) {
        char left[64];
        /* an option with a fixed set of values shows them in place of its placeholder */
        const char *arg = defs[i].choices ? defs[i].choices : defs[i].arg;
        snprintf(left, sizeof left, "--%s%s%s", defs[i].name, arg ? " " : "", arg ? arg : "");
        if (strlen(left) > 24)
            fprintf(f, "  %s\n  %-24s %s\n", left, "", defs[i].help);
        else
            fprintf(f, "  %-24s %s\n", left, defs[i].help);
    }
    fprintf(f, "\nexit status: 0 done, 1 failed (bad data, checkpoint, non-finite loss), 2 usage error\n");
}

char *tr_opts_to_json(const tr_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; i < NDEFS; i++) {
        const opt_def *d = &defs[i];
        if (!d->saved)
            continue;
        const void *field = (const char *)o + d->off;
        switch (d->type) {
        case O_STR: {
            const char *s = *(const char *const *)field;
            if (s)
                cJSON_AddStringToObject(j, d->name, s);
            else
                cJSON_AddNullToObject(j, d->name);
            break;
        }
        case O_INT:
        case O_FLAG:
            cJSON_AddNumberToObject(j, d->name, *(const int *)field);
            break;
        case O_LL:
            cJSON_AddNumberToObject(j, d->name, (double)*(const long long *)field);
            break;
        case O_DBL:
            cJSON_AddNumberToObject(j, d->name, *(const double *)field);
            break;
        }
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

int tr_opts_from_json(tr_opts *o, const char *json, cm_err *err)
{
    cJSON *j = cJSON_Parse(json);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cm_err_set(err, "not a JSON object");
    }
    for (size_t i = 0; i < NDEFS; i++) {
        const opt_def *d = &defs[i];
        if (!d->saved)
            continue;
        cJSON *v = cJSON_GetObjectItemCaseSensitive(j, d->name);
        if (!v)
            continue;
        void *field = (char *)o + d->off;
        if (d->type == O_STR) {
            if (cJSON_IsNull(v))
                *(const char **)field = NULL;
            else if (cJSON_IsString(v) && o->n_owned < (int)(sizeof o->owned / sizeof *o->owned)) {
                char *c = strdup(v->valuestring);
                o->owned[o->n_owned++] = c;
                *(const char **)field = c;
            } else
                goto bad;
            continue;
        }
        if (!cJSON_IsNumber(v))
            goto bad;
        if (d->type == O_INT || d->type == O_FLAG)
            *(int *)field = (int)v->valuedouble;
        else if (d->type == O_LL)
            *(long long *)field = (long long)v->valuedouble;
        else
            *(double *)field = v->valuedouble;
        continue;
    bad:
        cJSON_Delete(j);
        return cm_err_set(err, "option \"%s\" has the wrong type", d->name);
    }
    cJSON_Delete(j);
    return 0;
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

void tr_opts_apply(tr_opts *dst, const tr_opts *src, char **given)
{
    for (char **g = given; g && *g; g++) {
        const opt_def *d = find(*g);
        if (!d)
            continue;
        size_t sz = d->type == O_STR ? sizeof(const char *)
                  : d->type == O_LL  ? sizeof(long long)
                  : d->type == O_DBL ? sizeof(double)
                                     : sizeof(int);
        memcpy((char *)dst + d->off, (const char *)src + d->off, sz);
    }
}
