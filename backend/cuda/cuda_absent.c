/* Built instead of the CUDA backend when nvcc or cuDNN is missing. */
#include "backend/cuda/cuda_backend.h"

#define NO_CUDA "this build has no CUDA support (nvcc or cuDNN was missing at build time)"

be_ctx *be_cuda_create(int device, cm_err *err)
{
    (void)device;
    cm_err_set(err, NO_CUDA);
    return NULL;
}

be_ctx *be_cuda_create_ex(int device, int tf32, cm_err *err)
{
    (void)device;
    (void)tf32;
    cm_err_set(err, NO_CUDA);
    return NULL;
}

int be_is_cuda(const be_ctx *b) { (void)b; return 0; }
size_t be_cuda_peak_bytes(be_ctx *b) { (void)b; return 0; }
size_t be_cuda_current_bytes(be_ctx *b) { (void)b; return 0; }
void be_cuda_reset_peak(be_ctx *b) { (void)b; }
size_t be_cuda_device_used_bytes(be_ctx *b) { (void)b; return 0; }
const char *be_cuda_device_name(be_ctx *b) { (void)b; return ""; }
void be_cuda_prefetch(be_ctx *b, void *dst, const void *src, size_t bytes)
{
    (void)b; (void)dst; (void)src; (void)bytes;
}
int be_cuda_profiling(be_ctx *b) { (void)b; return 0; }
void be_cuda_profile_reset(be_ctx *b) { (void)b; }
double be_cuda_profile_write(be_ctx *b, FILE *f, int steps, int top)
{
    (void)b; (void)f; (void)steps; (void)top;
    return 0;
}
size_t be_cuda_workspace_bytes(be_ctx *b) { (void)b; return 0; }
size_t be_cuda_workspace_limit(be_ctx *b) { (void)b; return 0; }
double be_cuda_find_seconds(be_ctx *b) { (void)b; return 0; }
