/* frames: pick F frames of a video by timestamp, decode exactly, encode JPEG.
 *
 * Public API used by the `frames` command and by `ingest`. Reentrant: each
 * call opens its own decoder; a fr_jpeg encoder is per thread.
 */
#ifndef FRAMES_H
#define FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"
#include "common/cm_media.h"

#define FR_MAX_FRAMES 64
/* Largest picture accepted, in pixels (width x height), for a decoded video
 * frame, a resized output and a decoded JPEG: 8192 x 4320 (8K), 106 MB as
 * RGB24. A file whose header declares more is refused before anything of
 * that size is allocated ("frame size 30000x30000 is over the limit ..."). */
#define FR_MAX_PIXELS (8192LL * 4320LL)

typedef struct fr_image {
    int width, height;   /* after rotation and optional resize */
    uint8_t *rgb;        /* malloc'd, height * width * 3, row-major RGB24 */
    double pts;          /* presentation time (seconds from the start, as ffmpeg -ss counts) of the decoded frame */
    double time;         /* the time that was asked for (seconds) */
} fr_image;

typedef struct fr_request {
    int count;           /* F: centres of F equal parts of [start, end) (or of the clip) */
    double start, end;   /* segment in seconds; end <= start: the whole clip */
    const double *at;    /* explicit times (overrides count/segment) when n_at > 0 */
    int n_at;
    int short_side;      /* resize so the shorter side is this (0: original size) */
    int threads;         /* decoder threads (0 or 1: one; the callers parallelise over files) */
    int flags;           /* FR_* below; 0 for the defaults */
    int allow_truncated; /* 1: a truncated file is kept (frames from its readable part) */
    cm_trunc *truncation;/* out, optional: the video's coverage (see below) */
    int *decoded;        /* out, optional: frames the decoder returned (skipped ones are not) */
} fr_request;

/* Do not skip non-reference frames on the way to a target (slower; for checks). */
#define FR_NO_SKIP 1

/* Chooses times, seeks and decodes.
 * Times are seconds from the file's start time (ffmpeg -ss counting). The
 * frame for time T is the one `ffmpeg -i IN -ss T -frames:v 1` returns: the
 * first frame in display order whose timestamp (best-effort, start time
 * removed) is >= T rounded to the stream time base; past the last frame, the
 * last frame. The clip for --count is [0, end of the video stream). Rotation
 * (display matrix) is applied as ffmpeg's autorotate (transpose and flips; other angles with
 * libavfilter's rotate filter, as the program inserts it); conversion to RGB24 is
 * libswscale bicubic with the frame's colour matrix and range: identical to
 * `ffmpeg -pix_fmt rgb24` bit for bit (checked by tests/oracle/test_frames.py).
 * Only frames no other frame references are skipped on the way, and a
 * target's reorder window is drained rather than decoded when the next
 * target is reached by a seek anyway (fr_extract.c). images are
 * returned in the order of the request (not sorted).  images[0..*n_out) are filled (free each
 * with fr_image_free). Errors: missing file, not media, no video stream, no
 * decodable frame, truncated. err->msg does not include the path.
 * Truncation (common/cm_media.h): the end of the last readable video packet
 * against the duration the file declares for the video stream and, with
 * count over a segment, against the segment's end. A truncated file fails
 * ("truncated: decoded 1.96 s of 8.17 s") unless allow_truncated; then the
 * clip for count is the readable part, and *truncation (when not NULL) says
 * by how much, so that the caller can warn. */
int fr_extract(const char *path, const fr_request *req, fr_image *images, int *n_out, cm_err *err);
void fr_image_free(fr_image *img);

/* The times fr_extract would aim at for a clip of `duration` seconds
 * (centres of F equal parts of the segment or clip). */
void fr_uniform_times(int count, double start, double end, double duration, double *times);

typedef struct fr_jpeg fr_jpeg;
fr_jpeg *fr_jpeg_create(cm_err *err);
void fr_jpeg_destroy(fr_jpeg *j);
/* Encodes RGB24 as JPEG (4:2:0, quality 1..100). *out is malloc'd (free()). */
int fr_jpeg_encode(fr_jpeg *j, const fr_image *img, int quality, uint8_t **out, size_t *n, cm_err *err);
/* Decodes a JPEG of n bytes to RGB24 (TurboJPEG, default DCT) into *rgb, a
 * buffer of *cap bytes reused across calls: realloc'd (and *cap updated) when
 * the picture needs more; free() it at the end. The size in the header is
 * checked against FR_MAX_PIXELS before anything is allocated. *w, *h: the
 * picture's size. Errors: "not a JPEG (...)", "JPEG: frame size WxH is over
 * the limit of N pixels", "corrupt JPEG (...)" (TurboJPEG warnings count). */
int fr_jpeg_decode(fr_jpeg *j, const uint8_t *jpeg, size_t n, uint8_t **rgb, size_t *cap, int *w, int *h,
                   cm_err *err);

#endif
