/* Built instead of the CUDA backend when nvcc or cuDNN is missing. */
#include "train/backend.h"

be_ctx *be_cuda_create(int device, cm_err *err)
{
    (void)device;
    cm_err_set(err, "this build has no CUDA support (nvcc or cuDNN was missing at build time)");
    return NULL;
}
