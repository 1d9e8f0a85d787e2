/* method: what one distillation method is (internal to train/).
 *
 * A method is one file, train/method_NAME.c with its header
 * train/method_NAME.h exporting `const tr_method_def tr_method_NAME`, and one
 * row of the table in train/methods.c (which spells its name). tr_system_create builds the networks
 * the definition asks for (student, teacher and the teacher's mode), appends
 * them to the list of trained parts (parts.h), then calls `build`, which
 * appends the method's own parts (each one checkpoint group, named in
 * `groups`) and keeps its state in s->ms. A step (train/system.c) runs the
 * networks' forward passes, then `forward`, `losses` (which write the logit
 * gradients s->dz_s / s->dz_t and the loss terms), `backward` (the method's
 * parts, before the networks'), the networks' backward passes with what
 * `feat_grad` sends into their features, then rank averaging and SGD over the
 * list of parts. docs/ARCHITECTURE.md, "adding a method", has the steps. */
#ifndef TRAIN_METHOD_H
#define TRAIN_METHOD_H

#include <stdint.h>

#include "common/cm_err.h"
#include "train/resnet.h"

struct tr_system;

/* The forward outputs of one step (device logits; NULL when absent). */
typedef struct tr_step_out {
    const float *zs, *zt; /* student, teacher */
} tr_step_out;

/* Device pointers to the outputs of the last step or eval (tests, through
 * train/system_test.h): logits [B, classes] of each network and proxy (NULL
 * when absent or not computed), the selection's tau and keep [B] (c2kd
 * steps only). */
typedef struct tr_outputs {
    int B;
    const float *z_student, *z_teacher, *p_student, *p_teacher;
    const float *tau, *keep;
    const float *h_shadow;    /* shake: the shadow head's logits (before normalisation) */
} tr_outputs;

#define TR_METHOD_MAX_GROUPS 3

typedef struct tr_method_def {
    /* The name is not here: the method's row in train/methods.c spells it. */
    const char *help;          /* one line for --help */
    int student, teacher;      /* the networks it needs */
    const char *groups[TR_METHOD_MAX_GROUPS]; /* checkpoint groups of the parts `build` adds */
    /* The teacher's mode: *train: forward in train mode (batch statistics,
     * running statistics updated); *full: gradients through the whole
     * teacher (else layer4 + fc); *sgd: its parameters updated. NULL: a
     * frozen pretrained teacher in evaluation mode. */
    void (*teacher_mode)(const struct tr_system *s, int *train, int *full, int *sgd);
    /* Appends the method's parts to s->parts and sets s->ms (NULL: none). */
    int (*build)(struct tr_system *s, cm_err *err);
    void (*destroy)(struct tr_system *s);
    /* Why a batch of one sample cannot train ("the proxies'" batch norm), or NULL. */
    const char *(*needs_two)(const struct tr_system *s);
    /* After the networks' forward passes (NULL: nothing). */
    void (*forward)(struct tr_system *s, int B, const tr_step_out *z);
    /* The loss terms into s->loss, their names, and the logit gradients;
     * returns their number. */
    int (*losses)(struct tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names);
    /* Overwrites in hl (host, the step's terms as doubles, read from the
     * float s->loss) the terms the method sums in double (NULL: none). */
    void (*terms64)(struct tr_system *s, double *hl);
    /* The backward passes of the method's parts (NULL: none). */
    void (*backward)(struct tr_system *s, int B);
    /* What the method sends into network `net`'s features (NULL: nothing). */
    void (*feat_grad)(const struct tr_system *s, const tr_resnet *net, tr_feat_grad *fg);
    /* The fraction of the batch kept by a selection, or -1 (NULL: -1). */
    float (*kept)(struct tr_system *s, int B);
    /* The method's outputs of the last step (tests; NULL: none). */
    void (*outputs)(const struct tr_system *s, tr_outputs *out);
} tr_method_def;

#endif
