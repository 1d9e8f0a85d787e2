/* kernels: the table of operations the model, losses and optimiser call.
 *
 * Two backends implement the same table, mirrored file by file, one file per
 * op family in the order of the sections below: kernels/cpu/<family>.c
 * (OpenBLAS and the project's loops) and kernels/cuda/<family>.cu (cuDNN,
 * cuBLAS and the project's kernels); each side's table.c fills be_ops by name.
 * tests/gpu/opcompare runs every op on both against each other. The model code
 * never touches memory directly: every tensor pointer below is a *device*
 * pointer made by ops->alloc (plain host memory on the CPU backend).
 *
 * Layout: activations NCHW float32, contiguous. Convolution weights
 * [k, c, kh, kw] (PyTorch's). Linear weights [out, in] (PyTorch's).
 *
 * Conventions:
 * - Every op is void; a failure (CUDA error, out of memory) is sticky in the
 *   context and reported by ops->status(), which the trainer checks once per
 *   step. Ops may run asynchronously; to_host() and sync() wait.
 * - Backward ops OVERWRITE their outputs (dx, dw, db, dgamma, dbeta), except
 *   the losses, which ACCUMULATE into dz (dz += weight * dLoss/dz) and into
 *   loss[0] (loss[0] += weight * value), so that several loss terms can share
 *   one gradient buffer. Use axpy/add to accumulate elsewhere.
 * - In-place is allowed where noted (y == x).
 * - Losses average over the batch B (PyTorch's reduction "batchmean"/"mean").
 * - The entries under "optional" are NULL when a backend lacks them (the CPU
 *   backend has none of them); every other entry is always set.
 */
#ifndef KERNELS_KERNELS_H
#define KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/cm_err.h"

typedef struct be_ops be_ops;

/* How a backend is made. Each field names the backend it concerns; the
 * others ignore it. be_options_default fills the defaults in brackets; the
 * `train` command fills them from its options (--threads, --tf32, --bn,
 * --cudnn-workspace-mb, --cudnn-find, --profile). */
typedef enum be_bn_impl {
    BE_BN_OWN = 0,   /* the project's kernels: deterministic, the CPU's arithmetic [default] */
    BE_BN_CUDNN = 1, /* cuDNN's batch norm */
} be_bn_impl;

typedef struct be_options {
    int threads;            /* CPU: compute threads, <= 0: all cores [0] */
    int device;             /* CUDA: device index [0] */
    int tf32;               /* CUDA: 1 allows TF32 tensor cores in convolutions and matrix products,
                             * 0 forces full float32 arithmetic (tight comparisons) [1] */
    be_bn_impl bn;          /* CUDA: batch-norm implementation [BE_BN_OWN] */
    size_t workspace_mb;    /* CUDA: cap of the convolution workspace in MiB [1024] */
    int cudnn_find;         /* CUDA: 1 times every convolution algorithm once per shape and keeps the
                             * fastest, 0 takes cuDNN's heuristic choice (fewer kernels: sanitizer runs) [1] */
    int profile;            /* CUDA: 1 times every op with events for profile_write (slower) [0] */
} be_options;

void be_options_default(be_options *o);

/* Memory and setup statistics of a backend (optional entry `stats`). */
typedef struct be_stats {
    size_t current_bytes;   /* bytes allocated now by the backend (ops->alloc, workspace, its own scratch) */
    size_t peak_bytes;      /* high-water mark of current_bytes (since creation or reset_peak) */
    size_t device_used_bytes; /* in use on the whole device (CUDA context, libraries, other processes); 0 unknown */
    size_t workspace_bytes; /* convolution workspace now */
    size_t workspace_limit; /* its cap (be_options.workspace_mb) */
    double setup_seconds;   /* host seconds spent choosing convolution algorithms so far */
} be_stats;

/* The raw profile of a backend made with be_options.profile (optional entry
 * profile_data). The arrays belong to the backend and stay valid until its next
 * profile_data, profile_reset or destroy. */
typedef struct be_prof_row {
    const char *op, *shape; /* op kind ("relu backward") and shape ("n8 c64 hw49") */
    double ms;              /* device time of all its calls since profile_reset */
    long calls;
} be_prof_row;

typedef struct be_prof_span {
    double t0, t1; /* ms since the profile started (creation or profile_reset) */
} be_prof_span;

typedef struct be_profile {
    const be_prof_row *rows;     /* one per (op, shape), ordered by "op|shape" (bytes) */
    size_t n_rows;
    const be_prof_span *ops;     /* the ops on the compute stream, in issue order */
    size_t n_ops;
    const be_prof_span *copies;  /* the staged input copies on the copy stream */
    size_t n_copies;
    size_t workspace_bytes, workspace_limit; /* convolution workspace now, its cap */
    double setup_seconds;        /* host seconds spent choosing convolution algorithms */
    int search_fallbacks;        /* algorithm searches that fell back to heuristics */
    size_t current_bytes, peak_bytes; /* allocated by the backend now, high-water mark */
    size_t allocations;          /* allocations now */
} be_profile;

/* Input buffers are staged in BE_STAGE_SLOTS slots (double buffering): the
 * copy of the next batch into one slot runs while the step on the other
 * slot's batch computes. See stage_copy in be_ops. */
enum { BE_STAGE_SLOTS = 2 };

/* Every backend's context struct begins with this header. */
typedef struct be_ctx {
    const be_ops *ops;
} be_ctx;

/* Convolution without bias. Output: oh = (h + 2*pad - kh) / stride + 1, likewise ow. */
typedef struct be_conv_shape {
    int n, c, h, w; /* input */
    int k, kh, kw;  /* output channels, kernel */
    int stride, pad;
} be_conv_shape;

/* Max pooling window (PyTorch MaxPool2d, padding counts as -inf). */
typedef struct be_pool_shape {
    int n, c, h, w;
    int kh, kw, stride, pad;
} be_pool_shape;

/* One frame to prepare: a crop of a decoded uint8 RGB image (HWC, packed),
 * resized to the output size with bilinear interpolation equal to
 * torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
 * antialias=False) applied to the crop, optionally flipped horizontally,
 * then normalised ((v/255 - mean[c]) / std[c]) into CHW float. */
typedef struct be_crop {
    size_t offset;        /* byte offset of the image in the uint8 source buffer */
    int src_w, src_h;     /* source image size */
    int x, y, w, h;       /* crop rectangle inside the source */
    int flip;             /* 1: mirror left-right after resizing */
} be_crop;

struct be_ops {
    const char *name; /* "cpu", "cuda" */
    void (*destroy)(be_ctx *b);
    /* 0 when no op has failed since creation, else -1 with the first failure in err. */
    int (*status)(be_ctx *b, cm_err *err);
    /* Waits for every op issued so far. */
    void (*sync)(be_ctx *b);

    /* ---- memory ---- */
    void *(*alloc)(be_ctx *b, size_t bytes); /* zero-filled; NULL on failure (also sticky) */
    void (*free)(be_ctx *b, void *p);
    /* host -> device. The host buffer must stay untouched until the next sync()
     * (the CUDA backend copies asynchronously from pinned memory). */
    void (*to_device)(be_ctx *b, void *dst, const void *src, size_t bytes);
    /* device -> host; synchronous. */
    void (*to_host)(be_ctx *b, void *dst, const void *src, size_t bytes);
    void (*zero)(be_ctx *b, void *p, size_t bytes);
    void (*copy)(be_ctx *b, void *dst, const void *src, size_t bytes);
    /* Host memory suited to to_device (pinned on CUDA); free with host_free. */
    void *(*host_alloc)(be_ctx *b, size_t bytes);
    void (*host_free)(be_ctx *b, void *p);

    /* ---- staged input copies (double buffering; slot in [0, BE_STAGE_SLOTS)) ----
     * stage_copy: host -> device, ordered after the slot's last stage_release but
     *   NOT after the other ops already issued, so it overlaps them (the CUDA
     *   backend copies on its copy stream). src must come from host_alloc and
     *   stay untouched until the next sync().
     * stage_wait: ops issued from now on wait for the slot's copies issued so far.
     * stage_release: the slot's device buffers may be overwritten once the ops
     *   issued so far have run (the next stage_copy into the slot waits for them).
     * On the CPU stage_copy is a plain copy and the other two do nothing. */
    void (*stage_copy)(be_ctx *b, int slot, void *dst, const void *src, size_t bytes);
    void (*stage_wait)(be_ctx *b, int slot);
    void (*stage_release)(be_ctx *b, int slot);
    /* Host threads suggested for preparing inputs (JPEG decoding) beside this
     * backend on a machine with `cores` cores: few when the ops use every core. */
    int (*input_threads)(be_ctx *b, int cores);

    /* ---- convolution ---- */
    void (*conv_fwd)(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y);
    void (*conv_bwd_data)(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx);
    void (*conv_bwd_filter)(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw);

    /* ---- batch norm over (n, hw) for each of c channels ----
     * train: normalises with the batch mean and biased variance, updates
     * running_mean/var with momentum (PyTorch: r = (1-m) r + m * stat, the
     * running variance uses the unbiased variance), stores the batch mean and
     * 1/sqrt(var + eps) for the backward pass. */
    void (*bn_fwd_train)(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
                         const float *beta, float *run_mean, float *run_var, float momentum,
                         float eps, float *y, float *save_mean, float *save_invstd);
    void (*bn_fwd_eval)(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
                        const float *beta, const float *run_mean, const float *run_var, float eps,
                        float *y);
    void (*bn_bwd)(be_ctx *b, int n, int c, int hw, const float *x, const float *dy,
                   const float *gamma, const float *save_mean, const float *save_invstd,
                   float *dx, float *dgamma, float *dbeta);

    /* Batch norm in parts, for statistics over several processes (`train --sync-bn`,
     * PyTorch's SyncBatchNorm); always set. bn_fwd_train = bn_stats_partial, (sum over
     * processes), bn_stats_finalize, bn_fwd_apply; bn_bwd = bn_bwd_partial, (sum over
     * processes), bn_bwd_apply. `sums` are DOUBLE device arrays [2c].
     * bn_stats_partial: sums[ch] = Σ x, sums[c + ch] = Σ x² over (n, hw) of channel ch. */
    void (*bn_stats_partial)(be_ctx *b, int n, int c, int hw, const float *x, double *sums);
    /* From sums over count values per channel (count > 0): mean = Σx / count, biased
     * var = Σx² / count - mean²; save_mean = mean, save_invstd = 1/sqrt(var + eps);
     * run_mean/var updated as in bn_fwd_train (unbiased var over count) unless run_mean is NULL. */
    void (*bn_stats_finalize)(be_ctx *b, int c, const double *sums, double count, float *run_mean,
                              float *run_var, float momentum, float eps, float *save_mean, float *save_invstd);
    /* y = (x - mean) * invstd * gamma + beta with the given per-channel mean and invstd. */
    void (*bn_fwd_apply)(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma,
                         const float *beta, const float *mean, const float *invstd, float *y);
    /* sums[ch] = Σ dy, sums[c + ch] = Σ dy·x̂ (x̂ = (x - mean)·invstd); dbeta and dgamma get
     * the same sums of this process's values (as bn_bwd; data parallel averages them). */
    void (*bn_bwd_partial)(be_ctx *b, int n, int c, int hw, const float *x, const float *dy,
                           const float *mean, const float *invstd, double *sums, float *dgamma,
                           float *dbeta);
    /* dx = gamma·invstd·(dy - Σdy / count - x̂ · Σdy·x̂ / count) from sums over count values. */
    void (*bn_bwd_apply)(be_ctx *b, int n, int c, int hw, const float *x, const float *dy,
                         const float *gamma, const float *mean, const float *invstd, const double *sums,
                         double count, float *dx);

    /* ---- activations (y may equal x; dx may equal dy) ---- */
    void (*relu_fwd)(be_ctx *b, size_t n, const float *x, float *y);
    void (*relu_bwd)(be_ctx *b, size_t n, const float *y, const float *dy, float *dx); /* from the output y */
    void (*leaky_fwd)(be_ctx *b, size_t n, float slope, const float *x, float *y);
    void (*leaky_bwd)(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx);

    /* ---- pooling ---- */
    void (*maxpool_fwd)(be_ctx *b, const be_pool_shape *s, const float *x, float *y);
    void (*maxpool_bwd)(be_ctx *b, const be_pool_shape *s, const float *x, const float *y,
                        const float *dy, float *dx);
    /* Global average over hw: x [n, c, hw] -> y [n, c]. */
    void (*avgpool_fwd)(be_ctx *b, int n, int c, int hw, const float *x, float *y);
    void (*avgpool_bwd)(be_ctx *b, int n, int c, int hw, const float *dy, float *dx);

    /* ---- linear: y[n, out] = x[n, in] · w[out, in]^T + bias[out] (bias may be NULL) ---- */
    void (*linear_fwd)(be_ctx *b, int n, int in, int out, const float *x, const float *w,
                       const float *bias, float *y);
    /* dx may be NULL (no input gradient); dbias may be NULL. */
    void (*linear_bwd)(be_ctx *b, int n, int in, int out, const float *x, const float *w,
                       const float *dy, float *dx, float *dw, float *dbias);

    /* ---- element-wise ---- */
    void (*add)(be_ctx *b, size_t n, const float *a, const float *c, float *y); /* y = a + c */
    void (*axpy)(be_ctx *b, size_t n, float alpha, const float *x, float *y);  /* y += alpha x */
    void (*scale)(be_ctx *b, size_t n, float alpha, float *y);                 /* y *= alpha */

    /* ---- losses on logits [B, C]; y: int32 labels; see the conventions above ---- */
    /* Cross-entropy. */
    void (*ce)(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight,
               float *loss, float *dz);
    /* KL(softmax(t/temp) || softmax(s/temp)), t detached, gradient to s only. */
    void (*kl)(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight,
               float *loss, float *ds);
    /* Non-target KL of c2kd-method.md: a = softmax(src ⊙ (1-m)), q = log_softmax(dst ⊙ (1-m)),
     * (1/B) Σ_i keep[i] Σ_c a (log a - q); src detached, gradient to dst. keep: B floats 0/1. */
    void (*nt_kl)(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y,
                  const float *keep, float weight, float *loss, float *ddst);
    /* NKD term (without the CE): -sg(T_y) log S_y - gamma temp^2 Σ_{i≠y} N(T_i/temp) log N(S_i/temp),
     * N = softmax over the non-target logits; t detached, gradient to s. */
    void (*nkd)(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y,
                float temp, float gamma, float weight, float *loss, float *ds);
    /* ---- selection ---- */
    /* Kendall tau-b between rows a[i,:] and c[i,:] (ties handled as scipy.stats.kendalltau);
     * tau[i] (NaN when a row is constant), keep[i] = tau[i] > omega ? 1 : 0. */
    void (*kendall_select)(be_ctx *b, int B, int C, const float *a, const float *c, float omega,
                           float *tau, float *keep);
    /* pred[i] = argmax_c z[i, c] (first maximum). */
    void (*argmax)(be_ctx *b, int B, int C, const float *z, int32_t *pred);

    /* ---- ReviewKD (docs/METHODS.md): resizing, pyramid pooling, attention fusion, MSE ----
     * Planes: x [nc, h, w] (nc = n * c planes), y [nc, oh, ow]. */
    /* Bilinear resize, torch.nn.functional.interpolate(mode="bilinear",
     * align_corners=False) to (oh, ow); resize_bwd overwrites dx [nc, h, w]. */
    void (*resize_fwd)(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y);
    void (*resize_bwd)(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx);
    /* Adaptive average pooling to k x k (torch adaptive_avg_pool2d: window i spans
     * [floor(i h / k), ceil((i + 1) h / k))); y [nc, k, k]; adapool_bwd overwrites dx. */
    void (*adapool_fwd)(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y);
    void (*adapool_bwd)(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx);
    /* Attention fusion of two [n, c, hw] maps u, v with attention logits z [n, 2, hw]:
     * a = sigmoid(z + bias[j]) (stored, [n, 2, hw]), r = u * a[:, 0] + v * a[:, 1]
     * (broadcast over the c channels). att_bwd from dr: du, dv, dz (overwritten)
     * and dbias[2] (overwritten, summed over n and hw). */
    void (*att_fwd)(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *z,
                    const float *bias, float *a, float *r);
    void (*att_bwd)(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *a,
                    const float *dr, float *du, float *dv, float *dz, float *dbias);
    /* Mean squared error over n values, t detached (a loss: accumulates):
     * loss[0] += weight * mean((x - t)^2), dx += weight * 2 (x - t) / n.
     * The squares are summed in double and loss is a double (on the device):
     * float32 features up to FLT_MAX give a finite value, as in float64. */
    void (*mse)(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx);

    /* ---- optimiser: PyTorch SGD (dampening 0, no nesterov, no weight decay) ----
     * m = momentum * m + g; p -= lr * m. (m starts at zero, which equals
     * PyTorch's first step m = g.) Over one contiguous range of parameters. */
    void (*sgd)(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum);

    /* ---- input preparation ---- */
    /* n spectrograms of len values each, float16 (IEEE half, as stored in the
     * shards) -> float32; standardise each ((x - mean) / (std + 1e-9), population
     * std) when standardize is 1. */
    void (*prep_spec)(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out);
    /* n frames (see be_crop; crops is a HOST array) from the uint8 device buffer
     * src -> out [n, 3, oh, ow]. */
    void (*prep_frames)(be_ctx *b, int n, const be_crop *crops, const uint8_t *src, int oh, int ow,
                        const float mean[3], const float std[3], float *out);

    /* ---- optional (NULL when the backend lacks them) ---- */
    /* The device's name ("NVIDIA H100 80GB HBM3"). */
    const char *(*device_name)(be_ctx *b);
    /* Memory and setup statistics; reset_peak sets peak_bytes to current_bytes. */
    void (*stats)(be_ctx *b, be_stats *st);
    void (*reset_peak)(be_ctx *b);
    /* Profiling (be_options.profile): every op timed on the device, by op kind and
     * shape. profile_reset clears the table (after a warm-up); profile_data gives
     * the raw table, the timelines and the memory plan (be_profile; the report is
     * written by the caller: train/profile.h) and returns 0, or -1 (p zeroed)
     * when the backend was made without profiling. */
    void (*profile_reset)(be_ctx *b);
    int (*profile_data)(be_ctx *b, be_profile *p);
    /* The native stream the ops are issued on (a cudaStream_t), so that another library
     * (NCCL, `train` data parallel) can order its work after them without a sync. */
    void *(*native_stream)(be_ctx *b);
};

/* Constructors (each backend's own file). threads <= 0: all cores. */
be_ctx *be_cpu_create(int threads, cm_err *err);
/* o: NULL for the defaults. NULL with a message when no CUDA device (or no
 * CUDA support compiled in). */
be_ctx *be_cuda_create(const be_options *o, cm_err *err);

#endif
