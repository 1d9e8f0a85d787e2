/* conv (CUDA): convolutions with cuDNN, the algorithm chosen once per shape
 * (cudnnFind*Ex inside the bounded workspace, or cuDNN's heuristics), cached
 * in the context; mirrors kernels/cpu/conv.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <algorithm>
#include <string>

#include "kernels/cuda/cuda_internal.h"

namespace {


bool same_shape(const be_conv_shape *a, const be_conv_shape *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->k == b->k && a->kh == b->kh &&
           a->kw == b->kw && a->stride == b->stride && a->pad == b->pad;
}

conv_entry *get_conv(cu_ctx *c, const be_conv_shape *s)
{
    for (conv_entry *e : *c->convs)
        if (same_shape(&e->s, s)) return e;
    conv_entry *e = (conv_entry *)calloc(1, sizeof *e);
    if (!e) {
        fail(c, "out of host memory");
        return NULL;
    }
    e->s = *s;
    int oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1, ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
    bool ok = dnn_ok(c, cudnnCreateTensorDescriptor(&e->xd), "descriptor") &&
              dnn_ok(c, cudnnCreateTensorDescriptor(&e->yd), "descriptor") &&
              dnn_ok(c, cudnnCreateFilterDescriptor(&e->wd), "descriptor") &&
              dnn_ok(c, cudnnCreateConvolutionDescriptor(&e->cd), "descriptor") &&
              dnn_ok(c, cudnnSetTensor4dDescriptor(e->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->c, s->h, s->w),
                     "conv input shape") &&
              dnn_ok(c, cudnnSetTensor4dDescriptor(e->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->k, oh, ow),
                     "conv output shape") &&
              dnn_ok(c, cudnnSetFilter4dDescriptor(e->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->k, s->c, s->kh, s->kw),
                     "conv filter shape") &&
              dnn_ok(c, cudnnSetConvolution2dDescriptor(e->cd, s->pad, s->pad, s->stride, s->stride, 1, 1,
                                                        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                     "conv descriptor") &&
              dnn_ok(c, cudnnSetConvolutionMathType(e->cd, c->tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH),
                     "conv math type");
    c->convs->push_back(e); /* destroyed with the context either way */
    return ok ? e : NULL;
}

/* The largest workspace among the algorithms that fit the limit. */
template <typename P> size_t max_fitting_ws(const P *perf, int n, size_t limit)
{
    size_t m = 0;
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= limit && perf[i].memory > m) m = perf[i].memory;
    return m;
}

/* Picks the first (fastest) successful result within `limit`. */
template <typename P> bool pick(conv_entry *e, int kind, const P *perf, int n, size_t limit, bool tf32)
{
    for (int i = 0; i < n; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
        e->algo[kind] = (int)perf[i].algo;
        /* without TF32 the search ran under FMA math and runs under it too
         * (CUDNN_DEFAULT_MATH would permit TF32 on Ampere and later) */
        e->math[kind] = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;
        e->ws[kind] = perf[i].memory;
        e->found[kind] = 1;
        return true;
    }
    return false;
}

#define NPERF 16

/* Chooses the algorithm of one kind: cudnnFind*Ex times the candidates that
 * fit the workspace limit (the op's own buffers are used: the search
 * overwrites the output, which the op writes afterwards); when the search is
 * off or fails, cuDNN's heuristic order (Get*_v7) decides. */
template <typename P, typename GetF, typename FindF>
bool choose(cu_ctx *c, conv_entry *e, int kind, const char *what, GetF get, FindF find)
{
    P hp[NPERF], fp[NPERF];
    int nh = 0, nf = 0;
    if (!dnn_ok(c, get(hp, &nh), what)) return false;
    bool ok = false;
    if (c->use_find) {
        size_t need = max_fitting_ws(hp, nh, c->ws_limit);
        /* the search runs in the workspace itself, grown to what the
         * candidates need (never a second buffer beside it: the peak stays at
         * the limit); it shrinks back to what the chosen algorithms need at
         * the next host sync (trim_ws) */
        if (need <= c->ws_size || ensure_ws(c, need)) {
            cudnnStatus_t st = find(fp, &nf, c->ws, c->ws_size);
            if (st == CUDNN_STATUS_SUCCESS) ok = pick(e, kind, fp, nf, c->ws_limit, c->tf32);
            else c->find_failures++; /* fall back to the heuristics below */
        } else {
            /* the search workspace did not fit: not an error, use the heuristics */
            c->failed = 0;
            c->err.msg[0] = 0;
            (void)cudaGetLastError();
        }
    }
    if (!ok) ok = pick(e, kind, hp, nh, c->ws_limit, c->tf32);
    if (ok && e->ws[kind] > c->ws_chosen) c->ws_chosen = e->ws[kind];
    if (!ok) {
        fail(c, "cudnn: no %s algorithm for %dx%dx%dx%d * %dx%dx%dx%d (stride %d, pad %d) within %zu MiB of workspace", what,
             e->s.n, e->s.c, e->s.h, e->s.w, e->s.k, e->s.c, e->s.kh, e->s.kw, e->s.stride, e->s.pad, c->ws_limit >> 20);
        return false;
    }
    return ensure_ws(c, e->ws[kind]);
}

bool find_algo_(cu_ctx *c, conv_entry *e, int kind, const void *x, const void *w, const void *y);
bool find_algo(cu_ctx *c, conv_entry *e, int kind, const void *x, const void *w, const void *y)
{
    if (e->found[kind]) return true;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool ok = find_algo_(c, e, kind, x, w, y);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->find_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return ok;
}
bool find_algo_(cu_ctx *c, conv_entry *e, int kind, const void *x, const void *w, const void *y)
{
    if (!dnn_ok(c, cudnnSetConvolutionMathType(e->cd, c->tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH), "conv math type"))
        return false;
    cudnnHandle_t h = c->dnn;
    if (kind == CONV_FWD)
        return choose<cudnnConvolutionFwdAlgoPerf_t>(
            c, e, kind, "conv forward",
            [&](cudnnConvolutionFwdAlgoPerf_t *p, int *n) {
                return cudnnGetConvolutionForwardAlgorithm_v7(h, e->xd, e->wd, e->cd, e->yd, NPERF, n, p);
            },
            [&](cudnnConvolutionFwdAlgoPerf_t *p, int *n, void *ws, size_t wss) {
                return cudnnFindConvolutionForwardAlgorithmEx(h, e->xd, x, e->wd, w, e->cd, e->yd, (void *)y, NPERF, n, p, ws, wss);
            });
    if (kind == CONV_BWD_DATA)
        return choose<cudnnConvolutionBwdDataAlgoPerf_t>(
            c, e, kind, "conv backward-data",
            [&](cudnnConvolutionBwdDataAlgoPerf_t *p, int *n) {
                return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, e->wd, e->yd, e->cd, e->xd, NPERF, n, p);
            },
            [&](cudnnConvolutionBwdDataAlgoPerf_t *p, int *n, void *ws, size_t wss) {
                return cudnnFindConvolutionBackwardDataAlgorithmEx(h, e->wd, w, e->yd, y, e->cd, e->xd, (void *)x, NPERF, n, p, ws,
                                                                   wss);
            });
    return choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
        c, e, kind, "conv backward-filter",
        [&](cudnnConvolutionBwdFilterAlgoPerf_t *p, int *n) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, e->xd, e->yd, e->cd, e->wd, NPERF, n, p);
        },
        [&](cudnnConvolutionBwdFilterAlgoPerf_t *p, int *n, void *ws, size_t wss) {
            return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, e->xd, x, e->yd, y, e->cd, e->wd, (void *)w, NPERF, n, p, ws,
                                                                 wss);
        });
}

std::string conv_key(const be_conv_shape *s)
{
    char k[128];
    snprintf(k, sizeof k, "%dx%dx%dx%d k%d %dx%d s%d p%d", s->n, s->c, s->h, s->w, s->k, s->kh, s->kw, s->stride, s->pad);
    return k;
}

} /* namespace */

void cu_conv_fwd(be_ctx *b, const be_conv_shape *s, const float *x, const float *w, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    conv_entry *e = get_conv(c, s);
    if (!e || !find_algo(c, e, CONV_FWD, x, w, y)) return;
    PROF(c, "conv_fwd", "%s algo %d ws %zu KiB", conv_key(s).c_str(), e->algo[CONV_FWD], e->ws[CONV_FWD] >> 10);
    if (!dnn_ok(c, cudnnSetConvolutionMathType(e->cd, e->math[CONV_FWD]), "conv math type")) return;
    dnn_ok(c, cudnnConvolutionForward(c->dnn, &ONE, e->xd, x, e->wd, w, e->cd, (cudnnConvolutionFwdAlgo_t)e->algo[CONV_FWD],
                                      c->ws, e->ws[CONV_FWD], &ZERO, e->yd, y),
           "conv forward");
}

void cu_conv_bwd_data(be_ctx *b, const be_conv_shape *s, const float *dy, const float *w, float *dx)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    conv_entry *e = get_conv(c, s);
    if (!e || !find_algo(c, e, CONV_BWD_DATA, dx, w, dy)) return;
    PROF(c, "conv_bwd_data", "%s algo %d ws %zu KiB", conv_key(s).c_str(), e->algo[CONV_BWD_DATA], e->ws[CONV_BWD_DATA] >> 10);
    if (!dnn_ok(c, cudnnSetConvolutionMathType(e->cd, e->math[CONV_BWD_DATA]), "conv math type")) return;
    dnn_ok(c, cudnnConvolutionBackwardData(c->dnn, &ONE, e->wd, w, e->yd, dy, e->cd,
                                           (cudnnConvolutionBwdDataAlgo_t)e->algo[CONV_BWD_DATA], c->ws,
                                           e->ws[CONV_BWD_DATA], &ZERO, e->xd, dx),
           "conv backward data");
}

void cu_conv_bwd_filter(be_ctx *b, const be_conv_shape *s, const float *x, const float *dy, float *dw)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    conv_entry *e = get_conv(c, s);
    if (!e || !find_algo(c, e, CONV_BWD_FILTER, x, dw, dy)) return;
    PROF(c, "conv_bwd_filter", "%s algo %d ws %zu KiB", conv_key(s).c_str(), e->algo[CONV_BWD_FILTER], e->ws[CONV_BWD_FILTER] >> 10);
    if (!dnn_ok(c, cudnnSetConvolutionMathType(e->cd, e->math[CONV_BWD_FILTER]), "conv math type")) return;
    dnn_ok(c, cudnnConvolutionBackwardFilter(c->dnn, &ONE, e->xd, x, e->yd, dy, e->cd,
                                             (cudnnConvolutionBwdFilterAlgo_t)e->algo[CONV_BWD_FILTER], c->ws,
                                             e->ws[CONV_BWD_FILTER], &ZERO, e->wd, dw),
           "conv backward filter");
}
