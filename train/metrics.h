/* metrics: RUN/metrics.jsonl, one JSON object per line:
 *   {"type":"step", "step", "epoch", "lr", "loss", <each loss term>, "kept", "acc_student", "acc_teacher",
 *    "time"}
 *   {"type":"epoch", "epoch", "step", "lr", "train_loss", "train_acc_*", "val_acc_*", "test_acc_*",
 *    "val_loss_*", "test_loss_*", "val_class_acc_*", "test_class_acc_*" (per class, null: no sample),
 *    "best_epoch", "best_val", "best_test", "seconds", "samples_per_second", "time",
 *    "gpu_peak_bytes" (CUDA only), "allreduce_seconds" (data-parallel CUDA runs only)}
 * "time" is the wall clock (Unix seconds) when the record was written. Logs
 * written before these keys existed still read (every reader takes a record's
 * keys as optional). 
 * The file is a live log (appended and flushed line by line, so it can be
 * followed during a run). On --resume it is first cut back, atomically, to
 * the records up to the checkpoint's position, so a resumed run's log equals
 * an uninterrupted run's. */
#ifndef TRAIN_METRICS_H
#define TRAIN_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "common/cm_err.h"
#include "train/system.h"

typedef struct mt_log mt_log;

/* ---- writing ---- */

/* keep_step < 0: a fresh log (any old content replaced). Otherwise keeps
 * step records with step <= keep_step and epoch records with epoch <= keep_epoch. */
mt_log *mt_open(const char *path, int64_t keep_step, int keep_epoch, cm_err *err);
/* Appends one line (a JSON object text without newline). */
int mt_write(mt_log *m, const char *json_line, cm_err *err);
void mt_close(mt_log *m);

/* The step record of one training step on a batch of B samples; acc_student
 * / acc_teacher only when eval_s / eval_t. */
int mt_step_record(mt_log *m, int64_t step, int epoch, double lr, const tr_stats *st, int B, int eval_s, int eval_t,
                   cm_err *err);

/* A bad sample left out (--bad-samples skip): {"type":"bad_sample", "split",
 * "epoch", "step" (training: the step whose batch held it; absent in
 * evaluation), "index", "id", "reason"}. */
int mt_bad_record(mt_log *m, const char *split, int epoch, int64_t step, int64_t index, const char *id,
                  const char *reason, cm_err *err);

/* An epoch's record: its training sums (steps, losses, hits over `seen`
 * samples), the evaluation (accuracies < 0: not evaluated), the best epoch
 * so far (0: none), the wall time, the GPU's peak memory and the NCCL
 * all-reduce time (< 0: none). */
typedef struct mt_epoch {
    int epoch;
    int64_t step;
    double lr;
    long long steps, seen, hit_student, hit_teacher;
    double sum_loss;
    int eval_s, eval_t;
    double val_student, test_student, val_teacher, test_teacher;
    double val_loss_student, test_loss_student, val_loss_teacher, test_loss_teacher; /* mean CE; < 0: none */
    int n_classes;
    const double *per_class[4]; /* val/test of the student, val/test of the teacher: [n_classes]
                                 * accuracies (< 0: no sample of the class); NULL: not evaluated */
    int best_epoch;
    double best_val, best_test;
    double seconds;
    double samples_per_second; /* training samples of this process's steps of the epoch over their time (< 0: none) */
    double gpu_peak_bytes;
    double allreduce_seconds; /* waits for the NCCL gradient all-reduces of the epoch (< 0: none) */
} mt_epoch;
int mt_epoch_record(mt_log *m, const mt_epoch *e, cm_err *err);

/* The wall clock in Unix seconds (the records' "time"). */
double mt_wall_time(void);

/* ---- reading ---- */

/* The step records of `epoch` with step <= upto in the log at path (a run
 * resumed inside an epoch continues the epoch's training averages from
 * them): their count, the sum of their losses (in log order) and of their
 * acc_student / acc_teacher values. */
typedef struct mt_partial {
    long long steps;
    double sum_loss, sum_acc_student, sum_acc_teacher;
} mt_partial;
int mt_epoch_partial(const char *path, int epoch, int64_t upto, mt_partial *out, cm_err *err);

/* Reading a log: its records in order, each as parsed JSON (the caller
 * deletes it) and, when `line` is given, the line's text (valid until
 * mt_reader_close). Lines that are not JSON (a torn last line of a killed
 * run) are passed over. */
typedef struct mt_reader {
    char *text, *cur, *save;
} mt_reader;
int mt_reader_open(mt_reader *r, const char *path, cm_err *err);
struct cJSON *mt_reader_next(mt_reader *r, const char **line);
void mt_reader_close(mt_reader *r);

#endif
