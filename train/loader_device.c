/* loader: the device side of a batch (copy, spectrogram standardisation,
 * frame crop/resize/flip/normalisation through the backend).
 *
 * The raw inputs of a batch (labels, spectrograms as stored, decoded pixels)
 * are copied into one of BE_STAGE_SLOTS device slots with ops->stage_copy, so
 * that the copy of batch k+1 runs while step k computes from the other slot
 * (ld_device_next); the prepared tensors (float spectrograms from float16,
 * frames) are made on the compute stream just before the step that reads them.
 * A slot is released (ops->stage_release) once the step that read it has
 * been issued; the next copy into it waits for that step, nothing else. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/loader.h"
#include "train/loader_test.h"

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

/* The raw inputs of one staged batch on the device. */
typedef struct ld_slot_dev {
    int32_t *labels;          /* [B] */
    void *spec;               /* [B, len] float16 as stored, or float32 ready for the model */
    uint8_t *pix;             /* decoded pixels */
    size_t pix_cap;
    const ld_host_batch *hb;  /* the batch staged in it and not yet prepared, else NULL */
} ld_slot_dev;

struct ld_device {
    be_ctx *be;
    int max_batch, F, S;
    size_t spec_len;     /* bins * T */
    int spec_f32;
    int standardize;
    int need_audio, need_visual;
    ld_slot_dev slot[BE_STAGE_SLOTS];
    int next_stage;      /* slot of the next ld_device_stage */
    int next_take;       /* slot of the next ld_device_prepare */
    int in_use;          /* slot read by the step issued last (released before it is reused), -1 none */
    float *audio;        /* device [B, 1, bins, T] from float16 (float32 shards use the slot's buffer) */
    float *visual;       /* device [B*F, 3, S, S] */
    /* the look-ahead of ld_device_next: a batch of `ahead_loader` already
     * staged, or the error met while fetching it (reported on the next call) */
    ld_loader *ahead_loader;
    ld_host_batch *ahead;
    int ahead_failed;
    cm_err ahead_err;
};

static int alloc_slots(ld_device *dv)
{
    const be_ops *op = dv->be->ops;
    size_t B = (size_t)dv->max_batch;
    size_t spec_bytes = B * dv->spec_len * (dv->spec_f32 ? sizeof(float) : sizeof(uint16_t));
    int ok = 1;
    for (int s = 0; s < BE_STAGE_SLOTS; s++) {
        ld_slot_dev *sl = &dv->slot[s];
        sl->labels = op->alloc(dv->be, B * sizeof(int32_t));
        ok = ok && sl->labels;
        if (dv->need_audio) {
            sl->spec = op->alloc(dv->be, spec_bytes);
            ok = ok && sl->spec;
        }
    }
    return ok;
}

ld_device *ld_device_create(be_ctx *be, const st_meta *m, int max_batch, int image_size, int need_audio,
                            int need_visual, cm_err *err)
{
    ld_device *dv = calloc(1, sizeof *dv);
    if (!dv) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    const be_ops *op = be->ops;
    dv->be = be;
    dv->max_batch = max_batch;
    dv->F = m->frames_per_sample;
    dv->S = image_size;
    dv->spec_len = (size_t)m->bins * (size_t)m->frames;
    dv->spec_f32 = m->spec_float32;
    dv->standardize = !ld_recipe_standardized(m->recipe_json);
    dv->need_audio = need_audio;
    dv->need_visual = need_visual;
    dv->in_use = -1;
    size_t B = (size_t)max_batch;
    int ok = alloc_slots(dv);
    if (need_audio && !dv->spec_f32) {
        dv->audio = op->alloc(be, B * dv->spec_len * sizeof(float));
        ok = ok && dv->audio;
    }
    if (need_visual) {
        dv->visual = op->alloc(be, B * (size_t)dv->F * 3 * (size_t)image_size * (size_t)image_size * sizeof(float));
        ok = ok && dv->visual;
    }
    if (!ok) {
        cm_err_set(err, "out of device memory (batch buffers)");
        ld_device_destroy(dv);
        return NULL;
    }
    return dv;
}

void ld_device_keep_spectrograms(ld_device *dv)
{
    dv->standardize = 0;
}

void ld_device_destroy(ld_device *dv)
{
    if (!dv)
        return;
    be_ctx *be = dv->be;
    be->ops->sync(be);
    for (int s = 0; s < BE_STAGE_SLOTS; s++) {
        void *ps[] = {dv->slot[s].labels, dv->slot[s].spec, dv->slot[s].pix};
        for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
            if (ps[i])
                be->ops->free(be, ps[i]);
    }
    if (dv->audio)
        be->ops->free(be, dv->audio);
    if (dv->visual)
        be->ops->free(be, dv->visual);
    free(dv);
}

/* Per-clip standardisation on the host for float32 shards (population std). */
static void standardize_f32(float *x, size_t n)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    double mean = s / (double)n;
    for (size_t i = 0; i < n; i++) {
        double v = x[i] - mean;
        s2 += v * v;
    }
    double sd = sqrt(s2 / (double)n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((x[i] - mean) / (sd + 1e-9));
}

/* The step that read the slot in use has been issued: the slot may be reused
 * once it has run. */
static void release_in_use(ld_device *dv)
{
    if (dv->in_use >= 0)
        dv->be->ops->stage_release(dv->be, dv->in_use);
    dv->in_use = -1;
}

/* Grows a slot's pixel buffer (after a sync: nothing may still read it). */
static int grow_pix(ld_device *dv, ld_slot_dev *sl, size_t bytes, cm_err *err)
{
    const be_ops *op = dv->be->ops;
    op->sync(dv->be);
    if (sl->pix)
        op->free(dv->be, sl->pix);
    size_t cap = bytes + bytes / 4;
    sl->pix = op->alloc(dv->be, cap);
    sl->pix_cap = sl->pix ? cap : 0;
    if (!sl->pix)
        return cm_err_set(err, "out of device memory (%zu bytes of pixels)", cap);
    return 0;
}

int ld_device_stage(ld_device *dv, ld_host_batch *hb, cm_err *err)
{
    be_ctx *be = dv->be;
    const be_ops *op = be->ops;
    if (hb->B > dv->max_batch)
        return cm_err_set(err, "batch of %d samples exceeds the buffers (%d)", hb->B, dv->max_batch);
    ld_slot_dev *sl = &dv->slot[dv->next_stage];
    if (sl->hb)
        return cm_err_set(err, "every input slot holds a batch not yet prepared");
    release_in_use(dv);
    if (dv->need_visual && hb->pix_bytes > sl->pix_cap && grow_pix(dv, sl, hb->pix_bytes, err) != 0)
        return -1;
    int slot = dv->next_stage;
    op->stage_copy(be, slot, sl->labels, hb->labels, (size_t)hb->B * sizeof(int32_t));
    if (dv->need_audio) {
        size_t n = (size_t)hb->B * dv->spec_len;
        if (dv->spec_f32 && dv->standardize) /* the host batch is the consumer's until released */
            for (int i = 0; i < hb->B; i++)
                standardize_f32((float *)hb->spec + (size_t)i * dv->spec_len, dv->spec_len);
        op->stage_copy(be, slot, sl->spec, hb->spec, n * (dv->spec_f32 ? sizeof(float) : sizeof(uint16_t)));
    }
    if (dv->need_visual)
        op->stage_copy(be, slot, sl->pix, hb->pix, hb->pix_bytes);
    sl->hb = hb;
    dv->next_stage = (dv->next_stage + 1) % BE_STAGE_SLOTS;
    return op->status(be, err);
}

int ld_device_prepare(ld_device *dv, const ld_host_batch *hb, tr_batch *out, cm_err *err)
{
    be_ctx *be = dv->be;
    const be_ops *op = be->ops;
    int slot = dv->next_take;
    ld_slot_dev *sl = &dv->slot[slot];
    if (sl->hb != hb)
        return cm_err_set(err, "batch %lld was not staged next", (long long)hb->number);
    release_in_use(dv);
    op->stage_wait(be, slot);
    memset(out, 0, sizeof *out);
    out->B = hb->B;
    out->labels = sl->labels;
    if (dv->need_audio) {
        if (dv->spec_f32) {
            out->audio = sl->spec;
        } else {
            op->prep_spec(be, hb->B, dv->spec_len, sl->spec, dv->standardize, dv->audio);
            out->audio = dv->audio;
        }
    }
    if (dv->need_visual) {
        op->prep_frames(be, hb->B * dv->F, hb->crops, sl->pix, dv->S, dv->S, imagenet_mean, imagenet_std,
                        dv->visual);
        out->visual = dv->visual;
    }
    sl->hb = NULL;
    dv->in_use = slot;
    dv->next_take = (dv->next_take + 1) % BE_STAGE_SLOTS;
    return op->status(be, err);
}

int ld_device_upload(ld_device *dv, ld_host_batch *hb, tr_batch *out, cm_err *err)
{
    if (ld_device_stage(dv, hb, err) != 0)
        return -1;
    return ld_device_prepare(dv, hb, out, err);
}

void ld_device_drop(ld_device *dv)
{
    if (dv->ahead)
        ld_loader_release(dv->ahead_loader, dv->ahead);
    dv->ahead = NULL;
    dv->ahead_loader = NULL;
    dv->ahead_failed = 0;
    dv->be->ops->sync(dv->be); /* no copy in flight: every slot is free */
    for (int s = 0; s < BE_STAGE_SLOTS; s++)
        dv->slot[s].hb = NULL;
    dv->next_stage = dv->next_take = 0;
    dv->in_use = -1;
}

/* Fetches and stages the batch after the current one (its copy overlaps the
 * current step); an error is kept for the next call. */
static void look_ahead(ld_device *dv, ld_loader *l)
{
    ld_host_batch *nx = NULL;
    int r = ld_loader_next(l, &nx, &dv->ahead_err);
    if (r == 1 && ld_device_stage(dv, nx, &dv->ahead_err) != 0) {
        ld_loader_release(l, nx);
        r = LD_DEVICE_FAILED;
    }
    dv->ahead = r == 1 ? nx : NULL;
    dv->ahead_loader = l;
    dv->ahead_failed = r < 0 ? r : 0;
}

int ld_device_next(ld_device *dv, ld_loader *l, ld_host_batch **hb, tr_batch *out, cm_err *err)
{
    *hb = NULL;
    if (dv->ahead_loader && dv->ahead_loader != l) /* left over from another loader's pass */
        ld_device_drop(dv);
    if (dv->ahead_failed) {
        int r = dv->ahead_failed;
        dv->ahead_failed = 0;
        if (err)
            *err = dv->ahead_err;
        return r;
    }
    ld_host_batch *cur = dv->ahead;
    dv->ahead = NULL;
    if (!cur) { /* the first batch of a pass, or its end */
        int r = ld_loader_next(l, &cur, err);
        if (r != 1)
            return r;
        if (ld_device_stage(dv, cur, err) != 0) {
            ld_loader_release(l, cur);
            return LD_DEVICE_FAILED;
        }
    }
    look_ahead(dv, l);
    if (ld_device_prepare(dv, cur, out, err) != 0) {
        ld_loader_release(l, cur);
        return LD_DEVICE_FAILED;
    }
    *hb = cur;
    return 1;
}
