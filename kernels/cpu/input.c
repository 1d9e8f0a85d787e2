/* input (CPU): input preparation: float16 spectrograms to float32
 * (standardised), frames cropped, resized bilinearly, flipped, normalised.
 * Mirrors kernels/cuda/input.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* ---------------------------------------------------------------- inputs */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else
        bits = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

typedef struct spec_job {
    size_t len;
    const uint16_t *half;
    int standardize;
    float *out;
} spec_job;

static void spec_task(void *arg, size_t i, int worker)
{
    (void)worker;
    const spec_job *J = arg;
    const uint16_t *h = J->half + i * J->len;
    float *o = J->out + i * J->len;
    for (size_t k = 0; k < J->len; k++)
        o[k] = half_to_float(h[k]);
    if (!J->standardize || J->len == 0)
        return;
    double s = 0, ss = 0;
    for (size_t k = 0; k < J->len; k++)
        s += o[k];
    double mean = s / J->len;
    for (size_t k = 0; k < J->len; k++)
        ss += (o[k] - mean) * (o[k] - mean);
    double inv = 1.0 / (sqrt(ss / J->len) + 1e-9);
    for (size_t k = 0; k < J->len; k++)
        o[k] = (float)((o[k] - mean) * inv);
}

void cpu_prep_spec(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    spec_job J = {len, half, standardize, out};
    cpu_parallel(c, (size_t)n, spec_task, &J);
}

typedef struct frame_job {
    const be_crop *crops;
    const uint8_t *src;
    int oh, ow;
    const float *mean, *std;
    float *out;
} frame_job;

/* PyTorch's source index for align_corners=False: clamp((dst + 0.5) * scale - 0.5, 0). */
static void bilinear_index(int dst, double scale, int in, int *i0, int *i1, float *l1)
{
    double src = (dst + 0.5) * scale - 0.5;
    if (src < 0)
        src = 0;
    int i = (int)src;
    if (i > in - 1)
        i = in - 1;
    double l = src - i;
    if (l > 1)
        l = 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = (float)l;
}

static void frame_task(void *arg, size_t f, int worker)
{
    (void)worker;
    const frame_job *J = arg;
    const be_crop *cr = &J->crops[f];
    const uint8_t *img = J->src + cr->offset;
    size_t plane = (size_t)J->oh * J->ow;
    float *out = J->out + f * 3 * plane;
    double sy = (double)cr->h / J->oh, sx = (double)cr->w / J->ow;
    for (int oy = 0; oy < J->oh; oy++) {
        int y0, y1;
        float ly;
        bilinear_index(oy, sy, cr->h, &y0, &y1, &ly);
        const uint8_t *r0 = img + ((size_t)(cr->y + y0) * cr->src_w + cr->x) * 3;
        const uint8_t *r1 = img + ((size_t)(cr->y + y1) * cr->src_w + cr->x) * 3;
        for (int ox = 0; ox < J->ow; ox++) {
            int x0, x1;
            float lx;
            bilinear_index(ox, sx, cr->w, &x0, &x1, &lx);
            int dx = cr->flip ? J->ow - 1 - ox : ox;
            for (int ch = 0; ch < 3; ch++) {
                float top = (1 - lx) * r0[x0 * 3 + ch] + lx * r0[x1 * 3 + ch];
                float bot = (1 - lx) * r1[x0 * 3 + ch] + lx * r1[x1 * 3 + ch];
                float v = (1 - ly) * top + ly * bot;
                out[ch * plane + (size_t)oy * J->ow + dx] = (v / 255.0f - J->mean[ch]) / J->std[ch];
            }
        }
    }
}

void cpu_prep_frames(be_ctx *b, int n, const be_crop *crops, const uint8_t *src, int oh, int ow,
                            const float mean[3], const float std[3], float *out)
{
    cpu_ctx *c = (cpu_ctx *)b;
    if (c->failed)
        return;
    for (int f = 0; f < n; f++) {
        const be_crop *cr = &crops[f];
        if (cr->w <= 0 || cr->h <= 0 || cr->x < 0 || cr->y < 0 || cr->x + cr->w > cr->src_w ||
            cr->y + cr->h > cr->src_h) {
            cpu_fail(c, "prep_frames: crop %d (%d,%d %dx%d) outside the %dx%d image", f, cr->x, cr->y, cr->w,
                     cr->h, cr->src_w, cr->src_h);
            return;
        }
    }
    frame_job J = {crops, src, oh, ow, mean, std, out};
    cpu_parallel(c, (size_t)n, frame_task, &J);
}
