/* frames: internal declarations shared by the library's files. */
#ifndef FR_INTERNAL_H
#define FR_INTERNAL_H

#include <stdint.h>

#include <libavutil/frame.h>

#include "frames/frames.h"

/* How to orient a decoded picture, as the ffmpeg program's autorotate does:
 * transpose with libavfilter's `dir` (0 cclock_flip, 1 clock, 2 cclock,
 * 3 clock_flip), horizontal / vertical flips, or (a turn that is not a
 * multiple of 90 degrees) libavfilter's `rotate` filter by theta degrees
 * clockwise (fr_rotate.c). */
typedef struct fr_orient {
    int transpose, dir, hflip, vflip;
    int rotate;
    double theta;
} fr_orient;

fr_orient fr_orient_from_matrix(const int32_t *display_matrix);
int fr_orient_is_identity(fr_orient o);

/* libavfilter's `rotate` filter with the ffmpeg program's options, in a
 * filter graph of its own (one per decoder: not shared between threads). */
typedef struct fr_rotator fr_rotator;
fr_rotator *fr_rotator_create(cm_err *err);
void fr_rotator_destroy(fr_rotator *r);
/* Rotates f clockwise by theta degrees (same size, bilinear, black corners)
 * in f's pixel format: *out is a new frame. Returns 0, 1 when the filter
 * does not take f's pixel format (*out NULL; the ffmpeg program converts to
 * rgb24 first), -1 on error. */
int fr_rotator_run(fr_rotator *r, const AVFrame *f, double theta, AVFrame **out, cm_err *err);

/* Output size for a w x h picture with the shorter side resized to short_side
 * (0: unchanged), aspect kept, rounded to the nearest pixel. */
void fr_out_size(int w, int h, int short_side, int *ow, int *oh);

/* 0 when a w x h picture is within FR_MAX_PIXELS, else -1 with the reason. */
int fr_check_size(long long w, long long h, cm_err *err);

/* Orients and converts a decoded frame to RGB24 (resizing when short_side > 0).
 * rot: needed (not NULL) when o.rotate. */
int fr_frame_to_image(const AVFrame *f, fr_orient o, fr_rotator *rot, int short_side, fr_image *img,
                      cm_err *err);

#endif
