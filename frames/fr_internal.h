/* frames: internal declarations shared by the library's files. */
#ifndef FR_INTERNAL_H
#define FR_INTERNAL_H

#include <stdint.h>

#include <libavutil/frame.h>

#include "frames/frames.h"

/* How to orient a decoded picture, as the ffmpeg program's autorotate does:
 * transpose with libavfilter's `dir` (0 cclock_flip, 1 clock, 2 cclock,
 * 3 clock_flip), or horizontal / vertical flips. */
typedef struct fr_orient {
    int transpose, dir, hflip, vflip;
    /* A rotation that is not a multiple of 90 degrees: the ffmpeg program
     * inserts its `rotate` filter (interpolation, black corners), which this
     * library does not reproduce: such a picture is refused (fr_orient_check).
     * matrix_deg: the matrix's own angle (counter-clockwise, as ffprobe shows
     * it, rounded to a degree); 0 for the multiples of 90. */
    int unsupported, matrix_deg;
} fr_orient;

fr_orient fr_orient_from_matrix(const int32_t *display_matrix);
int fr_orient_is_identity(fr_orient o);
/* 0, or -1 naming the angle when o is a rotation that is not a multiple of 90 degrees. */
int fr_orient_check(fr_orient o, cm_err *err);

/* Output size for a w x h picture with the shorter side resized to short_side
 * (0: unchanged), aspect kept, rounded to the nearest pixel. */
void fr_out_size(int w, int h, int short_side, int *ow, int *oh);

/* 0 when a w x h picture is within FR_MAX_PIXELS, else -1 with the reason. */
int fr_check_size(long long w, long long h, cm_err *err);

/* Orients and converts a decoded frame to RGB24 (resizing when short_side > 0). */
int fr_frame_to_image(const AVFrame *f, fr_orient o, int short_side, fr_image *img, cm_err *err);

#endif
