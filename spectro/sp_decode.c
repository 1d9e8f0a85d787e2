/* sp_decode: the first (best) audio stream of a media file -> mono float at a
 * target rate, with libavformat/libavcodec and one libswresample context made
 * by swr_alloc_set_opts2 with default options (as the ffmpeg program's
 * auto-inserted resampler for `-ac 1 -ar R -f f32le`), flushed at the end.
 *
 * The clock (common/cm_media.h, cm_av_clock_offset): sample 0 of the output
 * is the file's time 0. The first decoded frame's timestamp, shifted to the
 * file's clock and rescaled to the input rate (P samples, as the ffmpeg
 * program rescales it for its filters), places the audio: P > 0 (audio that
 * starts after the file, e.g. after its video) feeds P input samples of
 * silence to the resampler before the first frame; P < 0 (audio before the
 * file's start) drops the first -P x rate / in_rate output samples. This is
 * what `ffmpeg -af aresample=async=1:first_pts=0:min_comp=0` does (its swr
 * injects the silence or drops the output); later frames follow without
 * gaps, as the ffmpeg program without -async (a later timestamp jump is not
 * filled).
 *
 * Memory: with opts->keep, only the samples of the segment are kept and
 * decoding stops once they are all out; the rest of the file is then only
 * demuxed (no decoding) to measure its length for the truncation check.
 * Reentrant: every call owns its contexts. */
#include "spectro/spectro.h"

#include "common/cm_file.h"
#include "common/cm_media.h"
#include "spectro/sp_internal.h"

#include <errno.h>
#include <math.h>
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
#include <libavutil/samplefmt.h>
#include <libswresample/swresample.h>

void sp_set_ffmpeg_log(int verbose) { av_log_set_level(verbose ? AV_LOG_WARNING : AV_LOG_QUIET); }

/* Farthest first audio timestamp from the file's start accepted (30 days). */
#define SP_MAX_LEAD_S (30 * 86400)
/* Longest declared duration reserved before decoding (10 min: 38 MB at 16 kHz). */
#define SP_RESERVE_MAX_S 600

typedef struct dec_state {
    AVFormatContext *fmt;
    AVCodecContext *cc;
    SwrContext *swr;
    AVPacket *pkt;
    AVFrame *frame;
    AVStream *st;
    int64_t clk_off; /* cm_av_clock_offset of st */
    /* input parameters the current swr was made for */
    int in_format, in_rate;
    AVChannelLayout in_layout;
    int rate;    /* output rate */
    float *buf;  /* kept output samples */
    size_t n, cap;
    float *tmp;  /* resampler output before it is kept */
    size_t tmp_cap;
    /* the clock: output index (file time x rate) of the next resampled sample */
    int placed;          /* the first frame has set pos */
    int64_t pos;
    int64_t first_ts;    /* timestamp of the first frame (stream time base) */
    double lead_s;       /* file time of the first decoded sample (P / in_rate) */
    int64_t total;       /* resampled samples, all of them */
    int64_t keep0, keep1; /* output indices kept: [keep0, keep1) */
    int done;            /* pos >= keep1: everything kept is out */
    const sp_read_opts *opts;
    char cut_why[160];
} dec_state;

static const char *averr(int e, char *b, size_t n)
{
    if (av_strerror(e, b, n) < 0)
        snprintf(b, n, "error %d", e);
    return b;
}

static int grow(float **buf, size_t *cap, size_t need, cm_err *err)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1 << 16;
    while (c < need)
        c *= 2;
    float *b = realloc(*buf, c * sizeof *b);
    if (!b)
        return cm_err_set(err, "out of memory (%zu samples)", c);
    *buf = b;
    *cap = c;
    return 0;
}

/* k resampled samples in d->tmp: the clock advances by k; those whose index
 * lies in [keep0, keep1) are kept. */
static int keep_out(dec_state *d, size_t k, cm_err *err)
{
    int64_t a = d->pos, b = d->pos + (int64_t)k;
    d->pos = b;
    d->total += (int64_t)k;
    int64_t lo = a > d->keep0 ? a : d->keep0, hi = b < d->keep1 ? b : d->keep1;
    if (hi > lo) {
        if (grow(&d->buf, &d->cap, d->n + (size_t)(hi - lo), err) != 0)
            return -1;
        memcpy(d->buf + d->n, d->tmp + (lo - a), (size_t)(hi - lo) * sizeof *d->buf);
        d->n += (size_t)(hi - lo);
    }
    if (d->pos >= d->keep1)
        d->done = 1;
    return 0;
}

/* Converts `count` input samples (NULL: drains the resampler's delay) and keeps the output. */
static int convert(dec_state *d, const uint8_t **in, int count, cm_err *err)
{
    char b[128];
    for (;;) {
        int need = swr_get_out_samples(d->swr, in ? count : 0);
        if (need < 0)
            return cm_err_set(err, "resampler: %s", averr(need, b, sizeof b));
        if (!in && need == 0)
            return 0;
        if (grow(&d->tmp, &d->tmp_cap, (size_t)need + 1, err) != 0)
            return -1;
        uint8_t *dst = (uint8_t *)d->tmp;
        int got = swr_convert(d->swr, &dst, need, in, in ? count : 0);
        if (got < 0)
            return cm_err_set(err, "resampler: %s", averr(got, b, sizeof b));
        if (keep_out(d, (size_t)got, err) != 0)
            return -1;
        if (in || got == 0)
            return 0;
    }
}

/* Drains the resampler's delay (the end of the stream, or a change of input parameters). */
static int swr_flush(dec_state *d, cm_err *err)
{
    return d->swr ? convert(d, NULL, 0, err) : 0;
}

/* Silence before audio that starts after the file's time 0: `count` input
 * samples of silence through the resampler (as swr_inject_silence, in
 * bounded steps, stopping once everything kept is out). */
static int inject_silence(dec_state *d, int64_t count, const AVFrame *f, cm_err *err)
{
    enum { STEP = 16384 };
    uint8_t **z = NULL;
    int ls = 0, ch = f->ch_layout.nb_channels;
    if (av_samples_alloc_array_and_samples(&z, &ls, ch, STEP, (enum AVSampleFormat)f->format, 0) < 0)
        return cm_err_set(err, "out of memory");
    av_samples_set_silence(z, 0, STEP, ch, (enum AVSampleFormat)f->format);
    int rc = 0;
    while (count > 0 && !d->done && rc == 0) {
        int k = count > STEP ? STEP : (int)count;
        rc = convert(d, (const uint8_t **)z, k, err);
        count -= k;
    }
    av_freep(&z[0]);
    av_freep(&z);
    return rc;
}

/* The first frame places the audio on the file's clock (see the top). */
static int place_first(dec_state *d, const AVFrame *f, cm_err *err)
{
    d->placed = 1;
    int64_t ts = f->pts != AV_NOPTS_VALUE ? f->pts : f->best_effort_timestamp;
    d->first_ts = ts;
    if (ts == AV_NOPTS_VALUE)
        return 0;
    int64_t p = av_rescale_q(ts + d->clk_off, d->st->time_base, (AVRational){1, f->sample_rate});
    d->lead_s = (double)p / f->sample_rate;
    if (fabs(d->lead_s) > SP_MAX_LEAD_S) /* a crafted timestamp: no sample index would be meaningful */
        return cm_err_set(err, "audio starts %.0f s from the file's start (more than %d days)", d->lead_s,
                          SP_MAX_LEAD_S / 86400);
    if (p > 0)
        return inject_silence(d, p, f, err);
    if (p < 0)
        d->pos = -(-p * d->rate / f->sample_rate); /* swr_drop_output's count, truncated as there */
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
    if (!d->placed && place_first(d, f, err) != 0)
        return -1;
    if (d->done)
        return 0;
    return convert(d, (const uint8_t **)f->extended_data, f->nb_samples, err);
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

/* Truncation (common/cm_media.h): the audio's length (from its first decoded
 * sample: got_s) against the duration the file declares for the audio
 * stream, and the audio's end on the file's clock (end_s) against the end of
 * the requested segment. A file whose reading stopped early (a cut packet, a
 * read error) but whose audio is not short by the margin still fails, with
 * that reason, unless truncation is allowed. When decoding stopped after the
 * kept samples, got_s comes from the packets' timestamps (scan_rest) and the
 * segment is covered. */
static int check_coverage(dec_state *d, const char *path, double got, double end_s, const char *cut, cm_err *err)
{
    const sp_read_opts *o = d->opts;
    cm_trunc t;
    cm_trunc_stream(path, d->fmt, d->st, got, d->lead_s, &t);
    int empty = o->keep ? d->n == 0 : o->end > o->start && o->start >= end_s;
    if (!t.truncated && empty) /* nothing of the segment: not a cut file */
        return cm_err_set(err, "empty segment [%g, %g) s of %.3f s of audio", o->start, o->end, end_s);
    if (!t.truncated && !d->done && o->end > o->start && o->end >= 0) {
        cm_trunc seg;
        if (cm_trunc_check(end_s, o->end, &seg))
            t = seg;
    }
    if (o->truncation)
        *o->truncation = t;
    if (empty && o->allow_truncated) /* kept although truncated, but nothing of the segment is there */
        return cm_err_set(err, "empty segment [%g, %g) s of %.3f s of audio", o->start, o->end, end_s);
    if (o->allow_truncated)
        return 0;
    if (t.truncated)
        return cm_trunc_error(&t, err);
    return cut ? cm_err_set(err, "%s", cut) : 0;
}

static int open_stream(dec_state *d, const char *path, int *si_out, cm_err *err)
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
    d->st = d->fmt->streams[si];
    d->clk_off = cm_av_clock_offset(d->fmt, d->st);

    d->cc = avcodec_alloc_context3(dec);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->cc || !d->pkt || !d->frame)
        return cm_err_set(err, "out of memory");
    e = avcodec_parameters_to_context(d->cc, d->st->codecpar);
    if (e < 0)
        return cm_err_set(err, "bad audio codec parameters: %s", averr(e, b, sizeof b));
    d->cc->pkt_timebase = d->st->time_base;
    e = avcodec_open2(d->cc, dec, NULL);
    if (e < 0)
        return cm_err_set(err, "cannot open the %s decoder: %s", dec->name, averr(e, b, sizeof b));
    *si_out = si;
    return 0;
}

/* After decoding stopped at the last kept sample: reads (without decoding)
 * the remaining packets of the stream; the end of the last complete one,
 * in seconds from the first decoded frame's timestamp, into *got. */
static void scan_rest(dec_state *d, int si, double *got, const char **cut)
{
    char b[128];
    int64_t end = AV_NOPTS_VALUE;
    for (;;) {
        int e = av_read_frame(d->fmt, d->pkt);
        if (e == AVERROR_EOF)
            break;
        if (e < 0) {
            snprintf(d->cut_why, sizeof d->cut_why, "truncated or unreadable file: %s", averr(e, b, sizeof b));
            *cut = d->cut_why;
            break;
        }
        if (d->pkt->stream_index == si) {
            if (d->pkt->flags & AV_PKT_FLAG_CORRUPT) {
                av_packet_unref(d->pkt);
                *cut = "truncated or corrupt audio packet";
                break;
            }
            int64_t t = d->pkt->pts != AV_NOPTS_VALUE ? d->pkt->pts : d->pkt->dts;
            if (t != AV_NOPTS_VALUE && (end == AV_NOPTS_VALUE || t + d->pkt->duration > end))
                end = t + d->pkt->duration;
        }
        av_packet_unref(d->pkt);
    }
    if (end != AV_NOPTS_VALUE && d->first_ts != AV_NOPTS_VALUE) {
        double g = (double)(end - d->first_ts) * av_q2d(d->st->time_base);
        if (g > *got)
            *got = g;
    }
}

static int decode_all(dec_state *d, const char *path, cm_err *err)
{
    char b[128];
    int si = -1, e;
    if (open_stream(d, path, &si, err) != 0)
        return -1;
    /* room for the declared duration up front: no reallocation on the way
     * (a header's claim decides at most SP_RESERVE_MAX_S and never more than
     * is kept; beyond, the buffer grows with the samples actually decoded) */
    double dur = cm_av_declared_duration(d->fmt, d->st);
    if (dur > 0 && dur < SP_RESERVE_MAX_S) {
        size_t want = (size_t)(dur * d->rate * 1.01) + 16384;
        if (d->opts->keep && want > d->opts->keep)
            want = d->opts->keep;
        if (grow(&d->buf, &d->cap, want, err) != 0)
            return -1;
    }

    const char *cut = NULL; /* why reading stopped before the end of the file */
    while (!d->done) {
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
    double got;
    if (!d->done) {
        e = avcodec_send_packet(d->cc, NULL);
        if (e < 0 && e != AVERROR_EOF)
            return cm_err_set(err, "corrupt audio data: %s", averr(e, b, sizeof b));
        if (drain(d, err) != 0 || swr_flush(d, err) != 0)
            return -1;
        got = (double)d->pos / d->rate - d->lead_s;
    } else {
        got = (double)d->pos / d->rate - d->lead_s;
        if (!cut)
            scan_rest(d, si, &got, &cut);
    }
    if (d->total == 0)
        return cut ? cm_err_set(err, "%s", cut) : cm_err_set(err, "zero-length audio (no samples decoded)");
    if (!d->opts->keep && d->n == 0) /* everything before the file's start (an edit list cutting it all) */
        return cm_err_set(err, "zero-length audio (none after the file's start)");
    if (d->opts->end_s)
        *d->opts->end_s = d->done ? got + d->lead_s : (double)d->pos / d->rate;
    return check_coverage(d, path, got, (double)d->pos / d->rate, cut, err);
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
    dec_state d = {.rate = sample_rate, .opts = opts, .first_ts = AV_NOPTS_VALUE, .keep1 = INT64_MAX};
    if (opts->keep) {
        double a, b;
        sp_segment_bounds(sample_rate, opts->start, opts->end, &a, &b);
        if (a > 9e18 || !(a >= 0))
            return cm_err_set(err, "segment start %g s out of range", opts->start);
        d.keep0 = (int64_t)a;
        d.keep1 = b < (double)(d.keep0 + (int64_t)opts->keep) ? (int64_t)b : d.keep0 + (int64_t)opts->keep;
    }
    int rc = decode_all(&d, path, err);
    swr_free(&d.swr);
    av_channel_layout_uninit(&d.in_layout);
    av_frame_free(&d.frame);
    av_packet_free(&d.pkt);
    avcodec_free_context(&d.cc);
    avformat_close_input(&d.fmt);
    free(d.tmp);
    if (rc != 0) {
        free(d.buf);
        return -1;
    }
    *samples = d.buf;
    *n = d.n;
    return 0;
}
