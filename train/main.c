/* train: the command, a run in phases (main reads them in order):
 *   options      argv, or RUN/options.json on --resume; usage checks
 *   inputs       the splits of --data, and the checkpoints' data identity
 *   configure    backend, networks (train/system.h), checkpoints, loaders
 *                (train/loader*.c), output folder and metrics log
 *   epochs       the training loop; a checkpoint at each epoch end, every
 *                --checkpoint-every steps and every --checkpoint-minutes
 *   evaluate     val and test after each epoch, the best epoch
 *   finish       the plot (train/plot.c), result.json and the summary
 *
 * Every input (options, shards of every split, checkpoints) is checked
 * before anything is written under --out, so a bad input never damages an
 * earlier run's files.
 *
 * Data parallel (docs/DISTRIBUTED.md): under mpirun/srun every rank runs the
 * same phases on its share of the data (ld_opts rank/world); the step
 * averages gradients over ranks (train/ddp.c), evaluation counts are
 * summed over ranks, and only rank 0 (`lead`) writes under --out. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/cm_err.h"
#include "common/cm_file.h"
#include "common/cm_npy.h"
#include "common/cm_pool.h"
#include "common/cm_progress.h"
#include "common/cm_version.h"
#include "train/eval.h"
#include "h5/h5.h"
#include "store/st_index.h"
#include "train/loader.h"
#include "train/methods.h"
#include "train/metrics.h"
#include "train/opts.h"
#include "train/plot.h"
#include "train/profile.h"
#include "train/system.h"
#include "train/world.h"

#define TOOL "train"
#define TR_OPTIONS_MAX ((size_t)1 << 20) /* bytes of RUN/options.json */

/* A phase's answer: go on, or the exit status. */
enum { GO_ON = -1, EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

typedef struct tr_run {
    cl_comm *comm;     /* the ranks (a world of 1 without a launcher) */
    int rank, world;
    int lead;          /* rank 0: the one that writes outputs */
    tr_opts op;        /* from argv, or RUN/options.json with argv's overrides on --resume */
    char *opts_text;   /* RUN/options.json as read (--resume) */
    int resuming;
    int from_last;     /* resuming from RUN/last.h5 (absent: a run killed before its first checkpoint) */
    /* inputs */
    ld_data *train, *val, *test; /* val == test when there is no val split */
    int has_val;
    char *identity;    /* of the data, saved in checkpoints */
    char last_path[CM_PATH_MAX], best_path[CM_PATH_MAX], metrics_path[CM_PATH_MAX], svg_path[CM_PATH_MAX],
        result_path[CM_PATH_MAX];
    /* configured */
    be_ctx *be;
    tr_config cfg;
    tr_system *sys;
    ld_loader *ltrain, *lval, *ltest; /* ltest == lval without a val split */
    ld_device *dv;
    float *zs, *zt;    /* logits of one evaluation batch [batch, classes] (host) */
    ev_pass *evs, *evt; /* the student's / the teacher's evaluation pass (NULL: not evaluated) */
    double *per_class; /* [4 * classes]: val/test accuracies per class of the student, the teacher */
    size_t nb;         /* training steps per epoch */
    int eval_s, eval_t; /* the student / the teacher is evaluated */
    mt_log *mt;
    cm_progress *prog;
    st_lock *lock;     /* the run folder's (lead only): one train at a time writes it */
    /* where it stands */
    tr_position pos;
    tr_rng rng;        /* the loader's stream */
    uint64_t epoch_rng[4]; /* its state at the start of the current epoch */
    double saved_at;   /* cm_now() of the last checkpoint (or of the start) */
    int stopped;       /* --steps reached */
    double last_val_s, last_test_s, last_val_t, last_test_t;
    double epoch_t0;    /* cm_now() when this process started the current epoch's training */
    int64_t epoch_step0; /* the step then */
    int extend;         /* --resume with --epochs: options.json gets the new count */
    ld_opts eval_lo;    /* the evaluation loaders' options */
    const ev_pass *final; /* RUN/eval/'s pass (the plot's confusion panel); NULL: none */
    int quiet_bad;      /* the end-of-run evaluation: bad samples were reported by the epochs' */
} tr_run;

static int usage_error(const char *msg)
{
    fprintf(stderr, TOOL ": %s\n", msg); /* the shape of every command's usage errors (common/cm_opts.h) */
    return EXIT_USAGE;
}

static int fail(const char *what, const char *msg)
{
    if (what)
        fprintf(stderr, TOOL ": %s: %s\n", what, msg);
    else
        fprintf(stderr, TOOL ": %s\n", msg);
    return EXIT_FAILED;
}

/* fail() for a split of the data: "DATA: split NAME: msg". */
static int fail_split(const tr_run *r, const char *split, const char *msg)
{
    char what[CM_PATH_MAX + 32];
    snprintf(what, sizeof what, "%s: split %s", r->op.data, split);
    return fail(what, msg);
}

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static double lr_at(const tr_opts *o, int epoch)
{
    if (strcmp(o->schedule, "const") == 0)
        return o->lr;
    double f = 1.0 - (double)epoch / (double)(o->lr_horizon > 0 ? o->lr_horizon : o->epochs);
    if (f < 0)
        f = 0;
    return 1e-4 + (o->lr - 1e-4) * pow(f, 0.9);
}

/* ================================================================ options */

/* --resume RUN: RUN/options.json, with the options argv may override. */
static int resume_options(tr_run *r, const tr_opts *cl, char **given)
{
    cm_err err = {{0}};
    for (char **g = given; *g; g++)
        if (!tr_opts_resume_override(*g)) {
            snprintf(err.msg, sizeof err.msg, "--%s cannot be given with --resume (the run's options.json holds it)", *g);
            return usage_error(err.msg);
        }
    char path[CM_PATH_MAX];
    path_in(path, sizeof path, cl->resume, "options.json");
    size_t n = 0;
    if (cm_read_regular(path, TR_OPTIONS_MAX, &r->opts_text, &n, &err) != 0) {
        cm_err_prefix(&err, "not a run folder (no readable options.json)");
        return fail(cl->resume, err.msg);
    }
    tr_opts_default(&r->op);
    if (tr_opts_from_json(&r->op, r->opts_text, &err) != 0)
        return fail(path, err.msg);
    r->op.out = cl->resume;
    r->op.resume = cl->resume;
    if (tr_opts_check(&r->op, &err) != 0) /* the file's own values */
        return fail(path, err.msg);
    int old_epochs = r->op.epochs;
    tr_opts_apply(&r->op, cl, given);
    if (tr_opts_check(&r->op, &err) != 0) /* with the overrides */
        return usage_error(err.msg);
    r->extend = r->op.epochs != old_epochs;
    return GO_ON;
}

/* A distillation method: the student learns from a teacher. */
static int needs_teacher(const tr_opts *o)
{
    const tr_method_def *m = tr_methods_find(o->method);
    return !o->pretrain && m && m->teacher;
}

static int run_options(tr_run *r, int argc, char **argv)
{
    tr_opts cl;
    tr_opts_default(&cl);
    cm_err err = {{0}};
    char **given = NULL;
    if (tr_opts_parse(&cl, argc, argv, &given, &err) != 0)
        return usage_error(err.msg);
    int rc = GO_ON;
    r->resuming = cl.resume != NULL;
    if (cl.help) {
        if (r->lead)
            tr_opts_help(stdout);
        rc = EXIT_DONE;
    } else if (cl.version) {
        if (r->lead)
            tr_opts_version(stdout);
        rc = EXIT_DONE;
    } else if (r->resuming) {
        rc = resume_options(r, &cl, given);
    } else {
        r->op = cl;
        if (tr_opts_check(&r->op, &err) != 0)
            rc = usage_error(err.msg);
        else if (!r->op.eval && needs_teacher(&r->op) && !r->op.teacher_ckpt && !r->op.init &&
                 strcmp(r->op.teacher_init, "random") != 0) {
            snprintf(err.msg, sizeof err.msg,
                     "--method %s distils from a teacher: give --teacher-ckpt FILE (e.g. a --pretrain run's best.h5), "
                     "or --teacher-init random to distil from an untrained one", r->op.method);
            rc = usage_error(err.msg);
        }
    }
    free(given);
    r->op.quiet = cl.quiet; /* this invocation's console, also on --resume */
    r->op.verbose = cl.verbose;
    if (rc != GO_ON)
        return rc;
    const tr_opts *op = &r->op;
    path_in(r->last_path, sizeof r->last_path, op->out, "last.h5");
    path_in(r->best_path, sizeof r->best_path, op->out, "best.h5");
    path_in(r->metrics_path, sizeof r->metrics_path, op->out, "metrics.jsonl");
    path_in(r->svg_path, sizeof r->svg_path, op->out, "curves.svg");
    path_in(r->result_path, sizeof r->result_path, op->out, "result.json");
    r->from_last = r->resuming && cm_is_file(r->last_path);
    if (!r->resuming && !op->eval && !op->force && r->lead) {
        char opts_path[CM_PATH_MAX];
        path_in(opts_path, sizeof opts_path, op->out, "options.json");
        if (cm_is_file(r->last_path) || cm_is_file(opts_path)) {
            snprintf(err.msg, sizeof err.msg,
                     "%s already holds a run (continue it with --resume %s, or give --force to replace it)", op->out, op->out);
            return usage_error(err.msg);
        }
    }
    return GO_ON;
}

/* ================================================================ inputs */

static int open_splits(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    if (!(r->train = ld_data_open(op->data, "train", &err)))
        return fail_split(r, "train", err.msg);
    r->has_val = ld_split_exists(op->data, "val");
    if (!(r->test = ld_data_open(op->data, "test", &err)))
        return fail_split(r, "test", err.msg);
    r->val = r->has_val ? ld_data_open(op->data, "val", &err) : r->test;
    if (!r->val)
        return fail_split(r, "val", err.msg);
    const char *names[3] = {"val", "test", "train"};
    ld_data *sets[3] = {r->val, r->test, r->train};
    for (int k = r->has_val ? 0 : 1; k < 3; k++)
        if (ld_data_count(sets[k]) == 0)
            return fail_split(r, names[k], "empty split (no samples)");
    for (int k = r->has_val ? 0 : 1; k < 2; k++)
        if (ld_data_compatible(r->train, sets[k], &err) != 0) {
            cm_err_prefix(&err, "does not match split train");
            return fail_split(r, names[k], err.msg);
        }
    if (ld_data_count(r->train) / (size_t)r->world < (size_t)op->batch_size) {
        if (r->world == 1)
            snprintf(err.msg, sizeof err.msg, "%zu samples, fewer than one batch of %d (training drops partial batches)",
                     ld_data_count(r->train), op->batch_size);
        else
            snprintf(err.msg, sizeof err.msg,
                     "%zu samples, fewer than one batch of %d for each of %d ranks (training drops partial batches)",
                     ld_data_count(r->train), op->batch_size, r->world);
        return fail_split(r, "train", err.msg);
    }
    r->identity = ld_data_identity(r->train);
    return GO_ON;
}

/* The checkpoints this run loads: RUN/last.h5 when resuming from it, else
 * --init and --teacher-ckpt (NULL where absent). */
static void checkpoint_paths(const tr_run *r, const char *paths[3])
{
    paths[0] = r->from_last ? r->last_path : NULL;
    paths[1] = r->from_last ? NULL : r->op.init;
    paths[2] = r->from_last ? NULL : r->op.teacher_ckpt;
}

/* Do the checkpoints exist and match the data? (before any heavy work) */
static int check_checkpoints(tr_run *r)
{
    cm_err err = {{0}};
    const char *paths[3];
    checkpoint_paths(r, paths);
    for (int k = 0; k < 3; k++) {
        if (!paths[k])
            continue;
        if (cm_check_regular(paths[k], &err) != 0) /* absent, or a FIFO, a device: refused at once */
            return fail(paths[k], err.msg);
        char *ck_id = NULL;
        if (ld_ckpt_identity(paths[k], &ck_id, &err) != 0)
            return fail(paths[k], err.msg);
        int bad = ck_id && (ld_identity_compare(r->identity, ck_id, &err) != 0 ||
                            (paths[k] == r->last_path && ld_identity_same_content(r->identity, ck_id, &err) != 0));
        free(ck_id);
        if (bad) {
            char what[2 * CM_PATH_MAX + 32];
            snprintf(what, sizeof what, "%s: does not match %s", paths[k], r->op.data);
            return fail(what, err.msg);
        }
    }
    return GO_ON;
}

static int run_open_inputs(tr_run *r)
{
    int rc = open_splits(r);
    return rc == GO_ON ? check_checkpoints(r) : rc;
}

/* ================================================================ configure */

/* The backend named by --device (auto: CUDA when available, else the CPU). */
static int run_backend(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    be_options bo;
    be_options_default(&bo);
    bo.threads = op->threads;
    bo.tf32 = strcmp(op->tf32, "on") == 0;
    bo.bn = strcmp(op->bn, "cudnn") == 0 ? BE_BN_CUDNN : BE_BN_OWN;
    bo.workspace_mb = (size_t)op->cudnn_workspace_mb;
    bo.cudnn_find = strcmp(op->cudnn_find, "on") == 0;
    bo.profile = op->profile;
    if (strcmp(op->device, "cpu") == 0) {
        r->be = be_cpu_create(bo.threads, &err);
    } else {
        bo.device = cl_local_rank(r->comm);
        r->be = be_cuda_create(&bo, &err);
        if (!r->be && strcmp(op->device, "cuda") == 0)
            return fail("--device cuda", err.msg);
        if (!r->be) {
            fprintf(stderr, TOOL ": notice: no CUDA backend (%s); using the CPU\n", err.msg);
            r->be = be_cpu_create(bo.threads, &err);
        }
    }
    return r->be ? GO_ON : fail("backend", err.msg);
}

/* The ranks before the networks: the world size of a resumed run, and
 * NCCL for CUDA ranks started by a launcher. */
static int run_world(tr_run *r)
{
    cm_err err = {{0}};
    if (r->resuming && tr_world_check(r->op.out, r->comm, &err) != 0)
        return fail(r->op.out, err.msg);
    if (cl_active(r->comm) && strcmp(r->be->ops->name, "cpu") != 0 && cl_gpu_init(r->comm, cl_local_rank(r->comm), 0, &err) != 0)
        return fail("NCCL", err.msg);
    return GO_ON;
}

/* DDP: every rank starts from rank 0's weights, momenta, statistics and step. */
static int share_state(tr_run *r)
{
    cm_err err = {{0}};
    tr_system_set_comm(r->sys, r->comm);
    if (tr_system_broadcast(r->sys, &err) != 0)
        return fail("ranks", err.msg);
    return GO_ON;
}

/* The networks, as the options and the data's shape say. */
static int build_system(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    const st_meta *meta = ld_data_meta(r->train);
    tr_config *cfg = &r->cfg;
    tr_config_default(cfg);
    tr_opts_config(op, cfg);
    cfg->n_classes = meta->n_classes;
    cfg->frames = meta->frames_per_sample;
    cfg->spec_bins = meta->bins;
    cfg->spec_frames = meta->frames;
    if (strcmp(op->visual_mode, "auto") == 0)
        cfg->visual_mode = cfg->frames > 1 ? TR_VISUAL_FOLD : TR_VISUAL_STACK;
    else
        cfg->visual_mode = strcmp(op->visual_mode, "fold") == 0 ? TR_VISUAL_FOLD : TR_VISUAL_STACK;
    r->sys = tr_system_create(r->be, cfg, (uint64_t)op->seed, &err);
    if (!r->sys)
        return fail("model", err.msg);
    r->eval_s = !op->pretrain;
    r->eval_t = tr_methods_of(cfg)->teacher;
    return GO_ON;
}

/* A resumed position must fit this run: epochs, steps per epoch, seed. */
static int check_position(const tr_run *r)
{
    const tr_position *p = &r->pos;
    cm_err err = {{0}};
    int64_t start = (int64_t)p->epoch * (int64_t)r->nb; /* epoch <= epochs <= 1e9, nb < 2^31 */
    if (p->epoch < 0 || p->epoch > r->op.epochs)
        cm_err_set(&err, "epoch %d completed, but the run has %d epochs", p->epoch, r->op.epochs);
    else if (p->step < start || p->step - start > (p->epoch < r->op.epochs ? (int64_t)r->nb - 1 : 0))
        cm_err_set(&err, "step %" PRId64 " does not lie in epoch %d of %zu steps (data or batch size changed?)", p->step,
                   p->epoch + 1, r->nb);
    else if (p->seed != (uint64_t)r->op.seed)
        cm_err_set(&err, "seed %" PRIu64 " in the checkpoint, %lld in options.json", p->seed, r->op.seed);
    else if (p->best_epoch > p->epoch)
        cm_err_set(&err, "best epoch %d after epoch %d", p->best_epoch, p->epoch);
    else
        return GO_ON;
    return fail(r->last_path, err.msg);
}

/* Weights and position: RUN/last.h5 when resuming from it, else the fresh
 * initialisation with --init and the --teacher-ckpt teacher over it. */
static int load_checkpoints(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    memset(&r->pos, 0, sizeof r->pos);
    r->pos.seed = (uint64_t)op->seed;
    r->pos.best_val = r->pos.best_test = -1;
    tr_rng_seed(&r->rng, (uint64_t)op->seed ^ 0x6c6f61646572ULL); /* the loader's stream, apart from the init's */
    memcpy(r->pos.rng_state, r->rng.s, sizeof r->rng.s);
    const char *paths[3];
    checkpoint_paths(r, paths);
    if (paths[0] && tr_checkpoint_load(r->sys, paths[0], NULL, 1, &r->pos, &err) != 0)
        return fail(paths[0], err.msg);
    if (paths[1] && tr_checkpoint_load(r->sys, paths[1], NULL, 0, NULL, &err) != 0)
        return fail(paths[1], err.msg);
    if (!paths[0] && !paths[2] && paths[1] && needs_teacher(op) && strcmp(op->teacher_init, "random") != 0 &&
        tr_checkpoint_load(r->sys, paths[1], "teacher", 0, NULL, &err) != 0) /* the teacher comes from --init */
        return fail(paths[1], "--init without a teacher/ group: give --teacher-ckpt FILE for the teacher, or "
                              "--teacher-init random");
    if (paths[2] && !tr_methods_of(&r->cfg)->teacher)
        fprintf(stderr, TOOL ": notice: --method %s trains no teacher; --teacher-ckpt is not used\n", r->op.method);
    else if (paths[2] && tr_checkpoint_load(r->sys, paths[2], "teacher", 0, NULL, &err) != 0)
        return fail(paths[2], err.msg);
    if (r->from_last)
        memcpy(r->rng.s, r->pos.rng_state, sizeof r->rng.s);
    tr_system_set_steps(r->sys, r->pos.step);
    return GO_ON;
}

/* The host buffers and passes of evaluation (keep: each sample's
 * probabilities, for predictions.tsv). */
static int alloc_eval(tr_run *r, int keep)
{
    cm_err err = {{0}};
    size_t C = (size_t)r->cfg.n_classes, B = (size_t)r->op.batch_size;
    r->zs = calloc(B * C, sizeof *r->zs);
    r->zt = calloc(B * C, sizeof *r->zt);
    r->per_class = calloc(4 * C, sizeof *r->per_class);
    if (!r->zs || !r->zt || !r->per_class)
        return fail("evaluation", "out of memory");
    if (r->eval_s && !(r->evs = ev_pass_create((int)C, keep, &err)))
        return fail("evaluation", err.msg);
    if (r->eval_t && !(r->evt = ev_pass_create((int)C, keep, &err)))
        return fail("evaluation", err.msg);
    return GO_ON;
}

static int create_loaders(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    int uses[2] = {0, 0}; /* audio, visual */
    if (op->pretrain) {
        uses[r->cfg.teacher] = 1;
    } else {
        uses[r->cfg.student] = 1;
        if (tr_methods_of(&r->cfg)->teacher)
            uses[r->cfg.teacher] = 1;
    }
    int lthreads = op->loader_threads > 0 ? op->loader_threads : r->be->ops->input_threads(r->be, cm_ncpu());
    ld_opts lo = {.batch = op->batch_size, .augment = !op->no_augment, .shuffle = !op->no_shuffle, .drop_last = 1,
                  .threads = lthreads, .need_audio = uses[0], .need_visual = uses[1],
                  .skip_bad = strcmp(op->bad_samples, "skip") == 0, .rank = r->rank, .world = r->world};
    r->ltrain = ld_loader_create(r->train, r->be, &lo, &err);
    lo.augment = 0;
    lo.shuffle = 0;
    lo.drop_last = 0;
    r->eval_lo = lo;
    r->lval = r->ltrain ? ld_loader_create(r->val, r->be, &lo, &err) : NULL;
    r->ltest = r->lval && r->has_val ? ld_loader_create(r->test, r->be, &lo, &err) : r->lval;
    r->dv = r->ltest ? ld_device_create(r->be, ld_data_meta(r->train), op->batch_size, op->image_size, uses[0], uses[1], &err) : NULL;
    if (!r->dv)
        return fail("loader", err.msg);
    if (strcmp(op->spec_standardize, "off") == 0)
        ld_device_keep_spectrograms(r->dv);
    if (alloc_eval(r, 0) != GO_ON)
        return EXIT_FAILED;
    r->nb = ld_loader_batches(r->ltrain);
    return GO_ON;
}

/* RUN/options.json from the option table's JSON text, with the version and
 * git revision of this build; epochs >= 0: that epoch count (--resume
 * --epochs N), the other values as they were. */
static int write_options(const char *path, const char *json, int epochs, cm_err *err)
{
    cJSON *j = cJSON_Parse(json);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cm_err_set(err, "not a JSON object");
    }
    if (epochs >= 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "epochs");
        cJSON_AddNumberToObject(j, "epochs", epochs);
    } else {
        cJSON_AddStringToObject(j, "version", cm_version());
        cJSON_AddStringToObject(j, "git_revision", cm_git_revision());
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s)
        return cm_err_set(err, "out of memory");
    int rc = cm_write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

/* RUN/.lock, as ingest locks its output (store/st_index.h): a second train
 * on the same run folder (--out, --force or --resume) is refused while one
 * runs. Under the lock, a new run without --force looks again for a run
 * that finished since the first look. */
static int lock_run(tr_run *r)
{
    cm_err err = {{0}};
    if (!(r->lock = st_lock_take(r->op.out, 0, 0, NULL, &err)))
        return fail(NULL, err.msg);
    char opts_path[CM_PATH_MAX];
    path_in(opts_path, sizeof opts_path, r->op.out, "options.json");
    if (!r->resuming && !r->op.force && (cm_is_file(r->last_path) || cm_is_file(opts_path))) {
        snprintf(err.msg, sizeof err.msg,
                 "%s already holds a run (continue it with --resume %s, or give --force to replace it)", r->op.out,
                 r->op.out);
        return fail(NULL, err.msg);
    }
    return GO_ON;
}

/* RUN/: options.json (a new run), the metrics log (cut back to the
 * checkpoint when resuming), the --dump-batches folder. */
static int open_outputs(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    if (!r->lead)
        return GO_ON;
    if (cm_mkdirs(op->out, &err) != 0)
        return fail(op->out, err.msg);
    int rc = lock_run(r);
    if (rc != GO_ON)
        return rc;
    const char *outs[] = {r->last_path, r->best_path, r->metrics_path, r->svg_path, r->result_path};
    for (size_t k = 0; r->resuming && k < sizeof outs / sizeof *outs; k++) /* left by a kill */
        if (cm_remove_stale_tmp(outs[k], &err) < 0)
            return fail(op->out, err.msg);
    if (!r->resuming && tr_world_save(op->out, r->comm, &err) != 0)
        return fail(op->out, err.msg);
    if (!r->resuming) {
        char path[CM_PATH_MAX];
        path_in(path, sizeof path, op->out, "options.json");
        char *oj = tr_opts_to_json(op);
        if (!oj)
            return fail(path, "out of memory");
        int rc = write_options(path, oj, -1, &err);
        free(oj);
        if (rc != 0)
            return fail(path, err.msg);
        /* --force: a replaced run's checkpoints must not survive */
        unlink(r->best_path);
        unlink(r->last_path);
        static const char *evals[] = {"eval/eval.json", "eval/predictions.tsv", "eval/confusion.svg"};
        for (size_t k = 0; k < sizeof evals / sizeof *evals; k++) {
            path_in(path, sizeof path, op->out, evals[k]);
            unlink(path);
        }
    }
    if (r->resuming && r->extend) {
        char path[CM_PATH_MAX];
        path_in(path, sizeof path, op->out, "options.json");
        if (write_options(path, r->opts_text, op->epochs, &err) != 0)
            return fail(path, err.msg);
    }
    if (op->dump_batches && cm_mkdirs(op->dump_batches, &err) != 0)
        return fail(op->dump_batches, err.msg);
    r->mt = mt_open(r->metrics_path, r->resuming ? r->pos.step : -1, r->resuming ? r->pos.epoch : 0, &err);
    if (!r->mt)
        return fail(r->metrics_path, err.msg);
    return GO_ON;
}

static void announce(const tr_run *r)
{
    const tr_opts *op = &r->op;
    if (!r->lead || op->quiet)
        return;
    if (op->verbose) {
        char *oj = tr_opts_to_json(op);
        fprintf(stderr, TOOL ": options: %s\n", oj ? oj : "(out of memory)");
        free(oj);
    }
    if (r->resuming)
        fprintf(stderr, TOOL ": resuming %s at epoch %d, step %lld%s\n", op->out, r->pos.epoch + 1,
                (long long)r->pos.step, r->from_last ? "" : " (no checkpoint yet: from the start)");
    fprintf(stderr, TOOL ": %s, %s%s -> %s, %zu/%zu/%zu samples (train/val/test%s), %zu steps per epoch, backend %s\n",
            tr_methods_name_of(tr_methods_of(&r->cfg)), op->pretrain ? "" : op->teacher, op->pretrain ? op->teacher : "",
            op->pretrain ? "" : op->student, ld_data_count(r->train), ld_data_count(r->val), ld_data_count(r->test),
            r->has_val ? "" : "; test serves as val", r->nb, r->be->ops->name);
    if (r->world > 1)
        fprintf(stderr, TOOL ": data parallel over %d ranks, %d samples per rank and step\n", r->world,
                op->batch_size);
}

static int run_configure(tr_run *r)
{
    int rc = run_backend(r);
    if (rc == GO_ON)
        rc = run_world(r);
    if (rc == GO_ON)
        rc = build_system(r);
    if (rc == GO_ON)
        rc = create_loaders(r);
    if (rc == GO_ON)
        rc = load_checkpoints(r);
    if (rc == GO_ON && r->from_last)
        rc = check_position(r);
    if (rc == GO_ON)
        rc = share_state(r);
    if (rc == GO_ON)
        rc = open_outputs(r);
    if (rc != GO_ON)
        return rc;
    announce(r);
    if (r->lead && !r->op.quiet) {
        r->prog = cm_progress_create(stderr, TOOL, (size_t)r->nb * (size_t)r->op.epochs, 5.0);
        cm_progress_set_units(r->prog, "steps", 0, (size_t)r->pos.step);
    }
    r->saved_at = cm_now();
    r->last_val_s = r->last_test_s = r->last_val_t = r->last_test_t = -1;
    return GO_ON;
}

/* ================================================================ --dump-batches */

/* Writes <dir>/batch-<step>-<what>.npy. */
static int dump_npy(const char *dir, long long step, const char *what, const char *descr, const size_t *shape,
                    int ndim, const void *data, cm_err *err)
{
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/batch-%05lld-%s.npy", dir, step, what);
    return cm_npy_write(path, descr, shape, ndim, data, err) ? -1 : 0;
}

/* Copies one float tensor of the device to the host and writes it with dump_npy. */
static int dump_device_f32(const char *dir, long long step, const char *what, be_ctx *be, const float *dev,
                           const size_t *shape, int ndim, cm_err *err)
{
    size_t cnt = 1;
    for (int i = 0; i < ndim; i++)
        cnt *= shape[i];
    float *h = malloc(cnt * sizeof *h);
    if (!h)
        return cm_err_set(err, "out of memory");
    be->ops->to_host(be, h, dev, cnt * sizeof *h);
    int rc = dump_npy(dir, step, what, "<f4", shape, ndim, h, err);
    free(h);
    return rc;
}

/* The crop of every frame of a batch, [B*F, 7] int64. */
static int dump_crops(const char *dir, long long step, const ld_host_batch *hb, size_t nc, cm_err *err)
{
    int64_t *c = malloc(nc * 7 * sizeof *c);
    if (!c)
        return cm_err_set(err, "out of memory");
    for (size_t i = 0; i < nc; i++) {
        const be_crop *k = &hb->crops[i];
        int64_t row[7] = {k->x, k->y, k->w, k->h, k->flip, k->src_w, k->src_h};
        memcpy(c + i * 7, row, sizeof row);
    }
    size_t cs[2] = {nc, 7};
    int rc = dump_npy(dir, step, "crops", "<i8", cs, 2, c, err);
    free(c);
    return rc;
}

/* Writes the prepared device tensors of one batch as .npy (--dump-batches). */
static int dump_batch(const char *dir, long long step, be_ctx *be, const tr_batch *b, const ld_host_batch *hb,
                      const tr_config *cfg, cm_err *err)
{
    be->ops->sync(be);
    if (b->audio) {
        size_t shape[4] = {(size_t)b->B, 1, (size_t)cfg->spec_bins, (size_t)cfg->spec_frames};
        if (dump_device_f32(dir, step, "audio", be, b->audio, shape, 4, err) != 0)
            return -1;
    }
    if (b->visual) {
        size_t S = (size_t)cfg->image_size;
        size_t shape[5] = {(size_t)b->B, (size_t)hb->F, 3, S, S};
        if (dump_device_f32(dir, step, "visual", be, b->visual, shape, 5, err) != 0 ||
            dump_crops(dir, step, hb, (size_t)b->B * (size_t)hb->F, err) != 0)
            return -1;
    }
    size_t ls[1] = {(size_t)b->B};
    if (dump_npy(dir, step, "labels", "<i4", ls, 1, hb->labels, err) != 0)
        return -1;
    return dump_npy(dir, step, "index", "<i8", ls, 1, hb->index, err);
}

/* ================================================================ evaluate */

/* The bad samples (--bad-samples skip) of ld's batches up to `upto`: on
 * stderr the first time, in the log every time (step < 0: evaluation). */
static int report_bad(tr_run *r, ld_loader *ld, const char *split, int64_t upto, int64_t step)
{
    cm_err err = {{0}};
    ld_bad b;
    while (ld_loader_take_bad(ld, upto, &b)) {
        if (b.first && !r->quiet_bad)
            fprintf(stderr, TOOL ": %s: split %s: %s (skipped)\n", r->op.data, split, b.msg);
        if (r->lead && r->mt && mt_bad_record(r->mt, split, r->pos.epoch + (step >= 0), step, b.index, b.id, b.msg, &err) != 0)
            return fail(r->metrics_path, err.msg);
    }
    return GO_ON;
}

/* Runs one evaluation pass into r->evs / r->evt (those evaluated), summed
 * over the ranks. */
static int evaluate(tr_run *r, ld_loader *ld, const char *split, int sum_ranks, cm_err *err)
{
    tr_rng dummy;
    tr_rng_seed(&dummy, 0);
    if (ld_loader_start(ld, &dummy, 0, err) != 0)
        return -1;
    ev_pass *ps[2] = {r->evs, r->evt};
    for (int k = 0; k < 2; k++)
        if (ps[k])
            ev_pass_reset(ps[k]);
    ld_host_batch *hb = NULL;
    int rc;
    tr_batch b;
    while ((rc = ld_device_next(r->dv, ld, &hb, &b, err)) == 1) {
        if (report_bad(r, ld, split, hb->number, -1) != GO_ON) {
            ld_loader_release(ld, hb);
            rc = -2; /* reported */
            break;
        }
        if (tr_system_eval(r->sys, &b, NULL, NULL, r->evs ? r->zs : NULL, r->evt ? r->zt : NULL, err) != 0) {
            ld_loader_release(ld, hb);
            rc = -1;
            break;
        }
        r->be->ops->sync(r->be);
        rc = 0;
        for (int k = 0; k < 2 && rc == 0; k++)
            if (ps[k])
                rc = ev_pass_add(ps[k], hb->B, k ? r->zt : r->zs, hb->labels, hb->index, err);
        ld_loader_release(ld, hb);
        if (rc != 0)
            break;
    }
    ld_device_drop(r->dv);
    ld_loader_stop(ld);
    if (rc == 0 && report_bad(r, ld, split, INT64_MAX, -1) != GO_ON)
        rc = -2;
    if (rc < 0)
        return rc;
    for (int k = 0; k < 2 && sum_ranks; k++) /* each rank evaluated its share (ld_opts) */
        if (ps[k] && ev_pass_allreduce(ps[k], r->comm, err) != 0)
            return -1;
    return 0;
}

/* The evaluation just run into the epoch record: accuracies (-1: that
 * network is not evaluated), losses and per-class accuracies; `test`: of the
 * test split, else of val. */
static void take_evaluation(tr_run *r, mt_epoch *rec, int test)
{
    int C = r->cfg.n_classes;
    for (int k = 0; k < 2; k++) {
        const ev_pass *p = k ? r->evt : r->evs;
        double *pc = r->per_class + (size_t)(2 * k + test) * (size_t)C;
        double acc = p ? ev_top1(p) : -1, loss = p ? ev_mean_loss(p) : -1;
        for (int c = 0; p && c < C; c++)
            pc[c] = ev_class_acc(p, c);
        rec->per_class[2 * k + test] = p ? pc : NULL;
        *(test ? (k ? &rec->test_teacher : &rec->test_student) : (k ? &rec->val_teacher : &rec->val_student)) = acc;
        *(test ? (k ? &rec->test_loss_teacher : &rec->test_loss_student)
               : (k ? &rec->val_loss_teacher : &rec->val_loss_student)) = loss;
    }
    rec->n_classes = C;
}

/* Evaluates on val and test after epoch e (from --eval-from on) into the
 * epoch record, and moves the best epoch; *improved: this epoch is the best. */
static int run_evaluate(tr_run *r, int e, mt_epoch *rec, int *improved)
{
    cm_err err = {{0}};
    *improved = 0;
    if (e + 1 < r->op.eval_from)
        return GO_ON;
    int rc = evaluate(r, r->lval, r->has_val ? "val" : "test", 1, &err);
    if (rc != 0)
        return rc == -2 ? EXIT_FAILED : fail(r->has_val ? "evaluation on val" : "evaluation on test", err.msg);
    take_evaluation(r, rec, 0);
    if (!r->has_val)
        take_evaluation(r, rec, 1);
    else if ((rc = evaluate(r, r->ltest, "test", 1, &err)) != 0)
        return rc == -2 ? EXIT_FAILED : fail("evaluation on test", err.msg);
    else
        take_evaluation(r, rec, 1);
    double vs = rec->val_student, vt = rec->val_teacher, ts = rec->test_student, tt = rec->test_teacher;
    r->last_val_s = vs;
    r->last_val_t = vt;
    r->last_test_s = ts;
    r->last_test_t = tt;
    double v = r->op.pretrain ? vt : vs, t = r->op.pretrain ? tt : ts;
    if (v > r->pos.best_val || (v == r->pos.best_val && strcmp(r->op.best_tie, "last") == 0)) {
        r->pos.best_val = v;
        r->pos.best_test = t;
        r->pos.best_epoch = e + 1;
        *improved = 1;
    }
    return GO_ON;
}

/* ================================================================ epochs */

/* Saves RUN/last.h5 at the current position. Inside an epoch the position
 * keeps the loader's state at the epoch's start: a resumed run redraws the
 * epoch's permutation and augmentation and skips the batches done. */
static int save_last(tr_run *r, int inside_epoch)
{
    cm_err err = {{0}};
    memcpy(r->pos.rng_state, inside_epoch ? r->epoch_rng : r->rng.s, sizeof r->pos.rng_state);
    if (r->lead && tr_checkpoint_save(r->sys, r->last_path, &r->pos, r->identity, &err) != 0)
        return fail(r->last_path, err.msg);
    r->saved_at = cm_now();
    return GO_ON;
}

/* A checkpoint inside the epoch: every --checkpoint-every steps, or when
 * --checkpoint-minutes have passed since the last one. */
static int checkpoint_due(const tr_run *r)
{
    const tr_opts *op = &r->op;
    if (op->checkpoint_every > 0 && r->pos.step % op->checkpoint_every == 0)
        return 1;
    return op->checkpoint_minutes > 0 && cm_now() - r->saved_at >= 60.0 * op->checkpoint_minutes;
}

static int steps_reached(const tr_run *r)
{
    return r->op.steps > 0 && r->pos.step >= r->op.steps;
}

/* Starts epoch e at the position (inside it when resumed there: its
 * training sums then continue from the log). */
static int start_epoch(tr_run *r, int e, mt_epoch *rec)
{
    cm_err err = {{0}};
    memset(rec, 0, sizeof *rec);
    rec->epoch = e + 1;
    rec->lr = lr_at(&r->op, e);
    rec->eval_s = r->eval_s;
    rec->eval_t = r->eval_t;
    rec->val_student = rec->test_student = rec->val_teacher = rec->test_teacher = -1;
    rec->val_loss_student = rec->test_loss_student = rec->val_loss_teacher = rec->test_loss_teacher = -1;
    rec->gpu_peak_bytes = rec->allreduce_seconds = rec->samples_per_second = -1;
    rec->seconds = r->epoch_t0 = cm_now(); /* the start, until the record is written */
    r->epoch_step0 = r->pos.step;
    memcpy(r->epoch_rng, r->rng.s, sizeof r->epoch_rng);
    size_t skip = (size_t)(r->pos.step - (int64_t)e * (int64_t)r->nb); /* check_position: 0 <= skip < nb */
    if (ld_loader_start(r->ltrain, &r->rng, skip, &err) != 0)
        return fail("loader", err.msg);
    if (skip > 0 && r->lead) {
        mt_partial mp;
        if (mt_epoch_partial(r->metrics_path, e + 1, r->pos.step, &mp, &err) != 0)
            return fail(r->metrics_path, err.msg);
        rec->steps = mp.steps;
        rec->sum_loss = mp.sum_loss;
        long long global_batch = (long long)r->op.batch_size * r->world; /* a step's samples over the ranks */
        rec->seen = mp.steps * global_batch;
        rec->hit_student = llround(mp.sum_acc_student * (double)global_batch);
        rec->hit_teacher = llround(mp.sum_acc_teacher * (double)global_batch);
    }
    return GO_ON;
}

/* One training step on the batch hb (released here; b: it on the device),
 * its record in the log, and a checkpoint when one is due inside the epoch. */
static int run_step(tr_run *r, mt_epoch *rec, ld_host_batch *hb, const tr_batch *b)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    tr_stats st;
    memset(&st, 0, sizeof st);
    int rc = GO_ON;
    if (op->dump_batches && r->lead && (op->dump_count < 0 || r->pos.step < op->dump_count) &&
        dump_batch(op->dump_batches, (long long)r->pos.step, r->be, b, hb, &r->cfg, &err) != 0) {
        rc = fail(op->dump_batches, err.msg);
    } else if (tr_system_step(r->sys, b, (float)rec->lr, &st, &err) != 0) {
        char what[32];
        snprintf(what, sizeof what, "epoch %d", rec->epoch);
        cm_progress_finish(r->prog, (size_t)r->pos.step, 0, NULL);
        rc = fail(what, err.msg);
    }
    ld_loader_release(r->ltrain, hb);
    if (rc != GO_ON)
        return rc;
    r->be->ops->sync(r->be);
    int B = st.samples; /* the global batch: hb->B on each of the ranks */
    r->pos.step++;
    rec->steps++;
    rec->seen += B;
    rec->hit_student += st.correct_student;
    rec->hit_teacher += st.correct_teacher;
    rec->sum_loss += st.loss;
    if (r->lead && mt_step_record(r->mt, r->pos.step, rec->epoch, rec->lr, &st, B, r->eval_s, r->eval_t, &err) != 0)
        return fail(r->metrics_path, err.msg);
    char extra[128];
    snprintf(extra, sizeof extra, "epoch %d/%d loss %.4f lr %.3g", rec->epoch, op->epochs, st.loss, rec->lr);
    cm_progress_update(r->prog, (size_t)r->pos.step, 0, extra);
    /* the log is written first: a kill between the two leaves lines past
     * the checkpoint, which --resume cuts */
    if (r->pos.step % (int64_t)r->nb != 0 && !steps_reached(r) && checkpoint_due(r))
        return save_last(r, 1);
    return GO_ON;
}

/* The epoch's console line: training loss, val and test top-1 of the
 * network the run is for, the learning rate, the epoch's time, samples/s. */
static void epoch_line(const tr_run *r, const mt_epoch *rec)
{
    char text[512], acc[160] = "not evaluated (--eval-from)";
    double v = r->op.pretrain ? rec->val_teacher : rec->val_student;
    double t = r->op.pretrain ? rec->test_teacher : rec->test_student;
    if (v >= 0)
        snprintf(acc, sizeof acc, "val top-1 %.2f%%, test top-1 %.2f%%%s", 100 * v, 100 * t,
                 r->pos.best_epoch == rec->epoch ? " (best)" : "");
    char sps[48] = "";
    if (rec->samples_per_second >= 0)
        snprintf(sps, sizeof sps, ", %.1f samples/s", rec->samples_per_second);
    snprintf(text, sizeof text, TOOL ": epoch %d/%d: train loss %.4f, %s, lr %.3g, %.1f s%s", rec->epoch,
             r->op.epochs, rec->steps > 0 ? rec->sum_loss / (double)rec->steps : NAN, acc, rec->lr, rec->seconds,
             sps);
    if (r->prog)
        cm_progress_line(r->prog, text);
    else if (!r->op.quiet)
        fprintf(stderr, "%s\n", text);
}

/* The end of epoch e: evaluation, the epoch's record, best.h5 when it
 * improved, last.h5. */
static int end_epoch(tr_run *r, int e, mt_epoch *rec)
{
    cm_err err = {{0}};
    r->pos.epoch = e + 1;
    memcpy(r->pos.rng_state, r->rng.s, sizeof r->rng.s);
    double train_s = cm_now() - r->epoch_t0;
    if (train_s > 0 && r->pos.step > r->epoch_step0)
        rec->samples_per_second =
            (double)(r->pos.step - r->epoch_step0) * r->op.batch_size * r->world / train_s;
    int improved = 0;
    if (tr_system_check_same(r->sys, &err) != 0) /* and rank 0's BN statistics everywhere, for evaluation */
        return fail("ranks", err.msg);
    int rc = run_evaluate(r, e, rec, &improved);
    if (rc != GO_ON)
        return rc;
    rec->step = r->pos.step;
    rec->best_epoch = r->pos.best_epoch;
    rec->best_val = r->pos.best_val;
    rec->best_test = r->pos.best_test;
    rec->seconds = cm_now() - rec->seconds;
    if (r->be->ops->stats) {
        be_stats bst;
        r->be->ops->stats(r->be, &bst);
        rec->gpu_peak_bytes = (double)bst.peak_bytes;
    }
    if (cl_active(r->comm) && strcmp(r->be->ops->name, "cpu") != 0) /* NCCL gradient all-reduce time of this epoch */
        rec->allreduce_seconds = cl_gpu_take_seconds(r->comm);
    if (!r->lead)
        return GO_ON;
    if (mt_epoch_record(r->mt, rec, &err) != 0)
        return fail(r->metrics_path, err.msg);
    epoch_line(r, rec);
    if (improved && tr_checkpoint_save(r->sys, r->best_path, &r->pos, r->identity, &err) != 0)
        return fail(r->best_path, err.msg);
    return save_last(r, 0);
}

static int train_epoch(tr_run *r, int e)
{
    cm_err err = {{0}};
    mt_epoch rec;
    int rc = start_epoch(r, e, &rec);
    ld_host_batch *hb;
    tr_batch b;
    int got = 0;
    while (rc == GO_ON && (got = ld_device_next(r->dv, r->ltrain, &hb, &b, &err)) == 1) {
        rc = report_bad(r, r->ltrain, "train", hb->number, r->pos.step + 1);
        if (rc != GO_ON) {
            ld_loader_release(r->ltrain, hb);
            break;
        }
        rc = run_step(r, &rec, hb, &b);
        if (rc == GO_ON && steps_reached(r)) {
            r->stopped = 1;
            break;
        }
    }
    if (rc != GO_ON)
        return rc;
    if (got == LD_DEVICE_FAILED)
        return fail("device", err.msg);
    if (got < 0)
        return fail_split(r, "train", err.msg);
    ld_device_drop(r->dv);
    ld_loader_stop(r->ltrain);
    if (r->pos.step < (int64_t)(e + 1) * (int64_t)r->nb)
        return save_last(r, 1); /* stopped inside the epoch */
    return end_epoch(r, e, &rec);
}

static int run_epochs(tr_run *r)
{
    for (int e = r->pos.epoch; e < r->op.epochs && !r->stopped; e++) {
        int rc = train_epoch(r, e);
        if (rc != GO_ON)
            return rc;
    }
    cm_progress_finish(r->prog, (size_t)r->pos.step, 0, NULL);
    return GO_ON;
}

/* ================================================================ finish */

static int write_json(const char *path, cJSON *j, cm_err *err)
{
    char *s = cJSON_Print(j);
    if (!s)
        return cm_err_set(err, "out of memory");
    size_t n = strlen(s);
    char *t = malloc(n + 2);
    if (!t) {
        free(s);
        return cm_err_set(err, "out of memory");
    }
    memcpy(t, s, n);
    t[n] = '\n';
    int rc = cm_write_file_atomic(path, t, n + 1, err);
    free(s);
    free(t);
    return rc;
}

/* RUN/result.json (docs/FORMAT.md). */
static cJSON *result_json(const tr_run *r)
{
    const tr_opts *op = &r->op;
    const tr_position *p = &r->pos;
    cJSON *res = cJSON_CreateObject();
    if (!res)
        return NULL;
    cJSON_AddStringToObject(res, "network", op->pretrain ? "teacher" : "student");
    cJSON_AddStringToObject(res, "method", tr_methods_name_of(tr_methods_of(&r->cfg)));
    cJSON_AddStringToObject(res, "teacher", op->teacher);
    if (!op->pretrain)
        cJSON_AddStringToObject(res, "student", op->student);
    cJSON_AddBoolToObject(res, "complete", p->epoch >= op->epochs);
    cJSON_AddNumberToObject(res, "epochs", op->epochs);
    cJSON_AddNumberToObject(res, "epochs_completed", p->epoch);
    cJSON_AddNumberToObject(res, "steps", (double)p->step);
    cJSON_AddNumberToObject(res, "best_epoch", p->best_epoch);
    if (p->best_epoch > 0) {
        cJSON_AddNumberToObject(res, "best_val_acc", p->best_val);
        cJSON_AddNumberToObject(res, "test_acc_at_best_val", p->best_test);
    } else {
        cJSON_AddNullToObject(res, "best_val_acc");
        cJSON_AddNullToObject(res, "test_acc_at_best_val");
    }
    cJSON_AddBoolToObject(res, "val_is_test", !r->has_val);
    double fv = op->pretrain ? r->last_val_t : r->last_val_s, ft = op->pretrain ? r->last_test_t : r->last_test_s;
    if (fv >= 0) {
        cJSON_AddNumberToObject(res, "last_val_acc", fv);
        cJSON_AddNumberToObject(res, "last_test_acc", ft);
    }
    if (!op->pretrain && r->eval_t && r->last_test_t >= 0)
        cJSON_AddNumberToObject(res, "last_test_acc_teacher", r->last_test_t);
    cJSON_AddStringToObject(res, "plot", r->svg_path);
    cJSON_AddStringToObject(res, "version", cm_version());
    cJSON_AddStringToObject(res, "git_revision", cm_git_revision());
    if (r->be->ops->device_name && r->be->ops->stats) {
        be_stats bst;
        r->be->ops->stats(r->be, &bst);
        cJSON_AddStringToObject(res, "gpu", r->be->ops->device_name(r->be));
        cJSON_AddNumberToObject(res, "gpu_peak_bytes", (double)bst.peak_bytes);
    }
    return res;
}

/* Writes the backend's profile (--profile) to RUN/profile.md: totals of the run. */
static int write_profile(be_ctx *be, const char *out, cm_err *err)
{
    char path[CM_PATH_MAX], *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f)
        return cm_err_set(err, "out of memory");
    fprintf(f, "# train --profile: totals of the run on %s\n\n", be->ops->device_name ? be->ops->device_name(be) : "");
    tr_profile_write(be, f, 1, 40);
    fclose(f);
    snprintf(path, sizeof path, "%s/profile.md", out);
    int rc = cm_write_file_atomic(path, text, n, err);
    free(text);
    return rc;
}

static void print_summary(const tr_run *r)
{
    const tr_opts *op = &r->op;
    const tr_position *p = &r->pos;
    const char *method = tr_methods_name_of(tr_methods_of(&r->cfg)), *which = op->pretrain ? "teacher" : "student";
    if (p->best_epoch > 0)
        printf("%s: %s %s: best validation epoch %d (val %.2f%%), test top-1 %.2f%%%s; plot %s\n", op->out, method,
               which, p->best_epoch, 100 * p->best_val, 100 * p->best_test,
               p->epoch >= op->epochs ? "" : " (run incomplete)", r->svg_path);
    else
        printf("%s: %s %s: stopped at step %lld (%d of %d epochs completed), no evaluation yet; plot %s\n", op->out,
               method, which, (long long)p->step, p->epoch, op->epochs, r->svg_path);
    if (r->be->ops->device_name && r->be->ops->stats) {
        be_stats bst;
        r->be->ops->stats(r->be, &bst);
        printf("%s: peak GPU memory %.0f MiB on %s\n", op->out, (double)bst.peak_bytes / 1048576.0,
               r->be->ops->device_name(r->be));
    }
}

static const char *data_id(const void *ctx, size_t i)
{
    return ld_data_id(ctx, i);
}

/* Evaluates ld (one pass, this process alone) with the network `network`
 * only and writes eval.json, predictions.tsv and confusion.svg into dir.
 * *out: the pass (r->evs or r->evt). */
static int evaluate_into(tr_run *r, ld_loader *ld, ld_data *data, const char *split, const char *ckpt, int teacher,
                         int epoch, const char *dir, const ev_pass **out)
{
    cm_err err = {{0}};
    ev_pass *keep_s = r->evs, *keep_t = r->evt, *p = teacher ? r->evt : r->evs;
    if (teacher)
        r->evs = NULL;
    else
        r->evt = NULL;
    p->keep = 1;
    mt_log *mt = r->mt; /* bad samples: in the log (and on stderr) by the epochs' evaluations only */
    r->quiet_bad = mt != NULL;
    r->mt = NULL;
    int rc = evaluate(r, ld, split, 0, &err);
    r->mt = mt;
    r->quiet_bad = 0;
    r->evs = keep_s;
    r->evt = keep_t;
    if (rc != 0) {
        char what[64];
        snprintf(what, sizeof what, "evaluation on %s", split);
        return rc == -2 ? EXIT_FAILED : fail(what, err.msg);
    }
    ev_info in = {.checkpoint = ckpt, .network = teacher ? "teacher" : "student", .data = r->op.data,
                  .split = split, .epoch = epoch, .classes = ld_data_meta(data)->classes, .id_of = data_id,
                  .ctx = data};
    if (ev_write(p, &in, dir, &err) != 0)
        return fail(NULL, err.msg);
    *out = p;
    return GO_ON;
}

/* RUN/eval/: the best epoch's checkpoint (RUN/best.h5) evaluated on test by
 * the lead alone, the whole split: eval.json, predictions.tsv and
 * confusion.svg (its top-1 is result.json's test_acc_at_best_val). */
static int final_evaluation(tr_run *r)
{
    cm_err err = {{0}};
    if (r->pos.best_epoch <= 0 || !cm_is_file(r->best_path))
        return GO_ON;
    if (tr_checkpoint_load(r->sys, r->best_path, r->op.pretrain ? "teacher" : "student", 0, NULL, &err) != 0)
        return fail(r->best_path, err.msg); /* the network evaluated only */
    ld_loader *ld = r->ltest;
    if (r->world > 1) { /* the test loader holds this rank's share only */
        ld_opts lo = r->eval_lo;
        lo.rank = 0;
        lo.world = 1;
        if (!(ld = ld_loader_create(r->test, r->be, &lo, &err)))
            return fail("loader", err.msg);
    }
    char dir[CM_PATH_MAX];
    path_in(dir, sizeof dir, r->op.out, "eval");
    int rc = evaluate_into(r, ld, r->test, "test", r->best_path, r->op.pretrain, r->pos.best_epoch, dir, &r->final);
    if (ld != r->ltest)
        ld_loader_destroy(ld);
    return rc;
}

/* The plot, result.json and the summary line. */
static int run_finish(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    if (!r->lead)
        return EXIT_DONE;
    int rc = final_evaluation(r);
    if (rc != GO_ON)
        return rc;
    char title[512], caption[64];
    if (op->pretrain)
        snprintf(title, sizeof title, "%s: pretrain %s teacher, width %d, %d epochs", op->out, op->teacher, op->width,
                 op->epochs);
    else if (!needs_teacher(op))
        snprintf(title, sizeof title, "%s: no KD, %s student, width %d, %d epochs", op->out, op->student, op->width,
                 op->epochs);
    else
        snprintf(title, sizeof title, "%s: %s %s->%s, width %d, %d epochs", op->out, op->method, op->teacher, op->student,
                 op->width, op->epochs);
    snprintf(caption, sizeof caption, "test, best epoch %d (eval/)", r->pos.best_epoch);
    pl_confusion cm = {r->final ? r->final->confusion : NULL, r->final ? r->final->C : 0,
                       ld_data_meta(r->train)->classes, caption};
    if (pl_write_svg(r->metrics_path, r->svg_path, title, r->final ? &cm : NULL, &err) != 0)
        return fail(r->svg_path, err.msg);
    cJSON *res = result_json(r);
    int wr = res ? write_json(r->result_path, res, &err) : cm_err_set(&err, "out of memory");
    cJSON_Delete(res);
    if (wr != 0)
        return fail(r->result_path, err.msg);
    if (op->profile && r->be->ops->profile_data && write_profile(r->be, op->out, &err) != 0)
        return fail(op->out, err.msg);
    if (cl_active(r->comm)) /* docs/DISTRIBUTED.md, "Step" */
        fprintf(stderr, TOOL ": data parallel: %lld gradient all-reduces overlapped with the backward pass\n",
                cl_started(r->comm));
    print_summary(r);
    return EXIT_DONE;
}

/* ================================================================ --eval CKPT */

/* The checkpoint's networks as its config says, the one evaluated alone
 * (method none for the student, pretrain for the teacher). */
static int eval_system(tr_run *r, int *teacher)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    char *config = NULL, *recipe = NULL, *ck_id = NULL;
    tr_config *c = &r->cfg;
    tr_config_default(c);
    if (tr_checkpoint_read_meta(op->eval, &config, &recipe, &err) != 0 || !config ||
        ev_config_from_json(config, c, &err) != 0) {
        free(config);
        free(recipe);
        return fail(op->eval, err.msg[0] ? err.msg : "no config attribute (not a train checkpoint)");
    }
    free(config);
    free(recipe);
    if (ld_ckpt_identity(op->eval, &ck_id, &err) != 0)
        return fail(op->eval, err.msg);
    int bad = ck_id && ld_identity_compare(r->identity, ck_id, &err) != 0;
    free(ck_id);
    if (bad) {
        char what[2 * CM_PATH_MAX + 32];
        snprintf(what, sizeof what, "%s: does not match %s", op->eval, op->data);
        return fail(what, err.msg);
    }
    int has_teacher = tr_methods_of(c) && tr_methods_of(c)->teacher;
    *teacher = strcmp(op->network, "auto") == 0 ? c->pretrain : strcmp(op->network, "teacher") == 0;
    if (*teacher && !has_teacher)
        return fail(op->eval, "--network teacher: the checkpoint's run (method none) has no teacher");
    if (!*teacher && c->pretrain)
        return fail(op->eval, "--network student: the checkpoint is a --pretrain run's (a teacher alone)");
    c->pretrain = *teacher;
    c->method = TR_NONE;
    c->max_batch = op->batch_size;
    if (!(r->sys = tr_system_create(r->be, c, 1, &err)))
        return fail("model", err.msg);
    if (tr_checkpoint_load(r->sys, op->eval, *teacher ? "teacher" : "student", 0, NULL, &err) != 0)
        return fail(op->eval, err.msg);
    r->eval_s = !*teacher;
    r->eval_t = *teacher;
    return GO_ON;
}

/* train --eval CKPT --data DIR --split S --out EVALDIR: one process. */
static int run_eval_command(tr_run *r)
{
    cm_err err = {{0}};
    const tr_opts *op = &r->op;
    if (r->world > 1)
        return usage_error("--eval runs in one process (not under mpirun/srun)");
    if (!cm_is_file(op->eval))
        return fail(op->eval, "no such checkpoint file");
    if (!(r->test = ld_data_open(op->data, op->split, &err)))
        return fail_split(r, op->split, err.msg);
    if (ld_data_count(r->test) == 0)
        return fail_split(r, op->split, "empty split (no samples)");
    r->identity = ld_data_identity(r->test);
    int teacher = 0, rc = run_backend(r);
    if (rc == GO_ON)
        rc = eval_system(r, &teacher);
    if (rc != GO_ON)
        return rc;
    tr_modality m = teacher ? r->cfg.teacher : r->cfg.student;
    int lthreads = op->loader_threads > 0 ? op->loader_threads : r->be->ops->input_threads(r->be, cm_ncpu());
    ld_opts lo = {.batch = op->batch_size, .threads = lthreads, .need_audio = m == TR_AUDIO,
                  .need_visual = m == TR_VISUAL, .skip_bad = strcmp(op->bad_samples, "skip") == 0, .world = 1};
    if (!(r->ltest = ld_loader_create(r->test, r->be, &lo, &err)) ||
        !(r->dv = ld_device_create(r->be, ld_data_meta(r->test), op->batch_size, r->cfg.image_size, lo.need_audio,
                                   lo.need_visual, &err)))
        return fail("loader", err.msg);
    r->lval = r->ltest;
    if ((rc = alloc_eval(r, 1)) != GO_ON)
        return rc;
    const ev_pass *p = NULL;
    rc = evaluate_into(r, r->ltest, r->test, op->split, op->eval, teacher, -1, op->out, &p);
    if (rc != GO_ON)
        return rc;
    printf("%s: %s of %s on %s: top-1 %.2f%%, top-5 %.2f%%, %lld samples; eval.json, predictions.tsv, confusion.svg\n",
           op->out, teacher ? "teacher" : "student", op->eval, op->split, 100 * ev_top1(p),
           100 * (double)p->top5 / (double)p->n, p->n);
    return EXIT_DONE;
}

/* ================================================================ the run */

static void run_destroy(tr_run *r)
{
    if (r->prog)
        cm_progress_destroy(r->prog);
    mt_close(r->mt);
    ld_loader_destroy(r->ltrain);
    if (r->ltest != r->lval)
        ld_loader_destroy(r->ltest);
    ld_loader_destroy(r->lval);
    ld_device_destroy(r->dv);
    if (r->sys)
        tr_system_destroy(r->sys);
    if (r->be)
        r->be->ops->destroy(r->be);
    if (r->val != r->test)
        ld_data_close(r->val);
    ld_data_close(r->test);
    ld_data_close(r->train);
    free(r->identity);
    free(r->zs);
    free(r->zt);
    free(r->per_class);
    ev_pass_destroy(r->evs);
    ev_pass_destroy(r->evt);
    tr_opts_release(&r->op);
    free(r->opts_text);
    st_lock_release(r->lock);
}

/* The watchdog of collective/collective.h: a collective that does not complete in time
 * means another rank died or hangs; every rank is ended. */
static void dist_timeout(void *arg, const char *what, double seconds)
{
    const tr_run *r = arg;
    fprintf(stderr, TOOL ": rank %d: %s not completed after %.0f s (another rank died or hangs; "
            "C2KD_DIST_TIMEOUT sets the limit); ending every rank\n", r->rank, what, seconds);
    fflush(stderr);
    cl_abort(r->comm, 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    tr_run run;
    memset(&run, 0, sizeof run);
    cm_err err = {{0}};
    const char *to = getenv("C2KD_DIST_TIMEOUT");
    run.comm = cl_create(to ? atof(to) : 600.0, dist_timeout, &run, &err);
    if (!run.comm)
        return fail("MPI", err.msg);
    run.rank = cl_rank(run.comm);
    run.world = cl_size(run.comm);
    run.lead = run.rank == 0;
    h5_no_close_at_exit(); /* a checkpoint whose close failed (full disk) must not be closed again at exit */
    int rc = run_options(&run, argc, argv);
    if (rc == GO_ON && run.op.eval)
        rc = run_eval_command(&run);
    if (rc == GO_ON)
        rc = run_open_inputs(&run);
    if (rc == GO_ON)
        rc = run_configure(&run);
    if (rc == GO_ON)
        rc = run_epochs(&run);
    if (rc == GO_ON)
        rc = run_finish(&run);
    run_destroy(&run);
    if (rc != EXIT_DONE && run.world > 1) {
        /* The other ranks may wait in a collective: end them (mpirun reports it). */
        fprintf(stderr, TOOL ": rank %d failed; ending every rank\n", run.rank);
        fflush(stderr);
        cl_abort(run.comm, rc);
    }
    cl_destroy(run.comm);
    return rc;
}
