/* The tr_system struct, shared by system.c, ckpt.c and the method files
 * (internal to train/). */
#ifndef TRAIN_SYSTEM_INTERNAL_H
#define TRAIN_SYSTEM_INTERNAL_H

#include "train/ddp.h"
#include "train/method.h"
#include "train/parts.h"
#include "train/resnet.h"
#include "train/config.h"

typedef struct tr_index {
    tr_reg *reg;
    int t;
    char name[112];
} tr_index;

typedef struct tr_system tr_system; /* as train/system.h, which method files do not include */

struct tr_system {
    be_ctx *be;
    tr_config cfg;
    const tr_method_def *method; /* train/methods.c's row of cfg (pretrain: its own) */
    void *ms;          /* the method's state (the struct of its file), or NULL */
    tr_mem mem;
    int has_student, has_teacher;
    int teacher_train; /* teacher forward in train mode (batch statistics) */
    int teacher_full;  /* gradients through the whole teacher (else layer4 + fc only) */
    int teacher_sgd;   /* teacher parameters updated */
    tr_resnet student, teacher;
    tr_parts parts;    /* every trained part: the networks, then the method's */
    int n_net_parts;   /* the networks' entries at the head of parts */
    size_t max_act;
    float *scratch;    /* max_act floats: see tr_system_create */
    float *dz_s, *dz_t; /* gradients of the student's and teacher's logits [max_batch, classes] */
    float *loss;       /* TR_MAX_TERMS loss terms (device) */
    int32_t *pred;
    int32_t *h_pred, *h_labels;
    int64_t step;
    int last_B;
    tr_index *idx;
    size_t nidx;
    tr_ddp ddp;        /* data parallel (train/ddp.c) */
};

#endif
