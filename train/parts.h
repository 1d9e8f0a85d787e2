/* parts: the list of trained parts of one run (internal to train/).
 *
 * A part is one registry (tr_reg: a network, a proxy, a method's modules),
 * one checkpoint group. The list is built once by tr_system_create: the
 * networks first (student, teacher), then the parts the method adds, in the
 * order its build adds them. Everything that concerns "every part" loops
 * over this list and nothing else: initialisation, SGD, the batch-norm
 * counters, the saved running statistics of a failed step, the rank
 * averaging and broadcast (train/ddp.c), --sync-bn, the checkpoint's groups
 * (train/ckpt.c) and the tests' tensor index. */
#ifndef TRAIN_PARTS_H
#define TRAIN_PARTS_H

#include <stddef.h>

#include "kernels/kernels.h"
#include "common/cm_err.h"
#include "train/model.h"

#define TR_MAX_PARTS 6

typedef struct tr_part {
    tr_reg *reg;
    int sgd;        /* 1: SGD updates parameters [off, np), their gradients averaged over ranks */
    size_t off;     /* first trained parameter (the teacher's layer4 + fc with --teacher-update top) */
    int counts;     /* 1: num_batches_tracked advances each step (its batch norms in training mode) */
} tr_part;

typedef struct tr_parts {
    tr_part p[TR_MAX_PARTS];
    int n;
} tr_parts;

/* Appends a part; -1 when the list is full (a method adds too many). */
int tr_parts_add(tr_parts *l, tr_reg *r, int sgd, size_t off, int counts, cm_err *err);
/* The part whose checkpoint group is `group`, or NULL. */
tr_reg *tr_parts_find(const tr_parts *l, const char *group);
/* One SGD step of every trained part, then the batch-norm counters. */
void tr_parts_sgd(const tr_parts *l, be_ctx *be, float lr, float momentum);
/* Saves (restore 0) or restores (1) every part's running statistics. */
void tr_parts_buffers(const tr_parts *l, be_ctx *be, int restore);

#endif
