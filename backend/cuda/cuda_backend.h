/* cuda_backend: extras of the CUDA backend beyond backend/backend.h.
 *
 * be_cuda_create(device, err) (declared in backend/backend.h) makes the CUDA
 * backend with TF32 tensor-core math on for convolutions and matrix products,
 * unless the environment sets C2KD_TF32=0. be_cuda_create_ex chooses
 * explicitly. Every function here also exists in a build without CUDA
 * (backend/cuda/cuda_absent.c), where the constructors fail with a message and the
 * queries return 0.
 */
#ifndef BACKEND_CUDA_BACKEND_H
#define BACKEND_CUDA_BACKEND_H

#include <stddef.h>
#include <stdio.h>

#include "common/cm_err.h"
#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tf32: 1 allows TF32 tensor cores in cuDNN convolutions and cuBLAS; 0 forces
 * full float32 arithmetic (for tight comparisons). */
be_ctx *be_cuda_create_ex(int device, int tf32, cm_err *err);

/* 1 when b is a CUDA backend context. */
int be_is_cuda(const be_ctx *b);

/* High-water mark of the bytes this backend has allocated on the device
 * (ops->alloc, convolution workspace, the backend's own scratch), and the
 * current total. be_cuda_reset_peak sets the mark to the current total. */
size_t be_cuda_peak_bytes(be_ctx *b);
size_t be_cuda_current_bytes(be_ctx *b);
void be_cuda_reset_peak(be_ctx *b);
/* Device memory in use on the whole device (total - free from
 * cudaMemGetInfo: includes the CUDA context, cuDNN/cuBLAS handles, other
 * processes). 0 on failure. */
size_t be_cuda_device_used_bytes(be_ctx *b);
/* The device's name ("NVIDIA H100 80GB HBM3"), "" when unknown. */
const char *be_cuda_device_name(be_ctx *b);

/* Like ops->to_device, but NOT ordered after the compute already issued: the
 * copy may overlap with it. Use only when dst is not read or written by any
 * op issued before (a double-buffered batch). Ops issued after this call
 * still wait for the copy. */
void be_cuda_prefetch(be_ctx *b, void *dst, const void *src, size_t bytes);

/* Profiling. With C2KD_PROFILE=1 in the environment at creation, every op
 * is timed with CUDA events on the compute stream (resolved in batches: a
 * profiled run is slower and is not the timed one), accumulated by op and
 * shape (convolutions: by direction, with the chosen cuDNN algorithm and its
 * workspace). be_cuda_profile_write prints, in Markdown, the GPU time per op
 * kind and the top shapes, divided by `steps` (per step; 1: totals), and the
 * backend's memory (workspace, current, peak). be_cuda_profile_reset clears
 * the table (after a warm-up). be_cuda_profiling: 1 when on. */
int be_cuda_profiling(be_ctx *b);
void be_cuda_profile_reset(be_ctx *b);
/* Returns the total GPU time of the profiled ops in ms (0 when off). */
double be_cuda_profile_write(be_ctx *b, FILE *f, int steps, int top);
/* Bytes of the convolution workspace now, and its limit. */
size_t be_cuda_workspace_bytes(be_ctx *b);
size_t be_cuda_workspace_limit(be_ctx *b);
/* Host seconds spent choosing convolution algorithms so far. */
double be_cuda_find_seconds(be_ctx *b);

#ifdef __cplusplus
}
#endif

#endif
