/* cuda_internal: the CUDA backend's context and the helpers its files share
 * (defined in kernels/cuda/context.cu): sticky failures, profiling scopes,
 * device memory accounting, the launch macro and the grid helpers. The ops
 * are declared in kernels/cuda/cuda_ops.h, the block reductions of the
 * kernels in kernels/cuda/reduce.cuh. C++ (nvcc) only; not part of the
 * kernels interface. */
#ifndef KERNELS_CUDA_INTERNAL_H
#define KERNELS_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/cuda_ops.h" /* includes kernels/kernels.h */

struct prof_pending {
    std::string key;
    cudaEvent_t a, b;
    int lane; /* 0: an op on the compute stream; 1: a staged copy on the copy stream */
};
typedef be_prof_span prof_span; /* t0, t1: ms since the profile's base event */
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
    std::vector<std::string> *prof_keys; /* profile_data: the op and shape strings of prof_rows */
    std::vector<be_prof_row> *prof_rows;
    double find_s; /* host seconds spent choosing convolution algorithms */

    int bn_own; /* 1: the project's batch-norm kernels (default); 0: cuDNN (be_options.bn) */
    void *bn_scratch; /* partial sums of the own batch-norm kernels */
    size_t bn_scratch_cap;

    float *per; /* per-sample losses */
    size_t per_cap;
    be_crop *crops_dev, *crops_host; /* crops for prep_frames (host side pinned) */
    size_t crops_cap;
};

/* ---------------- context.cu: failures, profiling, memory ---------------- */

inline cu_ctx *CTX(be_ctx *b) { return (cu_ctx *)b; }

/* Records the first failure (sticky). */
void fail(cu_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* true when e is a success, else records the failure ("cuda: what: ..."). */
bool cu_ok(cu_ctx *c, cudaError_t e, const char *what);
bool dnn_ok(cu_ctx *c, cudnnStatus_t e, const char *what);
bool blas_ok(cu_ctx *c, cublasStatus_t e, const char *what);

void prof_resolve(cu_ctx *c);
cudaEvent_t prof_event(cu_ctx *c);

/* Device memory counted in the context; NULL (recorded failure) when out of memory. */
void *dev_alloc(cu_ctx *c, size_t bytes, const char *what);
void dev_free(cu_ctx *c, void *p);
/* Convolution workspace of at least `bytes` (contents not kept); false on failure. */
bool ensure_ws(cu_ctx *c, size_t bytes);

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

/* cuDNN's and cuBLAS's scaling factors. */
const float ONE = 1.f, ZERO = 0.f;

/* ---------------- the family files: launching the project's kernels ---------------- */

/* An op that launches one of the project's kernels: nothing after a failure,
 * timed when profiling, the launch error recorded. */
#define LAUNCH(c, call, what, ...)                  \
    do {                                            \
        if ((c)->failed) return;                    \
        PROF((c), (what), __VA_ARGS__);             \
        cu_ok((c), (call), (what));                 \
    } while (0)

#define NT 256

static inline unsigned grid_for(size_t n, unsigned threads = NT)
{
    size_t g = (n + threads - 1) / threads;
    if (g > 65535u * 8u) g = 65535u * 8u; /* grid-stride loops cover the rest */
    if (g == 0) g = 1;
    return (unsigned)g;
}

#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

#endif
