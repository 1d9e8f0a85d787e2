/* cpu_ops: the CPU backend's ops, one function per entry of be_ops
 * (kernels/kernels.h), by family in the order of the files that define them
 * (kernels/cpu/<family>.c, mirrored by kernels/cuda/<family>.cu). The table
 * that puts them in be_ops by name is kernels/cpu/table.c. Not part of the
 * kernels interface. */
#ifndef KERNELS_CPU_OPS_H
#define KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"
#include "kernels/kernels.h"

/* context.c: lifecycle, memory, copies, staged inputs */
void cpu_destroy(be_ctx *b);
int cpu_status(be_ctx *b, cm_err *err);
void cpu_sync(be_ctx *b);
void *cpu_alloc(be_ctx *b, size_t bytes);
void cpu_free(be_ctx *b, void *p); /* free, host_free */
void cpu_memcpy(be_ctx *b, void *dst, const void *src, size_t bytes); /* to_device, to_host, copy */
void cpu_zero(be_ctx *b, void *p, size_t bytes);
void *cpu_host_alloc(be_ctx *b, size_t bytes);
void cpu_stage_copy(be_ctx *b, int slot, void *dst, const void *src, size_t bytes);
void cpu_stage_nothing(be_ctx *b, int slot); /* stage_wait, stage_release */
int cpu_input_threads(be_ctx *b, int cores);

/* conv.c: convolution */
void cpu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y);
void cpu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx);
void cpu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw);

/* batchnorm.c: batch norm, whole and in parts */
void cpu_bn_fwd_train(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma, const float *beta, float *run_mean, float *run_var, float momentum, float eps, float *y, float *save_mean, float *save_invstd);
void cpu_bn_fwd_eval(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma, const float *beta, const float *run_mean, const float *run_var, float eps, float *y);
void cpu_bn_bwd(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma, const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cpu_bn_stats_partial(be_ctx *b, int n, int c, int hw, const float *x, double *sums);
void cpu_bn_stats_finalize(be_ctx *b, int c, const double *sums, double count, float *run_mean, float *run_var, float momentum, float eps, float *save_mean, float *save_invstd);
void cpu_bn_fwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *gamma, const float *beta, const float *mean, const float *invstd, float *y);
void cpu_bn_bwd_partial(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *mean, const float *invstd, double *sums, float *dgamma, float *dbeta);
void cpu_bn_bwd_apply(be_ctx *b, int n, int c, int hw, const float *x, const float *dy, const float *gamma, const float *mean, const float *invstd, const double *sums, double count, float *dx);

/* activation.c: activations */
void cpu_relu_fwd(be_ctx *b, size_t n, const float *x, float *y);
void cpu_relu_bwd(be_ctx *b, size_t n, const float *y, const float *dy, float *dx);
void cpu_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y);
void cpu_leaky_bwd(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx);

/* pool.c: pooling */
void cpu_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y);
void cpu_maxpool_bwd(be_ctx *b, const be_pool_shape *s, const float *x, const float *y, const float *dy, float *dx);
void cpu_avgpool_fwd(be_ctx *b, int n, int c, int hw, const float *x, float *y);
void cpu_avgpool_bwd(be_ctx *b, int n, int c, int hw, const float *dy, float *dx);

/* linear.c: linear layers */
void cpu_linear_fwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *bias, float *y);
void cpu_linear_bwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *dy, float *dx, float *dw, float *dbias);

/* elementwise.c: element-wise */
void cpu_add(be_ctx *b, size_t n, const float *a, const float *c, float *y);
void cpu_axpy(be_ctx *b, size_t n, float alpha, const float *x, float *y);
void cpu_scale(be_ctx *b, size_t n, float alpha, float *y);

/* loss.c: losses */
void cpu_ce(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight, float *loss, float *dz);
void cpu_kl(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight, float *loss, float *ds);
void cpu_nt_kl(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y, const float *keep, float weight, float *loss, float *ddst);
void cpu_nkd(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y, float temp, float gamma, float weight, float *loss, float *ds);

/* selection.c: selection */
void cpu_kendall_select(be_ctx *b, int B, int C, const float *a, const float *c, float omega, float *tau, float *keep);
void cpu_argmax(be_ctx *b, int B, int C, const float *z, int32_t *pred);

/* review.c: ReviewKD: resize, adaptive pool, attention fusion, MSE */
void cpu_resize_fwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y);
void cpu_resize_bwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx);
void cpu_adapool_fwd(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y);
void cpu_adapool_bwd(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx);
void cpu_att_fwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *z, const float *bias, float *a, float *r);
void cpu_att_bwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *a, const float *dr, float *du, float *dv, float *dz, float *dbias);
void cpu_mse(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx);

/* sgd.c: optimiser */
void cpu_sgd(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum);

/* input.c: input preparation */
void cpu_prep_spec(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out);
void cpu_prep_frames(be_ctx *b, int n, const be_crop *crops, const uint8_t *src, int oh, int ow, const float mean[3], const float std[3], float *out);

/* The table (table.c). */
extern const be_ops cpu_ops_table;

#endif
