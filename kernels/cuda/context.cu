/* context (CUDA): the CUDA backend's context (kernels/kernels.h): sticky
 * failures, profiling, device memory, copies, staged inputs, statistics,
 * creation and destruction. The ops are in the family files beside this one
 * (conv.cu, batchnorm.cu, ..., input.cu: the order of kernels/cuda/cuda_ops.h),
 * the table in table.c. Mirrors kernels/cpu/context.c.
 *
 * One compute stream carries every op in issue order; host->device copies go
 * on a second stream, ordered with events: to_device after the compute issued
 * so far, staged input copies (stage_copy) only after their slot's release,
 * so the next batch's copy overlaps the current step. cuDNN does convolutions
 * (conv.cu: algorithm chosen once per shape by timing with cudnnFind*Ex inside
 * a bounded workspace, cached) and optionally batch norm; cuBLAS does the
 * linear layers; the rest are the project's kernels. Failures are sticky: the
 * first one is kept in the context, later ops return at once, status()
 * reports it.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"

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

static double prof_since_base(cu_ctx *c, cudaEvent_t e)
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
static void trim_ws(cu_ctx *c)
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

/* ---------------- ops: context ---------------- */

void *cu_native_stream(be_ctx *b)
{
    return (void *)CTX(b)->stream;
}

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

/* ---------------- staged input copies ----------------
 * Batch k+1 is copied into one slot on the copy stream while step k computes
 * from the other: the copy waits only for the slot's release (recorded on the
 * compute stream after the step that last read it, k-1), and the compute
 * waits for the copy only where it reads the slot (stage_wait). */

static bool slot_ok(cu_ctx *c, int slot, const char *what)
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

/* The raw profile (be_profile): the (op, shape) rows in key order, the
 * timelines and the memory plan; the report is written by the caller
 * (train/tr_profile.c). The row strings live in the context until the next call. */
int cu_profile_data(be_ctx *b, be_profile *p)
{
    cu_ctx *c = CTX(b);
    memset(p, 0, sizeof *p);
    if (!c->prof) return -1;
    prof_resolve(c);
    c->prof_keys->clear();
    c->prof_rows->clear();
    for (auto &kv : *c->prof_tab) { /* all strings first: their addresses are kept below */
        size_t bar = kv.first.find('|');
        c->prof_keys->push_back(kv.first.substr(0, bar));
        c->prof_keys->push_back(bar == std::string::npos ? "" : kv.first.substr(bar + 1));
    }
    size_t i = 0;
    for (auto &kv : *c->prof_tab) {
        be_prof_row r = {(*c->prof_keys)[2 * i].c_str(), (*c->prof_keys)[2 * i + 1].c_str(), kv.second.ms, kv.second.calls};
        c->prof_rows->push_back(r);
        i++;
    }
    p->rows = c->prof_rows->data();
    p->n_rows = c->prof_rows->size();
    p->ops = c->tl_ops->data();
    p->n_ops = c->tl_ops->size();
    p->copies = c->tl_copies->data();
    p->n_copies = c->tl_copies->size();
    p->workspace_bytes = c->ws_size;
    p->workspace_limit = c->ws_limit;
    p->setup_seconds = c->find_s;
    p->search_fallbacks = c->find_failures;
    p->current_bytes = c->cur_bytes;
    p->peak_bytes = c->peak_bytes;
    p->allocations = c->sizes->size();
    return 0;
}

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
    delete c->prof_keys;
    delete c->prof_rows;
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
static cu_ctx *ctx_new(const be_options *o)
{
    cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base.ops = &cu_ops_table;
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
    c->prof_keys = new std::vector<std::string>();
    c->prof_rows = new std::vector<be_prof_row>();
    c->tl_ops = new std::vector<prof_span>();
    c->tl_copies = new std::vector<prof_span>();
    return c;
}

/* Device, streams and events; on failure the step that failed in *step. */
static cudaError_t open_device(cu_ctx *c, const char **step)
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
static int open_libraries(cu_ctx *c, cm_err *err)
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

be_ctx *be_cuda_create(const be_options *opts, cm_err *err)
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
