/* JPEG encoding and decoding through TurboJPEG; one fr_jpeg per thread. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "frames/fr_internal.h"

struct fr_jpeg {
    tjhandle tj;  /* compressor */
    tjhandle dtj; /* decompressor, made on the first decode */
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
    if (j->dtj)
        tjDestroy(j->dtj);
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

/* TurboJPEG 2.1 leaves a decompressor whose libjpeg code signalled an error
 * in the middle of its state machine: tjDecompressHeader3 returns without
 * aborting the decompression (tjDecompress2 does abort), so the libjpeg
 * state stays "in header" with the marker reader where the bad data left it,
 * and the next jpeg_read_header goes on from there instead of starting
 * afresh ("Bogus marker length", "two SOI markers"): every later picture
 * fails. The API gives no way to reset it; its authors advise against using
 * an instance after a fatal error. So after any failure the decompressor is
 * dropped and the next decode makes a fresh one. The message is copied
 * first (it lives in the instance). */
static int decode_failed(fr_jpeg *j, cm_err *err, const char *what)
{
    int r = cm_err_set(err, "%s (%s)", what, tjGetErrorStr2(j->dtj));
    tjDestroy(j->dtj);
    j->dtj = NULL;
    return r;
}

int fr_jpeg_decode(fr_jpeg *j, const uint8_t *jpeg, size_t n, uint8_t **rgb, size_t *cap, int *w, int *h,
                   cm_err *err)
{
    *w = *h = 0;
    if (!jpeg || n == 0 || n > ULONG_MAX)
        return cm_err_set(err, "not a JPEG (no data)");
    if (!j->dtj && !(j->dtj = tjInitDecompress()))
        return cm_err_set(err, "cannot start the JPEG decoder");
    int iw = 0, ih = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(j->dtj, jpeg, (unsigned long)n, &iw, &ih, &sub, &cs) != 0)
        return decode_failed(j, err, "not a JPEG");
    if (iw < 1 || ih < 1)
        return cm_err_set(err, "not a JPEG (size %dx%d)", iw, ih);
    /* The header decides the size: bounded before anything is allocated. */
    if (fr_check_size(iw, ih, err) != 0)
        return cm_err_prefix(err, "JPEG");
    size_t need = (size_t)iw * (size_t)ih * 3;
    if (need > *cap) {
        uint8_t *nb = realloc(*rgb, need);
        if (!nb)
            return cm_err_set(err, "out of memory (image %dx%d)", iw, ih);
        *rgb = nb;
        *cap = need;
    }
    /* Warnings (truncated or corrupt data) count as errors too. */
    if (tjDecompress2(j->dtj, jpeg, (unsigned long)n, *rgb, iw, 0, ih, TJPF_RGB, 0) != 0)
        return decode_failed(j, err, "corrupt JPEG");
    *w = iw;
    *h = ih;
    return 0;
}
