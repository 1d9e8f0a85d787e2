/* cl_mpi: the MPI half of the collective plugin (see cl_plugin.h). Errors return
 * (MPI_ERRORS_RETURN on MPI_COMM_WORLD) as one line of text. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "collective/cl_plugin.h"

void *cl_nccl_create(int device, size_t bucket_bytes, char *msg);
void cl_nccl_destroy(void *g);
int cl_nccl_allreduce(void *g, float *dev, size_t count, int average, double *seconds, char *msg);
int cl_nccl_bcast(void *g, void *dev, size_t bytes, int root, char *msg);
int cl_nccl_iallreduce(void *g, float *dev, size_t count, int average, void *stream, char *msg);
int cl_nccl_wait(void *g, double *seconds, char *msg);

static int mpi_fail(int rc, const char *what, char *msg)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof s, "error %d", rc);
    snprintf(msg, CL_MSG, "%.80s: %.160s", what, s);
    return -1;
}

static int p_init(int *rank, int *size, int *local_rank, char *msg)
{
    int provided = 0, rc;
    if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Init_thread", msg);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    MPI_Comm node;
    if ((rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, *rank, MPI_INFO_NULL, &node)) != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Comm_split_type", msg);
    MPI_Comm_rank(node, local_rank);
    MPI_Comm_free(&node);
    return 0;
}

static void p_finalize(void)
{
    MPI_Finalize();
}

static MPI_Datatype mpi_type(int type)
{
    return type == CL_T_F32 ? MPI_FLOAT : type == CL_T_F64 ? MPI_DOUBLE : MPI_INT64_T;
}

static MPI_Op mpi_op(int op)
{
    return op == CL_P_SUM ? MPI_SUM : op == CL_P_MAX ? MPI_MAX : MPI_MIN;
}

static int p_allreduce(void *buf, size_t count, int type, int op, char *msg)
{
    MPI_Datatype t = mpi_type(type);
    MPI_Op o = mpi_op(op);
    size_t esz = type == CL_T_F32 ? 4 : 8;
    for (size_t done = 0; done < count;) { /* counts are int */
        size_t n = count - done < (size_t)1 << 30 ? count - done : (size_t)1 << 30;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * esz, (int)n, t, o, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Allreduce", msg);
        done += n;
    }
    return 0;
}

/* The requests of one iallreduce: one per piece of < 2^30 elements, the
 * pieces as p_allreduce cuts them. */
typedef struct ireq {
    int n;
    MPI_Request r[];
} ireq;

#define PIECE ((size_t)1 << 30)

static int p_iallreduce(void *buf, size_t count, int type, int op, void **req, char *msg)
{
    size_t esz = type == CL_T_F32 ? 4 : 8, np = (count + PIECE - 1) / PIECE;
    ireq *q = malloc(sizeof *q + (np ? np : 1) * sizeof(MPI_Request));
    *req = q;
    if (!q) {
        snprintf(msg, CL_MSG, "out of memory");
        return -1;
    }
    q->n = 0;
    for (size_t done = 0; done < count; done += PIECE) {
        size_t n = count - done < PIECE ? count - done : PIECE;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + done * esz, (int)n, mpi_type(type), mpi_op(op),
                                MPI_COMM_WORLD, &q->r[q->n]);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Iallreduce", msg);
        q->n++;
    }
    return 0;
}

static int p_wait(void *req, char *msg)
{
    ireq *q = req;
    if (!q)
        return 0;
    int rc = q->n ? MPI_Waitall(q->n, q->r, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    free(q);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Iallreduce (wait)", msg);
}

static int p_bcast(void *buf, size_t bytes, int root, char *msg)
{
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < (size_t)1 << 30 ? bytes - done : (size_t)1 << 30;
        int rc = MPI_Bcast((char *)buf + done, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Bcast", msg);
        done += n;
    }
    return 0;
}

static void p_abort(int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
}

/* Used by cl_nccl.c for the unique id. */
int cl_mpi_bcast(void *buf, size_t bytes, int root, char *msg)
{
    return p_bcast(buf, bytes, root, msg);
}

int cl_mpi_size(void)
{
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

int cl_mpi_rank(void)
{
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

static const cl_plugin table = {
    .version = CL_PLUGIN_VERSION,
    .init = p_init,
    .finalize = p_finalize,
    .allreduce = p_allreduce,
    .bcast = p_bcast,
    .abort = p_abort,
    .gpu_create = cl_nccl_create,
    .gpu_destroy = cl_nccl_destroy,
    .gpu_allreduce = cl_nccl_allreduce,
    .gpu_bcast = cl_nccl_bcast,
    .iallreduce = p_iallreduce,
    .wait = p_wait,
    .gpu_iallreduce = cl_nccl_iallreduce,
    .gpu_wait = cl_nccl_wait,
};

const cl_plugin *c2kd_collective_plugin(void)
{
    return &table;
}
