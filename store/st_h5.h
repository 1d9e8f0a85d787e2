/* st_h5: the project's HDF5 helpers (one home: store owns every HDF5 helper).
 * Used by the shard format (store/) and the trainer's checkpoints (train/),
 * which follow the same conventions. */
#ifndef ST_H5_H
#define ST_H5_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "common/cm_err.h"

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

/* ---- Integer and string attributes -------------------------------------- */

/* Reads a one-value integer attribute (any integer type) as int64. 0, or -1
 * when absent or not one integer. */
int st_attr_get_int(hid_t loc, const char *name, int64_t *v);

/* Strings are written FIXED-length (UTF-8, NUL-padded, the value's byte
 * length, at least 1 byte): fixed-length values are stored in the object
 * header, and reading them never enters libhdf5's global heap, whose reader
 * (1.10) trusts the sizes in the file (a damaged file overflows a heap buffer
 * or asks for gigabytes). Variable-length strings are only read from files of
 * the formats that had them (shard version 1, checkpoints before
 * format_version 2): see docs/FORMAT.md. */

/* Largest declared size of a string attribute the readers allocate for. */
#define ST_STR_MAX ((size_t)16 << 20)

/* Fixed-length UTF-8 string type of len bytes (at least 1), NUL-padded. */
hid_t st_fixed_utf8(size_t len);
/* Writes a scalar fixed-length UTF-8 string attribute. 0 or -1. */
int st_attr_str(hid_t loc, const char *name, const char *value);
/* Writes a 1-D attribute of n fixed-length UTF-8 strings (the longest's
 * length). 0 or -1. */
int st_attr_strs(hid_t loc, const char *name, char *const *v, int n);

/* Reads the scalar string attribute `name` of loc as malloc'd text in *out.
 * refuse_vlen: NULL accepts a variable-length string (read through the global
 * heap: legacy files only); else a variable-length string is refused before
 * anything is read, with "attribute NAME: variable-length string not accepted
 * REFUSE_VLEN" (e.g. "in format version 2"). A fixed length over ST_STR_MAX or
 * the file's size is refused before allocating. Returns 0, -1 when absent
 * ("attribute NAME: missing"), -2 when refused or unreadable. */
int st_attr_read_str(hid_t loc, const char *name, const char *refuse_vlen, char **out, cm_err *err);

/* For a file whose integer attribute version_attr (on loc) gives its format
 * version: NULL (variable-length strings accepted: a file written before
 * fixed-length strings) when the attribute is absent or below first_fixed,
 * else the refusal words "in VERSION_ATTR N", written into buf (size n). */
const char *st_vlen_refusal(hid_t loc, const char *version_attr, int64_t first_fixed, char *buf, size_t n);

/* Checks the string type ft of `what` (an attribute or dataset name) before a
 * read: variable length refused when refuse_vlen is not NULL (message as
 * above), fixed length over max_len bytes refused. 0 or -1. */
int st_str_type_check(hid_t ft, const char *what, const char *refuse_vlen, size_t max_len, cm_err *err);

#endif
