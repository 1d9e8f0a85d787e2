/* Where one clip's ingest time goes, next to the floor, measured with the
 * libraries ingest uses (issue 21).
 *
 * usage: bench_ingest_floor [--frames F] [--reps R] CLIP...
 *
 * For each clip, the CPU time of this thread (CLOCK_THREAD_CPUTIME_ID; the
 * least of R repetitions: the machine is shared) of:
 *   audio      sp_decode_audio: decode the whole audio track, downmix,
 *              resample to 16 kHz (the recipe's audio is the whole clip)
 *   stft       sp_fix_length + sp_stft_compute (257 x 1004, log)
 *   video      fr_extract with the recipe's F frames (what ingest runs)
 *   jpeg       fr_jpeg_encode of those F frames (quality 90)
 *   f16        the spectrogram to float16 (st_f32_to_f16_n, the writer's)
 *   write      st_writer_add of the sample (float16, checksums, HDF5) into a
 *              shard under $TMPDIR (the writer thread's work; page cache)
 * and, for the video, the floor that exactness requires, decoded from
 * packets already in memory with the same decoder (libavcodec, one thread):
 *   floor      for each target, the packets from the keyframe before it
 *              through the target packet, every reference frame decoded,
 *              frames no other frame references skipped (AVDISCARD_NONREF)
 *              except the target, then a drain: the decoding that no exact
 *              method can avoid without parsing each frame's reference lists
 *   all        every frame of the clip decoded (the -ss-free way)
 *   demux      opening the file (with stream probing) and reading its
 *              packets, without decoding
 * Frame counts: frames decoded (not skipped) by fr_extract (video), by
 * floor and by all.
 * Prints one line per clip and the medians over the clips.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "frames/frames.h"
#include "spectro/spectro.h"
#include "store/store.h"

enum { S_AUDIO, S_STFT, S_VIDEO, S_JPEG, S_F16, S_WRITE, S_FLOOR, S_ALL, S_DEMUX, N_STAGES };
static const char *stage_name[N_STAGES] = {"audio", "stft", "video", "jpeg", "f16", "write", "floor", "all", "demux"};

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct clip {
    AVFormatContext *fmt;
    AVStream *st;
    int vidx;
    AVPacket **pk; /* the video packets in decoding order */
    int n, cap;
} clip;

static void clip_free(clip *c)
{
    for (int i = 0; i < c->n; i++)
        av_packet_free(&c->pk[i]);
    free(c->pk);
    avformat_close_input(&c->fmt);
    memset(c, 0, sizeof *c);
}

/* Opens path and reads every video packet into memory (the demux stage). */
static int clip_load(const char *path, clip *c)
{
    memset(c, 0, sizeof *c);
    if (avformat_open_input(&c->fmt, path, NULL, NULL) < 0 || avformat_find_stream_info(c->fmt, NULL) < 0)
        return -1;
    c->vidx = av_find_best_stream(c->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (c->vidx < 0)
        return -1;
    c->st = c->fmt->streams[c->vidx];
    AVPacket *p = av_packet_alloc();
    while (p && av_read_frame(c->fmt, p) >= 0) {
        if (p->stream_index != c->vidx) {
            av_packet_unref(p);
            continue;
        }
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 512;
            c->pk = realloc(c->pk, sizeof *c->pk * (size_t)c->cap);
            if (!c->pk)
                return -1;
        }
        c->pk[c->n++] = p;
        p = av_packet_alloc();
    }
    av_packet_free(&p);
    return c->n > 0 ? 0 : -1;
}

static AVCodecContext *open_decoder(const clip *c)
{
    const AVCodec *codec = avcodec_find_decoder(c->st->codecpar->codec_id);
    AVCodecContext *d = avcodec_alloc_context3(codec);
    if (!d || avcodec_parameters_to_context(d, c->st->codecpar) < 0) {
        avcodec_free_context(&d);
        return NULL;
    }
    d->pkt_timebase = c->st->time_base;
    d->thread_count = 1;
    d->thread_type = FF_THREAD_SLICE;
    if (avcodec_open2(d, codec, NULL) < 0)
        avcodec_free_context(&d);
    return d;
}

/* Sends packets [from, to] (skipping non-reference frames but `keep`), drains,
 * counts the frames that come out. */
static int decode_span(AVCodecContext *d, clip *c, int from, int to, int keep, int skip, AVFrame *f)
{
    int out = 0;
    for (int i = from; i <= to + 1; i++) {
        if (i <= to) {
            d->skip_frame = skip && i != keep ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
            avcodec_send_packet(d, c->pk[i]);
        } else {
            avcodec_send_packet(d, NULL);
        }
        while (avcodec_receive_frame(d, f) == 0) {
            out++;
            av_frame_unref(f);
        }
    }
    avcodec_flush_buffers(d);
    return out;
}

/* The floor for the F uniform targets (fr_uniform_times over the stream's
 * duration): frames decoded. */
static int video_floor(clip *c, int nf, AVFrame *f)
{
    AVCodecContext *d = open_decoder(c);
    if (!d)
        return -1;
    int64_t off = c->fmt->start_time != AV_NOPTS_VALUE
                      ? av_rescale_q(-c->fmt->start_time, AV_TIME_BASE_Q, c->st->time_base)
                      : 0;
    double dur = c->st->duration > 0 ? c->st->duration * av_q2d(c->st->time_base) : c->fmt->duration / 1e6;
    double t[FR_MAX_FRAMES];
    fr_uniform_times(nf, 0, -1, dur, t);
    int decoded = 0;
    for (int k = 0; k < nf; k++) {
        int64_t tgt = av_rescale_q(llround(t[k] * 1e6), AV_TIME_BASE_Q, c->st->time_base);
        int best = -1, last = 0;
        for (int i = 0; i < c->n; i++) {
            int64_t p = c->pk[i]->pts + off;
            if (p >= tgt && (best < 0 || p < c->pk[best]->pts + off))
                best = i;
            if (p > c->pk[last]->pts + off)
                last = i;
        }
        if (best < 0)
            best = last;
        int key = best;
        while (key > 0 && !(c->pk[key]->flags & AV_PKT_FLAG_KEY))
            key--;
        decoded += decode_span(d, c, key, best, best, 1, f);
    }
    avcodec_free_context(&d);
    return decoded;
}

static int video_all(clip *c, AVFrame *f)
{
    AVCodecContext *d = open_decoder(c);
    if (!d)
        return -1;
    int n = decode_span(d, c, 0, c->n - 1, -1, 0, f);
    avcodec_free_context(&d);
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define MIN_OF(reps, best, body)                                                                               \
    do {                                                                                                       \
        best = 1e9;                                                                                            \
        for (int r_ = 0; r_ < (reps); r_++) {                                                                  \
            double t0_ = cpu_now();                                                                            \
            body;                                                                                              \
            double dt_ = cpu_now() - t0_;                                                                      \
            if (dt_ < best)                                                                                    \
                best = dt_;                                                                                    \
        }                                                                                                      \
    } while (0)

/* The least CPU time of adding the sample to a shard (a new id each time). */
static double time_write(size_t bins, size_t T, int nf, const float *spec, uint8_t **jb, const size_t *jl,
                         const float *ft, int reps, int *bad, cm_err *err)
{
    char path[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/bench_ingest_floor_%d.h5", tmp ? tmp : "/tmp", (int)getpid());
    const char *classes[] = {"a"};
    st_meta m = {.dataset = "bench", .split = "train", .n_classes = 1, .classes = classes, .frames_per_sample = nf,
                 .bins = (int)bins, .frames = (int)T, .recipe_json = "{}"};
    st_writer *w = st_writer_create(path, &m, err);
    if (!w) {
        *bad = 1;
        return 0;
    }
    static unsigned long serial;
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        char id[32];
        snprintf(id, sizeof id, "s%lu", serial++);
        st_sample smp = {.id = id, .spec = spec, .jpeg = (const uint8_t *const *)jb, .jpeg_len = jl,
                         .seg_start = 0, .seg_end = 10, .frame_time = ft};
        double t0 = cpu_now();
        *bad |= st_writer_add(w, &smp, err);
        double dt = cpu_now() - t0;
        if (dt < best)
            best = dt;
    }
    st_writer_abort(w);
    return best;
}

/* One clip: every stage's least CPU time (ms) into ms[], frame counts
 * (fr_extract's, the floor's, all) into nfr/nfl/nall. */
static int measure(const char *path, int nf, int reps, const sp_stft *stft, fr_jpeg *jp, double *ms, int *nfr,
                   int *nfl, int *nall)
{
    cm_err err;
    const sp_params *sp = sp_stft_params(stft);
    size_t target = sp_target_samples(sp), bins = sp_num_bins(sp), T = sp_num_frames(sp, target);
    float *fixed = malloc(target * sizeof *fixed), *spec = malloc(bins * T * sizeof *spec);
    uint16_t *half = malloc(bins * T * sizeof *half);
    float *x = NULL;
    size_t n = 0;
    fr_image img[FR_MAX_FRAMES];
    int got = 0, bad = !fixed || !spec || !half;
    fr_request req = {.count = nf, .start = 0, .end = -1, .decoded = nfr};
    MIN_OF(reps, ms[S_AUDIO], free(x); x = NULL; bad |= sp_decode_audio(path, sp->sample_rate, NULL, &x, &n, &err));
    MIN_OF(reps, ms[S_STFT], bad |= sp_fix_length(x, n, sp->sample_rate, 0, -1, fixed, target, &err) ||
                                     sp_stft_compute(stft, fixed, target, spec, &err));
    MIN_OF(reps, ms[S_F16], st_f32_to_f16_n(spec, half, bins * T));
    MIN_OF(reps, ms[S_VIDEO], for (int k = 0; k < got; k++) fr_image_free(&img[k]);
           bad |= fr_extract(path, &req, img, &got, &err));
    MIN_OF(reps, ms[S_JPEG], for (int k = 0; k < got; k++) {
        uint8_t *o = NULL;
        size_t on = 0;
        bad |= fr_jpeg_encode(jp, &img[k], 90, &o, &on, &err);
        free(o);
    });
    uint8_t *jb[FR_MAX_FRAMES];
    size_t jl[FR_MAX_FRAMES];
    float ft[FR_MAX_FRAMES];
    for (int k = 0; k < got; k++) {
        ft[k] = (float)img[k].pts;
        bad |= fr_jpeg_encode(jp, &img[k], 90, &jb[k], &jl[k], &err);
        fr_image_free(&img[k]);
    }
    ms[S_WRITE] = bad ? 0 : time_write(bins, T, nf, spec, jb, jl, ft, reps, &bad, &err);
    for (int k = 0; k < got; k++)
        free(jb[k]);
    clip c;
    memset(&c, 0, sizeof c);
    AVFrame *f = av_frame_alloc();
    MIN_OF(reps, ms[S_DEMUX], clip_free(&c); bad |= clip_load(path, &c));
    MIN_OF(reps, ms[S_FLOOR], *nfl = video_floor(&c, nf, f));
    MIN_OF(reps, ms[S_ALL], *nall = video_all(&c, f));
    clip_free(&c);
    av_frame_free(&f);
    free(x);
    free(fixed);
    free(spec);
    free(half);
    for (int s = 0; s < N_STAGES; s++)
        ms[s] *= 1e3;
    if (bad || *nfl < 0 || *nall < 0)
        fprintf(stderr, "bench_ingest_floor: %s: %s\n", path, bad ? err.msg : "cannot decode");
    return bad || *nfl < 0 || *nall < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    int nf = 3, reps = 3, a = 1;
    for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
        if (!strcmp(argv[a], "--frames"))
            nf = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--reps"))
            reps = atoi(argv[a + 1]);
        else
            break;
    }
    if (a >= argc || nf < 1 || nf > FR_MAX_FRAMES || reps < 1) {
        fprintf(stderr, "usage: bench_ingest_floor [--frames F] [--reps R] CLIP...\n");
        return 2;
    }
    sp_set_ffmpeg_log(0);
    cm_err err;
    sp_params p;
    sp_params_default(&p);
    char wisdom[4096];
    sp_stft *stft = sp_stft_create(&p, sp_default_wisdom_path(wisdom, sizeof wisdom) == 0 ? wisdom : NULL, &err);
    fr_jpeg *jp = fr_jpeg_create(&err);
    if (!stft || !jp) {
        fprintf(stderr, "bench_ingest_floor: %s\n", err.msg);
        return 1;
    }
    int nc = argc - a, ok = 0;
    double *col[N_STAGES + 3];
    for (int s = 0; s < N_STAGES + 3; s++)
        col[s] = calloc((size_t)nc, sizeof(double));
    printf("clip");
    for (int s = 0; s < N_STAGES; s++)
        printf(" %s_ms", stage_name[s]);
    printf(" video_frames floor_frames all_frames\n");
    for (int i = a; i < argc; i++) {
        double ms[N_STAGES];
        int nfr = 0, nfl = 0, nall = 0;
        if (measure(argv[i], nf, reps, stft, jp, ms, &nfr, &nfl, &nall) != 0)
            continue;
        printf("%s", argv[i]);
        for (int s = 0; s < N_STAGES; s++) {
            printf(" %.2f", ms[s]);
            col[s][ok] = ms[s];
        }
        printf(" %d %d %d\n", nfr, nfl, nall);
        col[N_STAGES][ok] = nfr;
        col[N_STAGES + 1][ok] = nfl;
        col[N_STAGES + 2][ok] = nall;
        ok++;
    }
    if (ok) {
        printf("median");
        for (int s = 0; s < N_STAGES + 3; s++)
            printf(s < N_STAGES ? " %.2f" : " %.0f", median(col[s], ok));
        printf("\n");
    }
    for (int s = 0; s < N_STAGES + 3; s++)
        free(col[s]);
    sp_stft_destroy(stft);
    fr_jpeg_destroy(jp);
    return ok == nc ? 0 : 1;
}
