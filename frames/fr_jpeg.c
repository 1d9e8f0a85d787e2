/* JPEG encoding through TurboJPEG; one fr_jpeg per thread. */
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "frames/frames.h"

struct fr_jpeg {
    tjhandle tj;
};

fr_jpeg *fr_jpeg_create(cm_err *err)
{
    fr_jpeg *j = calloc(1, sizeof *j);
    if (!j) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    j->tj = tjInitCompress();
    if (!j->tj) {
        free(j);
        cm_err_set(err, "cannot start the JPEG encoder");
        return NULL;
    }
    return j;
}

void fr_jpeg_destroy(fr_jpeg *j)
{
    if (!j)
        return;
    tjDestroy(j->tj);
    free(j);
}

int fr_jpeg_encode(fr_jpeg *j, const fr_image *img, int quality, uint8_t **out, size_t *n, cm_err *err)
{
    *out = NULL;
    *n = 0;
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return cm_err_set(err, "no image to encode");
    if (quality < 1 || quality > 100)
        return cm_err_set(err, "bad JPEG quality %d (1..100)", quality);
    unsigned long cap = tjBufSize(img->width, img->height, TJSAMP_420);
    if (cap == (unsigned long)-1)
        return cm_err_set(err, "image too large for JPEG");
    unsigned char *buf = malloc(cap);
    if (!buf)
        return cm_err_set(err, "out of memory");
    unsigned long size = cap;
    if (tjCompress2(j->tj, img->rgb, img->width, img->width * 3, img->height, TJPF_RGB, &buf, &size,
                    TJSAMP_420, quality, TJFLAG_NOREALLOC) != 0) {
        free(buf);
        return cm_err_set(err, "JPEG encoding failed: %s", tjGetErrorStr2(j->tj));
    }
    *out = buf;
    *n = size;
    return 0;
}
