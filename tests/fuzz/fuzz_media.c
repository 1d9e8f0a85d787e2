/* Fuzz target: the media paths of spectro and frames, as ingest runs them.
 * The first byte picks spectro, frames --count 1 or frames --count 3; the rest
 * is the media file (seeds: short clips of every container and codec the
 * tests cover). Hostile media must give an error or a result, never a crash. */
#include <stdlib.h>

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

static void run_frames(const char *path, int count)
{
    fr_request req = {.count = count, .end = -1, .short_side = 64};
    fr_image img[3];
    int n = 0;
    cm_err err = {0};
    if (fr_extract(path, &req, img, &n, &err) == 0)
        for (int i = 0; i < n; i++)
            fr_image_free(&img[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char path[4200];
    fz_write("clip", data + 1, size - 1, path, sizeof path);
    int which = data[0] % 3;
    if (which == 0) {
        float *spec = NULL;
        size_t bins, frames;
        cm_err err = {0};
        if (sp_process_file(stft(), path, 0, -1, &spec, &bins, &frames, &err) == 0)
            free(spec);
    } else {
        run_frames(path, which == 1 ? 1 : 3);
    }
    return 0;
}
