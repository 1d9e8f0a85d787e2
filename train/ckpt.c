/* ckpt: HDF5 checkpoints with PyTorch state_dict names (docs/FORMAT.md, "Checkpoints"). */
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/cm_file.h"
#include "h5/h5.h"
#include "train/methods.h"
#include "train/system.h"
#include "train/system_internal.h"

/* 2: string attributes fixed-length (1: variable-length, still read). */
#define CKPT_FORMAT_VERSION 2

static const char *mod_name(tr_modality m)
{
    return m == TR_AUDIO ? "audio" : "visual";
}

static char *config_json(const tr_config *c)
{
    static const char *updates[] = {"full", "top", "frozen"};
    static const char *proxies[] = {"fa", "none", "cfa"};
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "pretrain", c->pretrain);
    cJSON_AddStringToObject(o, "method", tr_methods_name(c->method));
    cJSON_AddStringToObject(o, "student", mod_name(c->student));
    cJSON_AddStringToObject(o, "teacher", mod_name(c->teacher));
    cJSON_AddNumberToObject(o, "student_depth", c->student_depth);
    cJSON_AddNumberToObject(o, "teacher_depth", c->teacher_depth);
    cJSON_AddNumberToObject(o, "width", c->width);
    cJSON_AddNumberToObject(o, "n_classes", c->n_classes);
    cJSON_AddNumberToObject(o, "frames", c->frames);
    cJSON_AddStringToObject(o, "visual_mode", c->visual_mode == TR_VISUAL_FOLD ? "fold" : "stack");
    cJSON_AddNumberToObject(o, "image_size", c->image_size);
    cJSON_AddNumberToObject(o, "spec_bins", c->spec_bins);
    cJSON_AddNumberToObject(o, "spec_frames", c->spec_frames);
    cJSON_AddStringToObject(o, "proxy", proxies[c->proxy]);
    cJSON_AddStringToObject(o, "teacher_update", updates[c->teacher_update]);
    cJSON_AddNumberToObject(o, "lambda1", c->lambda1);
    cJSON_AddNumberToObject(o, "lambda2", c->lambda2);
    cJSON_AddNumberToObject(o, "lambda3", c->lambda3);
    cJSON_AddNumberToObject(o, "omega", c->omega);
    cJSON_AddNumberToObject(o, "kd_temp", c->kd_temp);
    cJSON_AddNumberToObject(o, "nkd_gamma", c->nkd_gamma);
    cJSON_AddNumberToObject(o, "nkd_temp", c->nkd_temp);
    cJSON_AddNumberToObject(o, "momentum", c->momentum);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The cause of the first failed write (h5_cause, taken right after the
 * failed call, before any other HDF5 call clears the error stack). */
#define CAUSE_LEN 256
static int failed_write(char *cause)
{
    if (cause && !cause[0])
        h5_cause(cause, CAUSE_LEN);
    return -1;
}

static int write_ds(hid_t g, const char *name, const tr_tensor *t, const float *v, char *cause)
{
    hsize_t d[4];
    for (int i = 0; i < t->ndim; i++)
        d[i] = (hsize_t)t->shape[i];
    hid_t sp = H5Screate_simple(t->ndim, d, NULL);
    if (sp < 0)
        return -1;
    hid_t ds = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0 ? failed_write(cause) : 0;
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

static int write_nbt(hid_t g, const char *name, int64_t v, char *cause)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(g, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0 ? failed_write(cause) : 0;
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

/* Writes group `gname` of file f: values (momentum == 0) or momenta. */
static int write_reg(be_ctx *be, hid_t parent, const char *gname, const tr_reg *r, int momentum, char *cause)
{
    float *hw = malloc((r->np ? r->np : 1) * sizeof(float));
    float *hb = malloc((r->nb ? r->nb : 1) * sizeof(float));
    hid_t g = H5Gcreate2(parent, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (!hw || !hb || g < 0) ? -1 : 0;
    if (rc == 0) {
        be->ops->to_host(be, hw, momentum ? r->m : r->w, r->np * sizeof(float));
        if (r->nb && !momentum)
            be->ops->to_host(be, hb, r->buf, r->nb * sizeof(float));
    }
    for (int i = 0; rc == 0 && i < r->nt; i++) {
        const tr_tensor *t = &r->t[i];
        if (t->kind == TT_PARAM)
            rc = write_ds(g, t->name, t, hw + t->off, cause);
        else if (momentum)
            continue;
        else if (t->kind == TT_BUFFER)
            rc = write_ds(g, t->name, t, hb + t->off, cause);
        else
            rc = write_nbt(g, t->name, r->nbt, cause);
    }
    if (g >= 0)
        H5Gclose(g);
    free(hw);
    free(hb);
    return rc;
}

int tr_checkpoint_save(tr_system *s, const char *path, const tr_position *pos, const char *recipe_json,
                       cm_err *err)
{
    char tmp[CM_PATH_MAX];
    if (cm_tmp_path(tmp, sizeof tmp, path, err) < 0)
        return -1;
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = 0;
    char cause[CAUSE_LEN] = "";
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        failed_write(cause);
        h5_quiet_end(&q);
        unlink(tmp);
        return cm_err_set(err, "cannot create the HDF5 checkpoint: %s", cause);
    }
    const tr_parts *l = &s->parts; /* one group per trained part */
    for (int i = 0; rc == 0 && i < l->n; i++)
        rc = write_reg(s->be, f, l->p[i].reg->group, l->p[i].reg, 0, cause);
    hid_t mg = rc == 0 ? H5Gcreate2(f, "momentum", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (mg < 0)
        rc = -1;
    for (int i = 0; rc == 0 && i < l->n; i++)
        rc = write_reg(s->be, mg, l->p[i].reg->group, l->p[i].reg, 1, cause);
    if (mg >= 0)
        H5Gclose(mg);
    if (rc == 0) {
        tr_position p0 = {.best_val = -1, .best_epoch = -1, .best_test = -1};
        if (!pos)
            pos = &p0;
        int32_t ep = pos->epoch, be_ = pos->best_epoch;
        int64_t st = pos->step;
        uint64_t seed = pos->seed;
        int32_t fmt = CKPT_FORMAT_VERSION;
        rc |= h5_attr_write(f, "format_version", H5T_NATIVE_INT32, 0, &fmt);
        rc |= h5_attr_write(f, "epoch", H5T_NATIVE_INT32, 0, &ep);
        rc |= h5_attr_write(f, "step", H5T_NATIVE_INT64, 0, &st);
        rc |= h5_attr_write(f, "seed", H5T_NATIVE_UINT64, 0, &seed);
        rc |= h5_attr_write(f, "rng_state", H5T_NATIVE_UINT64, 4, pos->rng_state);
        rc |= h5_attr_write(f, "best_val", H5T_NATIVE_DOUBLE, 0, &pos->best_val);
        rc |= h5_attr_write(f, "best_epoch", H5T_NATIVE_INT32, 0, &be_);
        rc |= h5_attr_write(f, "best_test", H5T_NATIVE_DOUBLE, 0, &pos->best_test);
        char *cj = config_json(&s->cfg);
        rc |= cj ? h5_attr_str(f, "config", cj) : -1;
        free(cj);
        if (recipe_json)
            rc |= h5_attr_str(f, "recipe", recipe_json);
    }
    if (rc != 0) { /* free the file's blocks first: on a full disk the close must still flush what it holds */
        int fd = open(tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
    }
    if (H5Fclose(f) < 0)
        rc = failed_write(cause);
    h5_quiet_end(&q);
    if (rc != 0) {
        unlink(tmp);
        return cm_err_set(err, "cannot write the HDF5 checkpoint: %s", cause[0] ? cause : "HDF5 error");
    }
    if (s->be->ops->status(s->be, err) < 0) {
        unlink(tmp);
        return -1;
    }
    return cm_rename_commit(tmp, path, err);
}

/* ---------------------------------------------------------------- loading */

typedef struct load_item {
    tr_reg *reg;
    char src[32];
    float *w, *b, *m;
    int has_m;
    int64_t nbt;
    int has_nbt;
} load_item;

static void shape_str(char *out, size_t n, int ndim, const hsize_t *d)
{
    size_t k = 0;
    k += (size_t)snprintf(out + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    if (k < n)
        snprintf(out + k, n - k, "]");
}

static int check_finite(const float *v, const tr_tensor *t, const char *gname, cm_err *err)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return cm_err_set(err, "%s/%s: non-finite value at %zu", gname, t->name, i);
    return 0;
}

static int read_ds(hid_t g, const char *gname, const tr_tensor *t, float *dst, cm_err *err)
{
    if (H5Lexists(g, t->name, H5P_DEFAULT) <= 0)
        return cm_err_set(err, "%s/%s: missing", gname, t->name);
    hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
    if (ds < 0)
        return cm_err_set(err, "%s/%s: not a dataset", gname, t->name);
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t d[8] = {0};
    int rc = 0;
    if (nd < 0 || nd > 8) {
        rc = cm_err_set(err, "%s/%s: unreadable shape", gname, t->name);
    } else {
        H5Sget_simple_extent_dims(sp, d, NULL);
        int same = nd == t->ndim;
        for (int i = 0; same && i < nd; i++)
            same = d[i] == (hsize_t)t->shape[i];
        if (!same) {
            char a[96], b[96];
            hsize_t e[4];
            for (int i = 0; i < t->ndim; i++)
                e[i] = (hsize_t)t->shape[i];
            shape_str(a, sizeof a, nd, d);
            shape_str(b, sizeof b, t->ndim, e);
            rc = cm_err_set(err, "%s/%s: shape %s in the file, %s expected by this run", gname, t->name, a, b);
        } else {
            hid_t ft = H5Dget_type(ds);
            H5T_class_t cl = H5Tget_class(ft);
            H5Tclose(ft);
            if (cl != H5T_FLOAT && cl != H5T_INTEGER)
                rc = cm_err_set(err, "%s/%s: not numeric", gname, t->name);
            else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
                rc = cm_err_set(err, "%s/%s: unreadable", gname, t->name);
            else
                rc = check_finite(dst, t, gname, err);
        }
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

typedef struct iter_ctx {
    const tr_reg *reg;
    int momentum;
    char bad[128];
} iter_ctx;

static herr_t check_name(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    iter_ctx *c = data;
    int i = tr_reg_find(c->reg, name);
    if (i < 0 || (c->momentum && c->reg->t[i].kind != TT_PARAM)) {
        snprintf(c->bad, sizeof c->bad, "%s", name);
        return 1;
    }
    return 0;
}

static int read_group(hid_t f, load_item *it, int with_optimizer, cm_err *err)
{
    tr_reg *r = it->reg;
    hid_t g = H5Gopen2(f, it->src, H5P_DEFAULT);
    if (g < 0)
        return cm_err_set(err, "%s: not a group", it->src);
    int rc = 0;
    iter_ctx ic = {.reg = r, .momentum = 0};
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, check_name, &ic) != 0)
        rc = cm_err_set(err, "%s/%s: unexpected tensor for this network (another architecture?)", it->src,
                        ic.bad[0] ? ic.bad : "?");
    for (int i = 0; rc == 0 && i < r->nt; i++) {
        const tr_tensor *t = &r->t[i];
        if (t->kind == TT_PARAM)
            rc = read_ds(g, it->src, t, it->w + t->off, err);
        else if (t->kind == TT_BUFFER)
            rc = read_ds(g, it->src, t, it->b + t->off, err);
        else if (!it->has_nbt && H5Lexists(g, t->name, H5P_DEFAULT) > 0) {
            hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
            int64_t v = 0;
            hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
            int one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
            if (sp >= 0)
                H5Sclose(sp);
            if (one && H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0 && v >= 0) {
                it->nbt = v;
                it->has_nbt = 1;
            } else {
                rc = cm_err_set(err, "%s/%s: unreadable (one count >= 0 expected)", it->src, t->name);
            }
            if (ds >= 0)
                H5Dclose(ds);
        }
    }
    H5Gclose(g);
    if (rc == 0 && with_optimizer) {
        char mp[64];
        snprintf(mp, sizeof mp, "momentum/%s", it->src);
        if (H5Lexists(f, "momentum", H5P_DEFAULT) > 0 && H5Lexists(f, mp, H5P_DEFAULT) > 0) {
            hid_t mg = H5Gopen2(f, mp, H5P_DEFAULT);
            if (mg < 0)
                return cm_err_set(err, "%s: not a group", mp);
            ic.momentum = 1;
            ic.bad[0] = 0;
            if (H5Literate(mg, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, check_name, &ic) != 0)
                rc = cm_err_set(err, "%s/%s: unexpected tensor", mp, ic.bad[0] ? ic.bad : "?");
            for (int i = 0; rc == 0 && i < r->nt; i++)
                if (r->t[i].kind == TT_PARAM)
                    rc = read_ds(mg, mp, &r->t[i], it->m + r->t[i].off, err);
            H5Gclose(mg);
            it->has_m = rc == 0;
        }
    }
    return rc;
}

static int accuracy_ok(double v)
{
    return v == -1 || (v >= 0 && v <= 1);
}

/* The position attributes, each checked: a crafted file must not make the
 * trainer overflow or train "epoch -2". Ranges only; whether the position
 * fits the run (epochs, steps per epoch) is the caller's to check. */
static int read_position(hid_t f, tr_position *p, cm_err *err)
{
    int32_t ep = 0, be_ = -1, fmt = 1;
    int64_t st = 0;
    memset(p, 0, sizeof *p);
    p->best_val = p->best_test = -1;
    if (h5_attr_read(f, "epoch", H5T_NATIVE_INT32, 1, &ep) < 0 || h5_attr_read(f, "step", H5T_NATIVE_INT64, 1, &st) < 0)
        return cm_err_set(err, "no position (epoch, step): not a checkpoint of this trainer");
    if (h5_attr_read(f, "format_version", H5T_NATIVE_INT32, 1, &fmt) == -2 || fmt < 1 || fmt > CKPT_FORMAT_VERSION)
        return cm_err_set(err, "format_version %d: this trainer reads versions 1 to %d", (int)fmt,
                          CKPT_FORMAT_VERSION);
    if (ep < 0 || ep > 1000000000)
        return cm_err_set(err, "epoch %d out of range (0 to 1e9)", (int)ep);
    if (st < 0 || st > ((int64_t)1 << 53))
        return cm_err_set(err, "step %lld out of range (0 to 2^53)", (long long)st);
    if (h5_attr_read(f, "seed", H5T_NATIVE_UINT64, 1, &p->seed) != 0)
        return cm_err_set(err, "seed: missing or not one integer");
    if (h5_attr_read(f, "rng_state", H5T_NATIVE_UINT64, 4, p->rng_state) != 0)
        return cm_err_set(err, "rng_state: missing or not 4 integers");
    if ((p->rng_state[0] | p->rng_state[1] | p->rng_state[2] | p->rng_state[3]) == 0)
        return cm_err_set(err, "rng_state: all zero (not a generator state)");
    if (h5_attr_read(f, "best_val", H5T_NATIVE_DOUBLE, 1, &p->best_val) == -2 ||
        h5_attr_read(f, "best_test", H5T_NATIVE_DOUBLE, 1, &p->best_test) == -2 ||
        h5_attr_read(f, "best_epoch", H5T_NATIVE_INT32, 1, &be_) == -2)
        return cm_err_set(err, "best_val, best_test or best_epoch: not one number");
    if (!accuracy_ok(p->best_val) || !accuracy_ok(p->best_test))
        return cm_err_set(err, "best_val %g or best_test %g is not an accuracy", p->best_val, p->best_test);
    if (be_ < -1 || be_ > ep)
        return cm_err_set(err, "best_epoch %d out of range (-1 to epoch %d)", (int)be_, (int)ep);
    p->epoch = ep;
    p->step = st;
    p->best_epoch = be_;
    return 0;
}

int tr_checkpoint_load(tr_system *s, const char *path, const char *which, int with_optimizer,
                       tr_position *pos, cm_err *err)
{
    load_item items[TR_MAX_PARTS];
    int ni = 0;
    memset(items, 0, sizeof items);
    if (which) {
        char dst[32], src[32];
        const char *eq = strchr(which, '=');
        size_t ld = eq ? (size_t)(eq - which) : strlen(which);
        if (ld == 0 || ld >= sizeof dst || (eq && (strlen(eq + 1) == 0 || strlen(eq + 1) >= sizeof src)))
            return cm_err_set(err, "'%s': expected GROUP or GROUP=FILEGROUP", which);
        memcpy(dst, which, ld);
        dst[ld] = 0;
        snprintf(src, sizeof src, "%s", eq ? eq + 1 : dst);
        items[0].reg = tr_parts_find(&s->parts, dst);
        if (!items[0].reg)
            return cm_err_set(err, "'%s': this run has no network '%s'", which, dst);
        snprintf(items[0].src, sizeof items[0].src, "%s", src);
        ni = 1;
    } else {
        ni = s->parts.n;
        for (int i = 0; i < ni; i++) {
            items[i].reg = s->parts.p[i].reg;
            snprintf(items[i].src, sizeof items[i].src, "%s", items[i].reg->group);
        }
    }
    if (cm_check_regular(path, err) != 0) /* a FIFO or device: refused, not opened by HDF5 */
        return -1;
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = 0, nloaded = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        h5_quiet_end(&q);
        return cm_err_set(err, "not an HDF5 file (or unreadable)");
    }
    tr_position p;
    if (with_optimizer && read_position(f, &p, err) < 0)
        rc = -1;
    for (int i = 0; rc == 0 && i < ni; i++) {
        load_item *it = &items[i];
        if (H5Lexists(f, it->src, H5P_DEFAULT) <= 0) {
            if (which)
                rc = cm_err_set(err, "no group '%s' in the file", it->src);
            it->reg = NULL; /* absent: keeps its values */
            continue;
        }
        tr_reg *r = it->reg;
        it->w = malloc((r->np ? r->np : 1) * sizeof(float));
        it->b = malloc((r->nb ? r->nb : 1) * sizeof(float));
        it->m = calloc(r->np ? r->np : 1, sizeof(float));
        if (!it->w || !it->b || !it->m)
            rc = cm_err_set(err, "out of memory");
        else
            rc = read_group(f, it, with_optimizer, err);
        nloaded++;
    }
    if (rc == 0 && nloaded == 0)
        rc = cm_err_set(err, "none of this run's networks is in the file");
    H5Fclose(f);
    h5_quiet_end(&q);
    if (rc == 0) {
        be_ctx *be = s->be;
        for (int i = 0; i < ni; i++) {
            load_item *it = &items[i];
            if (!it->reg)
                continue;
            tr_reg *r = it->reg;
            be->ops->to_device(be, r->w, it->w, r->np * sizeof(float));
            if (r->nb)
                be->ops->to_device(be, r->buf, it->b, r->nb * sizeof(float));
            if (with_optimizer)
                be->ops->to_device(be, r->m, it->m, r->np * sizeof(float));
            if (it->has_nbt)
                r->nbt = it->nbt;
        }
        be->ops->sync(be);
        if (with_optimizer) {
            s->step = p.step;
            if (pos)
                *pos = p;
        }
        rc = be->ops->status(be, err);
    }
    for (int i = 0; i < 4; i++) {
        free(items[i].w);
        free(items[i].b);
        free(items[i].m);
    }
    return rc;
}

int tr_checkpoint_read_meta(const char *path, char **config, char **recipe, cm_err *err)
{
    if (config)
        *config = NULL;
    if (recipe)
        *recipe = NULL;
    if (cm_check_regular(path, err) != 0) /* a FIFO or device: refused, not opened by HDF5 */
        return -1;
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        h5_quiet_end(&q);
        return cm_err_set(err, "not an HDF5 file (or unreadable)");
    }
    char buf[64];
    const char *rv = h5_vlen_refusal(f, "format_version", 2, buf, sizeof buf);
    int rc = 0;
    if (config && h5_attr_read_str(f, "config", rv, config, err) == -2)
        rc = -1;
    if (recipe && rc == 0 && h5_attr_read_str(f, "recipe", rv, recipe, err) == -2)
        rc = -1;
    H5Fclose(f);
    h5_quiet_end(&q);
    if (rc != 0 && config) {
        free(*config);
        *config = NULL;
    }
    return rc;
}
