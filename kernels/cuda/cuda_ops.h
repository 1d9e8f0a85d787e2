/* cuda_ops: the CUDA backend's ops, one function per entry of be_ops
 * (kernels/kernels.h), by family in the order of the files that define them
 * (kernels/cuda/<family>.cu, mirrored by kernels/cpu/<family>.c). Plain C so
 * that the table, kernels/cuda/table.c, fills be_ops by name. Each op of the
 * project's own kernels is one name in its file: cu_<op> (this entry),
 * cu_<op>_launch (its launcher), cu_<op>_k (its kernel). Not part of the
 * kernels interface. */
#ifndef KERNELS_CUDA_OPS_H
#define KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/cm_err.h"
#include "kernels/kernels.h"

/* context.cu: lifecycle, memory, copies, staged inputs */
void cu_destroy(be_ctx *b);
int cu_status(be_ctx *b, cm_err *err);
void cu_sync(be_ctx *b);
void *cu_alloc(be_ctx *b, size_t bytes);
void cu_free(be_ctx *b, void *p);
void cu_to_device(be_ctx *b, void *dst, const void *src, size_t bytes);
void cu_to_host(be_ctx *b, void *dst, const void *src, size_t bytes);
void cu_zero(be_ctx *b, void *p, size_t bytes);
void cu_copy(be_ctx *b, void *dst, const void *src, size_t bytes);
void *cu_host_alloc(be_ctx *b, size_t bytes);
void cu_host_free(be_ctx *b, void *p);
void cu_stage_copy(be_ctx *b, int slot, void *dst, const void *src, size_t bytes);
void cu_stage_wait(be_ctx *b, int slot);
void cu_stage_release(be_ctx *b, int slot);
int cu_input_threads(be_ctx *b, int cores);
void *cu_native_stream(be_ctx *b);
const char *cu_device_name(be_ctx *b);
void cu_stats(be_ctx *b, be_stats *st);
void cu_reset_peak(be_ctx *b);
void cu_profile_reset(be_ctx *b);
int cu_profile_data(be_ctx *b, be_profile *p);

/* conv.cu: convolution */
void cu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y);
void cu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx);
void cu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw);

/* batchnorm.cu: batch norm, whole and in parts */
void cu_bn_fwd_train(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma, const float *beta, float *run_mean, float *run_var, float momentum, float eps, float *y, float *save_mean, float *save_invstd);
void cu_bn_fwd_eval(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma, const float *beta, const float *run_mean, const float *run_var, float eps, float *y);
void cu_bn_bwd(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma, const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cu_bn_stats_partial(be_ctx *b, int n, int c, int hw, const float *x, double *sums);
void cu_bn_stats_finalize(be_ctx *b, int c, const double *sums, double count, float *run_mean, float *run_var, float momentum, float eps, float *save_mean, float *save_invstd);
void cu_bn_fwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma, const float *beta, const float *mean, const float *invstd, float *y);
void cu_bn_bwd_partial(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *mean, const float *invstd, double *sums, float *dgamma, float *dbeta);
void cu_bn_bwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma, const float *mean, const float *invstd, const double *sums, double count, float *dx);

/* activation.cu: activations */
void cu_relu_fwd(be_ctx *b, size_t n, const float *x, float *y);
void cu_relu_bwd(be_ctx *b, size_t n, const float *y, const float *dy, float *dx);
void cu_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y);
void cu_leaky_bwd(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx);

/* pool.cu: pooling */
void cu_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y);
void cu_maxpool_bwd(be_ctx *b, const be_pool_shape *s, const float *x, const float *y, const float *dy, float *dx);
void cu_avgpool_fwd(be_ctx *b, int n, int c, int hw, const float *x, float *y);
void cu_avgpool_bwd(be_ctx *b, int n, int c, int hw, const float *dy, float *dx);

/* linear.cu: linear layers */
void cu_linear_fwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *bias, float *y);
void cu_linear_bwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *dy, float *dx, float *dw, float *dbias);

/* elementwise.cu: element-wise */
void cu_add(be_ctx *b, size_t n, const float *a, const float *c, float *y);
void cu_axpy(be_ctx *b, size_t n, float alpha, const float *x, float *y);
void cu_scale(be_ctx *b, size_t n, float alpha, float *y);

/* loss.cu: losses */
void cu_ce(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight, float *loss, float *dz);
void cu_kl(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight, float *loss, float *ds);
void cu_nt_kl(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y, const float *keep, float weight, float *loss, float *ddst);
void cu_nkd(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y, float temp, float gamma, float weight, float *loss, float *ds);

/* selection.cu: selection */
void cu_kendall_select(be_ctx *b, int B, int C, const float *a, const float *c, float omega, float *tau, float *keep);
void cu_argmax(be_ctx *b, int B, int C, const float *z, int32_t *pred);

/* review.cu: ReviewKD: resize, adaptive pool, attention fusion, MSE */
void cu_resize_fwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y);
void cu_resize_bwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx);
void cu_adapool_fwd(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y);
void cu_adapool_bwd(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx);
void cu_att_fwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *z, const float *bias, float *a, float *r);
void cu_att_bwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *a, const float *dr, float *du, float *dv, float *dz, float *dbias);
void cu_mse(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx);

/* sgd.cu: optimiser */
void cu_sgd(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum);

/* input.cu: input preparation */
void cu_prep_spec(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out);
void cu_prep_frames(be_ctx *b, int n, const be_crop *crops, const uint8_t *src, int oh, int ow, const float mean[3], const float std[3], float *out);

/* The table (table.c). */
extern const be_ops cu_ops_table;

#ifdef __cplusplus
}
#endif

#endif
