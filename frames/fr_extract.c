/* fr_extract: choose times, seek, decode exactly the frames asked for.
 *
 * Which frame is "the frame at time T": the one the `ffmpeg` program returns
 * for `ffmpeg -i IN -ss T -frames:v 1` (output-side seek). ffmpeg shifts every
 * timestamp by the file's start time (so times count from 0), rescales T to
 * the stream's time base (rounding to nearest) and drops decoded frames whose
 * timestamp is below it: the answer is the first frame, in display order,
 * whose timestamp is >= T. We do the same with the same integer arithmetic.
 * When T is past the last frame, ffmpeg returns nothing; we return the last
 * frame.
 *
 * How: seek (AVSEEK_FLAG_BACKWARD) to the keyframe at or before T, decode
 * forward. If the first frame after a seek is already later than T (a
 * demuxer that seeks by decoding timestamp, an open GOP), seek further back
 * and try again. Packets whose timestamp is below T are decoded with
 * skip_frame = AVDISCARD_NONREF: frames that no other frame references are
 * not decoded, which cannot change the pixels of any frame that is decoded.
 * The loop filter is never skipped. Several targets are handled in time
 * order; the decoder continues forward instead of seeking when no keyframe
 * lies between the current position and the next target.
 *
 * The reorder window: a decoder with B-frames returns the target only after
 * it has been given the next packets (the P-frame that follows it, for
 * H.264 with -bf 2). When the next target is reached by a seek anyway (or
 * there is none), those packets are not decoded: once the packet that will
 * be the target has been sent, the following packets are read ahead without
 * decoding, and when their timestamps prove that none of them can be the
 * target (a decoding timestamp at or past it: every later packet is
 * presented later still), the decoder is drained instead. Any doubt (a
 * missing or disordered timestamp, a packet presented between the target
 * time and the candidate) and the packets are decoded as before.
 */
#include "frames/fr_internal.h"

#include "common/cm_file.h"
#include "common/cm_media.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>

/* The duration scan reads the packets of the last DURATION_TAIL_S seconds. */
#define DURATION_TAIL_S 5
/* Most packets read ahead past a target before the decoder is drained. */
#define AHEAD_MAX 16

typedef struct vid {
    const char *path;
    int threads;
    int *decoded;      /* frames the decoder returned, over every (re)open (optional) */
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVStream *st;
    int vidx;
    AVPacket *pkt;
    AVFrame *frm;      /* scratch */
    AVFrame *prev;     /* the last frame output by the decoder since the last (re)position */
    int have_prev;
    int64_t prev_ts;   /* its timestamp (ffmpeg's: stream time base, start time removed) */
    int prev_img_ok;   /* prev_img holds prev converted */
    fr_image prev_img;
    int64_t ts_off;    /* add to a stream timestamp to get ffmpeg's */
    int fresh;         /* opened, not seeked: the decoder starts at the first packet */
    int demux_eof, dec_eof;
    int skip_used;     /* some packet was sent with AVDISCARD_NONREF since the last (re)position */
    /* The reorder window (see the top): state since the last (re)position. */
    AVPacket *ahead[AHEAD_MAX]; /* video packets read ahead, not yet sent */
    int n_ahead;
    int64_t cand;      /* smallest pts (ffmpeg's) >= the target among the packets sent */
    int have_cand;
    int64_t last_dts;  /* dts of the last video packet read */
    int ts_sane;       /* every packet read had pts and dts, dts increasing, pts >= dts */
    int drained;       /* the decoder was drained after the target: the next target seeks */
    int64_t peeked;    /* the candidate the last look-ahead was made for */
    int n_out;         /* frames output since open */
    int last_err;      /* last libav error seen while decoding */
    fr_rotator *rot;   /* the rotate filter, made when a frame needs it (a turn not a multiple of 90) */
} vid;

static void forget_ahead(vid *v)
{
    for (int i = 0; i < v->n_ahead; i++)
        av_packet_free(&v->ahead[i]);
    v->n_ahead = 0;
    v->have_cand = v->drained = 0;
    v->ts_sane = 1;
    v->last_dts = AV_NOPTS_VALUE;
    v->peeked = AV_NOPTS_VALUE;
}

/* With a count asked (fr_request.decoded): the frames decoded but not yet
 * returned (the reorder window), taken out by draining before the decoder
 * is flushed or closed: they are decoded already, this costs no decoding. */
static void count_rest(vid *v)
{
    if (!v->decoded || !v->dec || !v->frm || v->dec_eof)
        return;
    if (!v->demux_eof)
        avcodec_send_packet(v->dec, NULL);
    while (avcodec_receive_frame(v->dec, v->frm) == 0) {
        (*v->decoded)++;
        av_frame_unref(v->frm);
    }
}

static void vid_close(vid *v)
{
    count_rest(v);
    forget_ahead(v);
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    av_packet_free(&v->pkt);
    av_frame_free(&v->frm);
    av_frame_free(&v->prev);
    fr_image_free(&v->prev_img);
    fr_rotator_destroy(v->rot);
    v->rot = NULL;
    v->have_prev = v->prev_img_ok = 0;
}

static const char *averr(int e, char *buf, size_t n)
{
    av_strerror(e, buf, n);
    return buf;
}

static int vid_open(vid *v, cm_err *err)
{
    char eb[128];
    const char *path = v->path;
    int threads = v->threads, *decoded = v->decoded;
    memset(v, 0, sizeof *v);
    v->path = path;
    v->threads = threads;
    v->decoded = decoded;
    if (cm_check_regular(path, err) != 0) /* a FIFO or device: refused, not waited on */
        return -1;
    int r = avformat_open_input(&v->fmt, path, NULL, NULL);
    if (r < 0) {
        v->fmt = NULL;
        return cm_err_set(err, "not a readable media file (%s)", averr(r, eb, sizeof eb));
    }
    r = avformat_find_stream_info(v->fmt, NULL);
    if (r < 0) {
        vid_close(v);
        return cm_err_set(err, "cannot read stream information (%s)", averr(r, eb, sizeof eb));
    }
    /* The best video stream that is not a cover picture. */
    int best = -1;
    int64_t best_score = -1;
    for (unsigned i = 0; i < v->fmt->nb_streams; i++) {
        AVStream *s = v->fmt->streams[i];
        if (s->codecpar->codec_type != AVMEDIA_TYPE_VIDEO || (s->disposition & AV_DISPOSITION_ATTACHED_PIC))
            continue;
        if (!avcodec_find_decoder(s->codecpar->codec_id))
            continue;
        int64_t score = (int64_t)s->codecpar->width * s->codecpar->height +
                        ((s->disposition & AV_DISPOSITION_DEFAULT) ? 5000000 : 0);
        if (score > best_score) {
            best_score = score;
            best = (int)i;
        }
    }
    if (best < 0) {
        int any = 0;
        for (unsigned i = 0; i < v->fmt->nb_streams; i++)
            if (v->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
                !(v->fmt->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC))
                any = 1;
        vid_close(v);
        return any ? cm_err_set(err, "no decoder for the video stream") : cm_err_set(err, "no video stream");
    }
    v->vidx = best;
    v->st = v->fmt->streams[best];
    for (unsigned i = 0; i < v->fmt->nb_streams; i++)
        if ((int)i != best)
            v->fmt->streams[i]->discard = AVDISCARD_ALL;
    const AVCodec *codec = avcodec_find_decoder(v->st->codecpar->codec_id);
    v->dec = avcodec_alloc_context3(codec);
    v->pkt = av_packet_alloc();
    v->frm = av_frame_alloc();
    v->prev = av_frame_alloc();
    if (!v->dec || !v->pkt || !v->frm || !v->prev) {
        vid_close(v);
        return cm_err_set(err, "out of memory");
    }
    if (avcodec_parameters_to_context(v->dec, v->st->codecpar) < 0) {
        vid_close(v);
        return cm_err_set(err, "bad codec parameters");
    }
    if (fr_check_size(v->st->codecpar->width > 0 ? v->st->codecpar->width : 1,
                      v->st->codecpar->height > 0 ? v->st->codecpar->height : 1, err) != 0) {
        vid_close(v);
        return -1;
    }
    /* The decoder itself refuses larger frames (a size change mid-stream). */
    v->dec->max_pixels = FR_MAX_PIXELS;
    v->dec->pkt_timebase = v->st->time_base;
    v->dec->thread_count = threads > 1 ? threads : 1;
    /* skip_frame is switched packet by packet: slice threads only. */
    v->dec->thread_type = FF_THREAD_SLICE;
    r = avcodec_open2(v->dec, codec, NULL);
    if (r < 0) {
        vid_close(v);
        return cm_err_set(err, "cannot open the %s decoder (%s)", codec->name, averr(r, eb, sizeof eb));
    }
    v->ts_off = cm_av_clock_offset(v->fmt, v->st); /* the file's clock, as spectro's */
    v->fresh = 1;
    forget_ahead(v);
    return 0;
}

static int vid_reopen(vid *v, cm_err *err)
{
    vid_close(v);
    return vid_open(v, err);
}

static void forget_prev(vid *v)
{
    av_frame_unref(v->prev);
    v->have_prev = 0;
    fr_image_free(&v->prev_img);
    v->prev_img_ok = 0;
}

/* Positions the demuxer at the keyframe at or before raw timestamp `raw`.
 * Falls back to reopening the file (start) when seeking fails. */
static int vid_seek(vid *v, int64_t raw, cm_err *err)
{
    int r = av_seek_frame(v->fmt, v->vidx, raw, AVSEEK_FLAG_BACKWARD);
    if (r < 0)
        return vid_reopen(v, err);
    count_rest(v);
    avcodec_flush_buffers(v->dec);
    forget_prev(v);
    v->fresh = 0;
    v->demux_eof = v->dec_eof = 0;
    v->skip_used = 0;
    forget_ahead(v);
    return 0;
}

/* Checks a video packet's timestamps as read (see ts_sane). */
static void note_ts(vid *v, const AVPacket *p)
{
    if (p->pts == AV_NOPTS_VALUE || p->dts == AV_NOPTS_VALUE || p->pts < p->dts ||
        (v->last_dts != AV_NOPTS_VALUE && p->dts <= v->last_dts))
        v->ts_sane = 0;
    v->last_dts = p->dts;
}

/* The next video packet from the demuxer into p: 0, or a libav error. */
static int demux_video(vid *v, AVPacket *p)
{
    for (;;) {
        int r = av_read_frame(v->fmt, p);
        if (r < 0)
            return r;
        if (p->stream_index == v->vidx) {
            note_ts(v, p);
            return 0;
        }
        av_packet_unref(p);
    }
}

/* The next video packet into v->pkt, from the look-ahead first. */
static int read_video(vid *v)
{
    if (v->n_ahead == 0)
        return demux_video(v, v->pkt);
    av_packet_move_ref(v->pkt, v->ahead[0]);
    av_packet_free(&v->ahead[0]);
    memmove(v->ahead, v->ahead + 1, sizeof(AVPacket *) * (size_t)(v->n_ahead - 1));
    v->n_ahead--;
    return 0;
}

/* Will the target after this one be reached by a seek whatever is decoded
 * here (plan_move's rule, with the candidate as the frame found)? */
static int next_needs_seek(vid *v, const int64_t *next_tgt)
{
    if (!next_tgt)
        return 1;
    if (avformat_index_get_entries_count(v->st) <= 0)
        return 0;
    int idx = av_index_search_timestamp(v->st, *next_tgt - v->ts_off, AVSEEK_FLAG_BACKWARD);
    const AVIndexEntry *e = idx >= 0 ? avformat_index_get_entry(v->st, idx) : NULL;
    return e && e->timestamp > v->cand - v->ts_off;
}

/* May the decoder be drained now, instead of given the packets after the
 * candidate? Reads packets ahead (kept for decoding otherwise) until one
 * proves that no packet still to come is presented in [tgt, cand): a
 * decoding timestamp at or past cand, every later one being later still
 * (the timestamps read so far checked to behave so). */
static int can_drain(vid *v, int64_t tgt, const int64_t *next_tgt)
{
    if (!v->have_cand || !v->ts_sane || v->peeked == v->cand || !next_needs_seek(v, next_tgt))
        return 0;
    v->peeked = v->cand;
    if (v->cand == tgt)
        return 1; /* nothing lies in [tgt, tgt) */
    for (int i = 0;; i++) {
        if (i == v->n_ahead) {
            if (v->n_ahead == AHEAD_MAX || !(v->ahead[i] = av_packet_alloc()))
                return 0;
            int r = demux_video(v, v->ahead[i]);
            if (r < 0) {
                av_packet_free(&v->ahead[i]);
                return r == AVERROR_EOF && v->ts_sane; /* nothing comes after */
            }
            v->n_ahead++;
        }
        const AVPacket *p = v->ahead[i];
        if (!v->ts_sane)
            return 0;
        int64_t pts = p->pts + v->ts_off, dts = p->dts + v->ts_off;
        if (pts >= tgt && pts < v->cand)
            return 0; /* a nearer candidate: decode on */
        if (dts >= v->cand)
            return 1;
    }
}

/* Next decoded frame into v->frm: 1, or 0 at the end of the stream (or of
 * the drained decoder). next_tgt: the target after this one (NULL: none). */
static int next_frame(vid *v, int64_t tgt, int allow_skip, const int64_t *next_tgt)
{
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frm);
        if (r == 0) {
            v->n_out++;
            if (v->decoded)
                (*v->decoded)++;
            return 1;
        }
        if (r == AVERROR_EOF) {
            v->dec_eof = 1;
            return 0;
        }
        if (r != AVERROR(EAGAIN)) {
            v->last_err = r;
            v->dec_eof = 1;
            return 0;
        }
        if (v->demux_eof) {
            v->dec_eof = 1;
            return 0;
        }
        if (allow_skip && can_drain(v, tgt, next_tgt)) {
            v->drained = v->demux_eof = 1;
            avcodec_send_packet(v->dec, NULL);
            continue;
        }
        r = read_video(v);
        if (r < 0) {
            if (r != AVERROR_EOF)
                v->last_err = r;
            v->demux_eof = 1;
            avcodec_send_packet(v->dec, NULL);
            continue;
        }
        int64_t pts = v->pkt->pts != AV_NOPTS_VALUE ? v->pkt->pts + v->ts_off : AV_NOPTS_VALUE;
        int skip = allow_skip && pts != AV_NOPTS_VALUE && pts < tgt;
        v->dec->skip_frame = skip ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
        v->skip_used |= skip;
        if (pts != AV_NOPTS_VALUE && pts >= tgt && (!v->have_cand || pts < v->cand)) {
            v->cand = pts;
            v->have_cand = 1;
        }
        r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0 && r != AVERROR(EAGAIN))
            v->last_err = r; /* a damaged packet: go on, as ffmpeg does */
    }
}

static int64_t frame_ts(vid *v, const AVFrame *f)
{
    int64_t t = f->best_effort_timestamp;
    if (t == AV_NOPTS_VALUE)
        t = f->pts;
    if (t == AV_NOPTS_VALUE)
        return v->have_prev ? v->prev_ts + 1 : 0;
    return t + v->ts_off;
}

static const int32_t *display_matrix(vid *v, const AVFrame *f)
{
    AVFrameSideData *sd = av_frame_get_side_data(f, AV_FRAME_DATA_DISPLAYMATRIX);
    if (sd && sd->size >= 9 * sizeof(int32_t))
        return (const int32_t *)sd->data;
    size_t n = 0;
    const uint8_t *d = av_stream_get_side_data(v->st, AV_PKT_DATA_DISPLAYMATRIX, &n);
    return (d && n >= 9 * sizeof(int32_t)) ? (const int32_t *)d : NULL;
}

/* How to reach a target from the decoder's state: go on decoding from where
 * the demuxer is, seek to the keyframe before the target, or start again
 * from the first packet. The demuxer's position is known only while the
 * file is freshly opened or frames have been decoded since the last
 * (re)position; anywhere else (after the duration scan, which may leave the
 * demuxer mid-file or at the end, even when its seek fails) going on would
 * decode from an arbitrary packet: never do that. */
typedef enum { MOVE_ON, MOVE_SEEK, MOVE_RESTART } move;

static move plan_move(vid *v, int64_t tgt)
{
    int64_t raw = tgt - v->ts_off;
    if (v->drained) /* the demuxer is past packets never decoded */
        return MOVE_SEEK;
    int known = v->fresh || v->have_prev;
    int n = avformat_index_get_entries_count(v->st);
    if (n > 0) {
        int idx = av_index_search_timestamp(v->st, raw, AVSEEK_FLAG_BACKWARD);
        if (idx < 0) /* before the first keyframe: decode from the start */
            return known ? MOVE_ON : MOVE_RESTART;
        const AVIndexEntry *e = avformat_index_get_entry(v->st, idx);
        if (!e || !known)
            return MOVE_SEEK;
        if (!v->have_prev) /* at the start: move only past the first keyframe */
            return e->timestamp > INT64_MIN + 1 &&
                           av_index_search_timestamp(v->st, e->timestamp - 1, AVSEEK_FLAG_BACKWARD) >= 0
                       ? MOVE_SEEK
                       : MOVE_ON;
        return e->timestamp > v->prev_ts - v->ts_off ? MOVE_SEEK : MOVE_ON;
    }
    /* No index: continue when close, else let the demuxer search. */
    if (v->have_prev) {
        double gap = (double)(tgt - v->prev_ts) * av_q2d(v->st->time_base);
        return gap > 2.0 ? MOVE_SEEK : MOVE_ON;
    }
    if (v->fresh) {
        double t = (double)tgt * av_q2d(v->st->time_base);
        return t > 2.0 ? MOVE_SEEK : MOVE_ON;
    }
    return MOVE_SEEK;
}

static int keep_prev(vid *v, int64_t ts)
{
    forget_prev(v);
    av_frame_move_ref(v->prev, v->frm);
    v->have_prev = 1;
    v->prev_ts = ts;
    return 0;
}

static int prev_image(vid *v, int short_side, fr_image *out, cm_err *err)
{
    if (!v->prev_img_ok) {
        fr_orient o = fr_orient_from_matrix(display_matrix(v, v->prev));
        if (o.rotate && !v->rot && !(v->rot = fr_rotator_create(err)))
            return -1;
        if (fr_frame_to_image(v->prev, o, v->rot, short_side, &v->prev_img, err) != 0)
            return -1;
        v->prev_img_ok = 1;
    }
    size_t n = (size_t)v->prev_img.width * v->prev_img.height * 3;
    *out = v->prev_img;
    out->rgb = malloc(n);
    if (!out->rgb)
        return cm_err_set(err, "out of memory");
    memcpy(out->rgb, v->prev_img.rgb, n);
    out->pts = (double)v->prev_ts * av_q2d(v->st->time_base);
    return 0;
}

/* Decodes the target again from its keyframe (or the start) with nothing
 * skipped and no drain: the way every frame is decoded. */
static int redo_unskipped(vid *v, int64_t seek_raw, int *allow_skip, int *verify, cm_err *err)
{
    *allow_skip = 0;
    if (v->fresh || v->n_out == 0) {
        if (vid_reopen(v, err) != 0)
            return -1;
    } else if (vid_seek(v, seek_raw, err) != 0) {
        return -1;
    }
    *verify = !v->fresh;
    return 0;
}

/* Finds the frame for target tgt (ffmpeg timestamp, stream time base) and
 * leaves it in v->prev. next_tgt: the next target (NULL: none). */
static int find_target(vid *v, int64_t tgt, const int64_t *next_tgt, int allow_skip, cm_err *err)
{
    char eb[128];
    if (v->have_prev && v->prev_ts >= tgt)
        return 0;
    v->have_cand = 0;
    v->peeked = AV_NOPTS_VALUE;
    if (v->dec_eof && !v->drained) {
        if (v->have_prev)
            return 0;
        return cm_err_set(err, "no decodable video frame");
    }
    int64_t raw = tgt - v->ts_off;
    int64_t seek_raw = raw;
    int64_t backoff = av_rescale_q(1, (AVRational){1, 1}, v->st->time_base);
    if (backoff < 1)
        backoff = 1;
    int verify = 0, tries = 0;
    move m = plan_move(v, tgt);
    if (m == MOVE_RESTART && vid_reopen(v, err) != 0)
        return -1;
    if (m == MOVE_SEEK) {
        if (vid_seek(v, seek_raw, err) != 0)
            return -1;
        verify = !v->fresh;
    }
    int64_t stream_first = v->st->start_time; /* raw pts of the first frame, when known */
    for (;;) {
        int r = next_frame(v, tgt, allow_skip, next_tgt);
        if (r == 1) {
            int64_t ts = frame_ts(v, v->frm);
            if (verify) {
                verify = 0;
                int at_start = stream_first != AV_NOPTS_VALUE && ts - v->ts_off <= stream_first;
                if (ts > tgt && !at_start) {
                    /* Landed after the target: go further back. */
                    int64_t back = FFMIN(seek_raw, ts - v->ts_off) - backoff;
                    backoff *= 2;
                    av_frame_unref(v->frm);
                    if (++tries > 8 || (stream_first != AV_NOPTS_VALUE && back <= stream_first)) {
                        if (vid_reopen(v, err) != 0)
                            return -1;
                    } else {
                        seek_raw = back;
                        if (vid_seek(v, seek_raw, err) != 0)
                            return -1;
                        verify = !v->fresh;
                    }
                    continue;
                }
            }
            if (ts >= tgt && v->drained && ts != v->cand) {
                /* Not the candidate (it did not decode): what came after the drain might be it. */
                av_frame_unref(v->frm);
                if (redo_unskipped(v, seek_raw, &allow_skip, &verify, err) != 0)
                    return -1;
                continue;
            }
            keep_prev(v, ts);
            if (ts >= tgt)
                return 0;
            continue;
        }
        /* End of stream (or of the drained decoder). */
        if ((v->skip_used || v->drained) && allow_skip) {
            /* A skipped frame might have been the last one: redo without skipping. */
            if (redo_unskipped(v, seek_raw, &allow_skip, &verify, err) != 0)
                return -1;
            continue;
        }
        if (v->have_prev)
            return 0;
        if (!v->fresh) {
            /* Nothing decodable after the seek point: decode from the start. */
            if (vid_reopen(v, err) != 0)
                return -1;
            continue;
        }
        if (v->last_err)
            return cm_err_set(err, "no decodable video frame (%s)", averr(v->last_err, eb, sizeof eb));
        return cm_err_set(err, "no decodable video frame");
    }
}

/* End (seconds, ffmpeg's counting) of the last complete video packet read
 * from the demuxer's position to the end of the file (no decoding); -1 when
 * none. Packets cut short by the end of the file are flagged corrupt by the
 * demuxers and do not count. Leaves the position unknown (plan_move). */
static double scan_end(vid *v)
{
    int64_t end = AV_NOPTS_VALUE;
    while (av_read_frame(v->fmt, v->pkt) >= 0) {
        if (v->pkt->stream_index == v->vidx && !(v->pkt->flags & AV_PKT_FLAG_CORRUPT)) {
            int64_t t = v->pkt->pts != AV_NOPTS_VALUE ? v->pkt->pts : v->pkt->dts;
            if (t != AV_NOPTS_VALUE) {
                t += v->pkt->duration;
                if (end == AV_NOPTS_VALUE || t > end)
                    end = t;
            }
        }
        av_packet_unref(v->pkt);
    }
    v->fresh = 0;
    v->demux_eof = 0;
    return end == AV_NOPTS_VALUE ? -1 : (double)(end + v->ts_off) * av_q2d(v->st->time_base);
}

/* The clip's length for --count and the end of its readable video, both in
 * seconds from the file's start time (as -ss counts). The clip is the
 * stream's own duration when the container gives one (mp4, avi), else the
 * end of the last packet. The readable end comes from reading the packets
 * (no decoding) of the last DURATION_TAIL_S seconds, or of the whole file
 * when it is short or when the tail holds nothing readable (a cut file; a
 * seek before the first keyframe fails, and a failed seek of some demuxers,
 * FLV's generic search, still moves the reading position). Afterwards the
 * demuxer's position is unknown: the first target repositions (plan_move). */
static int clip_extent(vid *v, double *clip, double *readable, cm_err *err)
{
    AVRational tb = v->st->time_base;
    double stream_d = -1;
    if (v->st->duration != AV_NOPTS_VALUE && v->st->duration > 0) {
        int64_t s = v->st->start_time != AV_NOPTS_VALUE ? v->st->start_time + v->ts_off : 0;
        stream_d = (double)(s + v->st->duration) * av_q2d(tb);
    }
    double fmt_d = (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0)
                       ? v->fmt->duration / (double)AV_TIME_BASE
                       : 0;
    double total = stream_d > 0 ? stream_d : fmt_d;
    double end = -1;
    if (total > 2 * DURATION_TAIL_S) {
        int64_t from = llround((total - DURATION_TAIL_S) / av_q2d(tb)) - v->ts_off;
        v->fresh = 0;
        if (av_seek_frame(v->fmt, v->vidx, from, AVSEEK_FLAG_BACKWARD) >= 0)
            end = scan_end(v);
    }
    if (end < 0) {
        if (!v->fresh && vid_reopen(v, err) != 0)
            return -1;
        end = scan_end(v);
    }
    *readable = end;
    *clip = stream_d > 0 ? stream_d : end > 0 ? end : fmt_d;
    return 0;
}

void fr_uniform_times(int count, double start, double end, double duration, double *times)
{
    if (isinf(end) && end > 0)
        end = duration;
    double s = start, e = end;
    if (!(e > s)) {
        s = 0;
        e = duration;
    }
    for (int i = 0; i < count; i++)
        times[i] = s + (i + 0.5) * (e - s) / count;
}

typedef struct order {
    double t;
    int i;
} order;

static int cmp_order(const void *a, const void *b)
{
    const order *x = a, *y = b;
    if (x->t < y->t)
        return -1;
    if (x->t > y->t)
        return 1;
    return x->i - y->i;
}

/* Checks how much of the video is readable against what the file declares
 * and, with --count over a segment, against the segment's end (cm_media.h).
 * Not truncated, or allowed: 0 (*clip shortened to the readable part when
 * truncated), and the coverage in req->truncation when asked for. */
static int check_coverage(vid *v, const fr_request *req, double *clip, double readable, cm_err *err)
{
    double first = 0;
    if (v->st->start_time != AV_NOPTS_VALUE)
        first = (double)(v->st->start_time + v->ts_off) * av_q2d(v->st->time_base);
    if (first < 0)
        first = 0;
    cm_trunc t;
    cm_trunc_stream(v->path, v->fmt, v->st, readable - first, first, &t); /* the rule spectro uses */
    if (!t.truncated && req->n_at <= 0 && req->end > req->start && isfinite(req->end)) {
        cm_trunc seg;
        if (cm_trunc_check(readable, req->end, &seg))
            t = seg;
    }
    if (req->truncation)
        *req->truncation = t;
    if (!t.truncated)
        return 0;
    if (!req->allow_truncated)
        return cm_trunc_error(&t, err);
    if (readable > 0 && readable < *clip)
        *clip = readable;
    return 0;
}

/* The times asked, in request order. */
static int request_times(vid *v, const fr_request *req, int n, double *times, cm_err *err)
{
    double clip = 0, readable = -1;
    if (clip_extent(v, &clip, &readable, err) != 0 || check_coverage(v, req, &clip, readable, err) != 0)
        return -1;
    if (req->n_at > 0)
        memcpy(times, req->at, sizeof(double) * n);
    else
        fr_uniform_times(n, req->start, req->end, clip, times);
    return 0;
}

/* A time asked (seconds) as ffmpeg's timestamp: microseconds, then the stream time base. */
static int64_t target_ts(const vid *v, double t)
{
    if (t > 9e11)
        t = 9e11;
    if (t < -9e11)
        t = -9e11;
    return av_rescale_q(llround(t * 1e6), AV_TIME_BASE_Q, v->st->time_base);
}

int fr_extract(const char *path, const fr_request *req, fr_image *images, int *n_out, cm_err *err)
{
    *n_out = 0;
    if (req->truncation)
        memset(req->truncation, 0, sizeof *req->truncation);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return cm_err_set(err, "%s", errno == ENOENT ? "no such file" : strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return cm_err_set(err, "is a directory");
    int n = req->n_at > 0 ? req->n_at : req->count;
    if (n <= 0)
        n = 1;
    if (n > FR_MAX_FRAMES)
        return cm_err_set(err, "too many frames asked (%d, at most %d)", n, FR_MAX_FRAMES);
    if (req->short_side < 0)
        return cm_err_set(err, "bad short side %d", req->short_side);

    vid v;
    memset(&v, 0, sizeof v);
    v.path = path;
    v.threads = req->threads;
    v.decoded = req->decoded;
    if (req->decoded)
        *req->decoded = 0;
    if (vid_open(&v, err) != 0)
        return -1;
    double times[FR_MAX_FRAMES];
    if (request_times(&v, req, n, times, err) != 0) {
        vid_close(&v);
        return -1;
    }
    order ord[FR_MAX_FRAMES];
    for (int i = 0; i < n; i++) {
        ord[i].t = isfinite(times[i]) ? times[i] : (times[i] > 0 ? 1e12 : -1e12);
        ord[i].i = i;
    }
    qsort(ord, (size_t)n, sizeof ord[0], cmp_order);

    int allow_skip = !(req->flags & FR_NO_SKIP);
    for (int k = 0; k < n; k++) {
        int64_t tgt = target_ts(&v, ord[k].t);
        fr_image *img = &images[ord[k].i];
        int64_t next = k + 1 < n ? target_ts(&v, ord[k + 1].t) : 0;
        if (find_target(&v, tgt, k + 1 < n ? &next : NULL, allow_skip, err) != 0 || prev_image(&v, req->short_side, img, err) != 0) {
            for (int j = 0; j < k; j++)
                fr_image_free(&images[ord[j].i]);
            vid_close(&v);
            return -1;
        }
        img->time = times[ord[k].i];
    }
    vid_close(&v);
    *n_out = n;
    return 0;
}
