/* fr_rotate: the `rotate` filter of libavfilter, as the ffmpeg program's
 * autorotate inserts it for a display matrix that is not a multiple of 90
 * degrees.
 *
 * ffmpeg 5.1 (fftools/ffmpeg_filter.c) inserts, right after the buffer
 * source, the `rotate` filter with the single argument "<theta>*PI/180",
 * theta printed with "%f" (the clockwise turn in whole degrees, see
 * fr_orient_from_matrix): every other option at its default (output size
 * iw x ih, bilinear interpolation, fill colour black). The filter runs in
 * the decoder's pixel format when it supports it; otherwise the filter
 * graph's format negotiation converts to the output's rgb24 first (checked
 * against the program's -loglevel debug: yuvj422p is converted to rgb24
 * before the rotation, yuv420p is rotated as it is). We run the very same
 * filter with the very same argument, in a graph of our own (buffer ->
 * rotate -> buffersink) per decoder: the caller is told when the format is
 * not supported and converts to rgb24 itself, as the program's graph does.
 *
 * The graph is kept while the frames keep their size, format and angle, and
 * rebuilt when one of them changes. One thread: the callers parallelise over
 * files (the filter's slices give the same pixels whatever their number).
 *
 * libavfilter is opened with dlopen when a rotator is made, not linked:
 * Debian's libavfilter brings some 30 more shared libraries, which made
 * every start of `frames` about 80 ms slower (0.12 -> 0.21 s per one-clip
 * call here) for pictures that almost never need it. The handle and the
 * functions are the rotator's own (RTLD_NODELETE: the library stays loaded
 * once it has been, so that the next rotator does not load it again).
 */
#include "frames/fr_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavfilter/version.h>
#include <libavutil/macros.h>

#define LAVFI_SONAME "libavfilter.so." AV_STRINGIFY(LIBAVFILTER_VERSION_MAJOR)

/* The functions of libavfilter used here, looked up in the library. */
typedef struct lavfi {
    void *so;
    const AVFilter *(*get_by_name)(const char *name);
    AVFilterGraph *(*graph_alloc)(void);
    int (*create_filter)(AVFilterContext **ctx, const AVFilter *f, const char *name, const char *args, void *opaque,
                         AVFilterGraph *g);
    int (*link)(AVFilterContext *src, unsigned srcpad, AVFilterContext *dst, unsigned dstpad);
    int (*config)(AVFilterGraph *g, void *log_ctx);
    void (*graph_free)(AVFilterGraph **g);
    int (*src_add)(AVFilterContext *ctx, AVFrame *f, int flags);
    int (*sink_get)(AVFilterContext *ctx, AVFrame *f);
} lavfi;

static int lavfi_open(lavfi *l, cm_err *err)
{
    l->so = dlopen(LAVFI_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!l->so) {
        const char *why = dlerror();
        return cm_err_set(err, "cannot load %s (%s), needed to turn a picture by its display matrix", LAVFI_SONAME,
                          why ? why : "?");
    }
    struct {
        void **fp;
        const char *name;
    } syms[] = {
        {(void **)&l->get_by_name, "avfilter_get_by_name"},
        {(void **)&l->graph_alloc, "avfilter_graph_alloc"},
        {(void **)&l->create_filter, "avfilter_graph_create_filter"},
        {(void **)&l->link, "avfilter_link"},
        {(void **)&l->config, "avfilter_graph_config"},
        {(void **)&l->graph_free, "avfilter_graph_free"},
        {(void **)&l->src_add, "av_buffersrc_add_frame_flags"},
        {(void **)&l->sink_get, "av_buffersink_get_frame"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].fp = dlsym(l->so, syms[i].name);
        if (!*syms[i].fp) {
            dlclose(l->so);
            l->so = NULL;
            return cm_err_set(err, "%s has no %s", LAVFI_SONAME, syms[i].name);
        }
    }
    return 0;
}

struct fr_rotator {
    lavfi av;
    AVFilterGraph *graph;
    AVFilterContext *src, *sink;
    int w, h, fmt;     /* what the graph was built for */
    double theta;
    int unsupported;   /* the filter refused this format (no graph) */
    int built;         /* w, h, fmt, theta, unsupported are valid */
};

fr_rotator *fr_rotator_create(cm_err *err)
{
    fr_rotator *r = calloc(1, sizeof *r);
    if (!r) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    if (lavfi_open(&r->av, err) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void fr_rotator_destroy(fr_rotator *r)
{
    if (!r)
        return;
    r->av.graph_free(&r->graph);
    dlclose(r->av.so);
    free(r);
}

/* 0: graph ready; 1: the filter does not take this pixel format; -1: error. */
static int build(fr_rotator *r, const AVFrame *f, double theta, cm_err *err)
{
    r->av.graph_free(&r->graph);
    r->src = r->sink = NULL;
    r->built = 0;
    const AVFilter *fbuf = r->av.get_by_name("buffer"), *frot = r->av.get_by_name("rotate"),
                   *fsink = r->av.get_by_name("buffersink");
    if (!fbuf || !frot || !fsink)
        return cm_err_set(err, "this libavfilter has no rotate filter");
    r->graph = r->av.graph_alloc();
    if (!r->graph)
        return cm_err_set(err, "out of memory");
    r->graph->nb_threads = 1;
    AVRational sar = f->sample_aspect_ratio;
    if (sar.num <= 0 || sar.den <= 0)
        sar = (AVRational){0, 1};
    char sargs[160], rargs[64];
    snprintf(sargs, sizeof sargs, "video_size=%dx%d:pix_fmt=%d:time_base=1/1:pixel_aspect=%d/%d", f->width,
             f->height, f->format, sar.num, sar.den);
    snprintf(rargs, sizeof rargs, "%f*PI/180", theta); /* the program's very argument */
    AVFilterContext *rot = NULL;
    int rc = r->av.create_filter(&r->src, fbuf, "in", sargs, NULL, r->graph);
    if (rc >= 0)
        rc = r->av.create_filter(&rot, frot, "rotate", rargs, NULL, r->graph);
    if (rc >= 0)
        rc = r->av.create_filter(&r->sink, fsink, "out", NULL, NULL, r->graph);
    if (rc >= 0)
        rc = r->av.link(r->src, 0, rot, 0);
    if (rc >= 0)
        rc = r->av.link(rot, 0, r->sink, 0);
    if (rc < 0) {
        r->av.graph_free(&r->graph);
        return cm_err_set(err, "cannot set up the rotate filter (%s)", av_err2str(rc));
    }
    r->w = f->width;
    r->h = f->height;
    r->fmt = f->format;
    r->theta = theta;
    r->built = 1;
    rc = r->av.config(r->graph, NULL);
    if (rc < 0) {
        r->av.graph_free(&r->graph);
        r->built = 0;
        return cm_err_set(err, "cannot set up the rotate filter (%s)", av_err2str(rc));
    }
    /* A pixel format the filter does not take: libavfilter inserted a
     * conversion before it (a fourth filter); the caller converts instead.
     * (Told apart this way, not by refusing conversions, which would make
     * libavfilter log an error line.) */
    r->unsupported = r->graph->nb_filters != 3;
    if (r->unsupported) {
        r->av.graph_free(&r->graph);
        return 1;
    }
    return 0;
}

int fr_rotator_run(fr_rotator *r, const AVFrame *f, double theta, AVFrame **out, cm_err *err)
{
    *out = NULL;
    if (!r->built || r->w != f->width || r->h != f->height || r->fmt != f->format || r->theta != theta) {
        int b = build(r, f, theta, err);
        if (b != 0)
            return b;
    } else if (r->unsupported) {
        return 1;
    }
    AVFrame *in = av_frame_clone(f), *o = av_frame_alloc();
    if (!in || !o) {
        av_frame_free(&in);
        av_frame_free(&o);
        return cm_err_set(err, "out of memory");
    }
    in->pts = 0; /* the angle is a constant: time plays no part */
    int rc = r->av.src_add(r->src, in, AV_BUFFERSRC_FLAG_KEEP_REF);
    av_frame_free(&in);
    if (rc >= 0)
        rc = r->av.sink_get(r->sink, o);
    if (rc < 0) {
        av_frame_free(&o);
        /* the graph's state is unknown now: rebuilt on the next frame */
        r->av.graph_free(&r->graph);
        r->built = 0;
        return cm_err_set(err, "rotate filter failed (%s)", av_err2str(rc));
    }
    *out = o;
    return 0;
}
