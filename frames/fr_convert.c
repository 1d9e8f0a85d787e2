/* Rotation (display matrix) and conversion of a decoded AVFrame to RGB24.
 *
 * The `ffmpeg` program rotates in the decoder's pixel format (transpose /
 * hflip / vflip filters inserted by -autorotate) and then converts to rgb24
 * with libswscale (bicubic flags, colour matrix and range taken from the
 * frame, as the scale filter does). We do the same steps in the same order,
 * so the result is identical bit for bit when the pixel format allows the
 * rotation in place (planar formats with equal horizontal and vertical
 * chroma subsampling, and packed formats without subsampling). Other formats
 * are converted first and rotated in RGB. A turn that is not a multiple of
 * 90 degrees is libavfilter's own `rotate` filter (fr_rotate.c), placed as
 * the program places it.
 */
#include "frames/fr_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

/* Same rounding as the ffmpeg program's get_rotation(). */
static double rotation_of(const int32_t *dm)
{
    double theta = 0;
    if (dm)
        theta = -round(av_display_rotation_get(dm));
    theta -= 360 * floor(theta / 360 + 0.9 / 360);
    return theta;
}

fr_orient fr_orient_from_matrix(const int32_t *dm)
{
    fr_orient o = {.transpose = 0};
    if (!dm)
        return o;
    /* The ffmpeg program's tests, in its order. theta is a whole number of
     * degrees in [0, 360): 89 and 91 are turned by the rotate filter, and 1
     * (not above 1, not below 1) is not turned at all, as the program does. */
    double theta = rotation_of(dm);
    if (fabs(theta - 90) < 1.0) {
        o.transpose = 1;
        o.dir = dm[3] > 0 ? 0 /* cclock_flip */ : 1 /* clock */;
    } else if (fabs(theta - 180) < 1.0) {
        o.hflip = dm[0] < 0;
        o.vflip = dm[4] < 0;
    } else if (fabs(theta - 270) < 1.0) {
        o.transpose = 1;
        o.dir = dm[3] < 0 ? 3 /* clock_flip */ : 2 /* cclock */;
    } else if (fabs(theta) > 1.0) {
        o.rotate = 1;
        o.theta = theta;
    } else if (fabs(theta) < 1.0) {
        o.vflip = dm[4] < 0;
    }
    return o;
}

int fr_orient_is_identity(fr_orient o)
{
    return !o.transpose && !o.hflip && !o.vflip && !o.rotate;
}

/* One plane: element size esz bytes, source w x h. */
static void xform_plane(const uint8_t *src, int sls, int w, int h, uint8_t *dst, int dls, int esz,
                        fr_orient o)
{
    if (o.transpose) {
        /* As libavfilter's transpose: dir&1 reads the source bottom-up,
         * dir&2 writes the destination bottom-up; out[y][x] = in[x][y]. */
        int outh = w, outw = h;
        for (int y = 0; y < outh; y++) {
            int dy = (o.dir & 2) ? outh - 1 - y : y;
            uint8_t *drow = dst + (ptrdiff_t)dy * dls;
            for (int x = 0; x < outw; x++) {
                int sy = (o.dir & 1) ? h - 1 - x : x;
                memcpy(drow + (size_t)x * esz, src + (ptrdiff_t)sy * sls + (size_t)y * esz, esz);
            }
        }
        return;
    }
    for (int y = 0; y < h; y++) {
        int sy = o.vflip ? h - 1 - y : y;
        const uint8_t *srow = src + (ptrdiff_t)sy * sls;
        uint8_t *drow = dst + (ptrdiff_t)y * dls;
        if (!o.hflip) {
            memcpy(drow, srow, (size_t)w * esz);
        } else {
            for (int x = 0; x < w; x++)
                memcpy(drow + (size_t)x * esz, srow + (size_t)(w - 1 - x) * esz, esz);
        }
    }
}

/* Can this pixel format be rotated plane by plane, as ffmpeg's filters do? */
static int rotatable(const AVPixFmtDescriptor *d)
{
    if (d->flags & (AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_HWACCEL))
        return 0;
    if (d->log2_chroma_w != d->log2_chroma_h)
        return 0;
    for (int c = 0; c < d->nb_components; c++)
        for (int k = 0; k < d->nb_components; k++)
            if (d->comp[c].plane == d->comp[k].plane && d->comp[c].step != d->comp[k].step)
                return 0;
    return 1;
}

static int plane_elem(const AVPixFmtDescriptor *d, int plane)
{
    for (int c = 0; c < d->nb_components; c++)
        if (d->comp[c].plane == plane)
            return d->comp[c].step;
    return 0;
}

/* Rotates a frame (any rotatable format) into a new frame. */
static AVFrame *rotate_frame(const AVFrame *in, fr_orient o, cm_err *err)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(in->format);
    AVFrame *out = av_frame_alloc();
    if (!out) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    out->format = in->format;
    out->width = o.transpose ? in->height : in->width;
    out->height = o.transpose ? in->width : in->height;
    if (av_frame_get_buffer(out, 0) < 0 || av_frame_copy_props(out, in) < 0) {
        av_frame_free(&out);
        cm_err_set(err, "out of memory");
        return NULL;
    }
    for (int i = 0; i < AV_NUM_DATA_POINTERS && out->buf[i]; i++) /* the padding libswscale reads */
        memset(out->buf[i]->data, 0, out->buf[i]->size);
    int nplanes = av_pix_fmt_count_planes(in->format);
    for (int p = 0; p < nplanes; p++) {
        int chroma = (p == 1 || p == 2) && !(d->flags & AV_PIX_FMT_FLAG_RGB);
        int w = chroma ? AV_CEIL_RSHIFT(in->width, d->log2_chroma_w) : in->width;
        int h = chroma ? AV_CEIL_RSHIFT(in->height, d->log2_chroma_h) : in->height;
        int esz = plane_elem(d, p);
        if (esz <= 0)
            continue;
        xform_plane(in->data[p], in->linesize[p], w, h, out->data[p], out->linesize[p], esz, o);
    }
    return out;
}

static void rgb_orient(const uint8_t *src, int w, int h, uint8_t *dst, int dls, fr_orient o)
{
    xform_plane(src, w * 3, w, h, dst, dls, 3, o);
}

void fr_out_size(int w, int h, int short_side, int *ow, int *oh)
{
    *ow = w;
    *oh = h;
    if (short_side <= 0 || w <= 0 || h <= 0)
        return;
    if (w <= h) {
        *ow = short_side;
        double x = (double)h * short_side / w;
        *oh = x < INT_MAX / 4 ? (int)lround(x) : INT_MAX / 4; /* refused later (FR_MAX_PIXELS) */
    } else {
        *oh = short_side;
        double x = (double)w * short_side / h;
        *ow = x < INT_MAX / 4 ? (int)lround(x) : INT_MAX / 4;
    }
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}

/* Converts (w x h, any format) to RGB24 at ow x oh into dst (rows of dls bytes). */
static int to_rgb(const AVFrame *f, int ow, int oh, uint8_t *dst, int dls, cm_err *err)
{
    int flags = SWS_BICUBIC;
    if (ow != f->width || oh != f->height)
        flags = (ow < f->width && oh < f->height) ? SWS_AREA : SWS_BICUBIC;
    struct SwsContext *sws = sws_getContext(f->width, f->height, f->format, ow, oh, AV_PIX_FMT_RGB24,
                                            flags, NULL, NULL, NULL);
    if (!sws)
        return cm_err_set(err, "cannot convert pixel format %s to RGB",
                          av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    /* As libavfilter's scale filter: colour matrix from the frame (BT.601 when
     * unspecified or unknown), input range from the frame. */
    int *inv_table, *table, in_full, out_full, bri, con, sat;
    if (sws_getColorspaceDetails(sws, &inv_table, &in_full, &table, &out_full, &bri, &con, &sat) >= 0) {
        int cs = f->colorspace;
        if (cs < 1 || cs > 7)
            cs = AVCOL_SPC_BT470BG;
        const int *it = sws_getCoefficients(cs);
        if (f->color_range != AVCOL_RANGE_UNSPECIFIED)
            in_full = f->color_range == AVCOL_RANGE_JPEG;
        sws_setColorspaceDetails(sws, it, in_full, table, out_full, bri, con, sat);
    }
    uint8_t *dd[4] = {dst, NULL, NULL, NULL};
    int dl[4] = {dls, 0, 0, 0};
    int r = sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dd, dl);
    sws_freeContext(sws);
    if (r <= 0)
        return cm_err_set(err, "pixel conversion failed");
    return 0;
}

/* A new RGB24 frame, padded as libavutil pads frames (libswscale reads and
 * writes whole SIMD blocks past the end of a short row: a packed buffer of a
 * 2-pixel-wide picture was overrun by 8 bytes, heap corruption); zeroed
 * when libswscale will read it (what it reads in the padding is defined). */
static AVFrame *new_rgb_frame(int w, int h, int zero, cm_err *err)
{
    AVFrame *t = av_frame_alloc();
    if (t) {
        t->format = AV_PIX_FMT_RGB24;
        t->width = w;
        t->height = h;
        if (av_frame_get_buffer(t, 0) < 0)
            av_frame_free(&t);
        else if (zero)
            memset(t->buf[0]->data, 0, t->buf[0]->size);
    }
    if (!t)
        cm_err_set(err, "out of memory");
    return t;
}

/* As to_rgb into dst packed (ow*oh*3), through a padded frame. */
static int to_rgb_packed(const AVFrame *f, int ow, int oh, uint8_t *dst, cm_err *err)
{
    AVFrame *t = new_rgb_frame(ow, oh, 0, err);
    if (!t)
        return -1;
    int rc = to_rgb(f, ow, oh, t->data[0], t->linesize[0], err);
    if (rc == 0)
        av_image_copy_plane(dst, ow * 3, t->data[0], t->linesize[0], ow * 3, oh);
    av_frame_free(&t);
    return rc;
}

/* img->rgb = a new ow x oh RGB24 buffer holding f scaled (NULL when it fails). */
static int to_new_rgb(const AVFrame *f, int ow, int oh, fr_image *img, cm_err *err)
{
    img->rgb = malloc((size_t)ow * oh * 3);
    int rc = img->rgb ? to_rgb_packed(f, ow, oh, img->rgb, err) : cm_err_set(err, "out of memory");
    if (rc != 0) {
        free(img->rgb);
        img->rgb = NULL;
        return -1;
    }
    return 0;
}

int fr_check_size(long long w, long long h, cm_err *err)
{
    if (w <= 0 || h <= 0)
        return cm_err_set(err, "bad picture size %lldx%lld", w, h);
    if (w * h > FR_MAX_PIXELS)
        return cm_err_set(err, "frame size %lldx%lld is over the limit of %lld pixels", w, h, FR_MAX_PIXELS);
    return 0;
}

/* img = the RGB24 frame c (padded: libswscale reads past short rows),
 * resized as asked. */
static int rgb_finish(const AVFrame *c, int short_side, fr_image *img, cm_err *err)
{
    int ow, oh;
    fr_out_size(c->width, c->height, short_side, &ow, &oh);
    if (ow == c->width && oh == c->height) {
        img->rgb = malloc((size_t)ow * oh * 3);
        if (!img->rgb)
            return cm_err_set(err, "out of memory");
        av_image_copy_plane(img->rgb, ow * 3, c->data[0], c->linesize[0], ow * 3, oh);
    } else {
        AVFrame tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.format = AV_PIX_FMT_RGB24;
        tmp.width = c->width;
        tmp.height = c->height;
        tmp.data[0] = c->data[0];
        tmp.linesize[0] = c->linesize[0];
        tmp.colorspace = AVCOL_SPC_UNSPECIFIED;
        tmp.color_range = AVCOL_RANGE_UNSPECIFIED;
        if (to_new_rgb(&tmp, ow, oh, img, err) != 0)
            return -1;
    }
    img->width = ow;
    img->height = oh;
    return 0;
}

/* f converted to RGB24 at its size, in a new frame with f's properties. */
static AVFrame *rgb_frame(const AVFrame *f, cm_err *err)
{
    AVFrame *c = new_rgb_frame(f->width, f->height, 1, err);
    if (!c)
        return NULL;
    if (av_frame_copy_props(c, f) < 0) {
        av_frame_free(&c);
        cm_err_set(err, "out of memory");
        return NULL;
    }
    if (to_rgb(f, f->width, f->height, c->data[0], c->linesize[0], err) != 0)
        av_frame_free(&c);
    return c;
}

/* A turn that is not a multiple of 90 degrees: libavfilter's rotate filter in
 * the decoder's pixel format, then the conversion (and resize) as for any
 * frame; where the filter does not take that format, the program's graph
 * converts to rgb24 first, rotates in rgb24, then resizes: so do we. */
static int rotated_image(const AVFrame *f, double theta, fr_rotator *rot, int short_side, fr_image *img,
                         cm_err *err)
{
    if (!rot)
        return cm_err_set(err, "internal error: a rotation without a rotator");
    AVFrame *r = NULL;
    int rc = fr_rotator_run(rot, f, theta, &r, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        int ow, oh;
        fr_out_size(r->width, r->height, short_side, &ow, &oh);
        rc = to_new_rgb(r, ow, oh, img, err);
        av_frame_free(&r);
        if (rc != 0)
            return -1;
        img->width = ow;
        img->height = oh;
        return 0;
    }
    AVFrame *c = rgb_frame(f, err);
    if (!c)
        return -1;
    rc = fr_rotator_run(rot, c, theta, &r, err);
    av_frame_free(&c);
    if (rc != 0)
        return rc < 0 ? -1
                      : cm_err_set(err, "the rotate filter takes neither %s nor rgb24",
                                   av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    rc = rgb_finish(r, short_side, img, err);
    av_frame_free(&r);
    return rc;
}

int fr_frame_to_image(const AVFrame *f, fr_orient o, fr_rotator *rot, int short_side, fr_image *img,
                      cm_err *err)
{
    memset(img, 0, sizeof *img);
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    if (!d || f->width <= 0 || f->height <= 0)
        return cm_err_set(err, "decoded frame has no usable picture");
    if (fr_check_size(f->width, f->height, err) != 0)
        return -1;
    {
        int ow, oh;
        fr_out_size(f->width, f->height, short_side, &ow, &oh);
        if (fr_check_size(ow, oh, err) != 0)
            return cm_err_prefix(err, "--short-side %d", short_side);
    }
    if (o.rotate)
        return rotated_image(f, o.theta, rot, short_side, img, err);
    int identity = fr_orient_is_identity(o);
    if (identity || rotatable(d)) {
        AVFrame *r = NULL;
        const AVFrame *src = f;
        if (!identity) {
            r = rotate_frame(f, o, err);
            if (!r)
                return -1;
            src = r;
        }
        int ow, oh;
        fr_out_size(src->width, src->height, short_side, &ow, &oh);
        int rc = to_new_rgb(src, ow, oh, img, err);
        av_frame_free(&r);
        if (rc != 0)
            return -1;
        img->width = ow;
        img->height = oh;
        return 0;
    }
    /* Convert at full size, orient in RGB, then resize if asked. */
    int w = f->width, h = f->height;
    uint8_t *a = malloc((size_t)w * h * 3);
    AVFrame *b = new_rgb_frame(o.transpose ? h : w, o.transpose ? w : h, 1, err);
    if (!a || !b) {
        free(a);
        av_frame_free(&b);
        return cm_err_set(err, "out of memory");
    }
    if (to_rgb_packed(f, w, h, a, err) != 0) {
        free(a);
        av_frame_free(&b);
        return -1;
    }
    rgb_orient(a, w, h, b->data[0], b->linesize[0], o);
    free(a);
    int rc = rgb_finish(b, short_side, img, err);
    av_frame_free(&b);
    return rc;
}

void fr_image_free(fr_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}
