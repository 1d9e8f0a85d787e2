/* cm_file: outputs that appear whole or not at all.
 *
 * Every output file of the project is written under a temporary name in the
 * same folder (".<name>.tmp.XXXXXX") and renamed over the final name only
 * once complete and flushed, so a crash never leaves a file that looks whole.
 */
#ifndef CM_FILE_H
#define CM_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "common/cm_err.h"

#define CM_PATH_MAX 4096

typedef struct cm_atomic {
    char final_path[CM_PATH_MAX];
    char tmp_path[CM_PATH_MAX];
    FILE *fp; /* open for writing "wb" between open and commit/abort */
} cm_atomic;

/* Creates an empty file with a unique temporary name beside `final_path`
 * (".<name>.tmp.XXXXXX") and writes its path into out (size n). For
 * libraries that open files by name (HDF5): truncate and write that path,
 * then cm_rename_commit(), or unlink() it on failure. */
int cm_tmp_path(char *out, size_t n, const char *final_path, cm_err *err);

/* Removes the temporaries cm_tmp_path made for `final_path` (".<name>.tmp."
 * and six letters or digits, beside it) that a killed process left behind.
 * Only for a file no other process is writing. Returns how many it removed,
 * or -1 (err set) when one could not be removed or the folder not read. */
int cm_remove_stale_tmp(const char *final_path, cm_err *err);

/* fsyncs the file at tmp_path and renames it over final_path. */
int cm_rename_commit(const char *tmp_path, const char *final_path, cm_err *err);

/* Opens a temporary file for final_path; write to a->fp. */
int cm_atomic_open(cm_atomic *a, const char *final_path, cm_err *err);
/* Flushes, fsyncs, closes and renames. On failure the temporary is removed. */
int cm_atomic_commit(cm_atomic *a, cm_err *err);
/* Closes and removes the temporary file. Safe to call after a failed commit. */
void cm_atomic_abort(cm_atomic *a);

/* Writes `n` bytes to final_path atomically. */
int cm_write_file_atomic(const char *final_path, const void *data, size_t n, cm_err *err);

/* Every file the project reads is first checked to be a regular file
 * (opened with O_NONBLOCK, then fstat: a FIFO, device, socket or directory
 * is refused at once instead of blocking or reading without end) and read
 * with a size limit that fits what it is. */
#define CM_READ_MAX ((size_t)64 << 20) /* cm_read_file's limit: JSON and text inputs */

/* Reads a whole regular file of at most max_bytes into a malloc'd buffer
 * (NUL-terminated; *n excludes the NUL). Refused with "PATH: not a regular
 * file (a FIFO)", "PATH: N bytes, more than the M this file may hold", or the
 * OS reason. */
int cm_read_regular(const char *path, size_t max_bytes, char **data, size_t *n, cm_err *err);
/* cm_read_regular with max_bytes = CM_READ_MAX. */
int cm_read_file(const char *path, char **data, size_t *n, cm_err *err);
/* 0 when path is a regular file (checked as cm_read_regular does, without
 * blocking on a FIFO), else -1 with err "no such file", "not a regular file
 * (a FIFO)" or the OS reason, WITHOUT the path (the caller names the file).
 * For inputs opened by a library (FFmpeg, HDF5). */
int cm_check_regular(const char *path, cm_err *err);

/* mkdir -p. */
int cm_mkdirs(const char *path, cm_err *err);

/* 1 when path exists and is a regular file, 0 otherwise. */
int cm_is_file(const char *path);
/* 1 when path exists and is a directory. */
int cm_is_dir(const char *path);

/* Last path component without the extension ("a/b/clip.mp4" -> "clip"). */
void cm_basename_noext(char *out, size_t n, const char *path);
/* 1 when path ends with suffix (case-insensitive). */
int cm_has_suffix(const char *path, const char *suffix);

#endif
