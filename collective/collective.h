/* collective: ranks of a data-parallel run and their collectives.
 *
 * A process started by a launcher (mpirun/mpiexec of Open MPI, MPICH's
 * Hydra, Slurm's srun: see cl_launched) is one rank of a world of N; any
 * other process is rank 0 of a world of 1 and never touches MPI. MPI is not
 * linked into the programs: under a launcher, cl_create loads the plugin
 * build/lib/c2kd_collective.so (collective/cl_mpi.c + collective/cl_nccl.c, linked with libmpi
 * and NCCL) with dlopen, so a plain run starts as fast as before and needs no
 * MPI library installed (docs/DISTRIBUTED.md has the measurement).
 *
 * Host collectives use MPI (MPI_ERRORS_RETURN: failures come back as
 * messages). Device collectives (cl_gpu_*) use NCCL on the plugin's own
 * stream, bucketed, the communicator's unique id sent with MPI_Bcast.
 *
 * Watchdog: with timeout_s > 0, a thread watches every collective; one that
 * has not completed after timeout_s seconds (a rank died or hangs) calls
 * on_timeout (the command prints its message and exits; the library never
 * does). Without a launcher every collective is a no-op. */
#ifndef COLLECTIVE_COLLECTIVE_H
#define COLLECTIVE_COLLECTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"

typedef struct cl_comm cl_comm;

typedef enum cl_op { CL_SUM = 0, CL_MAX = 1, CL_MIN = 2 } cl_op;

/* 1 when the environment shows a launcher started this process as one of
 * several ranks (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK, PMIX_RANK,
 * MV2_COMM_WORLD_SIZE, or SLURM_STEP_NUM_TASKS > 1 inside an srun step),
 * unless C2KD_DIST=0. */
int cl_launched(void);

typedef void (*cl_timeout_fn)(void *arg, const char *what, double seconds);

/* World of 1 without a launcher; under one, loads the plugin and initialises
 * MPI. timeout_s <= 0: no watchdog. */
cl_comm *cl_create(double timeout_s, cl_timeout_fn on_timeout, void *arg, cm_err *err);
/* MPI_Finalize (after the last collective). */
void cl_destroy(cl_comm *c);

int cl_rank(const cl_comm *c);
int cl_size(const cl_comm *c);
int cl_local_rank(const cl_comm *c);
/* 1 when started by a launcher (MPI in use, even for a world of 1: then the
 * collectives still go through MPI/NCCL, which tests/gpu/run.sh uses). */
int cl_active(const cl_comm *c);

/* In-place, host memory. */
int cl_allreduce_f64(cl_comm *c, double *buf, size_t n, cl_op op, cm_err *err);
int cl_allreduce_i64(cl_comm *c, int64_t *buf, size_t n, cl_op op, cm_err *err);
/* Sum over ranks divided by the world size. */
int cl_average_f32(cl_comm *c, float *buf, size_t n, cm_err *err);
int cl_bcast(cl_comm *c, void *buf, size_t bytes, int root, cm_err *err);

/* ---- non-blocking averages (overlapped with the backward pass) ----
 * cl_iaverage_f32 starts the average of n host floats (MPI_Iallreduce sum;
 * cl_wait_all then scales by 1/size, as cl_average_f32); cl_gpu_iaverage
 * starts that of n device floats after the work issued so far on the CUDA
 * stream `stream` (NCCL on the plugin's stream, the buckets of
 * cl_gpu_average). The data must not be touched before cl_wait_all, which
 * waits for every average started (watched like a collective) and leaves the
 * results in place; its time goes to cl_gpu_take_seconds. At most
 * CL_MAX_PENDING at once. The results equal cl_average_f32's and
 * cl_gpu_average's (the same reductions). */
#define CL_MAX_PENDING 8
int cl_iaverage_f32(cl_comm *c, float *buf, size_t n, cm_err *err);
int cl_gpu_iaverage(cl_comm *c, float *dev, size_t n, void *stream, cm_err *err);
int cl_wait_all(cl_comm *c, cm_err *err);
/* Non-blocking averages started since cl_create. */
long long cl_started(const cl_comm *c);
/* Ends every rank (MPI_Abort); returns only in a world of 1. */
void cl_abort(cl_comm *c, int code);

/* ---- device memory (CUDA ranks) ---- */
/* Creates the NCCL communicator on CUDA device `device`; bucket_bytes <= 0:
 * 25 MiB (PyTorch DDP's default bucket). -1 when the plugin has no NCCL. */
int cl_gpu_init(cl_comm *c, int device, size_t bucket_bytes, cm_err *err);
int cl_gpu_ready(const cl_comm *c);
/* Average of n device floats over ranks (sum, then / size). The caller makes
 * sure the data is ready (the backend synced) before the call; returns when
 * the result is in place. */
int cl_gpu_average(cl_comm *c, float *dev, size_t n, cm_err *err);
int cl_gpu_bcast(cl_comm *c, void *dev, size_t bytes, int root, cm_err *err);
/* Seconds spent in device all-reduces since the last call (then reset). */
double cl_gpu_take_seconds(cl_comm *c);

#endif
