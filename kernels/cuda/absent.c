/* absent (CUDA): built instead of the CUDA backend (kernels/cuda/*.cu) when nvcc or cuDNN is missing. */
#include "kernels/kernels.h"

be_ctx *be_cuda_create(const be_options *o, cm_err *err)
{
    (void)o;
    cm_err_set(err, "this build has no CUDA support (nvcc or cuDNN was missing at build time)");
    return NULL;
}
