/* h5: helpers only the tests use (never included outside tests/:
 * tools/check_structure.py checks it). */
#ifndef H5_H5_TEST_H
#define H5_H5_TEST_H

#include <hdf5.h>

/* Variable-length UTF-8 string type: the tests write legacy files with it
 * (shard version 1, checkpoints before format_version 2) to check that they
 * are still read, and refused where the format forbids them. */
hid_t h5_vlen_utf8(void);

#endif
