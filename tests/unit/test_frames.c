/* Unit tests of the frames library (pieces that need no video file). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/display.h>
#include <libavutil/frame.h>
#include <turbojpeg.h>

#include "frames/fr_internal.h"
#include "frames/frames.h"

Test(frames, uniform_times_whole_clip)
{
    double t[3];
    fr_uniform_times(3, 0, 0, 9.0, t);
    cr_assert_float_eq(t[0], 1.5, 1e-12);
    cr_assert_float_eq(t[1], 4.5, 1e-12);
    cr_assert_float_eq(t[2], 7.5, 1e-12);
    fr_uniform_times(1, 0, 0, 10.0, t);
    cr_assert_float_eq(t[0], 5.0, 1e-12);
}

Test(frames, uniform_times_segment)
{
    double t[2];
    fr_uniform_times(2, 2, 6, 10.0, t);
    cr_assert_float_eq(t[0], 3.0, 1e-12);
    cr_assert_float_eq(t[1], 5.0, 1e-12);
    /* empty segment (AVE's 0&0 row): the whole clip */
    fr_uniform_times(1, 0, 0, 8.0, t);
    cr_assert_float_eq(t[0], 4.0, 1e-12);
    /* open end: up to the duration */
    fr_uniform_times(1, 4, INFINITY, 8.0, t);
    cr_assert_float_eq(t[0], 6.0, 1e-12);
}

Test(frames, out_size)
{
    int w, h;
    fr_out_size(640, 360, 0, &w, &h);
    cr_assert(w == 640 && h == 360);
    fr_out_size(640, 360, 224, &w, &h);
    cr_assert(w == 398 && h == 224, "%dx%d", w, h);
    fr_out_size(241, 321, 100, &w, &h);
    cr_assert(w == 100 && h == 133, "%dx%d", w, h);
}

/* Orientation for a display matrix, applied to a small gray picture, must
 * give the picture a viewer would show. */
static void oriented(double angle, int hflip, int vflip, const uint8_t *in, int w, int h, uint8_t *out, int *ow,
                     int *oh)
{
    int32_t m[9];
    av_display_rotation_set(m, angle);
    av_display_matrix_flip(m, hflip, vflip);
    fr_orient o = fr_orient_from_matrix(m);
    AVFrame *f = av_frame_alloc();
    f->format = AV_PIX_FMT_GRAY8;
    f->width = w;
    f->height = h;
    cr_assert(av_frame_get_buffer(f, 0) == 0);
    for (int y = 0; y < h; y++)
        memcpy(f->data[0] + y * f->linesize[0], in + y * w, w);
    fr_image img;
    cm_err err;
    cr_assert(fr_frame_to_image(f, o, NULL, 0, &img, &err) == 0, "%s", err.msg);
    *ow = img.width;
    *oh = img.height;
    for (int i = 0; i < img.width * img.height; i++)
        out[i] = img.rgb[3 * i];
    fr_image_free(&img);
    av_frame_free(&f);
}

Test(frames, rotation)
{
    /* 3 x 2 picture: values 0..5 spread out so gray->RGB keeps them apart */
    const int w = 3, h = 2;
    uint8_t in[6], out[6];
    for (int i = 0; i < 6; i++)
        in[i] = (uint8_t)(40 * i + 20);
    int ow, oh;
    /* no rotation */
    oriented(0, 0, 0, in, w, h, out, &ow, &oh);
    cr_assert(ow == 3 && oh == 2 && !memcmp(in, out, 6));
    /* av_display_rotation_set(90): ffmpeg's autorotate turns the picture 90 degrees clockwise */
    oriented(90, 0, 0, in, w, h, out, &ow, &oh);
    cr_assert(ow == 2 && oh == 3);
    /* clockwise: out[r][c] = in[h-1-c][r] */
    for (int r = 0; r < oh; r++)
        for (int c = 0; c < ow; c++)
            cr_assert_eq(out[r * ow + c], in[(h - 1 - c) * w + r]);
    /* set(-90): counter-clockwise: out[r][c] = in[c][w-1-r] */
    oriented(-90, 0, 0, in, w, h, out, &ow, &oh);
    cr_assert(ow == 2 && oh == 3);
    for (int r = 0; r < oh; r++)
        for (int c = 0; c < ow; c++)
            cr_assert_eq(out[r * ow + c], in[c * w + (w - 1 - r)]);
    /* 180 */
    oriented(180, 0, 0, in, w, h, out, &ow, &oh);
    cr_assert(ow == 3 && oh == 2);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(out[i], in[5 - i]);
}

Test(frames, orient_identity_without_matrix)
{
    cr_assert(fr_orient_is_identity(fr_orient_from_matrix(NULL)));
    int32_t m[9];
    av_display_rotation_set(m, 0);
    cr_assert(fr_orient_is_identity(fr_orient_from_matrix(m)));
}

Test(frames, jpeg_roundtrip)
{
    cm_err err;
    fr_jpeg *j = fr_jpeg_create(&err);
    cr_assert_not_null(j);
    fr_image img = {.width = 64, .height = 48};
    img.rgb = malloc(64 * 48 * 3);
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++) {
            uint8_t *p = img.rgb + (y * 64 + x) * 3;
            p[0] = (uint8_t)(x * 4);
            p[1] = (uint8_t)(y * 5);
            p[2] = 128;
        }
    uint8_t *buf;
    size_t n;
    cr_assert(fr_jpeg_encode(j, &img, 95, &buf, &n, &err) == 0, "%s", err.msg);
    cr_assert(n > 100 && buf[0] == 0xFF && buf[1] == 0xD8);
    tjhandle d = tjInitDecompress();
    uint8_t *back = malloc(64 * 48 * 3);
    cr_assert(tjDecompress2(d, buf, n, back, 64, 0, 48, TJPF_RGB, 0) == 0);
    double mse = 0;
    for (int i = 0; i < 64 * 48 * 3; i++)
        mse += (double)(back[i] - img.rgb[i]) * (back[i] - img.rgb[i]);
    mse /= 64 * 48 * 3;
    cr_assert(10 * log10(255.0 * 255.0 / (mse + 1e-12)) > 35, "mse %f", mse);
    free(buf);
    cr_assert(fr_jpeg_encode(j, &img, 0, &buf, &n, &err) == -1);
    tjDestroy(d);
    free(back);
    free(img.rgb);
    fr_jpeg_destroy(j);
}

Test(frames, bad_inputs)
{
    fr_request req = {.count = 1};
    fr_image imgs[FR_MAX_FRAMES];
    int n = -1;
    cm_err err;
    cr_assert(fr_extract("/nonexistent/x.mp4", &req, imgs, &n, &err) == -1);
    cr_assert(n == 0);
    cr_assert(strstr(err.msg, "no such file"), "%s", err.msg);
    cr_assert(fr_extract("/tmp", &req, imgs, &n, &err) == -1);
    cr_assert(strstr(err.msg, "directory"), "%s", err.msg);
    char path[] = "/tmp/test_frames_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert(write(fd, "this is not a video\n", 20) == 20);
    close(fd);
    cr_assert(fr_extract(path, &req, imgs, &n, &err) == -1);
    cr_assert(strstr(err.msg, "media") != NULL, "%s", err.msg);
    unlink(path);
    req.count = FR_MAX_FRAMES + 1;
    cr_assert(fr_extract("/tmp", &req, imgs, &n, &err) == -1);
}

Test(frames, picture_size_bound)
{
    cm_err err;
    cr_expect_eq(fr_check_size(8192, 4320, &err), 0);
    cr_expect_eq(fr_check_size(30000, 30000, &err), -1);
    cr_expect(strstr(err.msg, "30000x30000 is over the limit") != NULL, "%s", err.msg);
    /* an enlarging --short-side is bounded too */
    AVFrame *f = av_frame_alloc();
    f->format = AV_PIX_FMT_YUV420P;
    f->width = 64;
    f->height = 48;
    cr_assert_eq(av_frame_get_buffer(f, 0), 0);
    fr_image img;
    fr_orient id = {0};
    cr_expect_eq(fr_frame_to_image(f, id, NULL, 65536, &img, &err), -1);
    cr_expect(strstr(err.msg, "over the limit") != NULL, "%s", err.msg);
    av_frame_free(&f);
}

Test(frames, jpeg_decode_round_trip_and_bounds)
{
    cm_err err;
    fr_jpeg *j = fr_jpeg_create(&err);
    cr_assert(j);
    fr_image img = {.width = 40, .height = 24};
    img.rgb = malloc(40 * 24 * 3);
    for (int i = 0; i < 40 * 24 * 3; i++)
        img.rgb[i] = (uint8_t)(i * 7);
    uint8_t *jp = NULL, *rgb = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(fr_jpeg_encode(j, &img, 95, &jp, &n, &err), 0, "%s", err.msg);
    int w = 0, h = 0;
    cr_assert_eq(fr_jpeg_decode(j, jp, n, &rgb, &cap, &w, &h, &err), 0, "%s", err.msg);
    cr_expect(w == 40 && h == 24 && cap >= 40 * 24 * 3);
    /* the same as TurboJPEG's own decoder */
    tjhandle t = tjInitDecompress();
    uint8_t *ref = malloc(40 * 24 * 3);
    cr_assert_eq(tjDecompress2(t, jp, n, ref, 40, 0, 24, TJPF_RGB, 0), 0);
    cr_expect_arr_eq(ref, rgb, 40 * 24 * 3);
    tjDestroy(t);
    free(ref);
    /* a header patched to 30000x30000 (SOF0 height/width): refused before allocating */
    size_t k;
    for (k = 2; k + 8 < n; k++)
        if (jp[k] == 0xFF && jp[k + 1] == 0xC0)
            break;
    cr_assert(k + 8 < n);
    jp[k + 5] = 30000 >> 8;
    jp[k + 6] = 30000 & 0xff;
    jp[k + 7] = 30000 >> 8;
    jp[k + 8] = 30000 & 0xff;
    size_t cap0 = cap;
    cr_expect_eq(fr_jpeg_decode(j, jp, n, &rgb, &cap, &w, &h, &err), -1);
    cr_expect(strstr(err.msg, "JPEG: frame size 30000x30000 is over the limit") != NULL, "%s", err.msg);
    cr_expect_eq(cap, cap0);
    /* not a JPEG; cut short */
    uint8_t junk[16] = {1, 2, 3};
    cr_expect_eq(fr_jpeg_decode(j, junk, sizeof junk, &rgb, &cap, &w, &h, &err), -1);
    cr_expect(strstr(err.msg, "not a JPEG") != NULL, "%s", err.msg);
    free(jp);
    jp = NULL;
    cr_assert_eq(fr_jpeg_encode(j, &img, 95, &jp, &n, &err), 0);
    cr_expect_eq(fr_jpeg_decode(j, jp, n / 2, &rgb, &cap, &w, &h, &err), -1);
    cr_expect(strstr(err.msg, "JPEG") != NULL, "%s", err.msg);
    free(jp);
    free(rgb);
    free(img.rgb);
    fr_jpeg_destroy(j);
}

/* A 64x48 test picture encoded at quality 90, its decoding by a fresh
 * TurboJPEG handle as the reference, and the offset of its SOF0 marker. */
static uint8_t *good_jpeg(fr_jpeg *j, size_t *n, uint8_t **ref, size_t *sof)
{
    cm_err err;
    fr_image img = {.width = 64, .height = 48};
    img.rgb = malloc(64 * 48 * 3);
    for (int i = 0; i < 64 * 48 * 3; i++)
        img.rgb[i] = (uint8_t)((i * 13) ^ (i >> 5));
    uint8_t *jp = NULL;
    cr_assert_eq(fr_jpeg_encode(j, &img, 90, &jp, n, &err), 0, "%s", err.msg);
    free(img.rgb);
    tjhandle t = tjInitDecompress();
    *ref = malloc(64 * 48 * 3);
    cr_assert_eq(tjDecompress2(t, jp, *n, *ref, 64, 0, 48, TJPF_RGB, 0), 0);
    tjDestroy(t);
    for (*sof = 2; *sof + 8 < *n; (*sof)++)
        if (jp[*sof] == 0xFF && jp[*sof + 1] == 0xC0)
            break;
    cr_assert(*sof + 8 < *n);
    return jp;
}

/* The good picture decodes on j, to the reference pixels. */
static void expect_good_decodes(fr_jpeg *j, const uint8_t *jp, size_t n, const uint8_t *ref, const char *after)
{
    cm_err err;
    uint8_t *rgb = NULL;
    size_t cap = 0;
    int w = 0, h = 0;
    cr_assert_eq(fr_jpeg_decode(j, jp, n, &rgb, &cap, &w, &h, &err), 0, "after %s: %s", after, err.msg);
    cr_assert(w == 64 && h == 48);
    cr_assert_arr_eq(rgb, ref, 64 * 48 * 3, "after %s: other pixels", after);
    free(rgb);
}

/* Issue 16 item 4: a JPEG whose header does not parse left TurboJPEG's
 * decompressor mid-header (tjDecompressHeader3 returns without aborting the
 * libjpeg decompression on an error), and every later decode on that handle
 * failed ("two SOI markers"). One bad picture is one failure: each bad kind
 * below is decoded, then the good picture on the same handle. */
Test(frames, jpeg_bad_then_good_on_one_handle)
{
    cm_err err;
    fr_jpeg *j = fr_jpeg_create(&err);
    cr_assert(j);
    size_t n, sof;
    uint8_t *ref;
    uint8_t *jp = good_jpeg(j, &n, &ref, &sof);
    uint8_t *bad = malloc(n);
    uint8_t *rgb = NULL;
    size_t cap = 0;
    int w, h;
    struct {
        const char *what;
        size_t at;
        uint8_t v[4];
        int len;
    } kinds[] = {
        {"height 0 (empty image)", sof + 5, {0, 0}, 2},
        {"65535x65535 (over libjpeg's limit)", sof + 5, {0xFF, 0xFF, 0xFF, 0xFF}, 4},
        {"30000x30000 (over FR_MAX_PIXELS)", sof + 5, {30000 >> 8, 30000 & 0xff, 30000 >> 8, 30000 & 0xff}, 4},
        {"0 components", sof + 9, {0}, 1},
        {"a bad SOF length", sof + 2, {0xFF, 0xF0}, 2},
        {"no SOI", 0, {0x00}, 1},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        memcpy(bad, jp, n);
        memcpy(bad + kinds[k].at, kinds[k].v, (size_t)kinds[k].len);
        cr_expect_eq(fr_jpeg_decode(j, bad, n, &rgb, &cap, &w, &h, &err), -1, "%s decoded", kinds[k].what);
        expect_good_decodes(j, jp, n, ref, kinds[k].what);
    }
    /* cut short at every length through the headers and into the data */
    for (size_t cut = 1; cut < n; cut += cut < sof + 700 ? 1 : 97) {
        fr_jpeg_decode(j, jp, cut, &rgb, &cap, &w, &h, &err);
        char what[64];
        snprintf(what, sizeof what, "the first %zu bytes", cut);
        expect_good_decodes(j, jp, n, ref, what);
    }
    /* every byte of the headers flipped (whatever the bad one gives) */
    size_t hdr_end = sof;
    while (hdr_end + 1 < n && !(jp[hdr_end] == 0xFF && jp[hdr_end + 1] == 0xDA))
        hdr_end++;
    for (size_t at = 0; at < hdr_end + 16 && at < n; at++) {
        memcpy(bad, jp, n);
        bad[at] ^= 0xFF;
        fr_jpeg_decode(j, bad, n, &rgb, &cap, &w, &h, &err);
        char what[64];
        snprintf(what, sizeof what, "byte %zu flipped", at);
        expect_good_decodes(j, jp, n, ref, what);
    }
    free(rgb);
    free(bad);
    free(ref);
    free(jp);
    fr_jpeg_destroy(j);
}

/* The ffmpeg program's choice for a display matrix (fftools/ffmpeg_filter.c
 * of 5.1): theta, the clockwise turn in whole degrees; within 1 of 90, 180,
 * 270: transpose / flips; above 1: the rotate filter by theta; below 1: at
 * most a flip; exactly 1: nothing at all (issue 16). */
Test(frames, odd_rotation_uses_the_rotate_filter)
{
    int32_t m[9];
    /* av_display_rotation_set's angle -> the program's clockwise turn */
    int odd[][2] = {{45, 45}, {30, 30}, {-30, 330}, {135, 135}, {91, 91}, {89, 89}, {179, 179}, {-1, 359},
                    {2, 2}, {-89, 271}};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        av_display_rotation_set(m, odd[i][0]);
        fr_orient o = fr_orient_from_matrix(m);
        cr_expect(o.rotate && o.theta == odd[i][1] && !o.transpose && !o.hflip && !o.vflip, "%d: %d %g",
                  odd[i][0], o.rotate, o.theta);
        cr_expect(!fr_orient_is_identity(o));
    }
    double right[] = {0, 90, 180, -90, 270, -180, 1, 89.6, 270.4, 0.4};
    for (size_t i = 0; i < sizeof right / sizeof right[0]; i++) {
        av_display_rotation_set(m, right[i]);
        fr_orient o = fr_orient_from_matrix(m);
        cr_expect(!o.rotate, "%g", right[i]);
    }
    av_display_rotation_set(m, 1); /* turn of exactly 1 degree: the program leaves it */
    cr_expect(fr_orient_is_identity(fr_orient_from_matrix(m)));
}

static AVFrame *flat_frame(int fmt, int w, int h, int value)
{
    AVFrame *f = av_frame_alloc();
    f->format = fmt;
    f->width = w;
    f->height = h;
    cr_assert(av_frame_get_buffer(f, 0) == 0);
    for (int p = 0; p < 4 && f->data[p]; p++)
        memset(f->data[p], p == 0 ? value : 128, (size_t)f->linesize[p] * h);
    return f;
}

/* The rotator: same size, the middle kept, the corners black; a format the
 * filter does not take is said so (1), and the rotator is rebuilt when the
 * frames change; a rotation without a rotator is an error, not a crash. */
Test(frames, rotator)
{
    cm_err err;
    fr_rotator *r = fr_rotator_create(&err);
    cr_assert(r != NULL);
    for (int k = 0; k < 3; k++) {
        int w = k == 1 ? 33 : 64, h = k == 1 ? 21 : 48;
        AVFrame *f = flat_frame(AV_PIX_FMT_GRAY8, w, h, 200), *o = NULL;
        cr_assert_eq(fr_rotator_run(r, f, 45, &o, &err), 0, "%s", err.msg);
        cr_expect(o->width == w && o->height == h && o->format == AV_PIX_FMT_GRAY8);
        cr_expect_eq(o->data[0][(h / 2) * o->linesize[0] + w / 2], 200);
        cr_expect_eq(o->data[0][0], 16, "%d", o->data[0][0]); /* black, gray8 as limited range */
        cr_expect_eq(o->data[0][(h - 1) * o->linesize[0] + w - 1], 16);
        av_frame_free(&o);
        av_frame_free(&f);
    }
    AVFrame *f = flat_frame(AV_PIX_FMT_YUV422P, 32, 32, 100), *o = NULL;
    cr_expect_eq(fr_rotator_run(r, f, 30, &o, &err), 1);
    cr_expect(o == NULL);
    cr_expect_eq(fr_rotator_run(r, f, 30, &o, &err), 1);
    /* through fr_frame_to_image: converted to rgb24, then turned */
    int32_t m[9];
    av_display_rotation_set(m, -30);
    fr_orient rot = fr_orient_from_matrix(m);
    fr_image img;
    cr_assert_eq(fr_frame_to_image(f, rot, r, 0, &img, &err), 0, "%s", err.msg);
    cr_expect(img.width == 32 && img.height == 32 && img.rgb[0] == 0 && img.rgb[1] == 0 && img.rgb[2] == 0);
    uint8_t *mid = img.rgb + (16 * 32 + 16) * 3;
    cr_expect(mid[0] > 60 && mid[0] == mid[1] && mid[1] == mid[2], "%d %d %d", mid[0], mid[1], mid[2]);
    fr_image_free(&img);
    cr_expect_eq(fr_frame_to_image(f, rot, NULL, 0, &img, &err), -1);
    av_frame_free(&f);
    fr_rotator_destroy(r);
    fr_rotator_destroy(NULL);
}
