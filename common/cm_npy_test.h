/* cm_npy: the .npy reader, used only by the tests (tests/unit, tests/tools)
 * to read what the commands wrote; never included outside tests/
 * (tools/check_structure.py checks it). */
#ifndef CM_NPY_TEST_H
#define CM_NPY_TEST_H

#include <stddef.h>

#include "common/cm_err.h"
#include "common/cm_npy.h"

typedef struct cm_npy {
    char descr[16];
    int ndim;
    size_t shape[CM_NPY_MAXDIM];
    size_t elem_size;
    size_t count; /* product of shape */
    void *data;   /* malloc'd, count * elem_size bytes */
} cm_npy;

/* Reads a C-order .npy file. Free with cm_npy_free(). */
int cm_npy_read(const char *path, cm_npy *out, cm_err *err);
void cm_npy_free(cm_npy *a);

#endif
