/* cuda_backend: the CUDA implementation of backend/backend.h.
 *
 * One compute stream carries every op in issue order; host->device copies go
 * on a second stream, ordered with events: to_device after the compute issued
 * so far, staged input copies (stage_copy) only after their slot's release,
 * so the next batch's copy overlaps the current step. cuDNN does convolutions (algorithm
 * chosen once per shape by timing with cudnnFind*Ex inside a bounded
 * workspace, cached) and batch norm; cuBLAS does the linear layers; the rest
 * are the kernels of backend/cuda/cuda_kernels.cu. Failures are sticky: the first
 * one is kept in the context, later ops return at once, status() reports it.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/cuda/cuda_internal.h" /* includes backend/backend.h */

namespace {

struct prof_pending {
    std::string key;
    cudaEvent_t a, b;
    int lane; /* 0: an op on the compute stream; 1: a staged copy on the copy stream */
};
struct prof_span {
    double t0, t1; /* ms since the profile's base event */
};
struct prof_acc {
    double ms;
    long calls;
};

enum { CONV_FWD = 0, CONV_BWD_DATA = 1, CONV_BWD_FILTER = 2 };

struct conv_entry {
    be_conv_shape s;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int found[3];
    int algo[3];
    cudnnMathType_t math[3];
    size_t ws[3];
};

struct cu_ctx {
    be_ctx base; /* first member */
    int device;
    int tf32;
    int use_find; /* 1: time the algorithms (cudnnFind*Ex); 0: cuDNN's heuristics */
    int find_failures; /* searches that failed and fell back to the heuristics */
    char name[256];
    cudaStream_t stream, copy_stream;
    cudaEvent_t compute_ev, copy_ev, stage_ev;
    /* staged inputs: slot_copied[s] recorded on the copy stream after the
     * slot's copies, slot_free[s] on the compute stream at its release */
    cudaEvent_t slot_copied[BE_STAGE_SLOTS], slot_free[BE_STAGE_SLOTS];
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    cudnnTensorDescriptor_t bn_x, bn_p;

    int failed;
    cm_err err;

    std::unordered_map<void *, size_t> *sizes; /* device allocations */
    size_t cur_bytes, peak_bytes;

    void *ws; /* convolution workspace, grown when a chosen algorithm needs more */
    size_t ws_size, ws_limit;
    size_t ws_chosen; /* the largest workspace of a chosen algorithm */
    std::vector<conv_entry *> *convs;

    /* profiling (be_options.profile): CUDA events around every op, keyed by op
     * and shape; resolved (a stream sync) when many are pending and when the
     * table is written. The timeline (spans of ops and of staged copies since
     * prof_base) measures how much of the copies ran under compute. */
    int prof;
    cudaEvent_t prof_base;
    std::vector<prof_span> *tl_ops, *tl_copies;
    std::vector<struct prof_pending> *prof_pend;
    std::vector<cudaEvent_t> *prof_free;
    std::map<std::string, struct prof_acc> *prof_tab;
    double find_s; /* host seconds spent choosing convolution algorithms */

    int bn_own; /* 1: the project's batch-norm kernels (default); 0: cuDNN (be_options.bn) */
    void *bn_scratch; /* partial sums of the own batch-norm kernels */
    size_t bn_scratch_cap;

    float *per; /* per-sample losses */
    size_t per_cap;
    be_crop *crops_dev, *crops_host; /* crops for prep_frames (host side pinned) */
    size_t crops_cap;
};

cu_ctx *CTX(be_ctx *b) { return (cu_ctx *)b; }

void fail(cu_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fail(cu_ctx *c, const char *fmt, ...)
{
    if (c->failed) return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    va_end(ap);
}

bool cu_ok(cu_ctx *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return true;
    fail(c, "cuda: %s: %s", what, cudaGetErrorString(e));
    return false;
}
bool dnn_ok(cu_ctx *c, cudnnStatus_t e, const char *what)
{
    if (e == CUDNN_STATUS_SUCCESS) return true;
    fail(c, "cudnn: %s: %s", what, cudnnGetErrorString(e));
    return false;
}
bool blas_ok(cu_ctx *c, cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_SUCCESS) return true;
    fail(c, "cublas: %s: %s", what, cublasGetStatusString(e));
    return false;
}

/* ---------------- profiling ---------------- */

enum { PROF_TIMELINE_MAX = 1 << 20 }; /* spans kept for the overlap measure */

double prof_since_base(cu_ctx *c, cudaEvent_t e)
{
    float ms = 0;
    if (cudaEventElapsedTime(&ms, c->prof_base, e) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    return ms;
}

void prof_resolve(cu_ctx *c)
{
    if (!c->prof_pend || c->prof_pend->empty()) return;
    cudaStreamSynchronize(c->copy_stream);
    cudaStreamSynchronize(c->stream);
    for (prof_pending &p : *c->prof_pend) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, p.a, p.b) != cudaSuccess) {
            (void)cudaGetLastError();
            ms = 0;
        }
        std::vector<prof_span> *tl = p.lane ? c->tl_copies : c->tl_ops;
        prof_span sp = {prof_since_base(c, p.a), prof_since_base(c, p.b)};
        if (sp.t0 >= 0 && sp.t1 >= sp.t0 && tl->size() < PROF_TIMELINE_MAX) tl->push_back(sp);
        c->prof_free->push_back(p.a);
        c->prof_free->push_back(p.b);
        if (p.lane) continue; /* copies are not ops: only in the timeline */
        prof_acc &a = (*c->prof_tab)[p.key];
        a.ms += ms;
        a.calls++;
    }
    c->prof_pend->clear();
}

cudaEvent_t prof_event(cu_ctx *c)
{
    cudaEvent_t e = NULL;
    if (!c->prof_free->empty()) {
        e = c->prof_free->back();
        c->prof_free->pop_back();
    } else if (cudaEventCreate(&e) != cudaSuccess) {
        (void)cudaGetLastError();
        e = NULL;
    }
    return e;
}

/* Times the enclosing op: an event before (construction) and after
 * (destruction) on the compute stream (lane 0) or the copy stream (lane 1).
 * key: "op|shape". */
struct prof_scope {
    cu_ctx *c;
    long idx;
    cudaStream_t st;
    prof_scope(cu_ctx *ctx, int lane, const char *op, const char *fmt, ...) __attribute__((format(printf, 5, 6)))
        : c(ctx), idx(-1), st(lane ? ctx->copy_stream : ctx->stream)
    {
        if (!c->prof || c->failed) return;
        if (c->prof_pend->size() >= 4096) prof_resolve(c);
        char shape[192];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(shape, sizeof shape, fmt, ap);
        va_end(ap);
        prof_pending p;
        p.key = std::string(op) + "|" + shape;
        p.lane = lane;
        p.a = prof_event(c);
        p.b = prof_event(c);
        if (!p.a || !p.b) return;
        cudaEventRecord(p.a, st);
        c->prof_pend->push_back(p);
        idx = (long)c->prof_pend->size() - 1;
    }
    ~prof_scope()
    {
        if (idx >= 0) cudaEventRecord((*c->prof_pend)[idx].b, st);
    }
};
#define PROF(c, op, ...) prof_scope prof_scope_(c, 0, op, __VA_ARGS__)
#define PROF_COPY(c, op, ...) prof_scope prof_scope_(c, 1, op, __VA_ARGS__)

/* ---------------- memory accounting ---------------- */

void *dev_alloc(cu_ctx *c, size_t bytes, const char *what)
{
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky in the runtime */
        fail(c, "cuda: %s: cannot allocate %zu bytes: %s", what, bytes, cudaGetErrorString(e));
        return NULL;
    }
    (*c->sizes)[p] = bytes;
    c->cur_bytes += bytes;
    if (c->cur_bytes > c->peak_bytes) c->peak_bytes = c->cur_bytes;
    return p;
}

void dev_free(cu_ctx *c, void *p)
{
    if (!p) return;
    auto it = c->sizes->find(p);
    if (it != c->sizes->end()) {
        c->cur_bytes -= it->second;
        c->sizes->erase(it);
    }
    cu_ok(c, cudaFree(p), "cudaFree");
}

/* Workspace of at least `bytes` (contents not kept). NULL on failure. */
bool ensure_ws(cu_ctx *c, size_t bytes)
{
    if (bytes <= c->ws_size) return true;
    dev_free(c, c->ws); /* cudaFree waits for the work that may still use it */
    c->ws = NULL;
    c->ws_size = 0;
    c->ws = dev_alloc(c, bytes, "convolution workspace");
    if (!c->ws) return false;
    c->ws_size = bytes;
    return true;
}

/* After the searches: the workspace back to what the chosen algorithms use
 * (the stream is idle: called after a synchronisation). */
void trim_ws(cu_ctx *c)
{
    if (c->failed || c->ws_size <= c->ws_chosen) return;
    dev_free(c, c->ws);
    c->ws = NULL;
    c->ws_size = 0;
    if (c->ws_chosen) {
        c->ws = dev_alloc(c, c->ws_chosen, "convolution workspace");
        if (c->ws) c->ws_size = c->ws_chosen;
    }
}

float *ensure_per(cu_ctx *c, size_t n)
{
    if (n > c->per_cap) {
        dev_free(c, c->per);
        c->per = (float *)dev_alloc(c, n * sizeof(float), "loss scratch");
        c->per_cap = c->per ? n : 0;
    }
    return c->per;
}

/* ---------------- ops: context ---------------- */

void *cu_native_stream(be_ctx *b)
{
    return (void *)CTX(b)->stream;
}

void cu_destroy(be_ctx *b);

int cu_status(be_ctx *b, cm_err *err)
{
    cu_ctx *c = CTX(b);
    if (!c->failed) {
        cudaError_t e = cudaStreamQuery(c->stream);
        if (e != cudaSuccess && e != cudaErrorNotReady) cu_ok(c, e, "asynchronous error");
    }
    if (c->failed) {
        if (err) *err = c->err;
        return -1;
    }
    return 0;
}

void cu_sync(be_ctx *b)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (cu_ok(c, cudaStreamSynchronize(c->copy_stream), "copy stream")) cu_ok(c, cudaStreamSynchronize(c->stream), "compute stream");
}

void *cu_alloc(be_ctx *b, size_t bytes)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return NULL;
    void *p = dev_alloc(c, bytes, "alloc");
    if (p && !cu_ok(c, cudaMemsetAsync(p, 0, bytes, c->stream), "alloc zero-fill")) return NULL;
    return p;
}

void cu_free(be_ctx *b, void *p)
{
    cu_ctx *c = CTX(b);
    if (!p) return;
    auto it = c->sizes->find(p);
    if (it == c->sizes->end()) return; /* not ours, or freed on a failed context */
    c->cur_bytes -= it->second;
    c->sizes->erase(it);
    cudaError_t e = cudaFree(p);
    if (!c->failed) cu_ok(c, e, "free");
}

/* Host -> device on the copy stream, ordered after the compute issued so far
 * and before the compute issued next (staged inputs: cu_stage_copy). */
void cu_to_device(be_ctx *b, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = CTX(b);
    if (c->failed || bytes == 0) return;
    if (!cu_ok(c, cudaEventRecord(c->compute_ev, c->stream), "to_device: record")) return;
    if (!cu_ok(c, cudaStreamWaitEvent(c->copy_stream, c->compute_ev, 0), "to_device: wait")) return;
    if (!cu_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->copy_stream), "to_device")) return;
    if (!cu_ok(c, cudaEventRecord(c->copy_ev, c->copy_stream), "to_device: record copy")) return;
    cu_ok(c, cudaStreamWaitEvent(c->stream, c->copy_ev, 0), "to_device: order");
}

void cu_to_host(be_ctx *b, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = CTX(b);
    if (c->failed || bytes == 0) return;
    if (!cu_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "to_host")) return;
    if (cu_ok(c, cudaStreamSynchronize(c->stream), "to_host: wait")) trim_ws(c);
}

void cu_zero(be_ctx *b, void *p, size_t bytes)
{
    cu_ctx *c = CTX(b);
    if (c->failed || bytes == 0) return;
    PROF(c, "zero", "%zu B", bytes);
    cu_ok(c, cudaMemsetAsync(p, 0, bytes, c->stream), "zero");
}

void cu_copy(be_ctx *b, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = CTX(b);
    if (c->failed || bytes == 0 || dst == src) return;
    PROF(c, "copy", "%zu B", bytes);
    cu_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy");
}

void *cu_host_alloc(be_ctx *b, size_t bytes)
{
    cu_ctx *c = CTX(b);
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        fail(c, "cuda: host_alloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

void cu_host_free(be_ctx *b, void *p)
{
    (void)b;
    if (p) cudaFreeHost(p);
}

/* ---------------- convolution ---------------- */

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

const float ONE = 1.f, ZERO = 0.f;

std::string conv_key(const be_conv_shape *s)
{
    char k[128];
    snprintf(k, sizeof k, "%dx%dx%dx%d k%d %dx%d s%d p%d", s->n, s->c, s->h, s->w, s->k, s->kh, s->kw, s->stride, s->pad);
    return k;
}

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

/* ---------------- batch norm ----------------
 * Default: the project's kernels (backend/cuda/cuda_kernels.cu: per-channel
 * partial sums in double over chunks, a fixed-order finalize, an element-wise
 * pass; deterministic; the CPU backend's arithmetic). C2KD_BN=cudnn at
 * creation selects cuDNN's spatial batch norm instead. */

void *bn_scratch(cu_ctx *c, int n, int ch, int hw)
{
    size_t need = k_bn_scratch_bytes(n, ch, hw);
    if (need == 0) return NULL;
    if (need > c->bn_scratch_cap) {
        dev_free(c, c->bn_scratch);
        c->bn_scratch = dev_alloc(c, need, "batch norm scratch");
        c->bn_scratch_cap = c->bn_scratch ? need : 0;
    }
    return c->bn_scratch;
}

bool bn_desc(cu_ctx *c, int n, int ch, int hw)
{
    return dnn_ok(c, cudnnSetTensor4dDescriptor(c->bn_x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, ch, hw, 1), "bn shape") &&
           dnn_ok(c, cudnnDeriveBNTensorDescriptor(c->bn_p, c->bn_x, CUDNN_BATCHNORM_SPATIAL), "bn parameter shape");
}

void cu_bn_fwd_train(be_ctx *b, int n, int ch, int hw, const float *x, const float *gamma, const float *beta,
                     float *run_mean, float *run_var, float momentum, float eps, float *y, float *save_mean,
                     float *save_invstd)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (c->bn_own && k_bn_scratch_bytes(n, ch, hw)) {
        void *s = bn_scratch(c, n, ch, hw);
        if (!s) return;
        PROF(c, "bn_fwd_train", "n%d c%d hw%d", n, ch, hw);
        cu_ok(c, k_bn_fwd_train(c->stream, n, ch, hw, x, gamma, beta, run_mean, run_var, momentum, eps, y, save_mean, save_invstd, s),
              "batch norm (training)");
        return;
    }
    if (!bn_desc(c, n, ch, hw)) return;
    PROF(c, "bn_fwd_train", "n%d c%d hw%d", n, ch, hw);
    dnn_ok(c, cudnnBatchNormalizationForwardTraining(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, c->bn_x, x, c->bn_x, y,
                                                     c->bn_p, gamma, beta, (double)momentum, run_mean, run_var,
                                                     (double)eps, save_mean, save_invstd),
           "batch norm (training)");
}

void cu_bn_fwd_eval(be_ctx *b, int n, int ch, int hw, const float *x, const float *gamma, const float *beta,
                    const float *run_mean, const float *run_var, float eps, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (c->bn_own && k_bn_scratch_bytes(n, ch, hw)) {
        PROF(c, "bn_fwd_eval", "n%d c%d hw%d", n, ch, hw);
        cu_ok(c, k_bn_fwd_eval(c->stream, n, ch, hw, x, gamma, beta, run_mean, run_var, eps, y), "batch norm (evaluation)");
        return;
    }
    if (!bn_desc(c, n, ch, hw)) return;
    PROF(c, "bn_fwd_eval", "n%d c%d hw%d", n, ch, hw);
    dnn_ok(c, cudnnBatchNormalizationForwardInference(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, c->bn_x, x, c->bn_x,
                                                      y, c->bn_p, gamma, beta, run_mean, run_var, (double)eps),
           "batch norm (evaluation)");
}

void cu_bn_bwd(be_ctx *b, int n, int ch, int hw, const float *x, const float *dy, const float *gamma,
               const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (c->bn_own && k_bn_scratch_bytes(n, ch, hw)) {
        void *s = bn_scratch(c, n, ch, hw);
        if (!s) return;
        PROF(c, "bn_bwd", "n%d c%d hw%d", n, ch, hw);
        cu_ok(c, k_bn_bwd(c->stream, n, ch, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, s), "batch norm (backward)");
        return;
    }
    if (!bn_desc(c, n, ch, hw)) return;
    PROF(c, "bn_bwd", "n%d c%d hw%d", n, ch, hw);
    /* epsilon is unused when the saved statistics are given */
    dnn_ok(c, cudnnBatchNormalizationBackward(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, &ONE, &ZERO, c->bn_x, x,
                                              c->bn_x, dy, c->bn_x, dx, c->bn_p, gamma, dgamma, dbeta, 1e-5, save_mean,
                                              save_invstd),
           "batch norm (backward)");
}

/* ---------------- own kernels ---------------- */

#define LAUNCH(c, call, what, ...)                  \
    do {                                            \
        if ((c)->failed) return;                    \
        PROF((c), (what), __VA_ARGS__);             \
        cu_ok((c), (call), (what));                 \
    } while (0)

void cu_relu_fwd(be_ctx *b, size_t n, const float *x, float *y) { LAUNCH(CTX(b), k_relu_fwd(CTX(b)->stream, n, x, y), "relu", "%zu", n); }
void cu_relu_bwd(be_ctx *b, size_t n, const float *y, const float *dy, float *dx)
{
    LAUNCH(CTX(b), k_relu_bwd(CTX(b)->stream, n, y, dy, dx), "relu backward", "%zu", n);
}
void cu_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y)
{
    LAUNCH(CTX(b), k_leaky_fwd(CTX(b)->stream, n, slope, x, y), "leaky relu", "%zu", n);
}
void cu_leaky_bwd(be_ctx *b, size_t n, float slope, const float *x, const float *dy, float *dx)
{
    LAUNCH(CTX(b), k_leaky_bwd(CTX(b)->stream, n, slope, x, dy, dx), "leaky relu backward", "%zu", n);
}

void cu_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y)
{
    LAUNCH(CTX(b), k_maxpool_fwd(CTX(b)->stream, s, x, y), "max pool", "n%d c%d %dx%d", s->n, s->c, s->h, s->w);
}
void cu_maxpool_bwd(be_ctx *b, const be_pool_shape *s, const float *x, const float *y, const float *dy, float *dx)
{
    cu_ctx *c = CTX(b);
    (void)y;
    if (c->failed) return;
    PROF(c, "max pool backward", "n%d c%d %dx%d", s->n, s->c, s->h, s->w);
    if (!cu_ok(c, cudaMemsetAsync(dx, 0, (size_t)s->n * s->c * s->h * s->w * sizeof(float), c->stream), "max pool backward")) return;
    cu_ok(c, k_maxpool_bwd(c->stream, s, x, dy, dx), "max pool backward");
}
void cu_avgpool_fwd(be_ctx *b, int n, int ch, int hw, const float *x, float *y)
{
    LAUNCH(CTX(b), k_avgpool_fwd(CTX(b)->stream, n, ch, hw, x, y), "average pool", "n%d c%d hw%d", n, ch, hw);
}
void cu_avgpool_bwd(be_ctx *b, int n, int ch, int hw, const float *dy, float *dx)
{
    LAUNCH(CTX(b), k_avgpool_bwd(CTX(b)->stream, n, ch, hw, dy, dx), "average pool backward", "n%d c%d hw%d", n, ch, hw);
}

/* Row-major A[r, c] is column-major A^T (c x r, leading dimension c), so
 * y[n,out] = x[n,in] w[out,in]^T is, column-major, y^T (out x n) = op_T(w: in x out) * x^T (in x n). */
void cu_linear_fwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *bias, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    PROF(c, "linear", "n%d in%d out%d", n, in, out);
    if (!blas_ok(c, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &ONE, w, in, x, in, &ZERO, y, out),
                 "linear forward"))
        return;
    if (bias) cu_ok(c, k_add_bias(c->stream, n, out, bias, y), "linear bias");
}

void cu_linear_bwd(be_ctx *b, int n, int in, int out, const float *x, const float *w, const float *dy, float *dx,
                   float *dw, float *dbias)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    PROF(c, "linear backward", "n%d in%d out%d", n, in, out);
    if (dx && !blas_ok(c, cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &ONE, w, in, dy, out, &ZERO, dx, in),
                       "linear backward data"))
        return;
    if (dw && !blas_ok(c, cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &ONE, x, in, dy, out, &ZERO, dw, in),
                       "linear backward weight"))
        return;
    if (dbias) cu_ok(c, k_col_sum(c->stream, n, out, dy, dbias), "linear backward bias");
}

void cu_add(be_ctx *b, size_t n, const float *a, const float *x, float *y) { LAUNCH(CTX(b), k_add(CTX(b)->stream, n, a, x, y), "add", "%zu", n); }
void cu_axpy(be_ctx *b, size_t n, float alpha, const float *x, float *y)
{
    LAUNCH(CTX(b), k_axpy(CTX(b)->stream, n, alpha, x, y), "axpy", "%zu", n);
}
void cu_scale(be_ctx *b, size_t n, float alpha, float *y) { LAUNCH(CTX(b), k_scale(CTX(b)->stream, n, alpha, y), "scale", "%zu", n); }

void cu_ce(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight, float *loss, float *dz)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss ce", "B%d C%d", B, C);
    if (cu_ok(c, k_ce(c->stream, B, C, z, y, weight, per, dz), "cross-entropy"))
        cu_ok(c, k_loss_reduce(c->stream, B, per, weight, loss), "cross-entropy");
}
void cu_kl(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight, float *loss, float *ds)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss kl", "B%d C%d", B, C);
    if (cu_ok(c, k_kl(c->stream, B, C, t, s, temp, weight, per, ds), "kl"))
        cu_ok(c, k_loss_reduce(c->stream, B, per, weight, loss), "kl");
}
void cu_nt_kl(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y, const float *keep,
              float weight, float *loss, float *ddst)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss nt_kl", "B%d C%d", B, C);
    if (cu_ok(c, k_nt_kl(c->stream, B, C, src, dst, y, keep, weight, per, ddst), "non-target kl"))
        cu_ok(c, k_loss_reduce(c->stream, B, per, weight, loss), "non-target kl");
}
void cu_nkd(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y, float temp, float gamma,
            float weight, float *loss, float *ds)
{
    cu_ctx *c = CTX(b);
    float *per;
    if (c->failed || B <= 0 || !(per = ensure_per(c, (size_t)B))) return;
    PROF(c, "loss nkd", "B%d C%d", B, C);
    if (cu_ok(c, k_nkd(c->stream, B, C, t, s, y, temp, gamma, weight, per, ds), "nkd"))
        cu_ok(c, k_loss_reduce(c->stream, B, per, weight, loss), "nkd");
}
void cu_kendall(be_ctx *b, int B, int C, const float *a, const float *x, float omega, float *tau, float *keep)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    if (2 * (size_t)C * sizeof(float) > 48 * 1024) {
        fail(c, "kendall_select: %d classes is more than the 6144 supported", C);
        return;
    }
    PROF(c, "kendall", "B%d C%d", B, C);
    cu_ok(c, k_kendall(c->stream, B, C, a, x, omega, tau, keep), "kendall tau-b");
}
void cu_argmax(be_ctx *b, int B, int C, const float *z, int32_t *pred)
{
    LAUNCH(CTX(b), k_argmax(CTX(b)->stream, B, C, z, pred), "argmax", "B%d C%d", B, C);
}
void cu_resize_fwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *x, float *y)
{
    LAUNCH(CTX(b), k_resize_fwd(CTX(b)->stream, nc, h, w, oh, ow, x, y), "resize", "nc%d %dx%d->%dx%d", nc, h, w, oh, ow);
}
void cu_resize_bwd(be_ctx *b, int nc, int h, int w, int oh, int ow, const float *dy, float *dx)
{
    LAUNCH(CTX(b), k_resize_bwd(CTX(b)->stream, nc, h, w, oh, ow, dy, dx), "resize backward", "nc%d %dx%d->%dx%d", nc, h,
           w, oh, ow);
}
void cu_adapool_fwd(be_ctx *b, int nc, int h, int w, int k, const float *x, float *y)
{
    LAUNCH(CTX(b), k_adapool_fwd(CTX(b)->stream, nc, h, w, k, x, y), "adaptive pool", "nc%d %dx%d->%d", nc, h, w, k);
}
void cu_adapool_bwd(be_ctx *b, int nc, int h, int w, int k, const float *dy, float *dx)
{
    LAUNCH(CTX(b), k_adapool_bwd(CTX(b)->stream, nc, h, w, k, dy, dx), "adaptive pool backward", "nc%d %dx%d->%d", nc, h,
           w, k);
}
void cu_att_fwd(be_ctx *b, int n, int ch, int hw, const float *u, const float *v, const float *z, const float *bias,
                float *a, float *r)
{
    LAUNCH(CTX(b), k_att_fwd(CTX(b)->stream, n, ch, hw, u, v, z, bias, a, r), "attention fusion", "n%d c%d hw%d", n, ch, hw);
}
void cu_att_bwd(be_ctx *b, int n, int ch, int hw, const float *u, const float *v, const float *a, const float *dr,
                float *du, float *dv, float *dz, float *dbias)
{
    LAUNCH(CTX(b), k_att_bwd(CTX(b)->stream, n, ch, hw, u, v, a, dr, du, dv, dz, dbias), "attention fusion backward",
           "n%d c%d hw%d", n, ch, hw);
}
void cu_mse(be_ctx *b, size_t n, const float *x, const float *t, float weight, double *loss, float *dx)
{
    LAUNCH(CTX(b), k_mse(CTX(b)->stream, n, x, t, weight, loss, dx), "loss mse", "%zu", n);
}
void cu_sgd(be_ctx *b, size_t n, float *p, const float *g, float *m, float lr, float momentum)
{
    LAUNCH(CTX(b), k_sgd(CTX(b)->stream, n, p, g, m, lr, momentum), "sgd", "%zu", n);
}
void cu_prep_spec(be_ctx *b, int n, size_t len, const uint16_t *half, int standardize, float *out)
{
    LAUNCH(CTX(b), k_prep_spec(CTX(b)->stream, n, len, half, standardize, out), "prep_spec", "n%d len%zu", n, len);
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
    cu_ok(c, k_prep_frames(c->stream, n, c->crops_dev, src, oh, ow, mean[0], mean[1], mean[2], std[0], std[1], std[2], out),
          "prep_frames");
}

/* ---------------- staged input copies ----------------
 * Batch k+1 is copied into one slot on the copy stream while step k computes
 * from the other: the copy waits only for the slot's release (recorded on the
 * compute stream after the step that last read it, k-1), and the compute
 * waits for the copy only where it reads the slot (stage_wait). */

bool slot_ok(cu_ctx *c, int slot, const char *what)
{
    if (slot >= 0 && slot < BE_STAGE_SLOTS) return true;
    fail(c, "%s: slot %d out of range", what, slot);
    return false;
}

void cu_stage_copy(be_ctx *b, int slot, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = CTX(b);
    if (c->failed || bytes == 0 || !slot_ok(c, slot, "stage_copy")) return;
    if (!cu_ok(c, cudaStreamWaitEvent(c->copy_stream, c->slot_free[slot], 0), "stage_copy: wait for release")) return;
    {
        PROF_COPY(c, "stage_copy", "slot %d %zu B", slot, bytes);
        if (!cu_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->copy_stream), "stage_copy")) return;
    }
    cu_ok(c, cudaEventRecord(c->slot_copied[slot], c->copy_stream), "stage_copy: record");
}

void cu_stage_wait(be_ctx *b, int slot)
{
    cu_ctx *c = CTX(b);
    if (c->failed || !slot_ok(c, slot, "stage_wait")) return;
    cu_ok(c, cudaStreamWaitEvent(c->stream, c->slot_copied[slot], 0), "stage_wait");
}

void cu_stage_release(be_ctx *b, int slot)
{
    cu_ctx *c = CTX(b);
    if (c->failed || !slot_ok(c, slot, "stage_release")) return;
    cu_ok(c, cudaEventRecord(c->slot_free[slot], c->stream), "stage_release");
}

/* The host only decodes inputs: up to 12 threads feed one GPU. */
int cu_input_threads(be_ctx *b, int cores)
{
    (void)b;
    return cores < 12 ? cores : 12;
}

/* ---------------- optional entries: name, statistics, profile ---------------- */

const char *cu_device_name(be_ctx *b) { return CTX(b)->name; }

void cu_stats(be_ctx *b, be_stats *st)
{
    cu_ctx *c = CTX(b);
    memset(st, 0, sizeof *st);
    st->current_bytes = c->cur_bytes;
    st->peak_bytes = c->peak_bytes;
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess)
        st->device_used_bytes = tot - fr;
    else
        (void)cudaGetLastError();
    st->workspace_bytes = c->ws_size;
    st->workspace_limit = c->ws_limit;
    st->setup_seconds = c->find_s;
}

void cu_reset_peak(be_ctx *b) { CTX(b)->peak_bytes = CTX(b)->cur_bytes; }

void cu_profile_reset(be_ctx *b)
{
    cu_ctx *c = CTX(b);
    if (!c->prof) return;
    prof_resolve(c);
    c->prof_tab->clear();
    c->tl_ops->clear();
    c->tl_copies->clear();
    cudaEventRecord(c->prof_base, c->stream);
}

/* Milliseconds of the staged copies that ran while some op was running on the
 * compute stream (the union of the op spans intersected with each copy). */
double copies_overlapped_ms(cu_ctx *c, double *copy_ms)
{
    std::vector<prof_span> ops(*c->tl_ops);
    std::sort(ops.begin(), ops.end(), [](const prof_span &a, const prof_span &x) { return a.t0 < x.t0; });
    std::vector<prof_span> merged;
    for (const prof_span &o : ops) {
        if (!merged.empty() && o.t0 <= merged.back().t1)
            merged.back().t1 = std::max(merged.back().t1, o.t1);
        else
            merged.push_back(o);
    }
    double over = 0;
    *copy_ms = 0;
    for (const prof_span &cp : *c->tl_copies) {
        *copy_ms += cp.t1 - cp.t0;
        auto it = std::lower_bound(merged.begin(), merged.end(), cp.t0,
                                   [](const prof_span &m, double t) { return m.t1 < t; });
        for (; it != merged.end() && it->t0 < cp.t1; ++it)
            over += std::min(cp.t1, it->t1) - std::max(cp.t0, it->t0);
    }
    return over;
}

void write_copy_overlap(cu_ctx *c, FILE *f)
{
    double copy_ms = 0, over = copies_overlapped_ms(c, &copy_ms);
    fprintf(f, "\n### Staged input copies (copy stream) against the ops (compute stream)\n\n");
    fprintf(f, "- staged copies: %zu, %.3f ms in all; %.3f ms of it (%.1f %%) ran while an op was running\n",
            c->tl_copies->size(), copy_ms, over, copy_ms > 0 ? 100.0 * over / copy_ms : 0.0);
    fprintf(f, "- timeline (ms since the profile started) of the first copies:\n\n| copy | start | end |\n|---|---|---|\n");
    for (size_t i = 0; i < c->tl_copies->size() && i < 8; i++)
        fprintf(f, "| %zu | %.3f | %.3f |\n", i, (*c->tl_copies)[i].t0, (*c->tl_copies)[i].t1);
}

struct prof_row {
    std::string op, shape;
    double ms;
    long calls;
};

void write_op_kinds(FILE *f, const std::vector<prof_row> &rows, int steps, double total)
{
    std::map<std::string, prof_acc> kinds;
    for (const prof_row &r : rows) {
        prof_acc &k = kinds[r.op];
        k.ms += r.ms;
        k.calls += r.calls;
    }
    std::vector<std::pair<std::string, prof_acc>> kv(kinds.begin(), kinds.end());
    std::sort(kv.begin(), kv.end(), [](const std::pair<std::string, prof_acc> &a, const std::pair<std::string, prof_acc> &x) {
        return a.second.ms > x.second.ms;
    });
    fprintf(f, "### GPU time per op kind (CUDA events around each op; per step, %d steps)\n\n", steps);
    fprintf(f, "| op | calls/step | ms/step | share |\n|---|---|---|---|\n");
    for (auto &k : kv)
        fprintf(f, "| %s | %.1f | %.3f | %.1f %% |\n", k.first.c_str(), (double)k.second.calls / steps, k.second.ms / steps,
                total > 0 ? 100.0 * k.second.ms / total : 0.0);
    fprintf(f, "| **all ops** | | **%.3f** | |\n\n", total / steps);
}

void write_top_shapes(FILE *f, std::vector<prof_row> rows, int steps, int top, double total)
{
    std::sort(rows.begin(), rows.end(), [](const prof_row &a, const prof_row &x) { return a.ms > x.ms; });
    fprintf(f, "### Top %d (op, shape) by GPU time (conv shape: NxCxHxW kK RxS stride pad; cuDNN algo and workspace)\n\n", top);
    fprintf(f, "| op | shape | calls/step | mean us | ms/step | share |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < rows.size() && (int)i < top; i++)
        fprintf(f, "| %s | %s | %.1f | %.1f | %.3f | %.1f %% |\n", rows[i].op.c_str(), rows[i].shape.c_str(),
                (double)rows[i].calls / steps, rows[i].calls ? 1e3 * rows[i].ms / rows[i].calls : 0.0, rows[i].ms / steps,
                total > 0 ? 100.0 * rows[i].ms / total : 0.0);
}

double cu_profile_write(be_ctx *b, FILE *f, int steps, int top)
{
    cu_ctx *c = CTX(b);
    if (!c->prof) return -1;
    prof_resolve(c);
    if (steps < 1) steps = 1;
    std::vector<prof_row> rows;
    double total = 0;
    for (auto &kv : *c->prof_tab) {
        size_t bar = kv.first.find('|');
        prof_row r;
        r.op = kv.first.substr(0, bar);
        r.shape = bar == std::string::npos ? "" : kv.first.substr(bar + 1);
        r.ms = kv.second.ms;
        r.calls = kv.second.calls;
        rows.push_back(r);
        total += r.ms;
    }
    write_op_kinds(f, rows, steps, total);
    write_top_shapes(f, rows, steps, top, total);
    write_copy_overlap(c, f);
    fprintf(f, "\n### Backend memory\n\n");
    fprintf(f, "- convolution workspace: %.1f MiB (limit %.0f MiB); algorithm search: %.2f s host time, %d searches fell back to heuristics\n",
            c->ws_size / 1048576.0, c->ws_limit / 1048576.0, c->find_s, c->find_failures);
    fprintf(f, "- allocated now: %.1f MiB in %zu allocations; peak %.1f MiB\n", c->cur_bytes / 1048576.0, c->sizes->size(),
            c->peak_bytes / 1048576.0);
    return total / steps;
}

/* Batch norm in parts (--sync-bn): always the project's kernels (cuDNN has no split ops). */
static void *bn_split_scratch(cu_ctx *c, int n, int ch, int hw)
{
    if (k_bn_scratch_bytes(n, ch, hw) == 0) {
        cu_ok(c, cudaErrorInvalidValue, "batch norm in parts: shape not supported");
        return NULL;
    }
    return bn_scratch(c, n, ch, hw);
}

void cu_bn_stats_partial(be_ctx *b, int n, int ch, int hw, const float *x, double *sums)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_stats_partial", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, k_bn_stats_partial(c->stream, n, ch, hw, x, sums, s), "batch norm (statistics)");
}

void cu_bn_stats_finalize(be_ctx *b, int ch, const double *sums, double count, float *run_mean, float *run_var,
                          float momentum, float eps, float *save_mean, float *save_invstd)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    PROF(c, "bn_stats_finalize", "c%d", ch);
    cu_ok(c, k_bn_stats_finalize(c->stream, ch, sums, count, run_mean, run_var, momentum, eps, save_mean, save_invstd),
          "batch norm (statistics)");
}

void cu_bn_fwd_apply(be_ctx *b, int n, int ch, int hw, const float *x, const float *gamma, const float *beta,
                     const float *mean, const float *invstd, float *y)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_fwd_apply", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, k_bn_fwd_apply(c->stream, n, ch, hw, x, gamma, beta, mean, invstd, y, s), "batch norm (apply)");
}

void cu_bn_bwd_partial(be_ctx *b, int n, int ch, int hw, const float *x, const float *dy, const float *mean,
                       const float *invstd, double *sums, float *dgamma, float *dbeta)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_bwd_partial", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, k_bn_bwd_partial(c->stream, n, ch, hw, x, dy, mean, invstd, sums, dgamma, dbeta, s),
          "batch norm (backward sums)");
}

void cu_bn_bwd_apply(be_ctx *b, int n, int ch, int hw, const float *x, const float *dy, const float *gamma,
                     const float *mean, const float *invstd, const double *sums, double count, float *dx)
{
    cu_ctx *c = CTX(b);
    if (c->failed) return;
    void *s = bn_split_scratch(c, n, ch, hw);
    if (!s) return;
    PROF(c, "bn_bwd_apply", "n%d c%d hw%d", n, ch, hw);
    cu_ok(c, k_bn_bwd_apply(c->stream, n, ch, hw, x, dy, gamma, mean, invstd, sums, count, dx, s),
          "batch norm (backward)");
}

/* ---------------- the table ---------------- */

const be_ops CUDA_OPS = {
    "cuda",
    cu_destroy,
    cu_status,
    cu_sync,
    cu_alloc,
    cu_free,
    cu_to_device,
    cu_to_host,
    cu_zero,
    cu_copy,
    cu_host_alloc,
    cu_host_free,
    cu_stage_copy,
    cu_stage_wait,
    cu_stage_release,
    cu_input_threads,
    cu_conv_fwd,
    cu_conv_bwd_data,
    cu_conv_bwd_filter,
    cu_bn_fwd_train,
    cu_bn_fwd_eval,
    cu_bn_bwd,
    cu_relu_fwd,
    cu_relu_bwd,
    cu_leaky_fwd,
    cu_leaky_bwd,
    cu_maxpool_fwd,
    cu_maxpool_bwd,
    cu_avgpool_fwd,
    cu_avgpool_bwd,
    cu_linear_fwd,
    cu_linear_bwd,
    cu_add,
    cu_axpy,
    cu_scale,
    cu_ce,
    cu_kl,
    cu_nt_kl,
    cu_nkd,
    cu_kendall,
    cu_argmax,
    cu_resize_fwd,
    cu_resize_bwd,
    cu_adapool_fwd,
    cu_adapool_bwd,
    cu_att_fwd,
    cu_att_bwd,
    cu_mse,
    cu_sgd,
    cu_prep_spec,
    cu_prep_frames,
    cu_device_name,
    cu_stats,
    cu_reset_peak,
    cu_profile_reset,
    cu_profile_write,
    cu_bn_stats_partial,
    cu_bn_stats_finalize,
    cu_bn_fwd_apply,
    cu_bn_bwd_partial,
    cu_bn_bwd_apply,
    cu_native_stream,
};

void cu_destroy(be_ctx *b)
{
    cu_ctx *c = CTX(b);
    if (!c) return;
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->copy_stream) cudaStreamSynchronize(c->copy_stream);
    if (c->convs) {
        for (conv_entry *e : *c->convs) {
            if (e->xd) cudnnDestroyTensorDescriptor(e->xd);
            if (e->yd) cudnnDestroyTensorDescriptor(e->yd);
            if (e->wd) cudnnDestroyFilterDescriptor(e->wd);
            if (e->cd) cudnnDestroyConvolutionDescriptor(e->cd);
            free(e);
        }
        delete c->convs;
    }
    if (c->sizes) {
        for (auto &kv : *c->sizes) cudaFree(kv.first); /* everything still allocated, workspace included */
        delete c->sizes;
    }
    if (c->crops_host) cudaFreeHost(c->crops_host);
    if (c->prof_pend) {
        for (prof_pending &p : *c->prof_pend) {
            cudaEventDestroy(p.a);
            cudaEventDestroy(p.b);
        }
        delete c->prof_pend;
    }
    if (c->prof_free) {
        for (cudaEvent_t e : *c->prof_free) cudaEventDestroy(e);
        delete c->prof_free;
    }
    delete c->prof_tab;
    if (c->bn_x) cudnnDestroyTensorDescriptor(c->bn_x);
    if (c->bn_p) cudnnDestroyTensorDescriptor(c->bn_p);
    if (c->blas) cublasDestroy(c->blas);
    if (c->dnn) cudnnDestroy(c->dnn);
    if (c->compute_ev) cudaEventDestroy(c->compute_ev);
    if (c->copy_ev) cudaEventDestroy(c->copy_ev);
    if (c->stage_ev) cudaEventDestroy(c->stage_ev);
    for (int i = 0; i < BE_STAGE_SLOTS; i++) {
        if (c->slot_copied[i]) cudaEventDestroy(c->slot_copied[i]);
        if (c->slot_free[i]) cudaEventDestroy(c->slot_free[i]);
    }
    if (c->prof_base) cudaEventDestroy(c->prof_base);
    delete c->tl_ops;
    delete c->tl_copies;
    if (c->copy_stream) cudaStreamDestroy(c->copy_stream);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

/* ---------------- creation ---------------- */

/* The context's settings from the options, before any CUDA call. */
cu_ctx *ctx_new(const be_options *o)
{
    cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base.ops = &CUDA_OPS;
    c->device = o->device;
    c->tf32 = o->tf32 ? 1 : 0;
    c->use_find = o->cudnn_find != 0;
    c->ws_limit = o->workspace_mb << 20;
    c->bn_own = o->bn != BE_BN_CUDNN;
    c->prof = o->profile != 0;
    c->sizes = new std::unordered_map<void *, size_t>();
    c->convs = new std::vector<conv_entry *>();
    c->prof_pend = new std::vector<prof_pending>();
    c->prof_free = new std::vector<cudaEvent_t>();
    c->prof_tab = new std::map<std::string, prof_acc>();
    c->tl_ops = new std::vector<prof_span>();
    c->tl_copies = new std::vector<prof_span>();
    return c;
}

/* Device, streams and events; on failure the step that failed in *step. */
cudaError_t open_device(cu_ctx *c, const char **step)
{
    cudaError_t e;
    cudaDeviceProp prop;
    *step = "cudaSetDevice";
    if ((e = cudaSetDevice(c->device)) != cudaSuccess) return e;
    *step = "cudaGetDeviceProperties";
    if ((e = cudaGetDeviceProperties(&prop, c->device)) != cudaSuccess) return e;
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    *step = "stream";
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) return e;
    if ((e = cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking)) != cudaSuccess) return e;
    *step = "event";
    cudaEvent_t *evs[3 + 2 * BE_STAGE_SLOTS] = {&c->compute_ev, &c->copy_ev, &c->stage_ev};
    for (int i = 0; i < BE_STAGE_SLOTS; i++) {
        evs[3 + 2 * i] = &c->slot_copied[i];
        evs[4 + 2 * i] = &c->slot_free[i];
    }
    for (cudaEvent_t *ev : evs)
        if ((e = cudaEventCreateWithFlags(ev, cudaEventDisableTiming)) != cudaSuccess) return e;
    if (c->prof) {
        if ((e = cudaEventCreate(&c->prof_base)) != cudaSuccess) return e;
        if ((e = cudaEventRecord(c->prof_base, c->stream)) != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* cuDNN and cuBLAS handles on the compute stream; 0, or -1 with err set. */
int open_libraries(cu_ctx *c, cm_err *err)
{
    cudnnStatus_t ds;
    cublasStatus_t bs;
    if ((ds = cudnnCreate(&c->dnn)) != CUDNN_STATUS_SUCCESS || (ds = cudnnSetStream(c->dnn, c->stream)) != CUDNN_STATUS_SUCCESS ||
        (ds = cudnnCreateTensorDescriptor(&c->bn_x)) != CUDNN_STATUS_SUCCESS ||
        (ds = cudnnCreateTensorDescriptor(&c->bn_p)) != CUDNN_STATUS_SUCCESS)
        return cm_err_set(err, "cuDNN: %s", cudnnGetErrorString(ds));
    if ((bs = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS || (bs = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetMathMode(c->blas, c->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
        return cm_err_set(err, "cuBLAS: %s", cublasGetStatusString(bs));
    return 0;
}

} /* namespace */

extern "C" be_ctx *be_cuda_create(const be_options *opts, cm_err *err)
{
    be_options dflt;
    be_options_default(&dflt);
    const be_options *o = opts ? opts : &dflt;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        cm_err_set(err, "no CUDA device found (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return NULL;
    }
    if (o->device < 0 || o->device >= count) {
        cm_err_set(err, "CUDA device %d does not exist (%d found)", o->device, count);
        return NULL;
    }
    cu_ctx *c = ctx_new(o);
    if (!c) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    const char *step = "";
    if ((e = open_device(c, &step)) != cudaSuccess) {
        (void)cudaGetLastError();
        cm_err_set(err, "CUDA device %d: %s: %s", o->device, step, cudaGetErrorString(e));
        cu_destroy(&c->base);
        return NULL;
    }
    if (open_libraries(c, err) != 0) {
        cu_destroy(&c->base);
        return NULL;
    }
    return &c->base;
}
