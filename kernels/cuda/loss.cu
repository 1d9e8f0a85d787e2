/* loss (CUDA): cross-entropy, KL, non-target KL, NKD: one block per sample,
 * per-sample losses reduced in a fixed order; mirrors kernels/cpu/loss.c. */
#include <math.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/reduce.cuh"

/* ---------------- losses: one block per sample ---------------- */

#define LT 128 /* threads per loss block */

__global__ void cu_ce_k(int B, int C, const float *z, const int32_t *y, float gscale, float *per, float *dz)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    const float *r = z + (size_t)i * C;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, r[c]);
    m = block_max(m, sh);
    float s = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += expf(r[c] - m);
    s = block_sum(s, sh);
    float lse = m + logf(s);
    int lab = y[i];
    bool ok = lab >= 0 && lab < C;
    if (threadIdx.x == 0) per[i] = ok ? lse - r[lab] : NAN;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float p = expf(r[c] - lse);
        dz[(size_t)i * C + c] += gscale * (p - (c == lab ? 1.f : 0.f));
    }
}

__global__ void cu_kl_k(int B, int C, const float *t, const float *s, float temp, float gscale, float *per, float *ds)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    const float *rt = t + (size_t)i * C, *rs = s + (size_t)i * C;
    float it = 1.f / temp;
    float mt = -INFINITY, ms = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { mt = fmaxf(mt, rt[c] * it); ms = fmaxf(ms, rs[c] * it); }
    mt = block_max(mt, sh);
    ms = block_max(ms, sh);
    float st_ = 0.f, ss = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { st_ += expf(rt[c] * it - mt); ss += expf(rs[c] * it - ms); }
    st_ = block_sum(st_, sh);
    ss = block_sum(ss, sh);
    float lt = mt + logf(st_), ls = ms + logf(ss);
    float acc = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float lpt = rt[c] * it - lt, lps = rs[c] * it - ls;
        float pt = expf(lpt), ps = expf(lps);
        if (pt > 0.f) acc += pt * (lpt - lps);
        ds[(size_t)i * C + c] += gscale * (ps - pt) * it;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) per[i] = acc;
}

/* Non-target KL: target logit multiplied by 0, softmax over all C. */
__global__ void cu_nt_kl_k(int B, int C, const float *src, const float *dst, const int32_t *y, const float *keep,
                        float gscale, float *per, float *dd)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    int lab = y[i];
    float kp = keep[i];
    if (kp == 0.f) {
        if (threadIdx.x == 0) per[i] = 0.f;
        return;
    }
    const float *ra = src + (size_t)i * C, *rb = dst + (size_t)i * C;
#define MASKED(r, c) ((c) == lab ? 0.f : (r)[c])
    float ma = -INFINITY, mb = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { ma = fmaxf(ma, MASKED(ra, c)); mb = fmaxf(mb, MASKED(rb, c)); }
    ma = block_max(ma, sh);
    mb = block_max(mb, sh);
    float sa = 0.f, sb = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { sa += expf(MASKED(ra, c) - ma); sb += expf(MASKED(rb, c) - mb); }
    sa = block_sum(sa, sh);
    sb = block_sum(sb, sh);
    float la = ma + logf(sa), lb = mb + logf(sb);
    float acc = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float lpa = MASKED(ra, c) - la, lpb = MASKED(rb, c) - lb;
        float pa = expf(lpa), pb = expf(lpb);
        if (pa > 0.f) acc += pa * (lpa - lpb);
        if (c != lab) dd[(size_t)i * C + c] += gscale * kp * (pb - pa);
    }
#undef MASKED
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) per[i] = kp * acc;
}

/* NKD: -T_y log S_y - gamma temp^2 sum_{c!=y} N(T/temp)_c log N(S/temp)_c. */
__global__ void cu_nkd_k(int B, int C, const float *t, const float *s, const int32_t *y, float temp, float gamma,
                      float gscale, float *per, float *ds)
{
    __shared__ float sh[32];
    int i = blockIdx.x;
    int lab = y[i];
    const float *rt = t + (size_t)i * C, *rs = s + (size_t)i * C;
    float it = 1.f / temp;
    /* temperature-1 softmaxes over all classes */
    float mt = -INFINITY, ms = -INFINITY, mtn = -INFINITY, msn = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        mt = fmaxf(mt, rt[c]); ms = fmaxf(ms, rs[c]);
        if (c != lab) { mtn = fmaxf(mtn, rt[c] * it); msn = fmaxf(msn, rs[c] * it); }
    }
    mt = block_max(mt, sh); ms = block_max(ms, sh);
    mtn = block_max(mtn, sh); msn = block_max(msn, sh);
    float st_ = 0.f, ss = 0.f, stn = 0.f, ssn = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        st_ += expf(rt[c] - mt); ss += expf(rs[c] - ms);
        if (c != lab) { stn += expf(rt[c] * it - mtn); ssn += expf(rs[c] * it - msn); }
    }
    st_ = block_sum(st_, sh); ss = block_sum(ss, sh);
    stn = block_sum(stn, sh); ssn = block_sum(ssn, sh);
    float lt = mt + logf(st_), ls = ms + logf(ss), ltn = mtn + logf(stn), lsn = msn + logf(ssn);
    bool ok = lab >= 0 && lab < C;
    float ty = ok ? expf(rt[lab] - lt) : NAN;
    float acc = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float S = expf(rs[c] - ls);
        float g = -ty * ((c == lab ? 1.f : 0.f) - S);
        if (c != lab) {
            float lnt = rt[c] * it - ltn, lns = rs[c] * it - lsn;
            float nt = expf(lnt), ns = expf(lns);
            acc += nt * lns;
            g += gamma * temp * (ns - nt);
        }
        ds[(size_t)i * C + c] += gscale * g;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) per[i] = ok ? -ty * (rs[lab] - ls) - gamma * temp * temp * acc : NAN;
}

__global__ void cu_loss_reduce_k(int B, const float *per, float scale, float *loss)
{
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < B; i += blockDim.x) s += per[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) loss[0] += (float)(s * scale);
}

static cudaError_t cu_ce_launch(cudaStream_t st, int B, int C, const float *z, const int32_t *y, float weight, float *per, float *dz)
{
    if (B > 0) cu_ce_k<<<B, LT, 0, st>>>(B, C, z, y, weight / (float)B, per, dz);
    return cudaGetLastError();
}
static cudaError_t cu_kl_launch(cudaStream_t st, int B, int C, const float *t, const float *s, float temp, float weight, float *per,
                 float *ds)
{
    if (B > 0) cu_kl_k<<<B, LT, 0, st>>>(B, C, t, s, temp, weight / (float)B, per, ds);
    return cudaGetLastError();
}
static cudaError_t cu_nt_kl_launch(cudaStream_t st, int B, int C, const float *src, const float *dst, const int32_t *y,
                    const float *keep, float weight, float *per, float *ddst)
{
    if (B > 0) cu_nt_kl_k<<<B, LT, 0, st>>>(B, C, src, dst, y, keep, weight / (float)B, per, ddst);
    return cudaGetLastError();
}
static cudaError_t cu_nkd_launch(cudaStream_t st, int B, int C, const float *t, const float *s, const int32_t *y, float temp,
                  float gamma, float weight, float *per, float *ds)
{
    if (B > 0) cu_nkd_k<<<B, LT, 0, st>>>(B, C, t, s, y, temp, gamma, weight / (float)B, per, ds);
    return cudaGetLastError();
}
static cudaError_t cu_loss_reduce_launch(cudaStream_t st, int B, const float *per, float weight, float *loss)
{
    if (B > 0) cu_loss_reduce_k<<<1, NT, 0, st>>>(B, per, (double)weight / B, loss);
    return cudaGetLastError();
}

/* Per-sample loss scratch [n] of the context (grown as needed). */
static float *ensure_per(cu_ctx *c, size_t n)
{
    if (n > c->per_cap) {
        dev_free(c, c->per);
        c->per = (float *)dev_alloc(c, n * sizeof(float), "loss scratch");
        c->per_cap = c->per ? n : 0;
    }
    return c->per;
}
/* ---------------- entries ---------------- */

void cu_ce(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight, float *loss, float *dz)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss ce", "B%d C%d", B, C);
    if (cu_ok(c, cu_ce_launch(c->stream, B, C, z, y, weight, per, dz), "cross-entropy"))
        cu_ok(c, cu_loss_reduce_launch(c->stream, B, per, weight, loss), "cross-entropy");
}
void cu_kl(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight, float *loss, float *ds)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss kl", "B%d C%d", B, C);
    if (cu_ok(c, cu_kl_launch(c->stream, B, C, t, s, temp, weight, per, ds), "kl"))
        cu_ok(c, cu_loss_reduce_launch(c->stream, B, per, weight, loss), "kl");
}
void cu_nt_kl(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y, const float *keep,
              float weight, float *loss, float *ddst)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss nt_kl", "B%d C%d", B, C);
    if (cu_ok(c, cu_nt_kl_launch(c->stream, B, C, src, dst, y, keep, weight, per, ddst), "non-target kl"))
        cu_ok(c, cu_loss_reduce_launch(c->stream, B, per, weight, loss), "non-target kl");
}
void cu_nkd(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y, float temp, float gamma,
            float weight, float *loss, float *ds)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss nkd", "B%d C%d", B, C);
    if (cu_ok(c, cu_nkd_launch(c->stream, B, C, t, s, y, temp, gamma, weight, per, ds), "nkd"))
        cu_ok(c, cu_loss_reduce_launch(c->stream, B, per, weight, loss), "nkd");
}
