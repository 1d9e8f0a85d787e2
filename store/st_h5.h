/* st_h5: the project's HDF5 helpers (one home: store owns every HDF5 helper).
 * Used by the shard format (store/) and the trainer's checkpoints (train/),
 * which follow the same conventions. */
#ifndef ST_H5_H
#define ST_H5_H

#include <stddef.h>

#include <hdf5.h>

/* ---- Error printing --------------------------------------------------------
 * HDF5 prints its error stack on stderr by default; a library must not print.
 * Wrap every block of HDF5 calls: begin turns the printing off and saves the
 * caller's setting, end restores it. */
typedef struct st_h5_quiet {
    H5E_auto2_t fn;
    void *data;
} st_h5_quiet;

void st_h5_quiet_begin(st_h5_quiet *q);
void st_h5_quiet_end(const st_h5_quiet *q);

/* Right after a failed HDF5 call (before any other HDF5 call): writes the
 * cause found on HDF5's error stack into out (size n), the operating
 * system's reason when there is one ("No space left on device"), else
 * HDF5's innermost description, else "HDF5 error". Returns the errno found
 * (e.g. ENOSPC), 0 when none. */
int st_h5_cause(char *out, size_t n);

/* Commands that write shards call this once at start: libhdf5 1.10 closes
 * the files still open at exit, and closing one whose flush already failed
 * (a full disk) crashes inside the library. Process-wide. */
void st_h5_no_close_at_exit(void);

/* ---- String attributes ---------------------------------------------------- */

/* Writes a scalar variable-length UTF-8 string attribute. 0 or -1. */
int st_attr_str(hid_t loc, const char *name, const char *value);
/* Reads a string attribute (variable or fixed length, ASCII or UTF-8) as
 * malloc'd text; NULL when absent or not a string. */
char *st_attr_get_str(hid_t loc, const char *name);

#endif
