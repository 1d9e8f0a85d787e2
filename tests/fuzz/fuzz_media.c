/* Fuzz target: the media paths of spectro and frames, as ingest runs them.
 * The first byte picks spectro, frames --count 1, frames --count 3 or the
 * clock check (and, by its bit 7, --allow-truncated); the rest is the media
 * file (seeds: short clips of every container and codec the tests cover, and
 * clips whose audio starts before or after the video, an MP4 edit list).
 * Hostile media must give an error or a result, never a crash.
 *
 * The clock check (mode 3), an oracle on timestamps: the whole audio on the
 * file's clock (sp_decode_audio, keep = 0) and what spectro keeps for a
 * segment and for the clip's head (keep > 0, decoding stopped early) are the
 * same samples: refused, or keep's samples are exactly the slice of the whole
 * decoding (the same file time), never other data. Violations abort(). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frames/frames.h"
#include "spectro/spectro.h"
#include "tests/fuzz/fz_util.h"

static sp_stft *stft(void)
{
    static sp_stft *s;
    if (!s) {
        sp_params p;
        sp_params_default(&p);
        p.duration = 2;
        cm_err err = {0};
        sp_set_ffmpeg_log(0);
        if (!(s = sp_stft_create(&p, NULL, &err)))
            abort();
    }
    return s;
}

static void run_frames(const char *path, int count, int allow_truncated)
{
    fr_request req = {.count = count, .end = -1, .short_side = 64, .allow_truncated = allow_truncated};
    fr_image img[3];
    int n = 0;
    cm_err err = {0};
    if (fr_extract(path, &req, img, &n, &err) == 0)
        for (int i = 0; i < n; i++)
            fr_image_free(&img[i]);
}

/* keep's result against the whole decoding x[0, n) for the segment [start, end). */
static void check_keep(const char *path, const float *x, size_t n, double start, double end, size_t keep)
{
    sp_read_opts ro = {.start = start, .end = end, .allow_truncated = 1, .keep = keep};
    float *y = NULL;
    size_t m = 0;
    cm_err err = {0};
    int rc = sp_decode_audio(path, 16000, &ro, &y, &m, &err);
    size_t i0 = (size_t)floor(start * 16000 + 0.5);
    size_t i1 = end > start ? (size_t)floor(end * 16000 + 0.5) : SIZE_MAX;
    if (i1 - i0 > keep)
        i1 = i0 + keep;
    if (i1 > n)
        i1 = n;
    if (rc == 0) {
        /* the same samples, the same file time */
        if (i0 >= n || m != i1 - i0 || memcmp(y, x + i0, m * sizeof *y) != 0)
            abort();
        free(y);
    }
    /* refused although the whole decoding (which read everything keep reads,
     * and more) covers part of the segment */
    else if (i0 < n)
        abort();
}

static void run_clock(const char *path)
{
    sp_read_opts ro = {.end = -1, .allow_truncated = 1};
    float *x = NULL;
    size_t n = 0;
    cm_err err = {0};
    if (sp_decode_audio(path, 16000, &ro, &x, &n, &err) != 0)
        return;
    check_keep(path, x, n, 0, -1, 32000);
    check_keep(path, x, n, 0.25, 1.25, 32000);
    check_keep(path, x, n, 0.5, -1, 8000);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char path[4200];
    fz_write("clip", data + 1, size - 1, path, sizeof path);
    int which = (data[0] & 0x7f) % 4, allow_truncated = data[0] >> 7;
    sp_stft_params(stft()); /* FFmpeg's log off before the first decoding */
    if (which == 3) {
        run_clock(path);
        return 0;
    }
    if (which == 0) {
        float *spec = NULL;
        size_t bins, frames;
        cm_err err = {0};
        sp_read_opts ro = {.start = 0, .end = -1, .allow_truncated = allow_truncated};
        if (sp_process_file(stft(), path, &ro, &spec, &bins, &frames, &err) == 0)
            free(spec);
    } else {
        run_frames(path, which == 1 ? 1 : 3, allow_truncated);
    }
    return 0;
}
