/* cm_npy: NumPy .npy files (format version 1.0, C order, little endian). */
#ifndef CM_NPY_H
#define CM_NPY_H

#include <stddef.h>

#include "common/cm_err.h"

#define CM_NPY_MAXDIM 8

/* descr: NumPy type string, e.g. "<f4", "<f2", "<i4", "|u1".
 * Written atomically (temporary name, then rename). */
int cm_npy_write(const char *path, const char *descr, const size_t *shape, int ndim,
                 const void *data, cm_err *err);

typedef struct cm_npy {
    char descr[16];
    int ndim;
    size_t shape[CM_NPY_MAXDIM];
    size_t elem_size;
    size_t count; /* product of shape */
    void *data;   /* malloc'd, count * elem_size bytes */
} cm_npy;

/* Frees what cm_npy_read (common/cm_npy_test.h) filled. */
void cm_npy_free(cm_npy *a);

/* Size in bytes of one element of descr, or 0 when unknown. */
size_t cm_npy_elem_size(const char *descr);

#endif
