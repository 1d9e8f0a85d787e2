/* loader: the device side of a batch (copy, spectrogram standardisation,
 * frame crop/resize/flip/normalisation through the backend). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/loader.h"

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

struct ld_device {
    be_ctx *be;
    int max_batch, F, S;
    size_t spec_len;     /* bins * T */
    int spec_f32;
    int standardize;
    int need_audio, need_visual;
    uint16_t *spec_raw;  /* device [B, len] float16 */
    float *audio;        /* device [B, 1, bins, T] */
    uint8_t *pix;        /* device pixels */
    size_t pix_cap;
    float *visual;       /* device [B*F, 3, S, S] */
    int32_t *labels;     /* device [B] */
};

ld_device *ld_device_create(be_ctx *be, const ld_data *d, int max_batch, int image_size, int need_audio,
                            int need_visual, cm_err *err)
{
    const st_meta *m = ld_data_meta(d);
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
    size_t B = (size_t)max_batch;
    dv->labels = op->alloc(be, B * sizeof(int32_t));
    int ok = dv->labels != NULL;
    if (need_audio) {
        dv->audio = op->alloc(be, B * dv->spec_len * sizeof(float));
        ok = ok && dv->audio;
        if (!dv->spec_f32) {
            dv->spec_raw = op->alloc(be, B * dv->spec_len * sizeof(uint16_t));
            ok = ok && dv->spec_raw;
        }
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

void ld_device_destroy(ld_device *dv)
{
    if (!dv)
        return;
    be_ctx *be = dv->be;
    be->ops->sync(be);
    void *ps[] = {dv->spec_raw, dv->audio, dv->pix, dv->visual, dv->labels};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        if (ps[i])
            be->ops->free(be, ps[i]);
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

int ld_device_upload(ld_device *dv, const ld_host_batch *hb, tr_batch *out, cm_err *err)
{
    be_ctx *be = dv->be;
    const be_ops *op = be->ops;
    if (hb->B > dv->max_batch)
        return cm_err_set(err, "batch of %d samples exceeds the buffers (%d)", hb->B, dv->max_batch);
    memset(out, 0, sizeof *out);
    out->B = hb->B;
    op->to_device(be, dv->labels, hb->labels, (size_t)hb->B * sizeof(int32_t));
    out->labels = dv->labels;
    if (dv->need_audio) {
        if (dv->spec_f32) {
            /* The host batch belongs to the consumer until released: standardise in place. */
            float *x = (float *)hb->spec;
            if (dv->standardize)
                for (int i = 0; i < hb->B; i++)
                    standardize_f32(x + (size_t)i * dv->spec_len, dv->spec_len);
            op->to_device(be, dv->audio, x, (size_t)hb->B * dv->spec_len * sizeof(float));
        } else {
            op->to_device(be, dv->spec_raw, hb->spec, (size_t)hb->B * dv->spec_len * sizeof(uint16_t));
            op->prep_spec(be, hb->B, dv->spec_len, dv->spec_raw, dv->standardize, dv->audio);
        }
        out->audio = dv->audio;
    }
    if (dv->need_visual) {
        if (hb->pix_bytes > dv->pix_cap) {
            op->sync(be);
            if (dv->pix)
                op->free(be, dv->pix);
            size_t cap = hb->pix_bytes + hb->pix_bytes / 4;
            dv->pix = op->alloc(be, cap);
            dv->pix_cap = dv->pix ? cap : 0;
            if (!dv->pix)
                return cm_err_set(err, "out of device memory (%zu bytes of pixels)", cap);
        }
        op->to_device(be, dv->pix, hb->pix, hb->pix_bytes);
        op->prep_frames(be, hb->B * dv->F, hb->crops, dv->pix, dv->S, dv->S, imagenet_mean, imagenet_std,
                        dv->visual);
        out->visual = dv->visual;
    }
    return op->status(be, err);
}
