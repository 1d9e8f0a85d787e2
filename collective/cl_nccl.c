/* cl_nccl: the NCCL half of the collective plugin (see cl_plugin.h): one NCCL
 * communicator over all ranks, its unique id made by rank 0 and sent with
 * MPI_Bcast; gradients summed in buckets launched as one NCCL group on the
 * plugin's own stream. Compiled to stubs without NCCL (CL_HAVE_NCCL unset). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "collective/cl_plugin.h"

int cl_mpi_bcast(void *buf, size_t bytes, int root, char *msg);
int cl_mpi_size(void);
int cl_mpi_rank(void);

#ifdef CL_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

typedef struct cl_nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t ready;  /* recorded on the compute stream before each non-blocking all-reduce */
    size_t bucket;   /* floats per bucket */
    int size;
} cl_nccl;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int nccl_fail(ncclResult_t r, const char *what, char *msg)
{
    snprintf(msg, CL_MSG, "%s: %s", what, ncclGetErrorString(r));
    return -1;
}

static int cuda_fail(cudaError_t r, const char *what, char *msg)
{
    snprintf(msg, CL_MSG, "%s: %s", what, cudaGetErrorString(r));
    return -1;
}

void *cl_nccl_create(int device, size_t bucket_bytes, char *msg)
{
    cl_nccl *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(msg, CL_MSG, "out of memory");
        return NULL;
    }
    g->size = cl_mpi_size();
    g->bucket = bucket_bytes / sizeof(float) ? bucket_bytes / sizeof(float) : 1;
    ncclUniqueId id;
    ncclResult_t r;
    cudaError_t ce;
    if (cl_mpi_rank() == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) {
        nccl_fail(r, "ncclGetUniqueId", msg);
        goto fail;
    }
    if (cl_mpi_bcast(&id, sizeof id, 0, msg) != 0)
        goto fail;
    if ((ce = cudaSetDevice(device)) != cudaSuccess ||
        (ce = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        cuda_fail(ce, "CUDA stream for NCCL", msg);
        goto fail;
    }
    if ((ce = cudaEventCreateWithFlags(&g->ready, cudaEventDisableTiming)) != cudaSuccess) {
        cudaStreamDestroy(g->stream);
        cuda_fail(ce, "CUDA event for NCCL", msg);
        goto fail;
    }
    if ((r = ncclCommInitRank(&g->comm, g->size, id, cl_mpi_rank())) != ncclSuccess) {
        cudaEventDestroy(g->ready);
        cudaStreamDestroy(g->stream);
        nccl_fail(r, "ncclCommInitRank", msg);
        goto fail;
    }
    return g;
fail:
    free(g);
    return NULL;
}

void cl_nccl_destroy(void *gp)
{
    cl_nccl *g = gp;
    if (!g)
        return;
    ncclCommDestroy(g->comm);
    cudaEventDestroy(g->ready);
    cudaStreamDestroy(g->stream);
    free(g);
}

/* The buckets of count floats as one NCCL group on the plugin's stream. */
static int launch(cl_nccl *g, float *dev, size_t count, int average, char *msg)
{
    ncclResult_t r;
    if ((r = ncclGroupStart()) != ncclSuccess)
        return nccl_fail(r, "ncclGroupStart", msg);
    for (size_t off = 0; off < count; off += g->bucket) {
        size_t n = count - off < g->bucket ? count - off : g->bucket;
        r = ncclAllReduce(dev + off, dev + off, n, ncclFloat32, average ? ncclAvg : ncclSum, g->comm, g->stream);
        if (r != ncclSuccess) {
            ncclGroupEnd();
            return nccl_fail(r, "ncclAllReduce", msg);
        }
    }
    if ((r = ncclGroupEnd()) != ncclSuccess)
        return nccl_fail(r, "ncclGroupEnd", msg);
    return 0;
}

int cl_nccl_allreduce(void *gp, float *dev, size_t count, int average, double *seconds, char *msg)
{
    cl_nccl *g = gp;
    double t0 = now();
    if (launch(g, dev, count, average, msg) != 0)
        return -1;
    cudaError_t ce = cudaStreamSynchronize(g->stream);
    if (ce != cudaSuccess)
        return cuda_fail(ce, "NCCL stream", msg);
    if (seconds)
        *seconds = now() - t0;
    return 0;
}

int cl_nccl_iallreduce(void *gp, float *dev, size_t count, int average, void *stream, char *msg)
{
    cl_nccl *g = gp;
    cudaError_t ce;
    if ((ce = cudaEventRecord(g->ready, (cudaStream_t)stream)) != cudaSuccess ||
        (ce = cudaStreamWaitEvent(g->stream, g->ready, 0)) != cudaSuccess)
        return cuda_fail(ce, "NCCL stream after the backward pass", msg);
    return launch(g, dev, count, average, msg);
}

int cl_nccl_wait(void *gp, double *seconds, char *msg)
{
    cl_nccl *g = gp;
    double t0 = now();
    cudaError_t ce = cudaStreamSynchronize(g->stream);
    if (ce != cudaSuccess)
        return cuda_fail(ce, "NCCL stream", msg);
    if (seconds)
        *seconds = now() - t0;
    return 0;
}

int cl_nccl_bcast(void *gp, void *dev, size_t bytes, int root, char *msg)
{
    cl_nccl *g = gp;
    ncclResult_t r = ncclBroadcast(dev, dev, bytes, ncclUint8, root, g->comm, g->stream);
    if (r != ncclSuccess)
        return nccl_fail(r, "ncclBroadcast", msg);
    cudaError_t ce = cudaStreamSynchronize(g->stream);
    return ce == cudaSuccess ? 0 : cuda_fail(ce, "NCCL stream", msg);
}

#else

void *cl_nccl_create(int device, size_t bucket_bytes, char *msg)
{
    (void)device;
    (void)bucket_bytes;
    snprintf(msg, CL_MSG, "this build has no NCCL (nccl.h was not found at build time)");
    return NULL;
}

void cl_nccl_destroy(void *g)
{
    (void)g;
}

int cl_nccl_allreduce(void *g, float *dev, size_t count, int average, double *seconds, char *msg)
{
    (void)g, (void)dev, (void)count, (void)average, (void)seconds;
    snprintf(msg, CL_MSG, "this build has no NCCL");
    return -1;
}

int cl_nccl_iallreduce(void *g, float *dev, size_t count, int average, void *stream, char *msg)
{
    (void)g, (void)dev, (void)count, (void)average, (void)stream;
    snprintf(msg, CL_MSG, "this build has no NCCL");
    return -1;
}

int cl_nccl_wait(void *g, double *seconds, char *msg)
{
    (void)g, (void)seconds;
    snprintf(msg, CL_MSG, "this build has no NCCL");
    return -1;
}

int cl_nccl_bcast(void *g, void *dev, size_t bytes, int root, char *msg)
{
    (void)g, (void)dev, (void)bytes, (void)root;
    snprintf(msg, CL_MSG, "this build has no NCCL");
    return -1;
}
#endif
