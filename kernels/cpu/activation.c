/* activation (CPU): relu and leaky relu, forward and backward. relu keeps NaN
 * (clamp_min), its gradient is zero where y <= 0; leaky: x > 0 ? x : slope*x,
 * gradient x > 0 ? dy : slope*dy. Mirrors kernels/cuda/activation.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */

#include "kernels/cpu/cpu_internal.h"

static void relu_fwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++) {
        float v = J->x[i];
        J->out[i] = v < 0.0f ? 0.0f : v; /* NaN stays NaN, like torch.relu */
    }
}
void cpu_relu_fwd(be_ctx *b, size_t n, const float *x, float *y)
{
    ew_job J = {.x = x, .out = y};
    cpu_par_range((cpu_ctx *)b, n, relu_fwd_r, &J);
}

static void relu_bwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    const float *y = J->y, *dy = J->dy;
    float *out = J->out;
    for (size_t i = lo; i < hi; i++) {
        float g = dy[i]; /* loaded unconditionally: the loop becomes a blend */
        out[i] = y[i] <= 0.0f ? 0.0f : g;
    }
}
void cpu_relu_bwd(be_ctx *b, size_t n, const float *y, const float *dy, float *dx)
{
    ew_job J = {.y = y, .dy = dy, .out = dx};
    cpu_par_range((cpu_ctx *)b, n, relu_bwd_r, &J);
}

static void leaky_fwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    for (size_t i = lo; i < hi; i++) {
        float v = J->x[i];
        J->out[i] = v > 0.0f ? v : v * J->alpha;
    }
}
void cpu_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y)
{
    ew_job J = {.x = x, .out = y, .alpha = slope};
    cpu_par_range((cpu_ctx *)b, n, leaky_fwd_r, &J);
}

static void leaky_bwd_r(void *a, size_t lo, size_t hi)
{
    const ew_job *J = a;
    const float *x = J->x, *dy = J->dy;
    float *out = J->out, al = J->alpha;
    for (size_t i = lo; i < hi; i++) {
        float g = dy[i];
        out[i] = x[i] > 0.0f ? g : g * al;
    }
}
void cpu_leaky_bwd(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx)
{
    ew_job J = {.x = x, .dy = dy, .out = dx, .alpha = slope};
    cpu_par_range((cpu_ctx *)b, n, leaky_bwd_r, &J);
}
