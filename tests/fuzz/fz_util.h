/* Shared by the fuzz targets: put the fuzzer's bytes into a real file, since
 * every API under test reads paths (as the commands do). Each process gets its
 * own private folder under $TMPDIR, removed at exit. Test code: a static path
 * buffer is fine here (one libFuzzer process runs one input at a time). */
#ifndef FZ_UTIL_H
#define FZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The process's scratch folder (created on first use; aborts when it cannot be). */
const char *fz_dir(void);
/* Writes data[0..n) to fz_dir()/name and returns the full path (static buffer
 * per call site is not needed: the result is copied into out). */
void fz_write(const char *name, const uint8_t *data, size_t n, char *out, size_t out_n);

#endif
