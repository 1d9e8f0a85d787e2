/* system: the networks of one training run (student, teacher, their proxies),
 * their parameters, the loss of one step for each method, the optimiser, and
 * checkpoints. The trainer's loop (train/main.c, train/loader.c) drives it.
 *
 * Everything runs on a backend (kernels/kernels.h); batches are device tensors.
 */
#ifndef TRAIN_SYSTEM_H
#define TRAIN_SYSTEM_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"
#include "collective/collective.h"
#include "kernels/kernels.h"

#include "train/config.h"

/* The options' defaults (train/opts.c); AVE's spectrogram shape, one frame. */
void tr_config_default(tr_config *c);

typedef struct tr_system tr_system;

/* Builds the networks and initialises them from `seed` as the authors' code
 * does: Kaiming normal fan_out for convolutions (the proxies' 1x1 included),
 * ResNet BN weights N(1, 0.02) and bias 0 (other modules' BN 1/0), PyTorch's
 * default for linear layers (docs/METHOD.md). */
tr_system *tr_system_create(be_ctx *be, const tr_config *cfg, uint64_t seed, cm_err *err);
void tr_system_destroy(tr_system *s);

/* One optimisation step at learning rate lr: forward in train mode, losses,
 * backward, SGD. Returns -1 (and names the step) on a non-finite loss, in
 * which case no parameter was changed. */
int tr_system_step(tr_system *s, const tr_batch *b, float lr, tr_stats *st, cm_err *err);

/* Forward in evaluation mode (running BN statistics). pred_* (host, [B]) may
 * be NULL; logits_* (host, [B, classes]) may be NULL. */
int tr_system_eval(tr_system *s, const tr_batch *b, int32_t *pred_student, int32_t *pred_teacher,
                   float *logits_student, float *logits_teacher, cm_err *err);

/* ---- checkpoints ---- */

/* Where a run stands, saved in checkpoints. */
typedef struct tr_position {
    int epoch;          /* epochs completed */
    int64_t step;       /* steps completed */
    uint64_t seed;
    uint64_t rng_state[4]; /* the loader's generator state at this point */
    double best_val;    /* best validation accuracy so far (-1: none) */
    int best_epoch;
    double best_test;   /* test accuracy at best_epoch */
} tr_position;

/* HDF5 checkpoint with PyTorch state_dict names (docs/FORMAT.md): groups
 * student/, teacher/, student_proxy/, teacher_proxy/, optimizer momenta under
 * momentum/<group>/<name>, position and config as attributes. Atomic. */
int tr_checkpoint_save(tr_system *s, const char *path, const tr_position *pos, const char *recipe_json,
                       cm_err *err);
/* Loads weights (and momenta and position when with_optimizer). Groups absent
 * from the file keep their values (e.g. a pretrained teacher file has only
 * teacher/); a shape mismatch is an error. num_batches_tracked is optional.
 * `which`: NULL for every group, or "teacher", "student", ... to load one
 * group, optionally from another group name in the file ("teacher=student"
 * loads the file's student/ into this run's teacher). */
int tr_checkpoint_load(tr_system *s, const char *path, const char *which, int with_optimizer,
                       tr_position *pos, cm_err *err);

/* The config (JSON object text, see docs/FORMAT.md, "Checkpoints") and the recipe
 * (as saved; NULL when the file has none) of a checkpoint, malloc'd. */
int tr_checkpoint_read_meta(const char *path, char **config_json, char **recipe_json, cm_err *err);

/* ---- what each step does ----
 *
 * The step is train/system.c; each method's part of it is its own file,
 * train/method_NAME.c (train/method.h, the table in train/methods.c):
 * - networks: --pretrain: teacher only; none: student only; kd/nkd: student +
 *   teacher; c2kd: + both proxies (on the layer3 output; in fold mode the
 *   proxy pools over frames and space together, like the final pool).
 * - teacher mode: pretrain and c2kd full/top: train mode (batch statistics,
 *   running statistics updated); top: gradients and SGD for layer4 + fc only
 *   (the teacher proxy still trains, without gradient into the frozen layers);
 *   c2kd frozen and kd/nkd (a frozen pretrained teacher): eval mode, no update.
 * - term names (tr_stats.term_name) and values are each term's weighted
 *   contribution, so that loss = sum of terms: pretrain "ce_teacher"; none
 *   "ce_student"; kd "ce_student", "kd" (tau^2 KL at kd_temp); nkd
 *   "ce_student", "nkd"; c2kd "ce_teacher", "kl_teacher_to_proxy"
 *   (lambda1 KL(σ(sg z_t) ‖ σ(p_t))), "kl_proxy_to_teacher" (lambda1
 *   KL(σ(sg p_t) ‖ σ(z_t))), "nt_teacher_proxy" (lambda3 NT(p_t ← sg p_s)),
 *   "ce_student", "kl_student_to_proxy", "kl_proxy_to_student" (lambda2),
 *   "nt_student_proxy" (lambda3 NT(p_s ← sg p_t)).
 * - shake (docs/METHODS.md): student + frozen teacher (eval mode) + the
 *   shadow head on the teacher's layer2..4 outputs, ending in the teacher's fc
 *   (detached); every logit vector v is normalised to 3.1415 * LN(v) (layer
 *   norm over the classes, eps 1e-7) before the loss; terms "ce_student"
 *   CE(z_s), "kl_student_to_shadow" T^2 KL_T(sg z_s ‖ h), "kl_shadow_to_student"
 *   T^2 KL_T(sg h ‖ z_s), "ce_shadow" CE(h), "mse_shadow_teacher"
 *   MSE(h, sg z_t) (T = kd_temp; the authors' alpha = 0 drops KL(z_t ‖ z_s)).
 * - review (docs/METHODS.md): student + frozen teacher (eval mode) + the
 *   ABF modules (group "review") over the student's layer1..4 outputs and
 *   pooled features; terms "ce_student" CE(z_s) and, with weight 1 (the
 *   authors' ImageNet default), HCL of each level against the teacher's
 *   feature: "hcl_layer1" .. "hcl_layer4", "hcl_pool". Needs B >= 2 (the
 *   top module's batch norm over B values).
 * - correct_student / correct_teacher are -1 for an absent network; kept is -1
 *   except for c2kd.
 * - a c2kd step needs B >= 2 (the proxies' batch norm over B values, as in
 *   PyTorch); the loop drops a last batch of 1.
 * - a failed step (non-finite loss, backend error) restores the running
 *   statistics, so it changes nothing.
 */

/* Sets the steps completed (tr_checkpoint_load with_optimizer sets them from
 * the position); a failed step's message names step steps+1. */
void tr_system_set_steps(tr_system *s, int64_t steps);

/* ---- data parallel (train/ddp.c) ----
 * With a communicator of N > 1 ranks (collective/collective.h), each step runs as in
 * PyTorch's DistributedDataParallel: every rank's forward and backward pass on
 * its own batch (batch norm with that batch's statistics, C²KD's selection and
 * losses per rank), then the gradients of every parameter SGD updates are
 * averaged over ranks (MPI_Allreduce on the CPU backend, NCCL on CUDA) and
 * every rank applies the same SGD step. The loss terms are averaged too (a
 * non-finite one on any rank fails the step everywhere); tr_stats holds the
 * global batch's figures. comm is not owned; NULL: one process. */
void tr_system_set_comm(tr_system *s, cl_comm *comm);
/* Sends rank 0's parameters, momenta, BN buffers and counters to every rank,
 * then tr_system_check_same. */
int tr_system_broadcast(tr_system *s, cm_err *err);
/* Sends rank 0's BN running statistics to every rank (DDP's broadcast_buffers;
 * per-rank batches update them differently) and returns -1 naming the first
 * network whose parameters differ between ranks (a 64-bit hash of their
 * bytes compared with an all-reduce). Before evaluation and checkpoints. */
int tr_system_check_same(tr_system *s, cm_err *err);

#endif
