/* config: the types of train/system.h that other parts of train/ use
 * without calling the system (the options, the methods, the data-parallel
 * step): the configuration of a run, a batch, a step's figures. Types only. */
#ifndef TRAIN_CONFIG_H
#define TRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* ---- the configuration ---- */

/* A --method choice: its row in the table of train/methods.c (which spells
 * the names; tr_methods_options() rows; --pretrain is a row of its own after
 * them). The constants name the rows of the methods this file was written
 * with; a new method needs none (it is its row's index). */
typedef enum tr_method { TR_NONE = 0, TR_KD, TR_NKD, TR_C2KD, TR_SHAKE, TR_REVIEW } tr_method;
typedef enum tr_modality { TR_AUDIO = 0, TR_VISUAL = 1 } tr_modality;
typedef enum tr_teacher_update { TR_TEACHER_FULL = 0, TR_TEACHER_TOP, TR_TEACHER_FROZEN } tr_teacher_update;
typedef enum tr_proxy_kind { TR_PROXY_FA = 0, TR_PROXY_NONE, TR_PROXY_CFA } tr_proxy_kind;
typedef enum tr_visual_mode { TR_VISUAL_STACK = 0, TR_VISUAL_FOLD = 1 } tr_visual_mode;

/* What a run trains. The defaults of the fields an option decides live in
 * the option table of train/opts.c (one place for --help, options.json and
 * this struct). */
typedef struct tr_config {
    int pretrain;          /* 1: teacher network alone, CE only (the method is ignored) */
    tr_method method;
    tr_modality student, teacher;
    int depth;             /* 18 or 50: both networks, unless ... */
    int student_depth;     /* ... 18 or 50 here (0: depth) */
    int teacher_depth;     /* ... 18 or 50 here (0: depth) */
    int width;             /* base channels */
    int n_classes;
    int frames;            /* F frames per sample */
    tr_visual_mode visual_mode;
    int image_size;        /* side of the input frames */
    int spec_bins, spec_frames; /* 257, T */
    tr_proxy_kind proxy;
    tr_teacher_update teacher_update;
    float lambda1, lambda2, lambda3; /* c2kd weights */
    float omega;           /* selection threshold: keep when tau > omega */
    float kd_temp;         /* KD's and SHAKE's temperature */
    float nkd_gamma, nkd_temp;
    float momentum;
    int max_batch;         /* activations are allocated once for this batch size */
    int sync_bn;           /* 1: batch norm with the global batch's statistics over ranks (SyncBatchNorm;
                            * takes effect with tr_system_set_comm, also for one process) */
} tr_config;

/* ---- batches and steps ---- */

/* A batch on the device. audio: [B, 1, bins, T]; visual: [B, 3F, S, S] in
 * stack mode or [B*F, 3, S, S] in fold mode (frames of a sample adjacent);
 * labels: int32 [B]. A modality no network uses may be NULL. */
typedef struct tr_batch {
    int B;
    const float *audio;
    const float *visual;
    const int32_t *labels;
} tr_batch;

#define TR_MAX_TERMS 12
/* Loss terms of one step, on the host, after the step. */
typedef struct tr_stats {
    double loss;                      /* total */
    int n_terms;
    const char *term_name[TR_MAX_TERMS]; /* e.g. "ce_student", "kl_teacher_to_proxy", "nt_proxy_t" */
    double term[TR_MAX_TERMS];        /* float32 sums, except HCL's (float64: see tr_review_backward) */
    float kept;                       /* fraction of samples kept by the selection (c2kd), else -1 */
    int correct_student, correct_teacher; /* top-1 hits on this batch (training mode) */
    int samples;                      /* samples of the step: B, or B * ranks in a data-parallel run */
} tr_stats;

#endif
