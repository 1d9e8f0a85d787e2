/* sgd (CUDA): PyTorch SGD with momentum; mirrors kernels/cpu/sgd.c. */
#include <stdint.h>

#include "kernels/cuda/cuda_internal.h"

__global__ void cu_sgd_k(size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    GRID_STRIDE(i, n) {
        float v = momentum * m[i] + g[i];
        m[i] = v;
        p[i] -= lr * v;
    }
}
/* float4 version when every pointer is 16-byte aligned. */
__global__ void cu_sgd_vec4_k(size_t n4, float4 *p, const float4 *g, float4 *m, float lr, float momentum)
{
    GRID_STRIDE(i, n4) {
        float4 gv = g[i], mv = m[i], pv = p[i];
        mv.x = momentum * mv.x + gv.x; mv.y = momentum * mv.y + gv.y;
        mv.z = momentum * mv.z + gv.z; mv.w = momentum * mv.w + gv.w;
        pv.x -= lr * mv.x; pv.y -= lr * mv.y; pv.z -= lr * mv.z; pv.w -= lr * mv.w;
        m[i] = mv; p[i] = pv;
    }
}
static cudaError_t cu_sgd_launch(cudaStream_t st, size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    if (!n) return cudaGetLastError();
    if ((((uintptr_t)p | (uintptr_t)g | (uintptr_t)m) & 15) == 0) {
        size_t n4 = n / 4;
        if (n4) cu_sgd_vec4_k<<<grid_for(n4), NT, 0, st>>>(n4, (float4 *)p, (const float4 *)g, (float4 *)m, lr, momentum);
        size_t rest = n - n4 * 4;
        if (rest) cu_sgd_k<<<1, NT, 0, st>>>(rest, p + n4 * 4, g + n4 * 4, m + n4 * 4, lr, momentum);
    } else {
        cu_sgd_k<<<grid_for(n), NT, 0, st>>>(n, p, g, m, lr, momentum);
    }
    return cudaGetLastError();
}
/* ---------------- entries ---------------- */

void cu_sgd(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    LAUNCH(CTX(b), cu_sgd_launch(CTX(b)->stream, n, p, g, m, lr, momentum), "sgd", "%zu", n);
}
