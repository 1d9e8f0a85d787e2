/* cuda_internal: launchers of the project's own kernels (backend/cuda/cuda_kernels.cu),
 * called by the backend (backend/cuda/cuda_backend.cu). Each enqueues on `st` and
 * returns the launch error (cudaSuccess when fine). Not a public interface. */
#ifndef BACKEND_CUDA_INTERNAL_H
#define BACKEND_CUDA_INTERNAL_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
}

cudaError_t k_relu_fwd(cudaStream_t st, size_t n, const float *x, float *y);
cudaError_t k_relu_bwd(cudaStream_t st, size_t n, const float *y, const float *dy, float *dx);
cudaError_t k_leaky_fwd(cudaStream_t st, size_t n, float slope, const float *x, float *y);
cudaError_t k_leaky_bwd(cudaStream_t st, size_t n, float slope, const float *x, const float *dy, float *dx);

cudaError_t k_maxpool_fwd(cudaStream_t st, const be_pool_shape *s, const float *x, float *y);
/* dx must be zeroed before (scatter with atomics). */
cudaError_t k_maxpool_bwd(cudaStream_t st, const be_pool_shape *s, const float *x, const float *dy, float *dx);
cudaError_t k_avgpool_fwd(cudaStream_t st, int n, int c, int hw, const float *x, float *y);
cudaError_t k_avgpool_bwd(cudaStream_t st, int n, int c, int hw, const float *dy, float *dx);

/* y[r, j] += bias[j] for r < rows, j < cols. */
cudaError_t k_add_bias(cudaStream_t st, int rows, int cols, const float *bias, float *y);
/* db[j] = sum_r dy[r, j]. */
cudaError_t k_col_sum(cudaStream_t st, int rows, int cols, const float *dy, float *db);

cudaError_t k_add(cudaStream_t st, size_t n, const float *a, const float *c, float *y);
cudaError_t k_axpy(cudaStream_t st, size_t n, float alpha, const float *x, float *y);
cudaError_t k_scale(cudaStream_t st, size_t n, float alpha, float *y);
cudaError_t k_sgd(cudaStream_t st, size_t n, float *p, const float *g, float *m, float lr, float momentum);

/* Losses: per-sample losses into `per` [B] (scratch), gradients accumulated
 * into dz with weight/B; then k_loss_reduce adds weight * sum(per) / B to loss[0]. */
cudaError_t k_ce(cudaStream_t st, int B, int C, const float *z, const int32_t *y, float weight, float *per,
                 float *dz);
cudaError_t k_kl(cudaStream_t st, int B, int C, const float *t, const float *s, float temp, float weight,
                 float *per, float *ds);
cudaError_t k_nt_kl(cudaStream_t st, int B, int C, const float *src, const float *dst, const int32_t *y,
                    const float *keep, float weight, float *per, float *ddst);
cudaError_t k_nkd(cudaStream_t st, int B, int C, const float *t, const float *s, const int32_t *y, float temp,
                  float gamma, float weight, float *per, float *ds);
cudaError_t k_loss_reduce(cudaStream_t st, int B, const float *per, float weight, float *loss);

cudaError_t k_kendall(cudaStream_t st, int B, int C, const float *a, const float *c, float omega, float *tau,
                      float *keep);
cudaError_t k_argmax(cudaStream_t st, int B, int C, const float *z, int32_t *pred);

/* Batch norm (the project's kernels; semantics of backend/backend.h and the
 * CPU backend). scratch: k_bn_scratch_bytes(n, c, hw) bytes of device memory
 * (0: shape not supported: c > 65535 or n*hw >= 2^31). y may alias x; dx may
 * alias dy or x. Deterministic (no atomics). */
size_t k_bn_scratch_bytes(int n, int c, int hw);
cudaError_t k_bn_fwd_train(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                           float *run_mean, float *run_var, float momentum, float eps, float *y, float *save_mean,
                           float *save_invstd, void *scratch);
cudaError_t k_bn_fwd_eval(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, float eps, float *y);
cudaError_t k_bn_bwd(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                     const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta, void *scratch);
/* Batch norm in parts (backend.h's bn_stats_partial ... bn_bwd_apply; --sync-bn); the same
 * scratch as above (finalize needs none). */
cudaError_t k_bn_stats_partial(cudaStream_t st, int n, int c, int hw, const float *x, double *sums, void *scratch);
cudaError_t k_bn_stats_finalize(cudaStream_t st, int c, const double *sums, double count, float *run_mean, float *run_var,
                                float momentum, float eps, float *save_mean, float *save_invstd);
cudaError_t k_bn_fwd_apply(cudaStream_t st, int n, int c, int hw, const float *x, const float *gamma, const float *beta,
                           const float *mean, const float *invstd, float *y, void *scratch);
cudaError_t k_bn_bwd_partial(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *mean,
                             const float *invstd, double *sums, float *dgamma, float *dbeta, void *scratch);
cudaError_t k_bn_bwd_apply(cudaStream_t st, int n, int c, int hw, const float *x, const float *dy, const float *gamma,
                           const float *mean, const float *invstd, const double *sums, double count, float *dx,
                           void *scratch);

cudaError_t k_prep_spec(cudaStream_t st, int n, size_t len, const uint16_t *half, int standardize, float *out);
/* crops: device array of n be_crop. */
cudaError_t k_prep_frames(cudaStream_t st, int n, const be_crop *crops, const uint8_t *src, int oh, int ow,
                          float m0, float m1, float m2, float s0, float s1, float s2, float *out);

/* ReviewKD's ops (backend/cuda/cuda_review.cu; semantics in backend/backend.h). */
cudaError_t k_resize_fwd(cudaStream_t st, int nc, int h, int w, int oh, int ow, const float *x, float *y);
cudaError_t k_resize_bwd(cudaStream_t st, int nc, int h, int w, int oh, int ow, const float *dy, float *dx);
cudaError_t k_adapool_fwd(cudaStream_t st, int nc, int h, int w, int k, const float *x, float *y);
cudaError_t k_adapool_bwd(cudaStream_t st, int nc, int h, int w, int k, const float *dy, float *dx);
cudaError_t k_att_fwd(cudaStream_t st, int n, int c, int hw, const float *u, const float *v, const float *z,
                      const float *bias, float *a, float *r);
cudaError_t k_att_bwd(cudaStream_t st, int n, int c, int hw, const float *u, const float *v, const float *a,
                      const float *dr, float *du, float *dv, float *dz, float *dbias);
cudaError_t k_mse(cudaStream_t st, size_t n, const float *x, const float *t, float weight, double *loss, float *dx);

#endif
