/* loader: worker threads that turn a pass's sample order into host batches.
 *
 * Work items are the sample positions of the pass, claimed in order. Batch b
 * is assembled in slot b % nslots; a worker whose batch's slot is still held
 * by an earlier batch waits. The worker that completes a batch packs the
 * decoded images into the slot's host buffer and marks it ready. Which worker
 * handles which sample never changes a batch's content: every random draw was
 * made at ld_loader_start. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "frames/frames.h"

#include "train/loader.h"
#include "train/loader_internal.h"

typedef struct ld_image {
    uint8_t *rgb;
    size_t cap;
    int w, h;
} ld_image;

typedef struct ld_slot {
    ld_host_batch hb;
    int64_t owner;       /* batch held (being assembled or ready), -1: none */
    int done;            /* samples finished */
    int ready;
    int failed;
    cm_err err;
    size_t pix_cap;
    ld_image *img;       /* [batch * F] decoded images */
    be_crop *crops;      /* [batch * F] crops in image coordinates */
    ld_bad *bad;         /* [batch] the bad sample at position j when is_bad[j] */
    uint8_t *is_bad;     /* [batch] */
} ld_slot;

typedef struct ld_worker {
    ld_loader *l;
    int id;
    pthread_t th;
    int started;
} ld_worker;

struct ld_loader {
    ld_data *d;
    be_ctx *be;
    ld_opts o;
    int F, bins, T;
    size_t spec_sample_bytes;
    size_t n;            /* samples in the split */
    size_t nl;           /* samples this rank takes per pass (n when world <= 1) */
    size_t nbatches;
    int nslots;
    ld_slot *slots;
    size_t *order;       /* [n] sample index at each position */
    uint64_t *seeds;     /* [n] augmentation seed of each position */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    int stop;
    size_t next_item;    /* next position to claim */
    size_t end_item;     /* positions [.., end_item) belong to the pass */
    int64_t next_batch;  /* next batch the consumer takes */
    ld_worker *workers;
    /* bad-sample reports (consumer thread only) */
    ld_bad *reports;
    size_t nreports, report_cap, report_next;
    uint8_t *reported;   /* [n] the sample was reported once */
};

/* load_item's answer for a bad sample (the other failures: -1). */
#define LD_BAD (-2)

/* Samples rank o->rank takes of n (see ld_opts). */
static size_t shard_count(size_t n, const ld_opts *o)
{
    if (o->world <= 1)
        return n;
    size_t N = (size_t)o->world, r = (size_t)o->rank;
    if (o->drop_last)
        return n / N;
    return n > r ? (n - r + N - 1) / N : 0;
}

/* Keeps this rank's positions r, r + N, ... of the pass's order and seeds. */
static void shard_order(ld_loader *l)
{
    if (l->o.world <= 1)
        return;
    size_t N = (size_t)l->o.world, r = (size_t)l->o.rank;
    for (size_t j = 0; j < l->nl; j++) {
        l->order[j] = l->order[r + j * N];
        l->seeds[j] = l->seeds[r + j * N];
    }
}

static size_t batch_size(const ld_loader *l, int64_t b)
{
    size_t start = (size_t)b * (size_t)l->o.batch;
    size_t left = l->nl - start;
    return left < (size_t)l->o.batch ? left : (size_t)l->o.batch;
}

void ld_random_resized_crop(tr_rng *r, int width, int height, int *x, int *y, int *cw, int *ch)
{
    const double scale_lo = 0.08, scale_hi = 1.0;
    const double ratio_lo = 3.0 / 4.0, ratio_hi = 4.0 / 3.0;
    const double area = (double)width * height;
    const double lr_lo = log(ratio_lo), lr_hi = log(ratio_hi);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * tr_rng_range(r, scale_lo, scale_hi);
        double aspect = exp(tr_rng_range(r, lr_lo, lr_hi));
        /* Python's round(): half to even, as nearbyint in the default mode. */
        int w = (int)nearbyint(sqrt(target * aspect));
        int h = (int)nearbyint(sqrt(target / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            *y = (int)tr_rng_below(r, (uint64_t)(height - h + 1));
            *x = (int)tr_rng_below(r, (uint64_t)(width - w + 1));
            *cw = w;
            *ch = h;
            return;
        }
    }
    double in_ratio = (double)width / height;
    int w, h;
    if (in_ratio < ratio_lo) {
        w = width;
        h = (int)nearbyint(w / ratio_lo);
    } else if (in_ratio > ratio_hi) {
        h = height;
        w = (int)nearbyint(h * ratio_hi);
    } else {
        w = width;
        h = height;
    }
    *cw = w;
    *ch = h;
    *y = (height - h) / 2;
    *x = (width - w) / 2;
}

static void slot_free(ld_loader *l, ld_slot *s)
{
    be_ctx *be = l->be;
    if (s->hb.spec)
        be->ops->host_free(be, s->hb.spec);
    if (s->hb.pix)
        be->ops->host_free(be, s->hb.pix);
    if (s->hb.labels)
        be->ops->host_free(be, s->hb.labels);
    free(s->hb.index);
    free(s->hb.crops);
    if (s->img)
        for (int i = 0; i < l->o.batch * l->F; i++)
            free(s->img[i].rgb);
    free(s->img);
    free(s->crops);
    free(s->bad);
    free(s->is_bad);
}

ld_loader *ld_loader_create(ld_data *d, be_ctx *be, const ld_opts *o, cm_err *err)
{
    if (o->batch < 1 || o->threads < 1) {
        cm_err_set(err, "loader: batch size and threads must be >= 1");
        return NULL;
    }
    ld_loader *l = calloc(1, sizeof *l);
    if (!l) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    const st_meta *m = ld_data_meta(d);
    l->d = d;
    l->be = be;
    l->o = *o;
    l->F = m->frames_per_sample;
    l->bins = m->bins;
    l->T = m->frames;
    l->spec_sample_bytes = (size_t)m->bins * (size_t)m->frames * (m->spec_float32 ? 4 : 2);
    l->n = ld_data_count(d);
    if (o->world > 1 && (o->rank < 0 || o->rank >= o->world)) {
        cm_err_set(err, "loader: rank %d outside world of %d", o->rank, o->world);
        free(l);
        return NULL;
    }
    l->nl = shard_count(l->n, o);
    l->nbatches = o->drop_last ? l->nl / (size_t)o->batch : (l->nl + (size_t)o->batch - 1) / (size_t)o->batch;
    l->nslots = o->slots >= 2 ? o->slots : o->threads + 2;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->order = calloc(l->n + 1, sizeof *l->order);
    l->seeds = calloc(l->n + 1, sizeof *l->seeds);
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    l->reported = calloc(l->n + 1, 1);
    if (!l->order || !l->seeds || !l->slots || !l->reported)
        goto oom;
    size_t nimg = (size_t)o->batch * (size_t)l->F;
    for (int i = 0; i < l->nslots; i++) {
        ld_slot *s = &l->slots[i];
        s->owner = -1;
        s->hb.F = l->F;
        s->hb.labels = be->ops->host_alloc(be, (size_t)o->batch * sizeof(int32_t));
        s->hb.index = calloc((size_t)o->batch, sizeof *s->hb.index);
        s->bad = calloc((size_t)o->batch, sizeof *s->bad);
        s->is_bad = calloc((size_t)o->batch, 1);
        if (!s->hb.labels || !s->hb.index || !s->bad || !s->is_bad)
            goto oom;
        if (o->need_audio) {
            s->hb.spec = be->ops->host_alloc(be, (size_t)o->batch * l->spec_sample_bytes);
            if (!s->hb.spec)
                goto oom;
        }
        if (o->need_visual) {
            s->img = calloc(nimg, sizeof *s->img);
            s->crops = calloc(nimg, sizeof *s->crops);
            s->hb.crops = calloc(nimg, sizeof *s->hb.crops);
            if (!s->img || !s->crops || !s->hb.crops)
                goto oom;
        }
    }
    return l;
oom:
    cm_err_set(err, "out of memory (loader buffers)");
    ld_loader_destroy(l);
    return NULL;
}

size_t ld_loader_batches(const ld_loader *l)
{
    return l->nbatches;
}

/* Reads and decodes sample idx into slot s, sample j, with the augmentation
 * draws of `seed`. 0, -1, or LD_BAD (a bad sample: why->index and why->id
 * set, err names it). */
static int load_item(ld_loader *l, fr_jpeg *jd, size_t idx, uint64_t seed, ld_slot *s, int j, ld_bad *why,
                     cm_err *err)
{
    size_t k, loc;
    if (st_split_locate(l->d->split, idx, &k, &loc) != 0)
        return cm_err_set(err, "sample %zu out of range", idx);
    st_shard *sh = st_split_shard(l->d->split, k);
    st_record rec;
    memset(&rec, 0, sizeof rec);
    const char *path = st_shard_path(sh), *base = strrchr(path, '/'), *id = st_shard_id(sh, loc);
    base = base ? base + 1 : path;
    why->index = (int64_t)idx;
    snprintf(why->id, sizeof why->id, "%s", id ? id : "?");
    int rc = st_shard_read(sh, loc, &rec, err);
    if (rc != 0) {
        if (rc != ST_ERR_CHECKSUM) /* its message already names the sample and the shard */
            cm_err_prefix(err, "%s: sample %zu", base, loc);
        return rc == ST_ERR_CHECKSUM ? LD_BAD : -1;
    }
    const st_meta *m = ld_data_meta(l->d);
    if (rec.label < 0 || rec.label >= m->n_classes) {
        rc = LD_BAD;
        cm_err_set(err, "%s: sample %s: label %d out of range", base, rec.id, (int)rec.label);
        goto out;
    }
    s->hb.labels[j] = rec.label;
    s->hb.index[j] = (int64_t)idx;
    if (l->o.need_audio) {
        uint8_t *dst = (uint8_t *)s->hb.spec + (size_t)j * l->spec_sample_bytes;
        rc = st_shard_read_spec(sh, loc, dst, NULL, err);
        if (rc != 0) {
            if (rc != ST_ERR_CHECKSUM)
                cm_err_prefix(err, "%s: sample %s: spectrogram", base, rec.id);
            rc = rc == ST_ERR_CHECKSUM ? LD_BAD : -1;
            goto out;
        }
    }
    if (l->o.need_visual) {
        tr_rng r;
        tr_rng_seed(&r, seed);
        if (rec.frames_per_sample != l->F) {
            rc = LD_BAD;
            cm_err_set(err, "%s: sample %s: %d frames, expected %d", base, rec.id, rec.frames_per_sample, l->F);
            goto out;
        }
        for (int f = 0; f < l->F; f++) {
            ld_image *im = &s->img[j * l->F + f];
            int w = 0, h = 0;
            /* A JPEG that does not decode, or declares a picture over the bound, is a bad sample. */
            if (fr_jpeg_decode(jd, rec.jpeg_buf + rec.jpeg_off[f], (size_t)rec.jpeg_len[f], &im->rgb, &im->cap, &w,
                               &h, err) != 0) {
                rc = LD_BAD;
                cm_err_prefix(err, "%s: sample %s: frame %d", base, rec.id, f);
                goto out;
            }
            im->w = w;
            im->h = h;
            be_crop *c = &s->crops[j * l->F + f];
            c->src_w = w;
            c->src_h = h;
            if (l->o.augment) {
                ld_random_resized_crop(&r, w, h, &c->x, &c->y, &c->w, &c->h);
                c->flip = tr_rng_uniform(&r) < 0.5;
            } else {
                c->x = c->y = 0;
                c->w = w;
                c->h = h;
                c->flip = 0;
            }
        }
    }
out:
    st_record_free(&rec);
    return rc;
}

/* Loads position p into slot s, sample j. A bad sample fails it, or, with
 * skip_bad, is noted in the slot and (drop_last) replaced by the next good
 * sample of the pass order, with position p's draws. */
static int load_position(ld_loader *l, fr_jpeg *jd, size_t p, ld_slot *s, int j, cm_err *err)
{
    s->is_bad[j] = 0;
    int rc = load_item(l, jd, l->order[p], l->seeds[p], s, j, &s->bad[j], err);
    if (rc != LD_BAD)
        return rc;
    if (!l->o.skip_bad)
        return -1;
    s->is_bad[j] = 1;
    snprintf(s->bad[j].msg, sizeof s->bad[j].msg, "%s", err->msg);
    if (!l->o.drop_last)
        return 0; /* dropped from its batch (pack_slot) */
    for (size_t t = 1; t < l->nl; t++) { /* this rank's positions (all of them with one process) */
        ld_bad other;
        rc = load_item(l, jd, l->order[(p + t) % l->nl], l->seeds[p], s, j, &other, err);
        if (rc != LD_BAD)
            return rc;
    }
    return cm_err_set(err, "no good sample left in the split (the last bad one: %s)", s->bad[j].msg);
}

/* Without drop_last: removes the bad samples from a complete slot (the
 * others keep their order). */
static void drop_bad(ld_loader *l, ld_slot *s)
{
    int k = 0;
    for (int j = 0; j < s->hb.B; j++) {
        if (s->is_bad[j])
            continue;
        if (k != j) {
            s->hb.labels[k] = s->hb.labels[j];
            s->hb.index[k] = s->hb.index[j];
            if (l->o.need_audio)
                memmove((uint8_t *)s->hb.spec + (size_t)k * l->spec_sample_bytes,
                        (uint8_t *)s->hb.spec + (size_t)j * l->spec_sample_bytes, l->spec_sample_bytes);
            for (int f = 0; l->o.need_visual && f < l->F; f++) {
                ld_image t = s->img[k * l->F + f];
                s->img[k * l->F + f] = s->img[j * l->F + f];
                s->img[j * l->F + f] = t;
                s->crops[k * l->F + f] = s->crops[j * l->F + f];
            }
        }
        k++;
    }
    s->hb.B = k;
}

/* Packs the decoded images of a complete slot into its host pixel buffer. */
static int pack_slot(ld_loader *l, ld_slot *s, cm_err *err)
{
    if (!l->o.drop_last)
        drop_bad(l, s);
    int B = s->hb.B, nimg = B * l->F;
    s->hb.spec_bytes = l->o.need_audio ? (size_t)B * l->spec_sample_bytes : 0;
    if (!l->o.need_visual) {
        s->hb.pix_bytes = 0;
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < nimg; i++)
        total += (size_t)s->img[i].w * (size_t)s->img[i].h * 3;
    if (total > s->pix_cap) {
        size_t cap = total + total / 4;
        if (s->hb.pix)
            l->be->ops->host_free(l->be, s->hb.pix);
        s->hb.pix = l->be->ops->host_alloc(l->be, cap);
        s->pix_cap = s->hb.pix ? cap : 0;
        if (!s->hb.pix)
            return cm_err_set(err, "out of memory (%zu bytes of pixels)", cap);
    }
    size_t off = 0;
    for (int i = 0; i < nimg; i++) {
        size_t bytes = (size_t)s->img[i].w * (size_t)s->img[i].h * 3;
        memcpy(s->hb.pix + off, s->img[i].rgb, bytes);
        s->hb.crops[i] = s->crops[i];
        s->hb.crops[i].offset = off;
        off += bytes;
    }
    s->hb.pix_bytes = total;
    return 0;
}

static void *worker_main(void *arg)
{
    ld_worker *w = arg;
    ld_loader *l = w->l;
    fr_jpeg *tj = l->o.need_visual ? fr_jpeg_create(NULL) : NULL;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->stop || l->next_item >= l->end_item)
            break;
        size_t p = l->next_item++;
        int64_t b = (int64_t)(p / (size_t)l->o.batch);
        int j = (int)(p % (size_t)l->o.batch);
        ld_slot *s = &l->slots[b % l->nslots];
        while (!l->stop && s->owner != b)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop)
            break;
        int failed = s->failed;
        pthread_mutex_unlock(&l->mu);
        cm_err e;
        int rc = 0;
        if (!failed) {
            if (l->o.need_visual && !tj)
                rc = cm_err_set(&e, "TurboJPEG: cannot create a decompressor");
            else
                rc = load_position(l, tj, p, s, j, &e);
        }
        pthread_mutex_lock(&l->mu);
        if (rc != 0 && !s->failed) {
            s->failed = 1;
            s->err = e;
        }
        if (++s->done == s->hb.B) {
            if (!s->failed) {
                pthread_mutex_unlock(&l->mu);
                rc = pack_slot(l, s, &e);
                pthread_mutex_lock(&l->mu);
                if (rc != 0) {
                    s->failed = 1;
                    s->err = e;
                }
            }
            s->ready = 1;
            pthread_cond_broadcast(&l->cv);
        }
    }
    pthread_mutex_unlock(&l->mu);
    fr_jpeg_destroy(tj);
    return NULL;
}

static void assign_slot(ld_loader *l, ld_slot *s, int64_t b)
{
    s->owner = b;
    s->done = 0;
    s->ready = 0;
    s->failed = 0;
    s->hb.number = b;
    s->hb.B = b >= 0 ? (int)batch_size(l, b) : 0;
}

int ld_loader_start(ld_loader *l, tr_rng *rng, size_t skip, cm_err *err)
{
    ld_loader_stop(l);
    for (size_t i = 0; i < l->n; i++)
        l->order[i] = i;
    if (l->o.shuffle)
        for (size_t i = l->n; i > 1; i--) { /* Fisher-Yates */
            size_t j = (size_t)tr_rng_below(rng, i);
            size_t t = l->order[i - 1];
            l->order[i - 1] = l->order[j];
            l->order[j] = t;
        }
    for (size_t i = 0; i < l->n; i++)
        l->seeds[i] = l->o.augment ? tr_rng_next(rng) : 0;
    shard_order(l);
    if (skip > l->nbatches)
        skip = l->nbatches;
    l->stop = 0;
    l->nreports = l->report_next = 0;
    l->next_batch = (int64_t)skip;
    l->next_item = skip * (size_t)l->o.batch;
    l->end_item = l->o.drop_last ? l->nbatches * (size_t)l->o.batch : l->nl;
    for (int i = 0; i < l->nslots; i++)
        assign_slot(l, &l->slots[i], -1);
    for (int i = 0; i < l->nslots && (size_t)(skip + (size_t)i) < l->nbatches; i++) {
        int64_t b = (int64_t)skip + i;
        assign_slot(l, &l->slots[b % l->nslots], b);
    }
    l->workers = calloc((size_t)l->o.threads, sizeof *l->workers);
    if (!l->workers)
        return cm_err_set(err, "out of memory");
    l->running = 1;
    for (int i = 0; i < l->o.threads; i++) {
        l->workers[i] = (ld_worker){.l = l, .id = i};
        if (pthread_create(&l->workers[i].th, NULL, worker_main, &l->workers[i]) != 0) {
            ld_loader_stop(l);
            return cm_err_set(err, "cannot start loader threads");
        }
        l->workers[i].started = 1;
    }
    return 0;
}

/* Queues the bad-sample reports of a complete slot (consumer thread). */
static int queue_reports(ld_loader *l, const ld_slot *s, int B)
{
    for (int j = 0; j < B; j++) {
        if (!s->is_bad[j])
            continue;
        if (l->nreports == l->report_cap) {
            size_t cap = l->report_cap ? 2 * l->report_cap : 16;
            ld_bad *nr = realloc(l->reports, cap * sizeof *nr);
            if (!nr)
                return -1;
            l->reports = nr;
            l->report_cap = cap;
        }
        ld_bad *r = &l->reports[l->nreports++];
        *r = s->bad[j];
        r->batch = s->hb.number;
        r->first = !l->reported[r->index];
        l->reported[r->index] = 1;
    }
    return 0;
}

/* The slot of batch b is free for batch b + nslots (l->mu held). */
static void release_locked(ld_loader *l, ld_slot *s)
{
    int64_t nb = s->hb.number + l->nslots;
    assign_slot(l, s, (size_t)nb < l->nbatches ? nb : -1);
    pthread_cond_broadcast(&l->cv);
}

int ld_loader_next(ld_loader *l, ld_host_batch **out, cm_err *err)
{
    *out = NULL;
    if (!l->running)
        return 0;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        int64_t b = l->next_batch;
        if ((size_t)b >= l->nbatches) {
            pthread_mutex_unlock(&l->mu);
            return 0;
        }
        ld_slot *s = &l->slots[b % l->nslots];
        while (!(s->owner == b && s->ready))
            pthread_cond_wait(&l->cv, &l->mu);
        if (s->failed || (l->o.skip_bad && queue_reports(l, s, (int)batch_size(l, b)) != 0)) {
            if (err)
                *err = s->failed ? s->err : (cm_err){"out of memory (bad-sample reports)"};
            pthread_mutex_unlock(&l->mu);
            return -1;
        }
        l->next_batch++;
        if (s->hb.B > 0) {
            *out = &s->hb;
            break;
        }
        release_locked(l, s); /* every sample of it was bad */
    }
    pthread_mutex_unlock(&l->mu);
    return 1;
}

int ld_loader_take_bad(ld_loader *l, int64_t upto, ld_bad *out)
{
    if (l->report_next >= l->nreports || l->reports[l->report_next].batch > upto)
        return 0;
    *out = l->reports[l->report_next++];
    return 1;
}

void ld_loader_release(ld_loader *l, ld_host_batch *hb)
{
    if (!hb)
        return;
    pthread_mutex_lock(&l->mu);
    release_locked(l, &l->slots[hb->number % l->nslots]);
    pthread_mutex_unlock(&l->mu);
}

void ld_loader_stop(ld_loader *l)
{
    if (!l->running)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->o.threads; i++)
        if (l->workers[i].started)
            pthread_join(l->workers[i].th, NULL);
    free(l->workers);
    l->workers = NULL;
    l->running = 0;
}

void ld_loader_destroy(ld_loader *l)
{
    if (!l)
        return;
    ld_loader_stop(l);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++)
            slot_free(l, &l->slots[i]);
    free(l->slots);
    free(l->order);
    free(l->seeds);
    free(l->reports);
    free(l->reported);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
