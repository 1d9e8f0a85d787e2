/* store: the per-sample checksums (zlib's CRC-32; docs/FORMAT.md, "Checksums"). */
#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "store/st_internal.h"

uint32_t st_crc(uint32_t crc, const void *p, size_t n)
{
    const Bytef *b = p;
    uLong c = crc;
    while (n > 0) {
        uInt step = n > UINT_MAX ? UINT_MAX : (uInt)n;
        c = crc32(c, b, step);
        b += step;
        n -= step;
    }
    return (uint32_t)c;
}

uint32_t st_crc_record_head(const char *id, int32_t label, const float seg[2], const float *frame_time, int F,
                            const size_t *jpeg_len)
{
    uint32_t c = st_crc(0, id, strlen(id) + 1);
    c = st_crc(c, &label, sizeof label);
    c = st_crc(c, seg, 2 * sizeof *seg);
    if (F > 0)
        c = st_crc(c, frame_time, (size_t)F * sizeof *frame_time);
    for (int k = 0; k < F; k++) {
        uint64_t l = jpeg_len[k];
        c = st_crc(c, &l, sizeof l);
    }
    return c;
}
