/* cm_npy_test: reading .npy files, for tests and tools only (tests/tools/opcheck.c,
 * tests/unit/test_common.c); tools/check_structure.py keeps it out of the programs. */
#ifndef COMMON_CM_NPY_TEST_H
#define COMMON_CM_NPY_TEST_H

#include "common/cm_npy.h"

/* Reads a C-order .npy file. Free with cm_npy_free(). */
int cm_npy_read(const char *path, cm_npy *out, cm_err *err);

#endif
