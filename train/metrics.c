/* metrics: the JSON-lines log of a run. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cm_file.h"
#include "train/metrics.h"

struct mt_log {
    FILE *fp;
};

int mt_reader_open(mt_reader *r, const char *path, cm_err *err)
{
    size_t n = 0;
    r->save = NULL;
    if (cm_read_regular(path, (size_t)1 << 30, &r->text, &n, err) != 0) { /* a long run's log: up to 1 GiB */
        r->cur = NULL;
        return -1;
    }
    r->cur = r->text;
    return 0;
}

cJSON *mt_reader_next(mt_reader *r, const char **line)
{
    char *l;
    while ((l = strtok_r(r->cur, "\n", &r->save))) {
        r->cur = NULL;
        cJSON *j = cJSON_Parse(l);
        if (j) {
            if (line)
                *line = l;
            return j;
        }
    }
    return NULL;
}

void mt_reader_close(mt_reader *r)
{
    free(r->text);
    r->text = r->cur = r->save = NULL;
}

static int keep_record(const cJSON *j, int64_t keep_step, int keep_epoch)
{
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
    cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
    cJSON *epoch = cJSON_GetObjectItemCaseSensitive(j, "epoch");
    int keep = 1;
    if (type && strcmp(type, "bad_sample") == 0)
        keep = step ? cJSON_IsNumber(step) && step->valuedouble <= (double)keep_step
                    : cJSON_IsNumber(epoch) && epoch->valuedouble <= (double)keep_epoch;
    else if (type && strcmp(type, "step") == 0)
        keep = cJSON_IsNumber(step) && step->valuedouble <= (double)keep_step;
    else if (type && strcmp(type, "epoch") == 0)
        keep = cJSON_IsNumber(epoch) && epoch->valuedouble <= (double)keep_epoch;
    return keep;
}

mt_log *mt_open(const char *path, int64_t keep_step, int keep_epoch, cm_err *err)
{
    cm_atomic a;
    if (cm_atomic_open(&a, path, err) != 0)
        return NULL;
    if (keep_step >= 0 && cm_is_file(path)) {
        mt_reader r;
        if (mt_reader_open(&r, path, err) != 0) {
            cm_atomic_abort(&a);
            return NULL;
        }
        const char *line;
        cJSON *j;
        while ((j = mt_reader_next(&r, &line))) {
            if (keep_record(j, keep_step, keep_epoch))
                fprintf(a.fp, "%s\n", line);
            cJSON_Delete(j);
        }
        mt_reader_close(&r);
    }
    if (cm_atomic_commit(&a, err) != 0)
        return NULL;
    mt_log *m = calloc(1, sizeof *m);
    if (!m || !(m->fp = fopen(path, "a"))) {
        free(m);
        cm_err_set(err, "cannot append to the log");
        return NULL;
    }
    return m;
}

int mt_write(mt_log *m, const char *json_line, cm_err *err)
{
    if (fprintf(m->fp, "%s\n", json_line) < 0 || fflush(m->fp) != 0)
        return cm_err_set(err, "cannot write the log");
    return 0;
}

/* Appends the record j and deletes it. */
static int write_record(mt_log *m, cJSON *j, cm_err *err)
{
    char *line = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!line)
        return cm_err_set(err, "out of memory");
    int rc = mt_write(m, line, err);
    free(line);
    return rc;
}

int mt_step_record(mt_log *m, int64_t step, int epoch, double lr, const tr_stats *st, int B, int eval_s, int eval_t,
                   cm_err *err)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return cm_err_set(err, "out of memory");
    cJSON_AddStringToObject(j, "type", "step");
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "epoch", epoch);
    cJSON_AddNumberToObject(j, "lr", lr);
    cJSON_AddNumberToObject(j, "loss", st->loss);
    for (int k = 0; k < st->n_terms && k < TR_MAX_TERMS; k++)
        if (st->term_name[k])
            cJSON_AddNumberToObject(j, st->term_name[k], st->term[k]);
    if (st->kept >= 0)
        cJSON_AddNumberToObject(j, "kept", st->kept);
    else
        cJSON_AddNullToObject(j, "kept");
    if (eval_s)
        cJSON_AddNumberToObject(j, "acc_student", (double)st->correct_student / B);
    if (eval_t)
        cJSON_AddNumberToObject(j, "acc_teacher", (double)st->correct_teacher / B);
    cJSON_AddNumberToObject(j, "time", mt_wall_time());
    return write_record(m, j, err);
}

int mt_bad_record(mt_log *m, const char *split, int epoch, int64_t step, int64_t index, const char *id,
                  const char *reason, cm_err *err)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return cm_err_set(err, "out of memory");
    cJSON_AddStringToObject(j, "type", "bad_sample");
    cJSON_AddStringToObject(j, "split", split);
    cJSON_AddNumberToObject(j, "epoch", epoch);
    if (step >= 0)
        cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "index", (double)index);
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "reason", reason);
    return write_record(m, j, err);
}

double mt_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void add_acc(cJSON *o, const char *key, double v)
{
    if (v >= 0)
        cJSON_AddNumberToObject(o, key, v);
}

/* key: [accuracy per class] (null for a class without samples). */
static void add_classes(cJSON *o, const char *key, const double *v, int n)
{
    if (!v)
        return;
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int c = 0; a && c < n; c++)
        cJSON_AddItemToArray(a, v[c] >= 0 ? cJSON_CreateNumber(v[c]) : cJSON_CreateNull());
}

int mt_epoch_record(mt_log *m, const mt_epoch *e, cm_err *err)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return cm_err_set(err, "out of memory");
    cJSON_AddStringToObject(j, "type", "epoch");
    cJSON_AddNumberToObject(j, "epoch", e->epoch);
    cJSON_AddNumberToObject(j, "step", (double)e->step);
    cJSON_AddNumberToObject(j, "lr", e->lr);
    if (e->steps > 0) {
        cJSON_AddNumberToObject(j, "train_loss", e->sum_loss / (double)e->steps);
        if (e->eval_s)
            cJSON_AddNumberToObject(j, "train_acc_student", (double)e->hit_student / (double)e->seen);
        if (e->eval_t)
            cJSON_AddNumberToObject(j, "train_acc_teacher", (double)e->hit_teacher / (double)e->seen);
    }
    add_acc(j, "val_acc_student", e->val_student);
    add_acc(j, "test_acc_student", e->test_student);
    add_acc(j, "val_acc_teacher", e->val_teacher);
    add_acc(j, "test_acc_teacher", e->test_teacher);
    add_acc(j, "val_loss_student", e->val_loss_student);
    add_acc(j, "test_loss_student", e->test_loss_student);
    add_acc(j, "val_loss_teacher", e->val_loss_teacher);
    add_acc(j, "test_loss_teacher", e->test_loss_teacher);
    static const char *pc_keys[4] = {"val_class_acc_student", "test_class_acc_student", "val_class_acc_teacher",
                                     "test_class_acc_teacher"};
    for (int k = 0; k < 4; k++)
        add_classes(j, pc_keys[k], e->per_class[k], e->n_classes);
    cJSON_AddNumberToObject(j, "best_epoch", e->best_epoch);
    if (e->best_epoch > 0) {
        cJSON_AddNumberToObject(j, "best_val", e->best_val);
        cJSON_AddNumberToObject(j, "best_test", e->best_test);
    }
    cJSON_AddNumberToObject(j, "seconds", e->seconds);
    if (e->samples_per_second >= 0)
        cJSON_AddNumberToObject(j, "samples_per_second", e->samples_per_second);
    cJSON_AddNumberToObject(j, "time", mt_wall_time());
    if (e->gpu_peak_bytes >= 0)
        cJSON_AddNumberToObject(j, "gpu_peak_bytes", e->gpu_peak_bytes);
    if (e->allreduce_seconds >= 0)
        cJSON_AddNumberToObject(j, "allreduce_seconds", e->allreduce_seconds);
    return write_record(m, j, err);
}

void mt_close(mt_log *m)
{
    if (!m)
        return;
    fclose(m->fp);
    free(m);
}

int mt_epoch_partial(const char *path, int epoch, int64_t upto, mt_partial *out, cm_err *err)
{
    memset(out, 0, sizeof *out);
    mt_reader r;
    if (mt_reader_open(&r, path, err) != 0)
        return -1;
    cJSON *j;
    while ((j = mt_reader_next(&r, NULL))) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
        cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step"), *ep = cJSON_GetObjectItemCaseSensitive(j, "epoch");
        if (type && strcmp(type, "step") == 0 && cJSON_IsNumber(st) && cJSON_IsNumber(ep) &&
            ep->valuedouble == epoch && st->valuedouble <= (double)upto) {
            cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "loss");
            cJSON *as = cJSON_GetObjectItemCaseSensitive(j, "acc_student");
            cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "acc_teacher");
            out->steps++;
            out->sum_loss += cJSON_IsNumber(l) ? l->valuedouble : 0;
            out->sum_acc_student += cJSON_IsNumber(as) ? as->valuedouble : 0;
            out->sum_acc_teacher += cJSON_IsNumber(at) ? at->valuedouble : 0;
        }
        cJSON_Delete(j);
    }
    mt_reader_close(&r);
    return 0;
}
