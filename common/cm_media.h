/* cm_media: what "truncated" means for a media file, shared by spectro (audio)
 * and frames (video), and the duration a file declares for one of its streams.
 *
 * Policy: decoded media that ends more than max(CM_TRUNC_MIN_S, CM_TRUNC_FRAC x
 * expected) before the expected end is truncated. The expected end is what the
 * file declares for the stream (cm_av_declared_duration), or the end of the
 * requested segment when that is later. The margin absorbs what is imprecise
 * in complete files: encoder priming and padding (tens of ms), the last
 * frame's unknown duration in variable-frame-rate video, a container duration
 * that is the longest of its streams, durations rounded in headers. A cut file
 * (a download or copy stopped early) misses far more, typically most of it.
 */
#ifndef CM_MEDIA_H
#define CM_MEDIA_H

#include <stddef.h>

#include "common/cm_err.h"

#define CM_TRUNC_MIN_S 0.5
#define CM_TRUNC_FRAC 0.05

/* The coverage of one stream of one file. */
typedef struct cm_trunc {
    int measured;       /* 1 when both figures below are known */
    int truncated;      /* 1 when decoded_s falls short of expected_s by more than the margin */
    double decoded_s;   /* seconds of media decoded (audio) or readable (video), from the stream's start */
    double expected_s;  /* seconds the file declares (or the end of the requested segment) */
} cm_trunc;

/* Fills t and returns t->truncated. expected_s <= 0: unknown, never truncated. */
int cm_trunc_check(double decoded_s, double expected_s, cm_trunc *t);
/* "truncated: decoded 1.96 s of 8.17 s" into buf. */
void cm_trunc_format(const cm_trunc *t, char *buf, size_t n);
/* The same message into err; returns -1. */
int cm_trunc_error(const cm_trunc *t, cm_err *err);

struct AVFormatContext;
struct AVStream;
/* Seconds the file declares for stream st (no decoding, no reading): the
 * longest of the stream's duration, its DURATION tag (Matroska/WebM), its
 * header frame count (AVI: dwLength in time-base units, which libavformat
 * keeps even when it recomputes the duration of a file without index);
 * else the container's duration unless estimated from the bitrate; else -1. */
double cm_av_declared_duration(const struct AVFormatContext *fmt, const struct AVStream *st);
/* Seconds from timestamp 0 to the stream's first timestamp (0 when unknown
 * or negative). Files with a start offset declare either a length or an end
 * time (Matroska's DURATION tag and Duration are end times): callers count
 * media as truncated only when it is short under both readings. */
double cm_av_start_offset(const struct AVStream *st);

#endif
