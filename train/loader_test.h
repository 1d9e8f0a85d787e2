/* loader_test: loader helpers for benchmarks and tests only (bench/loader,
 * tests/unit); tools/check_structure.py keeps it out of the programs. */
#ifndef TRAIN_LOADER_TEST_H
#define TRAIN_LOADER_TEST_H

#include "train/loader.h"

/* ld_device_stage and ld_device_prepare at once (no overlap). */
int ld_device_upload(ld_device *dv, ld_host_batch *hb, tr_batch *out, cm_err *err);

#endif
