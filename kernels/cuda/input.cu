/* input (CUDA): float16 spectrograms to float32 (standardised) and frames
 * (crop, bilinear resize, flip, normalise); mirrors kernels/cpu/input.c. */
#include <cuda_fp16.h>
#include <math.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/reduce.cuh"

/* ---------------- input preparation ---------------- */

__global__ void cu_prep_spec_raw_k(size_t n, const __half *h, float *out)
{
    GRID_STRIDE(i, n) out[i] = __half2float(h[i]);
}
/* One block per clip: two-pass mean and population std in double. */
__global__ void cu_prep_spec_std_k(size_t len, const __half *h, float *out)
{
    __shared__ double sh[32];
    const __half *r = h + (size_t)blockIdx.x * len;
    float *o = out + (size_t)blockIdx.x * len;
    double s = 0.0;
    for (size_t k = threadIdx.x; k < len; k += blockDim.x) s += (double)__half2float(r[k]);
    s = block_sum_d(s, sh);
    double mean = s / (double)len;
    double v = 0.0;
    for (size_t k = threadIdx.x; k < len; k += blockDim.x) {
        double d = (double)__half2float(r[k]) - mean;
        v += d * d;
    }
    v = block_sum_d(v, sh);
    double inv = 1.0 / (sqrt(v / (double)len) + 1e-9);
    float fm = (float)mean, fi = (float)inv;
    for (size_t k = threadIdx.x; k < len; k += blockDim.x) o[k] = (__half2float(r[k]) - fm) * fi;
}
static cudaError_t cu_prep_spec_launch(cudaStream_t st, int n, size_t len, const uint16_t *half, int standardize, float *out)
{
    if (n <= 0 || len == 0) return cudaGetLastError();
    if (standardize)
        cu_prep_spec_std_k<<<n, 1024, 0, st>>>(len, (const __half *)half, out);
    else
        cu_prep_spec_raw_k<<<grid_for((size_t)n * len), NT, 0, st>>>((size_t)n * len, (const __half *)half, out);
    return cudaGetLastError();
}

struct norm3 {
    float m[3], s[3];
};

/* One thread per output pixel (3 channels). PyTorch's bilinear, align_corners=False. */
__global__ void cu_prep_frames_k(const be_crop *crops, const uint8_t *src, int oh, int ow, norm3 nm, float *out)
{
    int img = blockIdx.y;
    int pix = blockIdx.x * blockDim.x + threadIdx.x;
    if (pix >= oh * ow) return;
    be_crop cr = crops[img];
    int oy = pix / ow, ox = pix % ow;
    int sx = cr.flip ? ow - 1 - ox : ox;
    /* the CPU backend's index arithmetic (double), PyTorch's formula */
    double hs = (double)cr.h / oh, ws = (double)cr.w / ow;
    double hr = ((double)oy + 0.5) * hs - 0.5;
    if (hr < 0.0) hr = 0.0;
    int h1 = min((int)hr, cr.h - 1);
    int h1p = h1 < cr.h - 1 ? 1 : 0;
    float h1l = (float)fmin(hr - h1, 1.0), h0l = 1.f - h1l;
    double wr = ((double)sx + 0.5) * ws - 0.5;
    if (wr < 0.0) wr = 0.0;
    int w1 = min((int)wr, cr.w - 1);
    int w1p = w1 < cr.w - 1 ? 1 : 0;
    float w1l = (float)fmin(wr - w1, 1.0), w0l = 1.f - w1l;
    const uint8_t *base = src + cr.offset;
    size_t stride = (size_t)cr.src_w * 3;
    const uint8_t *p00 = base + (size_t)(cr.y + h1) * stride + (size_t)(cr.x + w1) * 3;
    const uint8_t *p01 = p00 + w1p * 3;
    const uint8_t *p10 = p00 + h1p * stride;
    const uint8_t *p11 = p10 + w1p * 3;
    float *o = out + (size_t)img * 3 * oh * ow + pix;
#pragma unroll
    for (int ch = 0; ch < 3; ch++) {
        float top = w0l * (float)p00[ch] + w1l * (float)p01[ch];
        float bot = w0l * (float)p10[ch] + w1l * (float)p11[ch];
        float v = h0l * top + h1l * bot;
        o[(size_t)ch * oh * ow] = (v / 255.f - nm.m[ch]) / nm.s[ch];
    }
}
static cudaError_t cu_prep_frames_launch(cudaStream_t st, int n, const be_crop *crops, const uint8_t *src, int oh, int ow,
                          float m0, float m1, float m2, float s0, float s1, float s2, float *out)
{
    if (n <= 0 || oh <= 0 || ow <= 0) return cudaGetLastError();
    norm3 nm = {{m0, m1, m2}, {s0, s1, s2}};
    dim3 grid((unsigned)((oh * ow + NT - 1) / NT), (unsigned)n);
    cu_prep_frames_k<<<grid, NT, 0, st>>>(crops, src, oh, ow, nm, out);
    return cudaGetLastError();
}

/* ---------------- entries ---------------- */

void cu_prep_spec(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out)
{
    LAUNCH(CTX(b), cu_prep_spec_launch(CTX(b)->stream, n, len, half, standardize, out), "prep_spec", "n%d len%zu", n, len);
}

void cu_prep_frames(be_ctx *b, int n, const be_crop *crops, const uint8_t *src, int oh, int ow, const float mean[3],
                    const float std[3], float *out)
{
    cu_ctx *c = CTX(b);
    if (c->failed || n <= 0) return;
    for (int f = 0; f < n; f++) {
        const be_crop *cr = &crops[f];
        if (cr->w <= 0 || cr->h <= 0 || cr->x < 0 || cr->y < 0 || cr->x + cr->w > cr->src_w || cr->y + cr->h > cr->src_h) {
            fail(c, "prep_frames: crop %d (%d,%d %dx%d) outside the %dx%d image", f, cr->x, cr->y, cr->w, cr->h,
                 cr->src_w, cr->src_h);
            return;
        }
    }
    /* the pinned staging area may still feed the previous copy: wait for it */
    if (!cu_ok(c, cudaEventSynchronize(c->stage_ev), "prep_frames: wait")) return;
    if ((size_t)n > c->crops_cap) {
        dev_free(c, c->crops_dev);
        if (c->crops_host) cudaFreeHost(c->crops_host);
        c->crops_host = NULL;
        c->crops_cap = 0;
        c->crops_dev = (be_crop *)dev_alloc(c, (size_t)n * sizeof(be_crop), "prep_frames");
        if (!c->crops_dev) return;
        if (!cu_ok(c, cudaHostAlloc((void **)&c->crops_host, (size_t)n * sizeof(be_crop), cudaHostAllocDefault), "prep_frames"))
            return;
        c->crops_cap = (size_t)n;
    }
    memcpy(c->crops_host, crops, (size_t)n * sizeof(be_crop));
    if (!cu_ok(c, cudaMemcpyAsync(c->crops_dev, c->crops_host, (size_t)n * sizeof(be_crop), cudaMemcpyHostToDevice, c->stream),
               "prep_frames: crops"))
        return;
    if (!cu_ok(c, cudaEventRecord(c->stage_ev, c->stream), "prep_frames: record")) return;
    cu_ok(c, cu_prep_frames_launch(c->stream, n, c->crops_dev, src, oh, ow, mean[0], mean[1], mean[2], std[0], std[1], std[2], out),
          "prep_frames");
}
