/* store: helpers shared by the writer, the reader and the index (not public). */
#ifndef ST_INTERNAL_H
#define ST_INTERNAL_H

#include <hdf5.h>

#include "store/st_h5.h"

#define ST_TOOL_VERSION "c2kd 0.1"

/* The IEEE binary16 HDF5 type (little endian), h5py reads it as float16. */
hid_t st_half_type(void);
/* Turns HDF5's automatic error printing off. */
void st_hdf5_quiet(void);

#endif
