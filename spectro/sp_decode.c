/* sp_decode: the first (best) audio stream of a media file -> mono float at a
 * target rate, with libavformat/libavcodec and one libswresample context made
 * by swr_alloc_set_opts2 with default options (as the ffmpeg program's
 * auto-inserted resampler for `-ac 1 -ar R -f f32le`), flushed at the end.
 * Reentrant: every call owns its contexts. */
#include "spectro/spectro.h"

#include "common/cm_file.h"
#include "common/cm_media.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

void sp_set_ffmpeg_log(int verbose) { av_log_set_level(verbose ? AV_LOG_WARNING : AV_LOG_QUIET); }

/* Longest declared duration reserved before decoding (10 min: 38 MB at 16 kHz). */
#define SP_RESERVE_MAX_S 600

typedef struct dec_state {
    AVFormatContext *fmt;
    AVCodecContext *cc;
    SwrContext *swr;
    AVPacket *pkt;
    AVFrame *frame;
    /* input parameters the current swr was made for */
    int in_format, in_rate;
    AVChannelLayout in_layout;
    int rate;    /* output rate */
    float *buf;  /* output samples */
    size_t n, cap;
    const sp_read_opts *opts;
    char cut_why[160];
} dec_state;

static const char *averr(int e, char *b, size_t n)
{
    if (av_strerror(e, b, n) < 0)
        snprintf(b, n, "error %d", e);
    return b;
}

static int reserve(dec_state *d, size_t extra, cm_err *err)
{
    if (d->n + extra <= d->cap)
        return 0;
    size_t cap = d->cap ? d->cap : 1 << 16;
    while (cap < d->n + extra)
        cap *= 2;
    float *b = realloc(d->buf, cap * sizeof *b);
    if (!b)
        return cm_err_set(err, "out of memory (%zu samples)", cap);
    d->buf = b;
    d->cap = cap;
    return 0;
}

/* Drains the resampler's delay into the buffer. */
static int swr_flush(dec_state *d, cm_err *err)
{
    if (!d->swr)
        return 0;
    for (;;) {
        int need = swr_get_out_samples(d->swr, 0);
        if (need <= 0)
            break;
        if (reserve(d, (size_t)need, err) != 0)
            return -1;
        uint8_t *dst = (uint8_t *)(d->buf + d->n);
        int got = swr_convert(d->swr, &dst, need, NULL, 0);
        if (got < 0) {
            char b[128];
            return cm_err_set(err, "resampler: %s", averr(got, b, sizeof b));
        }
        if (got == 0)
            break;
        d->n += (size_t)got;
    }
    return 0;
}

static int push_frame(dec_state *d, const AVFrame *f, cm_err *err)
{
    char b[128];
    AVChannelLayout lay = {0};
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || !av_channel_layout_check(&f->ch_layout))
        av_channel_layout_default(&lay, f->ch_layout.nb_channels); /* decoder gave only a count */
    else if (av_channel_layout_copy(&lay, &f->ch_layout) < 0)
        return cm_err_set(err, "out of memory");
    if (lay.nb_channels <= 0 || f->sample_rate <= 0) {
        av_channel_layout_uninit(&lay);
        return cm_err_set(err, "decoder gave audio without channels or rate");
    }
    if (d->swr && (d->in_format != f->format || d->in_rate != f->sample_rate ||
                   av_channel_layout_compare(&d->in_layout, &lay) != 0)) {
        /* parameters changed mid-stream: finish the old conversion, start a new one */
        if (swr_flush(d, err) != 0) {
            av_channel_layout_uninit(&lay);
            return -1;
        }
        swr_free(&d->swr);
        av_channel_layout_uninit(&d->in_layout);
    }
    if (!d->swr) {
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
        int e = swr_alloc_set_opts2(&d->swr, &mono, AV_SAMPLE_FMT_FLT, d->rate, &lay,
                                    (enum AVSampleFormat)f->format, f->sample_rate, 0, NULL);
        if (e >= 0)
            e = swr_init(d->swr);
        if (e < 0) {
            av_channel_layout_uninit(&lay);
            swr_free(&d->swr);
            return cm_err_set(err, "cannot convert %s %d Hz %d-channel audio: %s",
                              av_get_sample_fmt_name((enum AVSampleFormat)f->format)
                                  ? av_get_sample_fmt_name((enum AVSampleFormat)f->format)
                                  : "?",
                              f->sample_rate, lay.nb_channels, averr(e, b, sizeof b));
        }
        d->in_format = f->format;
        d->in_rate = f->sample_rate;
        d->in_layout = lay;
    } else {
        av_channel_layout_uninit(&lay);
    }
    int need = swr_get_out_samples(d->swr, f->nb_samples);
    if (need < 0)
        return cm_err_set(err, "resampler: %s", averr(need, b, sizeof b));
    if (reserve(d, (size_t)need, err) != 0)
        return -1;
    uint8_t *dst = (uint8_t *)(d->buf + d->n);
    int got = swr_convert(d->swr, &dst, need, (const uint8_t **)f->extended_data, f->nb_samples);
    if (got < 0)
        return cm_err_set(err, "resampler: %s", averr(got, b, sizeof b));
    d->n += (size_t)got;
    return 0;
}

/* Receives every frame the decoder has ready. */
static int drain(dec_state *d, cm_err *err)
{
    char b[128];
    for (;;) {
        int e = avcodec_receive_frame(d->cc, d->frame);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF)
            return 0;
        if (e < 0)
            return cm_err_set(err, "corrupt audio data: %s", averr(e, b, sizeof b));
        e = push_frame(d, d->frame, err);
        av_frame_unref(d->frame);
        if (e != 0)
            return -1;
    }
}

/* Truncation (common/cm_media.h): the decoded audio against the duration the
 * file declares for the audio stream and against the end of the requested
 * segment. A file whose reading stopped early (a cut packet, a read error)
 * but whose audio is not short by the margin still fails, with that reason,
 * unless truncation is allowed. */
static int check_coverage(dec_state *d, const AVStream *stream, const char *cut, cm_err *err)
{
    const sp_read_opts *o = d->opts;
    double got = (double)d->n / d->rate;
    cm_trunc t;
    double declared = cm_av_declared_duration(d->fmt, stream);
    cm_trunc_check(got, declared, &t);
    if (t.truncated && !cm_trunc_check(got + cm_av_start_offset(stream), declared, NULL))
        t.truncated = 0; /* the declared figure is an end time (cm_av_start_offset) */
    if (!t.truncated && o->end > o->start && o->start >= got) /* nothing of the segment: not a cut file */
        return cm_err_set(err, "empty segment [%g, %g) s of %.3f s of audio", o->start, o->end, got);
    if (!t.truncated && o->end > o->start && o->end >= 0) {
        cm_trunc seg;
        if (cm_trunc_check(got, o->end, &seg))
            t = seg;
    }
    if (o->truncation)
        *o->truncation = t;
    if (o->allow_truncated)
        return 0;
    if (t.truncated)
        return cm_trunc_error(&t, err);
    return cut ? cm_err_set(err, "%s", cut) : 0;
}

static int decode_all(dec_state *d, const char *path, cm_err *err)
{
    char b[128];
    struct stat st;
    if (stat(path, &st) != 0)
        return cm_err_set(err, "%s", errno == ENOENT ? "no such file" : strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cm_err_set(err, "is a directory");
    if (cm_check_regular(path, err) != 0) /* a FIFO or device: refused, not waited on */
        return -1;
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return cm_err_set(err, "empty file");

    int e = avformat_open_input(&d->fmt, path, NULL, NULL);
    if (e < 0) {
        if (e == AVERROR_INVALIDDATA)
            return cm_err_set(err, "not a media file, or truncated or corrupt (%s)", averr(e, b, sizeof b));
        return cm_err_set(err, "cannot open: %s", averr(e, b, sizeof b));
    }
    e = avformat_find_stream_info(d->fmt, NULL);
    if (e < 0)
        return cm_err_set(err, "cannot read stream information: %s", averr(e, b, sizeof b));
    const AVCodec *dec = NULL;
    int si = av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &dec, 0);
    if (si == AVERROR_STREAM_NOT_FOUND)
        return cm_err_set(err, "no audio stream");
    if (si < 0 || !dec) {
        int idx = si >= 0 ? si : av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
        const char *name = idx >= 0 ? avcodec_get_name(d->fmt->streams[idx]->codecpar->codec_id) : "?";
        return cm_err_set(err, "no decoder for the audio codec %s", name);
    }
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != si)
            d->fmt->streams[i]->discard = AVDISCARD_ALL;
    AVStream *stream = d->fmt->streams[si];

    d->cc = avcodec_alloc_context3(dec);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->cc || !d->pkt || !d->frame)
        return cm_err_set(err, "out of memory");
    e = avcodec_parameters_to_context(d->cc, stream->codecpar);
    if (e < 0)
        return cm_err_set(err, "bad audio codec parameters: %s", averr(e, b, sizeof b));
    d->cc->pkt_timebase = stream->time_base;
    e = avcodec_open2(d->cc, dec, NULL);
    if (e < 0)
        return cm_err_set(err, "cannot open the %s decoder: %s", dec->name, averr(e, b, sizeof b));

    /* room for the declared duration up front: no reallocation on the way
     * (a header's claim decides at most SP_RESERVE_MAX_S; beyond, the buffer
     * grows with the samples actually decoded) */
    double dur = stream->duration != AV_NOPTS_VALUE && stream->duration > 0
                     ? (double)stream->duration * av_q2d(stream->time_base)
                     : d->fmt->duration > 0 ? (double)d->fmt->duration / AV_TIME_BASE : 0;
    if (dur > 0 && dur < SP_RESERVE_MAX_S && reserve(d, (size_t)(dur * d->rate * 1.01) + 16384, err) != 0)
        return -1;

    const char *cut = NULL; /* why reading stopped before the end of the file */
    for (;;) {
        e = av_read_frame(d->fmt, d->pkt);
        if (e == AVERROR_EOF)
            break;
        if (e < 0) {
            snprintf(d->cut_why, sizeof d->cut_why, "truncated or unreadable file: %s", averr(e, b, sizeof b));
            cut = d->cut_why;
            break;
        }
        if (d->pkt->stream_index != si) {
            av_packet_unref(d->pkt);
            continue;
        }
        if (d->pkt->flags & AV_PKT_FLAG_CORRUPT) {
            av_packet_unref(d->pkt);
            cut = "truncated or corrupt audio packet";
            break;
        }
        e = avcodec_send_packet(d->cc, d->pkt);
        av_packet_unref(d->pkt);
        if (e < 0 && e != AVERROR(EAGAIN))
            return cm_err_set(err, "corrupt audio data: %s", averr(e, b, sizeof b));
        if (drain(d, err) != 0)
            return -1;
    }
    e = avcodec_send_packet(d->cc, NULL);
    if (e < 0 && e != AVERROR_EOF)
        return cm_err_set(err, "corrupt audio data: %s", averr(e, b, sizeof b));
    if (drain(d, err) != 0 || swr_flush(d, err) != 0)
        return -1;
    if (d->n == 0)
        return cut ? cm_err_set(err, "%s", cut) : cm_err_set(err, "zero-length audio (no samples decoded)");
    return check_coverage(d, stream, cut, err);
}

int sp_decode_audio(const char *path, int sample_rate, const sp_read_opts *opts, float **samples, size_t *n,
                    cm_err *err)
{
    static const sp_read_opts defaults = {.end = -1};
    *samples = NULL;
    *n = 0;
    if (!opts)
        opts = &defaults;
    if (opts->truncation)
        memset(opts->truncation, 0, sizeof *opts->truncation);
    if (sample_rate <= 0)
        return cm_err_set(err, "bad sample rate %d", sample_rate);
    dec_state d = {.rate = sample_rate, .opts = opts};
    int rc = decode_all(&d, path, err);
    swr_free(&d.swr);
    av_channel_layout_uninit(&d.in_layout);
    av_frame_free(&d.frame);
    av_packet_free(&d.pkt);
    avcodec_free_context(&d.cc);
    avformat_close_input(&d.fmt);
    if (rc != 0) {
        free(d.buf);
        return -1;
    }
    *samples = d.buf;
    *n = d.n;
    return 0;
}
