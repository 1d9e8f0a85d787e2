/* train: the command. Options (train/opts.c), data (train/loader*.c), the
 * networks and losses (train/system.h), the loop, evaluation, checkpoints,
 * metrics (train/metrics.c) and the plot (train/plot.c).
 *
 * Every input (options, shards of every split, checkpoints) is checked
 * before anything is written under --out, so a bad input never damages an
 * earlier run's files. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_err.h"
#include "common/cm_file.h"
#include "common/cm_npy.h"
#include "common/cm_pool.h"
#include "common/cm_progress.h"
#include "train/loader.h"
#include "train/metrics.h"
#include "train/opts.h"
#include "train/plot.h"
#include "train/run_dist.h"
#include "train/system.h"

#define TOOL "train"

static int usage_error(const char *msg)
{
    fprintf(stderr, TOOL ": %s (see --help)\n", msg);
    return 2;
}

static int fail(const char *what, const char *msg)
{
    if (what)
        fprintf(stderr, TOOL ": %s: %s\n", what, msg);
    else
        fprintf(stderr, TOOL ": %s\n", msg);
    return 1;
}

typedef struct split_set {
    ld_data *train, *val, *test; /* val == test when there is no val split */
    int has_val;
} split_set;

static double lr_at(const tr_opts *o, int epoch)
{
    if (strcmp(o->schedule, "const") == 0)
        return o->lr;
    double f = 1.0 - (double)epoch / (double)o->epochs;
    if (f < 0)
        f = 0;
    return 1e-4 + (o->lr - 1e-4) * pow(f, 0.9);
}

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
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
    be->ops->profile_write(be, f, 1, 40);
    fclose(f);
    snprintf(path, sizeof path, "%s/profile.md", out);
    int rc = cm_write_file_atomic(path, text, n, err);
    free(text);
    return rc;
}

/* Runs one evaluation pass; acc_* = -1 when that network is not evaluated. */
static int evaluate(tr_system *sys, ld_loader *ld, ld_device *dv, be_ctx *be, ds_comm *comm, int want_s,
                    int want_t, int32_t *ps, int32_t *pt, double *acc_s, double *acc_t, cm_err *err)
{
    tr_rng dummy;
    tr_rng_seed(&dummy, 0);
    if (ld_loader_start(ld, &dummy, 0, err) != 0)
        return -1;
    long long n = 0, cs = 0, ct = 0;
    ld_host_batch *hb = NULL;
    int rc;
    tr_batch b;
    while ((rc = ld_device_next(dv, ld, &hb, &b, err)) == 1) {
        if (tr_system_eval(sys, &b, want_s ? ps : NULL, want_t ? pt : NULL, NULL, NULL, err) != 0) {
            ld_loader_release(ld, hb);
            rc = -1;
            break;
        }
        be->ops->sync(be);
        for (int i = 0; i < hb->B; i++) {
            cs += want_s && ps[i] == hb->labels[i];
            ct += want_t && pt[i] == hb->labels[i];
        }
        n += hb->B;
        ld_loader_release(ld, hb);
    }
    ld_device_drop(dv);
    ld_loader_stop(ld);
    if (rc < 0)
        return -1;
    int64_t counts[3] = {n, cs, ct}; /* each rank evaluated its share (ld_opts) */
    if (ds_allreduce_i64(comm, counts, 3, DS_SUM, err) != 0)
        return -1;
    n = counts[0], cs = counts[1], ct = counts[2];
    *acc_s = want_s && n ? (double)cs / (double)n : -1;
    *acc_t = want_t && n ? (double)ct / (double)n : -1;
    return 0;
}

static void add_acc(cJSON *o, const char *key, double v)
{
    if (v >= 0)
        cJSON_AddNumberToObject(o, key, v);
}

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
        if (dump_device_f32(dir, step, "visual", be, b->visual, shape, 5, err) != 0)
            return -1;
        size_t nc = (size_t)b->B * (size_t)hb->F;
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
        if (rc)
            return -1;
    }
    size_t ls[1] = {(size_t)b->B};
    if (dump_npy(dir, step, "labels", "<i4", ls, 1, hb->labels, err) != 0)
        return -1;
    return dump_npy(dir, step, "index", "<i8", ls, 1, hb->index, err);
}

/* Appends the record j to the metrics log and deletes it; -1 when printing or writing fails. */
static int log_record(mt_log *mt, cJSON *j, cm_err *err)
{
    char *line = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!line)
        return cm_err_set(err, "out of memory");
    int wr = mt_write(mt, line, err);
    free(line);
    return wr;
}

static int parse_enum(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static int train_main(int argc, char **argv, tr_opts *op, char **opts_textp, ds_comm *comm)
{
    const int rank = ds_rank(comm), world = ds_size(comm), lead = rank == 0;
    tr_opts cl;
    tr_opts_default(&cl);
    cm_err err = {{0}};
    char **given = NULL;
    if (tr_opts_parse(&cl, argc, argv, &given, &err) != 0)
        return usage_error(err.msg);
    if (cl.help) {
        if (lead)
            tr_opts_help(stdout);
        free(given);
        return 0;
    }
    int resuming = cl.resume != NULL;
    char path[CM_PATH_MAX];
    char *opts_text = NULL;
    if (resuming) {
        for (char **g = given; *g; g++)
            if (!tr_opts_resume_override(*g)) {
                snprintf(err.msg, sizeof err.msg, "--%s cannot be given with --resume (the run's options.json holds it)", *g);
                free(given);
                return usage_error(err.msg);
            }
        path_in(path, sizeof path, cl.resume, "options.json");
        size_t n = 0;
        int rr = cm_read_file(path, &opts_text, &n, &err);
        *opts_textp = opts_text;
        if (rr != 0) {
            free(given);
            return fail(cl.resume, "not a run folder (no readable options.json)");
        }
        tr_opts_default(op);
        if (tr_opts_from_json(op, opts_text, &err) != 0) {
            free(given);
            return fail(path, err.msg);
        }
        tr_opts_apply(op, &cl, given);
        op->out = cl.resume;
        op->resume = cl.resume;
    } else {
        *op = cl;
    }
    free(given);

    /* ---- option checks (usage errors) ---- */
    if (!op->data)
        return usage_error("--data DIR is required");
    if (!op->out)
        return usage_error("--out RUN is required");
    if (op->epochs < 1 || op->batch_size < 1 || op->width < 1 || op->image_size < 8 || op->steps < 0 || op->threads < 0 ||
        op->loader_threads < 0 || op->eval_from < 0)
        return usage_error("--epochs, --batch-size, --width must be >= 1, --image-size >= 8, counts >= 0");
    if (!(op->lr > 0) || !isfinite(op->lr) || op->momentum < 0 || op->momentum >= 1)
        return usage_error("--lr must be positive and finite, --momentum in [0, 1)");
    if (op->depth != 18 && op->depth != 50)
        return usage_error("--depth must be 18 or 50");
    static const char *const methods[] = {"none", "kd", "nkd", "c2kd"};
    static const char *const mods[] = {"audio", "visual"};
    static const char *const updates[] = {"full", "top", "frozen"};
    static const char *const proxies[] = {"fa", "none", "cfa"};
    int method = parse_enum(op->method, methods, 4);
    int student = parse_enum(op->student, mods, 2), teacher = parse_enum(op->teacher, mods, 2);
    int update = parse_enum(op->teacher_update, updates, 3), proxy = parse_enum(op->proxy, proxies, 3);
    if (method < 0 || student < 0 || teacher < 0 || update < 0 || proxy < 0)
        return usage_error("bad --method, --student, --teacher, --teacher-update or --proxy");
    if (op->pretrain && op->teacher_ckpt)
        return usage_error("--pretrain trains the teacher from scratch; --teacher-ckpt does not apply");
    if (op->init && resuming)
        return usage_error("--init and --resume exclude each other");
    if (!resuming && !op->force && lead) {
        path_in(path, sizeof path, op->out, "last.h5");
        char p2[CM_PATH_MAX];
        path_in(p2, sizeof p2, op->out, "options.json");
        if (cm_is_file(path) || cm_is_file(p2)) {
            snprintf(err.msg, sizeof err.msg,
                     "%s already holds a run (continue it with --resume %s, or give --force to replace it)", op->out, op->out);
            return usage_error(err.msg);
        }
    }

    /* ---- data ---- */
    split_set sp = {0};
    sp.train = ld_data_open(op->data, "train", &err);
    if (!sp.train) {
        snprintf(path, sizeof path, "%s: split train", op->data);
        return fail(path, err.msg);
    }
    sp.has_val = ld_split_exists(op->data, "val");
    sp.test = ld_data_open(op->data, "test", &err);
    if (!sp.test) {
        snprintf(path, sizeof path, "%s: split test", op->data);
        ld_data_close(sp.train);
        return fail(path, err.msg);
    }
    if (sp.has_val) {
        sp.val = ld_data_open(op->data, "val", &err);
        if (!sp.val) {
            snprintf(path, sizeof path, "%s: split val", op->data);
            ld_data_close(sp.train);
            ld_data_close(sp.test);
            return fail(path, err.msg);
        }
    } else {
        sp.val = sp.test;
    }
    int rc = 1;
    be_ctx *be = NULL;
    tr_system *sys = NULL;
    ld_loader *ltrain = NULL, *lval = NULL, *ltest = NULL;
    ld_device *dv = NULL;
    mt_log *mt = NULL;
    cm_progress *prog = NULL;
    char *identity = NULL, *ck_id = NULL;
    int32_t *ps = NULL, *pt = NULL;
    const char *splits[3] = {"val", "test", "train"};
    ld_data *sets[3] = {sp.val, sp.test, sp.train};
    for (int k = sp.has_val ? 0 : 1; k < 3; k++)
        if (ld_data_count(sets[k]) == 0) {
            snprintf(path, sizeof path, "%s: split %s", op->data, splits[k]);
            fail(path, "empty split (no samples)");
            goto out;
        }
    for (int k = sp.has_val ? 0 : 1; k < 2; k++)
        if (ld_data_compatible(sp.train, sets[k], &err) != 0) {
            snprintf(path, sizeof path, "%s: split %s", op->data, splits[k]);
            cm_err_prefix(&err, "does not match split train");
            fail(path, err.msg);
            goto out;
        }
    if (ld_data_count(sp.train) / (size_t)world < (size_t)op->batch_size) {
        snprintf(path, sizeof path, "%s: split train", op->data);
        snprintf(err.msg, sizeof err.msg, "%zu samples, fewer than one batch of %d for each of %d rank%s (training drops partial batches)",
                 ld_data_count(sp.train), op->batch_size, world, world == 1 ? "" : "s");
        fail(path, err.msg);
        goto out;
    }
    const st_meta *meta = ld_data_meta(sp.train);
    identity = ld_data_identity(sp.train);

    /* ---- checkpoints: do they match the data? (before any heavy work) ---- */
    const char *ck_paths[3] = {NULL, NULL, NULL};
    char last_path[CM_PATH_MAX], best_path[CM_PATH_MAX];
    path_in(last_path, sizeof last_path, op->out, "last.h5");
    path_in(best_path, sizeof best_path, op->out, "best.h5");
    ck_paths[0] = resuming ? last_path : NULL;
    ck_paths[1] = op->init;
    ck_paths[2] = op->teacher_ckpt;
    for (int k = 0; k < 3; k++) {
        if (!ck_paths[k])
            continue;
        if (!cm_is_file(ck_paths[k])) {
            fail(ck_paths[k], "no such checkpoint file");
            goto out;
        }
        free(ck_id);
        ck_id = NULL;
        if (ld_ckpt_identity(ck_paths[k], &ck_id, &err) != 0) {
            fail(ck_paths[k], err.msg);
            goto out;
        }
        if (ck_id && ld_identity_compare(identity, ck_id, &err) != 0) {
            snprintf(path, sizeof path, "%s: does not match %s", ck_paths[k], op->data);
            fail(path, err.msg);
            goto out;
        }
    }

    /* ---- backend ---- */
    if (op->cudnn_workspace_mb < 0) {
        fail("--cudnn-workspace-mb", "must be 0 or more");
        goto out;
    }
    be_options bo;
    be_options_default(&bo);
    bo.threads = op->threads;
    bo.tf32 = strcmp(op->tf32, "on") == 0;
    bo.bn = strcmp(op->bn, "cudnn") == 0 ? BE_BN_CUDNN : BE_BN_OWN;
    bo.workspace_mb = (size_t)op->cudnn_workspace_mb;
    bo.cudnn_find = strcmp(op->cudnn_find, "on") == 0;
    bo.profile = op->profile;
    if (strcmp(op->device, "cpu") == 0) {
        be = be_cpu_create(bo.threads, &err);
    } else {
        bo.device = ds_local_rank(comm);
        be = be_cuda_create(&bo, &err);
        if (!be && strcmp(op->device, "cuda") == 0) {
            fail("--device cuda", err.msg);
            goto out;
        }
        if (!be) {
            fprintf(stderr, TOOL ": notice: no CUDA backend (%s); using the CPU\n", err.msg);
            be = be_cpu_create(bo.threads, &err);
        }
    }
    if (!be) {
        fail("backend", err.msg);
        goto out;
    }

    if (resuming && tr_run_world(op->out, 1, comm, &err) != 0) {
        fail(op->out, err.msg);
        goto out;
    }
    if (ds_active(comm) && strcmp(be->ops->name, "cpu") != 0 && ds_gpu_init(comm, ds_local_rank(comm), 0, &err) != 0) {
        fail("NCCL", err.msg);
        goto out;
    }

    /* ---- system ---- */
    tr_config cfg;
    tr_config_default(&cfg);
    cfg.pretrain = op->pretrain;
    cfg.method = (tr_method)method;
    cfg.student = student == 0 ? TR_AUDIO : TR_VISUAL;
    cfg.teacher = teacher == 0 ? TR_AUDIO : TR_VISUAL;
    cfg.depth = op->depth;
    cfg.width = op->width;
    cfg.n_classes = meta->n_classes;
    cfg.frames = meta->frames_per_sample;
    if (strcmp(op->visual_mode, "auto") == 0)
        cfg.visual_mode = cfg.frames > 1 ? TR_VISUAL_FOLD : TR_VISUAL_STACK;
    else
        cfg.visual_mode = strcmp(op->visual_mode, "fold") == 0 ? TR_VISUAL_FOLD : TR_VISUAL_STACK;
    cfg.image_size = op->image_size;
    cfg.spec_bins = meta->bins;
    cfg.spec_frames = meta->frames;
    cfg.proxy = (tr_proxy_kind)proxy;
    cfg.teacher_update = (tr_teacher_update)update;
    cfg.lambda1 = (float)op->lambda1;
    cfg.lambda2 = (float)op->lambda2;
    cfg.lambda3 = (float)op->lambda3;
    cfg.omega = (float)op->omega;
    cfg.kd_temp = (float)op->kd_temp;
    cfg.nkd_gamma = (float)op->nkd_gamma;
    cfg.nkd_temp = (float)op->nkd_temp;
    cfg.momentum = (float)op->momentum;
    cfg.max_batch = op->batch_size;
    sys = tr_system_create(be, &cfg, (uint64_t)op->seed, &err);
    if (!sys) {
        fail("model", err.msg);
        goto out;
    }

    /* ---- checkpoints (read before anything is written) ---- */
    tr_position pos;
    memset(&pos, 0, sizeof pos);
    pos.seed = (uint64_t)op->seed;
    pos.best_val = -1;
    pos.best_test = -1;
    pos.best_epoch = 0;
    tr_rng rng;
    tr_rng_seed(&rng, (uint64_t)op->seed ^ 0x6c6f61646572ULL); /* the loader's stream, apart from the init's */
    memcpy(pos.rng_state, rng.s, sizeof rng.s);
    for (int k = 0; k < 3; k++) {
        if (!ck_paths[k])
            continue;
        int r;
        if (k == 0)
            r = tr_checkpoint_load(sys, ck_paths[k], NULL, 1, &pos, &err);
        else if (k == 1)
            r = tr_checkpoint_load(sys, ck_paths[k], NULL, 0, NULL, &err);
        else if (method == TR_NONE)
            r = fprintf(stderr, TOOL ": notice: --method none trains no teacher; --teacher-ckpt is not used\n") < 0;
        else
            r = tr_checkpoint_load(sys, ck_paths[k], "teacher", 0, NULL, &err);
        if (r != 0) {
            fail(ck_paths[k], err.msg);
            goto out;
        }
    }
    if (resuming)
        memcpy(rng.s, pos.rng_state, sizeof rng.s);
    tr_system_set_steps(sys, pos.step);
    tr_system_set_comm(sys, comm);
    if (tr_system_broadcast(sys, &err) != 0) { /* DDP: every rank starts from rank 0's state */
        fail("ranks", err.msg);
        goto out;
    }

    /* ---- loaders ---- */
    int uses[2] = {0, 0}; /* audio, visual */
    if (op->pretrain) {
        uses[cfg.teacher] = 1;
    } else {
        uses[cfg.student] = 1;
        if (method != TR_NONE)
            uses[cfg.teacher] = 1;
    }
    int lthreads = op->loader_threads > 0 ? op->loader_threads : be->ops->input_threads(be, cm_ncpu());
    ld_opts lo = {.batch = op->batch_size, .augment = !op->no_augment, .shuffle = !op->no_shuffle, .drop_last = 1,
                  .threads = lthreads, .need_audio = uses[0], .need_visual = uses[1], .rank = rank, .world = world};
    ltrain = ld_loader_create(sp.train, be, &lo, &err);
    lo.augment = 0;
    lo.shuffle = 0;
    lo.drop_last = 0;
    lval = ltrain ? ld_loader_create(sp.val, be, &lo, &err) : NULL;
    ltest = lval && sp.has_val ? ld_loader_create(sp.test, be, &lo, &err) : lval;
    dv = ltest ? ld_device_create(be, ld_data_meta(sp.train), op->batch_size, op->image_size, uses[0], uses[1], &err) : NULL;
    ps = calloc((size_t)op->batch_size, sizeof *ps);
    pt = calloc((size_t)op->batch_size, sizeof *pt);
    if (!dv || !ps || !pt) {
        fail("loader", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    const size_t nb = ld_loader_batches(ltrain);
    const int64_t total_steps = (int64_t)nb * op->epochs;

    /* ---- outputs (rank 0 only) ---- */
    if (lead && cm_mkdirs(op->out, &err) != 0) {
        fail(op->out, err.msg);
        goto out;
    }
    if (lead && !resuming && tr_run_world(op->out, 0, comm, &err) != 0) {
        fail(op->out, err.msg);
        goto out;
    }
    if (lead && !resuming) {
        char *oj = tr_opts_to_json(op);
        path_in(path, sizeof path, op->out, "options.json");
        int r = cm_write_file_atomic(path, oj, strlen(oj), &err);
        free(oj);
        if (r != 0) {
            fail(path, err.msg);
            goto out;
        }
        /* --force: a replaced run's checkpoints must not survive */
        unlink(best_path);
        unlink(last_path);
    }
    if (op->dump_batches && cm_mkdirs(op->dump_batches, &err) != 0) {
        fail(op->dump_batches, err.msg);
        goto out;
    }
    char metrics_path[CM_PATH_MAX], svg_path[CM_PATH_MAX], result_path[CM_PATH_MAX];
    path_in(metrics_path, sizeof metrics_path, op->out, "metrics.jsonl");
    path_in(svg_path, sizeof svg_path, op->out, "curves.svg");
    path_in(result_path, sizeof result_path, op->out, "result.json");
    mt = lead ? mt_open(metrics_path, resuming ? pos.step : -1, resuming ? pos.epoch : 0, &err) : NULL;
    if (lead && !mt) {
        fail(metrics_path, err.msg);
        goto out;
    }
    const int eval_s = !op->pretrain, eval_t = op->pretrain || method != TR_NONE;
    const char *which = op->pretrain ? "teacher" : "student";
    if (resuming && lead)
        fprintf(stderr, TOOL ": resuming %s at epoch %d, step %lld\n", op->out, pos.epoch + 1, (long long)pos.step);
    if (lead && world > 1)
        fprintf(stderr, TOOL ": data parallel over %d ranks, %d samples per rank and step\n", world, op->batch_size);
    if (lead)
    fprintf(stderr, TOOL ": %s, %s%s -> %s, %zu/%zu/%zu samples (train/val/test%s), %zu steps per epoch, backend %s\n",
            op->pretrain ? "pretrain" : op->method, op->pretrain ? "" : op->teacher, op->pretrain ? op->teacher : "",
            op->pretrain ? "" : op->student, ld_data_count(sp.train), ld_data_count(sp.val), ld_data_count(sp.test),
            sp.has_val ? "" : "; test serves as val", nb, be->ops->name);

    prog = lead ? cm_progress_create(stderr, TOOL, (size_t)total_steps, 5.0) : NULL;
    int stopped = 0;
    double last_val_s = -1, last_test_s = -1, last_val_t = -1, last_test_t = -1;
    for (int e = pos.epoch; e < op->epochs && !stopped; e++) {
        double t0 = cm_now();
        double lr = lr_at(op, e);
        uint64_t epoch_rng[4];
        memcpy(epoch_rng, rng.s, sizeof epoch_rng);
        size_t skip = (size_t)(pos.step - (int64_t)e * (int64_t)nb);
        if (pos.step < (int64_t)e * (int64_t)nb || skip > nb) {
            fail(last_path, "position (epoch, step) inconsistent with the data and batch size");
            goto out;
        }
        if (ld_loader_start(ltrain, &rng, skip, &err) != 0) {
            fail("loader", err.msg);
            goto out;
        }
        double sum_loss = 0;
        long long seen = 0, hit_s = 0, hit_t = 0, nsteps = 0;
        if (skip > 0) {
            /* Resumed inside this epoch: its training averages continue from the log. */
            mt_partial mp;
            if (lead && mt_epoch_partial(metrics_path, e + 1, pos.step, &mp, &err) != 0) {
                fail(metrics_path, err.msg);
                goto out;
            }
            nsteps = mp.steps;
            sum_loss = mp.sum_loss;
            seen = mp.steps * op->batch_size * world;
            hit_s = llround(mp.sum_acc_student * op->batch_size * world);
            hit_t = llround(mp.sum_acc_teacher * op->batch_size * world);
        }
        ld_host_batch *hb;
        int r;
        tr_batch b;
        while ((r = ld_device_next(dv, ltrain, &hb, &b, &err)) == 1) {
            tr_stats st;
            memset(&st, 0, sizeof st);
            if (op->dump_batches && (op->dump_count < 0 || pos.step < op->dump_count) &&
                dump_batch(op->dump_batches, (long long)pos.step, be, &b, hb, &cfg, &err) != 0) {
                ld_loader_release(ltrain, hb);
                fail(op->dump_batches, err.msg);
                goto out;
            }
            if (tr_system_step(sys, &b, (float)lr, &st, &err) != 0) {
                ld_loader_release(ltrain, hb);
                snprintf(path, sizeof path, "epoch %d", e + 1);
                if (prog)
                    cm_progress_finish(prog, (size_t)pos.step, 0, NULL);
                fail(path, err.msg);
                goto out;
            }
            be->ops->sync(be);
            int B = st.samples; /* the global batch: hb->B on each of the ranks */
            ld_loader_release(ltrain, hb);
            pos.step++;
            nsteps++;
            seen += B;
            hit_s += st.correct_student;
            hit_t += st.correct_teacher;
            sum_loss += st.loss;
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "type", "step");
            cJSON_AddNumberToObject(j, "step", (double)pos.step);
            cJSON_AddNumberToObject(j, "epoch", e + 1);
            cJSON_AddNumberToObject(j, "lr", lr);
            cJSON_AddNumberToObject(j, "loss", st.loss);
            for (int k = 0; k < st.n_terms && k < TR_MAX_TERMS; k++)
                if (st.term_name[k])
                    cJSON_AddNumberToObject(j, st.term_name[k], st.term[k]);
            if (st.kept >= 0)
                cJSON_AddNumberToObject(j, "kept", st.kept);
            else
                cJSON_AddNullToObject(j, "kept");
            if (eval_s)
                cJSON_AddNumberToObject(j, "acc_student", (double)st.correct_student / B);
            if (eval_t)
                cJSON_AddNumberToObject(j, "acc_teacher", (double)st.correct_teacher / B);
            if (!lead)
                cJSON_Delete(j);
            else if (log_record(mt, j, &err) != 0) {
                fail(metrics_path, err.msg);
                goto out;
            }
            char extra[128];
            snprintf(extra, sizeof extra, "epoch %d/%d loss %.4f lr %.3g", e + 1, op->epochs, st.loss, lr);
            if (prog)
                cm_progress_update(prog, (size_t)pos.step, 0, extra);
            if (op->steps > 0 && pos.step >= op->steps) {
                stopped = 1;
                break;
            }
        }
        if (r == LD_DEVICE_FAILED) {
            fail("device", err.msg);
            goto out;
        }
        if (r < 0) {
            snprintf(path, sizeof path, "%s: split train", op->data);
            fail(path, err.msg);
            goto out;
        }
        ld_device_drop(dv);
        ld_loader_stop(ltrain);
        if (pos.step < (int64_t)(e + 1) * (int64_t)nb) {
            /* Stopped inside the epoch: the checkpoint keeps the epoch's start state, and
             * a resumed run redraws the same permutation and skips the batches done. */
            memcpy(pos.rng_state, epoch_rng, sizeof epoch_rng);
            if (lead && tr_checkpoint_save(sys, last_path, &pos, identity, &err) != 0) {
                fail(last_path, err.msg);
                goto out;
            }
            break;
        }
        pos.epoch = e + 1;
        memcpy(pos.rng_state, rng.s, sizeof rng.s);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "epoch");
        cJSON_AddNumberToObject(j, "epoch", e + 1);
        cJSON_AddNumberToObject(j, "step", (double)pos.step);
        cJSON_AddNumberToObject(j, "lr", lr);
        if (nsteps > 0) {
            cJSON_AddNumberToObject(j, "train_loss", sum_loss / (double)nsteps);
            if (eval_s)
                cJSON_AddNumberToObject(j, "train_acc_student", (double)hit_s / (double)seen);
            if (eval_t)
                cJSON_AddNumberToObject(j, "train_acc_teacher", (double)hit_t / (double)seen);
        }
        int improved = 0;
        if (e + 1 >= op->eval_from) {
            double vs, vt, ts, tt;
            if (evaluate(sys, lval, dv, be, comm, eval_s, eval_t, ps, pt, &vs, &vt, &err) != 0) {
                cJSON_Delete(j);
                snprintf(path, sizeof path, "evaluation on %s", sp.has_val ? "val" : "test");
                fail(path, err.msg);
                goto out;
            }
            if (sp.has_val) {
                if (evaluate(sys, ltest, dv, be, comm, eval_s, eval_t, ps, pt, &ts, &tt, &err) != 0) {
                    cJSON_Delete(j);
                    fail("evaluation on test", err.msg);
                    goto out;
                }
            } else {
                ts = vs;
                tt = vt;
            }
            last_val_s = vs, last_val_t = vt, last_test_s = ts, last_test_t = tt;
            add_acc(j, "val_acc_student", vs);
            add_acc(j, "test_acc_student", ts);
            add_acc(j, "val_acc_teacher", vt);
            add_acc(j, "test_acc_teacher", tt);
            double v = op->pretrain ? vt : vs, t = op->pretrain ? tt : ts;
            if (v > pos.best_val) {
                pos.best_val = v;
                pos.best_test = t;
                pos.best_epoch = e + 1;
                improved = 1;
            }
        }
        cJSON_AddNumberToObject(j, "best_epoch", pos.best_epoch);
        if (pos.best_epoch > 0) {
            cJSON_AddNumberToObject(j, "best_val", pos.best_val);
            cJSON_AddNumberToObject(j, "best_test", pos.best_test);
        }
        cJSON_AddNumberToObject(j, "seconds", cm_now() - t0);
        be_stats bst;
        if (be->ops->stats) {
            be->ops->stats(be, &bst);
            cJSON_AddNumberToObject(j, "gpu_peak_bytes", (double)bst.peak_bytes);
        }
        if (ds_active(comm) && be->ops->stats) /* NCCL gradient all-reduce time of this epoch (rank 0) */
            cJSON_AddNumberToObject(j, "allreduce_seconds", ds_gpu_take_seconds(comm));
        if (tr_system_check_same(sys, &err) != 0) {
            cJSON_Delete(j);
            fail("ranks", err.msg);
            goto out;
        }
        if (!lead) {
            cJSON_Delete(j);
            j = NULL;
        }
        if (lead && improved && tr_checkpoint_save(sys, best_path, &pos, identity, &err) != 0) {
            cJSON_Delete(j);
            fail(best_path, err.msg);
            goto out;
        }
        if (lead && tr_checkpoint_save(sys, last_path, &pos, identity, &err) != 0) {
            cJSON_Delete(j);
            fail(last_path, err.msg);
            goto out;
        }
        if (lead && log_record(mt, j, &err) != 0) {
            fail(metrics_path, err.msg);
            goto out;
        }
        if (op->steps > 0 && pos.step >= op->steps)
            stopped = 1;
    }
    if (prog)
        cm_progress_finish(prog, (size_t)pos.step, 0, NULL);
    if (!lead) {
        rc = 0;
        goto out;
    }

    /* ---- the end: plot, result, summary ---- */
    char title[512];
    if (!op->pretrain)
        snprintf(title, sizeof title, "%s: %s %s->%s, width %d, %d epochs", op->out, op->method, op->teacher, op->student,
                 op->width, op->epochs);
    else
        snprintf(title, sizeof title, "%s: pretrain %s teacher, width %d, %d epochs", op->out, op->teacher, op->width, op->epochs);
    if (pl_write_svg(metrics_path, svg_path, title, &err) != 0) {
        fail(svg_path, err.msg);
        goto out;
    }
    int complete = pos.epoch >= op->epochs;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "network", which);
    cJSON_AddStringToObject(res, "method", op->pretrain ? "pretrain" : op->method);
    cJSON_AddStringToObject(res, "teacher", op->teacher);
    if (!op->pretrain)
        cJSON_AddStringToObject(res, "student", op->student);
    cJSON_AddBoolToObject(res, "complete", complete);
    cJSON_AddNumberToObject(res, "epochs", op->epochs);
    cJSON_AddNumberToObject(res, "epochs_completed", pos.epoch);
    cJSON_AddNumberToObject(res, "steps", (double)pos.step);
    cJSON_AddNumberToObject(res, "best_epoch", pos.best_epoch);
    if (pos.best_epoch > 0) {
        cJSON_AddNumberToObject(res, "best_val_acc", pos.best_val);
        cJSON_AddNumberToObject(res, "test_acc_at_best_val", pos.best_test);
    } else {
        cJSON_AddNullToObject(res, "best_val_acc");
        cJSON_AddNullToObject(res, "test_acc_at_best_val");
    }
    cJSON_AddBoolToObject(res, "val_is_test", !sp.has_val);
    double fv = op->pretrain ? last_val_t : last_val_s, ft = op->pretrain ? last_test_t : last_test_s;
    if (fv >= 0) {
        cJSON_AddNumberToObject(res, "last_val_acc", fv);
        cJSON_AddNumberToObject(res, "last_test_acc", ft);
    }
    if (!op->pretrain && eval_t && last_test_t >= 0)
        cJSON_AddNumberToObject(res, "last_test_acc_teacher", last_test_t);
    cJSON_AddStringToObject(res, "plot", svg_path);
    be_stats bst = {0};
    if (be->ops->stats)
        be->ops->stats(be, &bst);
    if (be->ops->device_name) {
        cJSON_AddStringToObject(res, "gpu", be->ops->device_name(be));
        cJSON_AddNumberToObject(res, "gpu_peak_bytes", (double)bst.peak_bytes);
    }
    int wr = write_json(result_path, res, &err);
    cJSON_Delete(res);
    if (wr != 0) {
        fail(result_path, err.msg);
        goto out;
    }
    if (pos.best_epoch > 0)
        printf("%s: %s %s: best validation epoch %d (val %.2f%%), test top-1 %.2f%%%s; plot %s\n", op->out,
               op->pretrain ? "pretrain" : op->method, which, pos.best_epoch, 100 * pos.best_val, 100 * pos.best_test,
               complete ? "" : " (run incomplete)", svg_path);
    else
        printf("%s: %s %s: stopped at step %lld (%d of %d epochs completed), no evaluation yet; plot %s\n", op->out,
               op->pretrain ? "pretrain" : op->method, which, (long long)pos.step, pos.epoch, op->epochs, svg_path);
    if (be->ops->device_name)
        printf("%s: peak GPU memory %.0f MiB on %s\n", op->out, (double)bst.peak_bytes / 1048576.0,
               be->ops->device_name(be));
    if (op->profile && be->ops->profile_write && write_profile(be, op->out, &err) != 0) {
        fail(op->out, err.msg);
        goto out;
    }
    rc = 0;
out:
    if (prog)
        cm_progress_destroy(prog);
    mt_close(mt);
    ld_loader_destroy(ltrain);
    if (ltest != lval)
        ld_loader_destroy(ltest);
    ld_loader_destroy(lval);
    ld_device_destroy(dv);
    if (sys)
        tr_system_destroy(sys);
    if (be)
        be->ops->destroy(be);
    if (sp.val != sp.test)
        ld_data_close(sp.val);
    ld_data_close(sp.test);
    ld_data_close(sp.train);
    free(identity);
    free(ck_id);
    free(ps);
    free(pt);
    return rc;
}

/* The watchdog of dist.h: a collective that does not complete in time means
 * another rank died or hangs; every rank is ended. */
static void dist_timeout(void *arg, const char *what, double seconds)
{
    ds_comm *comm = *(ds_comm **)arg;
    fprintf(stderr, TOOL ": rank %d: %s not completed after %.0f s (another rank died or hangs; "
            "C2KD_DIST_TIMEOUT sets the limit); ending every rank\n", ds_rank(comm), what, seconds);
    fflush(stderr);
    ds_abort(comm, 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    tr_opts o;
    char *opts_text = NULL;
    cm_err err = {{0}};
    static ds_comm *comm; /* for the watchdog callback */
    const char *to = getenv("C2KD_DIST_TIMEOUT");
    comm = ds_create(to ? atof(to) : 600.0, dist_timeout, &comm, &err);
    if (!comm)
        return fail("MPI", err.msg);
    tr_opts_default(&o);
    int rc = train_main(argc, argv, &o, &opts_text, comm);
    tr_opts_release(&o);
    free(opts_text);
    if (rc != 0 && ds_active(comm)) {
        /* The other ranks may wait in a collective: end them (mpirun reports it). */
        fprintf(stderr, TOOL ": rank %d failed; ending every rank\n", ds_rank(comm));
        fflush(stderr);
        ds_abort(comm, rc);
    }
    ds_destroy(comm);
    return rc;
}
