/* st_h5: HDF5 string attributes, shared by the shard format (store/) and the
 * trainer's checkpoints (train/ckpt.c), which use the same conventions. */
#ifndef ST_H5_H
#define ST_H5_H

#include <hdf5.h>

/* Writes a scalar variable-length UTF-8 string attribute. */
int st_attr_str(hid_t loc, const char *name, const char *value);
/* Reads a string attribute (variable or fixed length, ASCII or UTF-8) as
 * malloc'd text; NULL when absent or not a string. */
char *st_attr_get_str(hid_t loc, const char *name);

#endif
