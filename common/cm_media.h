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
#include <stdint.h>

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
 * else the container's duration; else -1. Only what the file declares
 * counts: a duration libavformat estimated from the bitrate (the file's and
 * the streams' it fills in: AVFMT_DURATION_FROM_BITRATE, e.g. a VBR MP3
 * without a Xing header, concatenated ADTS AAC) is never a declared one. */
double cm_av_declared_duration(const struct AVFormatContext *fmt, const struct AVStream *st);
/* Seconds from timestamp 0 to the stream's first timestamp (0 when unknown
 * or negative). Files with a start offset declare either a length or an end
 * time (Matroska's DURATION tag and Duration are end times): callers count
 * media as truncated only when it is short under both readings. */
double cm_av_start_offset(const struct AVStream *st);

/* The file's clock, one definition for sound and picture (spectro, frames,
 * ingest): every time in the project is presentation time counted from the
 * file's start time, AVFormatContext.start_time (the earliest first
 * timestamp of its streams), as the ffmpeg program counts -ss, -t and -to
 * (it shifts every timestamp by -start_time unless -copyts). A stream that
 * starts later than the file starts that much after time 0.
 * Returns what to add to a timestamp of st (in st->time_base) to get file
 * time in the same unit: -start_time rescaled (rounded to nearest), 0 when
 * the file has no start time. */
int64_t cm_av_clock_offset(const struct AVFormatContext *fmt, const struct AVStream *st);

/* The readable end of the file at `path` on its clock, seconds: the end
 * (timestamp + duration) of the last complete packet of any of its streams,
 * read from the start without decoding; -1 when it cannot be read. A stream
 * that falls short of its declared length while the file goes on (audio
 * that ends before the video; an AVI whose header counts empty chunks) was
 * not cut: spectro and frames ask this before calling a stream truncated,
 * and only then (a cut file is read to its cut, a complete one to its end). */
double cm_av_file_end(const char *path);

/* The one truncation verdict for a stream (spectro's audio, frames' video):
 * got_s = how much of stream st was decoded or is readable, from its first
 * timestamp; first_s = where that first timestamp is on the file's clock.
 * Short of the declared duration (cm_av_declared_duration) by more than the
 * margin, read as a length and as an end time (cm_av_start_offset), and the
 * file's readable end (cm_av_file_end of path) short too: truncated. Fills t
 * (expected_s: the declared duration) and returns t->truncated. */
int cm_trunc_stream(const char *path, const struct AVFormatContext *fmt, const struct AVStream *st, double got_s,
                    double first_s, cm_trunc *t);

#endif
