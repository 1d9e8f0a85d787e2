/* cm_media: truncation policy and declared durations (see cm_media.h). */
#include "common/cm_media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavformat/avformat.h>
#include <libavutil/dict.h>

int cm_trunc_check(double decoded_s, double expected_s, cm_trunc *t)
{
    cm_trunc r = {.measured = expected_s > 0, .decoded_s = decoded_s, .expected_s = expected_s};
    if (r.measured) {
        double margin = CM_TRUNC_FRAC * expected_s;
        if (margin < CM_TRUNC_MIN_S)
            margin = CM_TRUNC_MIN_S;
        r.truncated = expected_s - decoded_s > margin;
    }
    if (t)
        *t = r;
    return r.truncated;
}

void cm_trunc_format(const cm_trunc *t, char *buf, size_t n)
{
    snprintf(buf, n, "truncated: decoded %.2f s of %.2f s", t->decoded_s > 0 ? t->decoded_s : 0.0, t->expected_s);
}

int cm_trunc_error(const cm_trunc *t, cm_err *err)
{
    char b[96];
    cm_trunc_format(t, b, sizeof b);
    return cm_err_set(err, "%s", b);
}

/* "HH:MM:SS.fraction" as Matroska's DURATION tag is written; -1 if not that. */
static double parse_hms(const char *s)
{
    unsigned h, m;
    double sec;
    char tail;
    if (sscanf(s, "%u:%u:%lf%c", &h, &m, &sec, &tail) != 3 || m >= 60 || !(sec >= 0 && sec < 61))
        return -1;
    return h * 3600.0 + m * 60.0 + sec;
}

double cm_av_declared_duration(const AVFormatContext *fmt, const AVStream *st)
{
    double d = -1, tb = av_q2d(st->time_base);
    /* When libavformat estimates the duration from the bitrate, no stream
     * declared one (has_duration() was false) and it has filled every
     * stream's duration with the same estimate: none of them counts. */
    int estimated = fmt->duration_estimation_method == AVFMT_DURATION_FROM_BITRATE;
    if (!estimated && st->duration != AV_NOPTS_VALUE && st->duration > 0)
        d = (double)st->duration * tb;
    if (fmt->iformat && !strcmp(fmt->iformat->name, "avi") && st->nb_frames > 0 && st->nb_frames * tb > d)
        d = (double)st->nb_frames * tb;
    const AVDictionaryEntry *e = av_dict_get(st->metadata, "DURATION", NULL, 0);
    double tag = e ? parse_hms(e->value) : -1;
    if (tag > d)
        d = tag;
    if (d <= 0 && fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0 &&
        !estimated)
        d = (double)fmt->duration / AV_TIME_BASE;
    return d > 0 ? d : -1;
}

double cm_av_start_offset(const AVStream *st)
{
    if (st->start_time == AV_NOPTS_VALUE || st->start_time <= 0)
        return 0;
    return (double)st->start_time * av_q2d(st->time_base);
}

int64_t cm_av_clock_offset(const AVFormatContext *fmt, const AVStream *st)
{
    if (fmt->start_time == AV_NOPTS_VALUE)
        return 0;
    return av_rescale_q(-fmt->start_time, AV_TIME_BASE_Q, st->time_base);
}

double cm_av_file_end(const char *path)
{
    AVFormatContext *fmt = NULL;
    if (avformat_open_input(&fmt, path, NULL, NULL) < 0)
        return -1;
    double end = -1;
    AVPacket *pkt = avformat_find_stream_info(fmt, NULL) >= 0 ? av_packet_alloc() : NULL;
    while (pkt && av_read_frame(fmt, pkt) >= 0) {
        int64_t t = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
        if (t != AV_NOPTS_VALUE && !(pkt->flags & AV_PKT_FLAG_CORRUPT)) {
            const AVStream *st = fmt->streams[pkt->stream_index];
            double e = (double)(t + pkt->duration + cm_av_clock_offset(fmt, st)) * av_q2d(st->time_base);
            if (e > end)
                end = e;
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    avformat_close_input(&fmt);
    return end;
}

static int short_of(const AVStream *st, double got, double declared)
{
    return cm_trunc_check(got, declared, NULL) && cm_trunc_check(got + cm_av_start_offset(st), declared, NULL);
}

int cm_trunc_stream(const char *path, const AVFormatContext *fmt, const AVStream *st, double got_s, double first_s,
                    cm_trunc *t)
{
    double declared = cm_av_declared_duration(fmt, st);
    cm_trunc_check(got_s, declared, t);
    if (t->truncated && !short_of(st, got_s, declared))
        t->truncated = 0; /* the declared figure is an end time */
    if (t->truncated && !short_of(st, cm_av_file_end(path) - first_s, declared))
        t->truncated = 0; /* the stream ends early, the file goes on: not a cut file */
    return t->truncated;
}
