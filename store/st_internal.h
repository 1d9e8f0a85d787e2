/* store: helpers shared by the writer and the reader (not public). */
#ifndef ST_INTERNAL_H
#define ST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "h5/h5.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store reads and writes little-endian raw bytes: a little-endian host is required"
#endif


/* ---- Checksums (docs/FORMAT.md, "Checksums"): zlib's CRC-32 ---- */

/* CRC-32 of n bytes continuing crc (0 to start). */
uint32_t st_crc(uint32_t crc, const void *p, size_t n);
/* The record checksum up to the JPEG bytes: id and a NUL, label (int32 LE),
 * segment (2 float32 LE), frame_time (F float32 LE), the F JPEG lengths
 * (uint64 LE). Continue it over the F JPEGs' bytes in order. */
uint32_t st_crc_record_head(const char *id, int32_t label, const float seg[2], const float *frame_time, int F,
                            const size_t *jpeg_len);

#endif
