/* cl_plugin: the table the collective plugin (build/lib/c2kd_collective.so: collective/cl_mpi.c
 * and collective/cl_nccl.c, linked with libmpi and, when present, NCCL) gives to
 * collective/collective.c, which loads it with dlopen only when the process was started
 * by a launcher. Internal to collective/. Every function that can fail returns 0,
 * or -1 with one line in msg (size CL_MSG). */
#ifndef DIST_DS_PLUGIN_H
#define DIST_DS_PLUGIN_H

#include <stddef.h>

#define CL_MSG 256
#define CL_PLUGIN_VERSION 3

enum { CL_T_F32 = 0, CL_T_F64 = 1, CL_T_I64 = 2 };
enum { CL_P_SUM = 0, CL_P_MAX = 1, CL_P_MIN = 2 };

typedef struct cl_plugin {
    int version;
    /* MPI_Init_thread; rank, size, rank within the node; errors return. */
    int (*init)(int *rank, int *size, int *local_rank, char *msg);
    void (*finalize)(void);
    /* Host buffers. */
    int (*allreduce)(void *buf, size_t count, int type, int op, char *msg);
    int (*bcast)(void *buf, size_t bytes, int root, char *msg);
    void (*abort)(int code);
    /* NCCL on device memory: a communicator over all ranks on CUDA device
     * `device` (its unique id sent with MPI_Bcast), NULL with msg when the
     * plugin was built without NCCL. */
    void *(*gpu_create)(int device, size_t bucket_bytes, char *msg);
    void (*gpu_destroy)(void *g);
    /* Sum (then scale by 1/size when average) of count floats, in buckets of
     * bucket_bytes launched in one NCCL group on the plugin's stream; waits
     * for the stream. *seconds: wall time of the call. */
    int (*gpu_allreduce)(void *g, float *dev, size_t count, int average, double *seconds, char *msg);
    int (*gpu_bcast)(void *g, void *dev, size_t bytes, int root, char *msg);
    /* Non-blocking host all-reduce (MPI_Iallreduce, in place, in pieces of
     * < 2^30 elements): *req receives the handle for wait, which waits for
     * it and frees it (also on failure). */
    int (*iallreduce)(void *buf, size_t count, int type, int op, void **req, char *msg);
    int (*wait)(void *req, char *msg);
    /* NCCL, non-blocking: the plugin's stream waits for the work issued so
     * far on `stream` (a cudaStream_t of this device; an event recorded
     * there), then runs the same buckets as gpu_allreduce as one NCCL group;
     * returns at once. gpu_wait waits for all of them (the plugin's stream)
     * and gives the wall time of the wait. */
    int (*gpu_iallreduce)(void *g, float *dev, size_t count, int average, void *stream, char *msg);
    int (*gpu_wait)(void *g, double *seconds, char *msg);
} cl_plugin;

/* The plugin's one exported symbol. */
const cl_plugin *c2kd_collective_plugin(void);

#endif
