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
    cr_assert(fr_frame_to_image(f, o, 0, &img, &err) == 0, "%s", err.msg);
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
    cr_expect_eq(fr_frame_to_image(f, id, 65536, &img, &err), -1);
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
