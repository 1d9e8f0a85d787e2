/* review (CPU): the CPU backend's ops for ReviewKD (kernels/kernels.h, "ReviewKD"):
 * bilinear resize (align_corners=False) and its backward, adaptive average
 * pooling to k x k and its backward, the attention fusion of two maps, MSE.
 * Each plane (or sample) is one task; sums run in double. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* PyTorch's source index for align_corners=False: clamp((dst + 0.5) * in / out - 0.5, 0). */
static void src_index(int dst, int in, int out, int *i0, int *i1, double *l1)
{
    double src = (dst + 0.5) * ((double)in / out) - 0.5;
    if (src < 0)
        src = 0;
    int i = (int)src;
    if (i > in - 1)
        i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = src - i;
}

typedef struct plane_job {
    int h, w, oh, ow, k;
    const float *x;
    float *y;
} plane_job;

static void resize_fwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const plane_job *J = arg;
    const float *x = J->x + p * J->h * J->w;
    float *y = J->y + p * J->oh * J->ow;
    for (int i = 0; i < J->oh; i++) {
        int r0, r1, c0, c1;
        double ly, lx;
        src_index(i, J->h, J->oh, &r0, &r1, &ly);
        for (int j = 0; j < J->ow; j++) {
            src_index(j, J->w, J->ow, &c0, &c1, &lx);
            double top = (1 - lx) * x[r0 * J->w + c0] + lx * x[r0 * J->w + c1];
            double bot = (1 - lx) * x[r1 * J->w + c0] + lx * x[r1 * J->w + c1];
            y[i * J->ow + j] = (float)((1 - ly) * top + ly * bot);
        }
    }
}

/* Backward: scatter of each output gradient onto its four sources, in output
 * order inside one plane (deterministic). J->x is dy, J->y is dx. */
static void resize_bwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const plane_job *J = arg;
    const float *dy = J->x + p * J->oh * J->ow;
    float *dx = J->y + p * J->h * J->w;
    memset(dx, 0, (size_t)J->h * J->w * sizeof(float));
    for (int i = 0; i < J->oh; i++) {
        int r0, r1, c0, c1;
        double ly, lx;
        src_index(i, J->h, J->oh, &r0, &r1, &ly);
        for (int j = 0; j < J->ow; j++) {
            src_index(j, J->w, J->ow, &c0, &c1, &lx);
            double g = dy[i * J->ow + j];
            dx[r0 * J->w + c0] += (float)((1 - ly) * (1 - lx) * g);
            dx[r0 * J->w + c1] += (float)((1 - ly) * lx * g);
            dx[r1 * J->w + c0] += (float)(ly * (1 - lx) * g);
            dx[r1 * J->w + c1] += (float)(ly * lx * g);
        }
    }
}

void cpu_resize_fwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y)
{
    plane_job J = {h, w, oh, ow, 0, x, y};
    cpu_parallel((cpu_ctx *)b, (size_t)nc, resize_fwd_task, &J);
}

void cpu_resize_bwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx)
{
    plane_job J = {h, w, oh, ow, 0, dy, dx};
    cpu_parallel((cpu_ctx *)b, (size_t)nc, resize_bwd_task, &J);
}

/* Window i of k over n: [floor(i n / k), ceil((i + 1) n / k)). */
static void window(int i, int n, int k, int *lo, int *hi)
{
    *lo = (int)(((long)i * n) / k);
    *hi = (int)(((long)(i + 1) * n + k - 1) / k);
}

static void adapool_fwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const plane_job *J = arg;
    const float *x = J->x + p * J->h * J->w;
    float *y = J->y + p * J->k * J->k;
    for (int i = 0; i < J->k; i++) {
        int r0, r1, c0, c1;
        window(i, J->h, J->k, &r0, &r1);
        for (int j = 0; j < J->k; j++) {
            window(j, J->w, J->k, &c0, &c1);
            double s = 0;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    s += x[r * J->w + c];
            y[i * J->k + j] = (float)(s / ((double)(r1 - r0) * (c1 - c0)));
        }
    }
}

static void adapool_bwd_task(void *arg, size_t p, int worker)
{
    (void)worker;
    const plane_job *J = arg;
    const float *dy = J->x + p * J->k * J->k;
    float *dx = J->y + p * J->h * J->w;
    memset(dx, 0, (size_t)J->h * J->w * sizeof(float));
    for (int i = 0; i < J->k; i++) {
        int r0, r1, c0, c1;
        window(i, J->h, J->k, &r0, &r1);
        for (int j = 0; j < J->k; j++) {
            window(j, J->w, J->k, &c0, &c1);
            float g = (float)(dy[i * J->k + j] / ((double)(r1 - r0) * (c1 - c0)));
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    dx[r * J->w + c] += g;
        }
    }
}

void cpu_adapool_fwd(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y)
{
    plane_job J = {h, w, k, k, k, x, y};
    cpu_parallel((cpu_ctx *)b, (size_t)nc, adapool_fwd_task, &J);
}

void cpu_adapool_bwd(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx)
{
    plane_job J = {h, w, k, k, k, dy, dx};
    cpu_parallel((cpu_ctx *)b, (size_t)nc, adapool_bwd_task, &J);
}

typedef struct att_job {
    int c, hw;
    const float *u, *v, *z, *bias, *a, *dr;
    float *aout, *r, *du, *dv, *dz;
} att_job;

static void att_fwd_task(void *arg, size_t s, int worker)
{
    (void)worker;
    const att_job *J = arg;
    size_t hw = (size_t)J->hw, base = s * (size_t)J->c * hw;
    const float *z = J->z + s * 2 * hw;
    float *a = J->aout + s * 2 * hw;
    for (size_t p = 0; p < 2 * hw; p++)
        a[p] = (float)(1.0 / (1.0 + exp(-((double)z[p] + J->bias[p / hw]))));
    for (int ch = 0; ch < J->c; ch++) {
        const float *u = J->u + base + ch * hw, *v = J->v + base + ch * hw;
        float *r = J->r + base + ch * hw;
        for (size_t p = 0; p < hw; p++)
            r[p] = u[p] * a[p] + v[p] * a[hw + p];
    }
}

void cpu_att_fwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *z, const float *bias,
                 float *a, float *r)
{
    att_job J = {.c = c, .hw = hw, .u = u, .v = v, .z = z, .bias = bias, .aout = a, .r = r};
    cpu_parallel((cpu_ctx *)b, (size_t)n, att_fwd_task, &J);
}

static void att_bwd_task(void *arg, size_t s, int worker)
{
    (void)worker;
    const att_job *J = arg;
    size_t hw = (size_t)J->hw, base = s * (size_t)J->c * hw;
    const float *a = J->a + s * 2 * hw;
    float *dz = J->dz + s * 2 * hw;
    for (size_t p = 0; p < hw; p++) {
        double g0 = 0, g1 = 0;
        for (int ch = 0; ch < J->c; ch++) {
            size_t i = base + ch * hw + p;
            g0 += (double)J->dr[i] * J->u[i];
            g1 += (double)J->dr[i] * J->v[i];
            J->du[i] = J->dr[i] * a[p];
            J->dv[i] = J->dr[i] * a[hw + p];
        }
        dz[p] = (float)(g0 * a[p] * (1.0 - a[p]));
        dz[hw + p] = (float)(g1 * a[hw + p] * (1.0 - a[hw + p]));
    }
}

void cpu_att_bwd(be_ctx *b, int n, int c, int hw, const float *u, const float *v, const float *a, const float *dr,
                 float *du, float *dv, float *dz, float *dbias)
{
    att_job J = {.c = c, .hw = hw, .u = u, .v = v, .a = a, .dr = dr, .du = du, .dv = dv, .dz = dz};
    cpu_parallel((cpu_ctx *)b, (size_t)n, att_bwd_task, &J);
    for (int j = 0; j < 2; j++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                s += dz[((size_t)i * 2 + j) * hw + p];
        dbias[j] = (float)s;
    }
}

void cpu_mse(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
{
    (void)b;
    if (n == 0)
        return;
    double s = 0, g = 2.0 * weight / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - t[i];
        s += d * d;
        dx[i] += (float)(g * d);
    }
    loss[0] += weight * s / (double)n;
}
