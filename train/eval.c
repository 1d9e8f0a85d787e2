/* eval: an evaluation pass's measures and files (train/eval.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "common/cm_version.h"
#include "train/eval.h"
#include "train/methods.h"
#include "train/plot.h"

ev_pass *ev_pass_create(int n_classes, int keep, cm_err *err)
{
    ev_pass *p = calloc(1, sizeof *p);
    if (p && n_classes > 0)
        p->confusion = calloc((size_t)n_classes * (size_t)n_classes, sizeof *p->confusion);
    if (!p || !p->confusion) {
        free(p);
        cm_err_set(err, "out of memory");
        return NULL;
    }
    p->C = n_classes;
    p->keep = keep;
    return p;
}

void ev_pass_destroy(ev_pass *p)
{
    if (!p)
        return;
    free(p->confusion);
    free(p->index);
    free(p->label);
    free(p->pred);
    free(p->prob);
    free(p);
}

void ev_pass_reset(ev_pass *p)
{
    p->n = p->top1 = p->top5 = 0;
    p->loss_fx = 0;
    memset(p->confusion, 0, (size_t)p->C * (size_t)p->C * sizeof *p->confusion);
    p->ns = 0;
}

static int grow(ev_pass *p, size_t need, cm_err *err)
{
    if (need <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 256;
    while (cap < need)
        cap *= 2;
    int64_t *ix = realloc(p->index, cap * sizeof *ix);
    if (ix)
        p->index = ix;
    int32_t *lb = realloc(p->label, cap * sizeof *lb);
    if (lb)
        p->label = lb;
    int32_t *pr = realloc(p->pred, cap * sizeof *pr);
    if (pr)
        p->pred = pr;
    double *pb = realloc(p->prob, cap * (size_t)p->C * sizeof *pb);
    if (pb)
        p->prob = pb;
    if (!ix || !lb || !pr || !pb)
        return cm_err_set(err, "out of memory");
    p->cap = cap;
    return 0;
}

/* One sample: its prediction, whether the label is among the 5 largest
 * logits (ties counted in the label's favour only up to the first index, as
 * an argmax would), the cross-entropy and (when kept) the probabilities. */
static void add_one(ev_pass *p, const float *z, int32_t y, int64_t index)
{
    int C = p->C, best = 0, above = 0;
    for (int c = 1; c < C; c++)
        if (z[c] > z[best])
            best = c;
    double mx = z[best], sum = 0;
    for (int c = 0; c < C; c++)
        sum += exp((double)z[c] - mx);
    int inrange = y >= 0 && y < C;
    if (inrange)
        for (int c = 0; c < C; c++)
            above += z[c] > z[y] || (z[c] == z[y] && c < y); /* classes ranked before the label */
    p->n++;
    p->top1 += inrange && best == y;
    p->top5 += inrange && above < 5;
    if (inrange) {
        double ce = log(sum) - ((double)z[y] - mx); /* >= 0; capped at 2^30 (a sample cannot overflow the sum) */
        p->loss_fx += (int64_t)llround(ldexp(ce < 1073741824.0 ? ce : 1073741824.0, 32));
        p->confusion[(size_t)y * (size_t)C + (size_t)best]++;
    }
    if (p->keep) {
        size_t k = p->ns++;
        p->index[k] = index;
        p->label[k] = y;
        p->pred[k] = best;
        for (int c = 0; c < C; c++)
            p->prob[k * (size_t)C + (size_t)c] = exp((double)z[c] - mx) / sum;
    }
}

int ev_pass_add(ev_pass *p, int B, const float *logits, const int32_t *labels, const int64_t *index, cm_err *err)
{
    if (p->keep && grow(p, p->ns + (size_t)B, err) != 0)
        return -1;
    for (int i = 0; i < B; i++)
        add_one(p, logits + (size_t)i * (size_t)p->C, labels[i], index ? index[i] : -1);
    return 0;
}

int ev_pass_allreduce(ev_pass *p, cl_comm *comm, cm_err *err)
{
    int64_t counts[4] = {p->n, p->top1, p->top5, p->loss_fx};
    if (cl_allreduce_i64(comm, counts, 4, CL_SUM, err) != 0 ||
        cl_allreduce_i64(comm, p->confusion, (size_t)p->C * (size_t)p->C, CL_SUM, err) != 0)
        return -1;
    p->n = counts[0], p->top1 = counts[1], p->top5 = counts[2], p->loss_fx = counts[3];
    return 0;
}

double ev_top1(const ev_pass *p)
{
    return p->n ? (double)p->top1 / (double)p->n : -1;
}

double ev_mean_loss(const ev_pass *p)
{
    return p->n ? ldexp((double)p->loss_fx, -32) / (double)p->n : -1;
}

double ev_class_acc(const ev_pass *p, int c)
{
    long long n = 0;
    for (int k = 0; k < p->C; k++)
        n += p->confusion[(size_t)c * (size_t)p->C + (size_t)k];
    return n ? (double)p->confusion[(size_t)c * (size_t)p->C + (size_t)c] / (double)n : -1;
}

/* ---------------------------------------------------------------- files */

static cJSON *eval_json(const ev_pass *p, const ev_info *in)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "checkpoint", in->checkpoint ? in->checkpoint : "");
    cJSON_AddStringToObject(j, "network", in->network);
    cJSON_AddStringToObject(j, "data", in->data ? in->data : "");
    cJSON_AddStringToObject(j, "split", in->split);
    if (in->epoch >= 0)
        cJSON_AddNumberToObject(j, "epoch", in->epoch);
    cJSON_AddNumberToObject(j, "samples", (double)p->n);
    cJSON_AddNumberToObject(j, "top1", ev_top1(p));
    cJSON_AddNumberToObject(j, "top5", p->n ? (double)p->top5 / (double)p->n : -1);
    cJSON_AddNumberToObject(j, "loss", ev_mean_loss(p));
    cJSON *cls = cJSON_AddArrayToObject(j, "classes");
    cJSON *pc = cJSON_AddArrayToObject(j, "per_class");
    cJSON *cm = cJSON_AddArrayToObject(j, "confusion");
    for (int c = 0; cls && pc && cm && c < p->C; c++) {
        cJSON_AddItemToArray(cls, cJSON_CreateString(in->classes[c]));
        cJSON *o = cJSON_CreateObject();
        long long n = 0;
        cJSON *row = cJSON_CreateArray();
        for (int k = 0; k < p->C; k++) {
            int64_t v = p->confusion[(size_t)c * (size_t)p->C + (size_t)k];
            n += v;
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)v));
        }
        cJSON_AddItemToArray(cm, row);
        cJSON_AddStringToObject(o, "class", in->classes[c]);
        cJSON_AddNumberToObject(o, "samples", (double)n);
        double a = ev_class_acc(p, c);
        if (a >= 0)
            cJSON_AddNumberToObject(o, "accuracy", a);
        else
            cJSON_AddNullToObject(o, "accuracy");
        cJSON_AddItemToArray(pc, o);
    }
    cJSON_AddStringToObject(j, "version", cm_version());
    cJSON_AddStringToObject(j, "git_revision", cm_git_revision());
    return j;
}

static int write_eval_json(const ev_pass *p, const ev_info *in, const char *path, cm_err *err)
{
    cJSON *j = eval_json(p, in);
    char *s = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!s)
        return cm_err_set(err, "out of memory");
    size_t n = strlen(s);
    s[n] = '\n'; /* cJSON's terminator becomes the last newline */
    int rc = cm_write_file_atomic(path, s, n + 1, err);
    free(s);
    return rc;
}

/* A name in a TSV header: tabs and newlines would break the columns. */
static void tsv_name(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static int write_predictions(const ev_pass *p, const ev_info *in, const char *path, cm_err *err)
{
    cm_atomic a;
    if (cm_atomic_open(&a, path, err) != 0)
        return -1;
    FILE *f = a.fp;
    fprintf(f, "id\tlabel\tpredicted");
    for (int c = 0; c < p->C; c++) {
        fputs("\tp_", f);
        tsv_name(f, in->classes[c]);
    }
    fputc('\n', f);
    for (size_t k = 0; k < p->ns; k++) {
        const char *id = in->id_of ? in->id_of(in->ctx, (size_t)p->index[k]) : NULL;
        if (id)
            tsv_name(f, id);
        else
            fprintf(f, "%lld", (long long)p->index[k]);
        fputc('\t', f);
        tsv_name(f, p->label[k] >= 0 && p->label[k] < p->C ? in->classes[p->label[k]] : "?");
        fputc('\t', f);
        tsv_name(f, in->classes[p->pred[k]]);
        for (int c = 0; c < p->C; c++)
            fprintf(f, "\t%.9g", p->prob[k * (size_t)p->C + (size_t)c]);
        fputc('\n', f);
    }
    return cm_atomic_commit(&a, err);
}

int ev_write(const ev_pass *p, const ev_info *info, const char *dir, cm_err *err)
{
    char path[CM_PATH_MAX], title[CM_PATH_MAX + 128];
    if (cm_mkdirs(dir, err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/eval.json", dir);
    if (write_eval_json(p, info, path, err) != 0)
        return cm_err_prefix(err, "%s", path);
    if (p->keep) {
        snprintf(path, sizeof path, "%s/predictions.tsv", dir);
        if (write_predictions(p, info, path, err) != 0)
            return cm_err_prefix(err, "%s", path);
    }
    snprintf(path, sizeof path, "%s/confusion.svg", dir);
    snprintf(title, sizeof title, "%s on %s: top-1 %.2f%%, %lld samples", info->network, info->split,
             100 * ev_top1(p), p->n);
    if (pl_write_confusion_svg(path, title, p->confusion, p->C, info->classes, err) != 0)
        return cm_err_prefix(err, "%s", path);
    return 0;
}

/* ---------------------------------------------------------------- config */

static int get_int(const cJSON *j, const char *key, int *out, cm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return cm_err_set(err, "config: \"%s\" missing or not an integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

/* The index of the string value of key in names, or -1 (err set). */
static int get_enum(const cJSON *j, const char *key, const char *const *names, int n, int *out, cm_err *err)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, key));
    for (int k = 0; s && k < n; k++)
        if (strcmp(s, names[k]) == 0) {
            *out = k;
            return 0;
        }
    return cm_err_set(err, "config: \"%s\" missing or not a known value", key);
}

int ev_config_from_json(const char *json, tr_config *c, cm_err *err)
{
    const char *methods[64]; /* the names of train/methods.c's table */
    int nm = tr_methods_options() < 64 ? tr_methods_options() : 64;
    for (int i = 0; i < nm; i++)
        methods[i] = tr_methods_name((tr_method)i);
    static const char *mods[] = {"audio", "visual"}, *vmodes[] = {"stack", "fold"};
    static const char *proxies[] = {"fa", "none", "cfa"}, *updates[] = {"full", "top", "frozen"};
    cJSON *j = cJSON_Parse(json);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cm_err_set(err, "config: not a JSON object");
    }
    int m = 0, s = 0, t = 0, v = 0, px = 0, up = 0;
    int rc = get_int(j, "pretrain", &c->pretrain, err) || get_enum(j, "method", methods, nm, &m, err) ||
             get_enum(j, "student", mods, 2, &s, err) || get_enum(j, "teacher", mods, 2, &t, err) ||
             get_int(j, "student_depth", &c->student_depth, err) ||
             get_int(j, "teacher_depth", &c->teacher_depth, err) || get_int(j, "width", &c->width, err) ||
             get_int(j, "n_classes", &c->n_classes, err) || get_int(j, "frames", &c->frames, err) ||
             get_enum(j, "visual_mode", vmodes, 2, &v, err) || get_int(j, "image_size", &c->image_size, err) ||
             get_int(j, "spec_bins", &c->spec_bins, err) || get_int(j, "spec_frames", &c->spec_frames, err) ||
             get_enum(j, "proxy", proxies, 3, &px, err) || get_enum(j, "teacher_update", updates, 3, &up, err);
    cJSON_Delete(j);
    if (rc)
        return -1;
    c->method = (tr_method)m;
    c->student = (tr_modality)s;
    c->teacher = (tr_modality)t;
    c->visual_mode = (tr_visual_mode)v;
    c->proxy = (tr_proxy_kind)px;
    c->teacher_update = (tr_teacher_update)up;
    if (c->student_depth > 0)
        c->depth = c->student_depth;
    return 0;
}
