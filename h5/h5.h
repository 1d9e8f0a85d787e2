/* h5: the project's HDF5 helpers, one home for every HDF5-generic piece.
 * Used by the shard format (store/), spectro's .h5 output (spectro/main.c)
 * and the trainer's checkpoints (train/), which follow the same conventions.
 * No other module creates, writes or reads an HDF5 attribute itself
 * (tools/check_structure.py checks it). */
#ifndef H5_H5_H
#define H5_H5_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "common/cm_err.h"

/* ---- Error printing --------------------------------------------------------
 * HDF5 prints its error stack on stderr by default; a library must not print.
 * Wrap every block of HDF5 calls: begin turns the printing off and saves the
 * caller's setting, end restores it. */
typedef struct h5_quiet {
    H5E_auto2_t fn;
    void *data;
} h5_quiet;

void h5_quiet_begin(h5_quiet *q);
void h5_quiet_end(const h5_quiet *q);

/* Right after a failed HDF5 call (before any other HDF5 call): writes the
 * cause found on HDF5's error stack into out (size n), the operating
 * system's reason when there is one ("No space left on device"), else
 * HDF5's innermost description, else "HDF5 error". Returns the errno found
 * (e.g. ENOSPC), 0 when none. */
int h5_cause(char *out, size_t n);

/* Commands that write HDF5 files (shards, checkpoints) call this once at
 * start: libhdf5 1.10 closes the files still open at exit, and closing one
 * whose flush already failed (a full disk) crashes inside the library.
 * Process-wide. */
void h5_no_close_at_exit(void);

/* ---- Types ------------------------------------------------------------------ */

/* The IEEE binary16 type (little endian); h5py reads it as float16. */
hid_t h5_half_type(void);

/* ---- Numeric attributes ----------------------------------------------------- */

/* Writes attribute `name` of n values of `type` (the file's type and the
 * memory's alike, e.g. H5T_STD_I64LE or H5T_NATIVE_DOUBLE) from v; n == 0: a
 * scalar (one value). 0 or -1. */
int h5_attr_write(hid_t loc, const char *name, hid_t type, int n, const void *v);

/* Reads attribute `name` of exactly n values (n == 0 or 1: a scalar or one
 * value) of the class of `type` (integer, float) into v, converted to type.
 * Returns 0, -1 when absent, -2 when of another size or class (a value this
 * project did not write) or unreadable. */
int h5_attr_read(hid_t loc, const char *name, hid_t type, int n, void *v);

/* Reads a one-value integer attribute (any integer type) as int64. 0, or -1
 * when absent or not one integer. */
int h5_attr_get_int(hid_t loc, const char *name, int64_t *v);

/* ---- String attributes ------------------------------------------------------
 * Strings are written FIXED-length (UTF-8, NUL-padded, the value's byte
 * length, at least 1 byte): fixed-length values are stored in the object
 * header, and reading them never enters libhdf5's global heap, whose reader
 * (1.10) trusts the sizes in the file (a damaged file overflows a heap buffer
 * or asks for gigabytes). Variable-length strings are only read from files of
 * the formats that had them (shard version 1, checkpoints before
 * format_version 2), and refused in the others: see docs/FORMAT.md. */

/* Largest declared size of a string attribute the readers allocate for. */
#define H5_STR_MAX ((size_t)16 << 20)

/* Fixed-length UTF-8 string type of len bytes (at least 1), NUL-padded. */
hid_t h5_fixed_utf8(size_t len);
/* Writes a scalar fixed-length UTF-8 string attribute. 0 or -1. */
int h5_attr_str(hid_t loc, const char *name, const char *value);
/* Writes a 1-D attribute of n fixed-length UTF-8 strings (the longest's
 * length). 0 or -1. */
int h5_attr_strs(hid_t loc, const char *name, char *const *v, int n);

/* Reads the scalar string attribute `name` of loc as malloc'd text in *out.
 * refuse_vlen: NULL accepts a variable-length string (read through the global
 * heap: legacy files only); else a variable-length string is refused before
 * anything is read, with "attribute NAME: variable-length string not accepted
 * REFUSE_VLEN" (e.g. "in format version 2"). A fixed length over H5_STR_MAX or
 * the file's size is refused before allocating. Returns 0, -1 when absent
 * ("attribute NAME: missing"), -2 when refused or unreadable. */
int h5_attr_read_str(hid_t loc, const char *name, const char *refuse_vlen, char **out, cm_err *err);

/* For a file whose integer attribute version_attr (on loc) gives its format
 * version: NULL (variable-length strings accepted: a file written before
 * fixed-length strings) when the attribute is absent or below first_fixed,
 * else the refusal words "in VERSION_ATTR N", written into buf (size n). */
const char *h5_vlen_refusal(hid_t loc, const char *version_attr, int64_t first_fixed, char *buf, size_t n);

/* Checks the string type ft of `what` (an attribute or dataset name) before a
 * read: variable length refused when refuse_vlen is not NULL (message as
 * above), fixed length over max_len bytes refused. 0 or -1. */
int h5_str_type_check(hid_t ft, const char *what, const char *refuse_vlen, size_t max_len, cm_err *err);

/* Reads a 1-D attribute of 0 to 2^20 strings (variable length refused as
 * above; together at most H5_STR_MAX bytes) into *out, a malloc'd array of
 * *n malloc'd strings and a NULL. 0, or -1 with "missing attribute NAME",
 * "attribute NAME cannot be read", ... */
int h5_attr_read_strs(hid_t loc, const char *name, const char *refuse_vlen, char ***out, int *n, cm_err *err);

/* Reads the cnt (> 0) strings, variable or fixed length, of the attribute
 * (is_attr) or dataset obj of file type ft (checked: h5_str_type_check) into
 * v[0..cnt) as malloc'd copies. Entries already copied stay in v when it
 * fails. 0 or -1. */
int h5_read_strings(hid_t obj, int is_attr, hid_t ft, size_t cnt, char **v);

/* The memory type that reads the string file type ft: the same character set
 * (HDF5 converts no string between ASCII and UTF-8), variable length, or
 * size + 1 bytes NUL-terminated. -1 on failure. */
hid_t h5_str_memtype(hid_t ft);

#endif
