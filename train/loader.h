/* loader: streams the samples of one split of an ingested folder (shards,
 * docs/FORMAT.md) as batches for the trainer.
 *
 * - ld_data: the shards of a split, a thin layer over store's st_split (which
 *   checks they share one recipe, class list, frame count and spectrogram shape).
 * - ld_loader: one pass (epoch) at a time over an ld_data. At the start of a
 *   pass every random draw of the pass is taken from the caller's generator on
 *   the calling thread: the permutation (when shuffling) and one 64-bit seed
 *   per sample (when augmenting), from which a worker derives that sample's
 *   RandomResizedCrop and flip. The batches are therefore the same whatever
 *   the number of threads and their timing, and a pass can start at batch k
 *   (resume) from the generator state saved at the start of the epoch.
 * - Worker threads read samples (pread through store), decode JPEGs with
 *   TurboJPEG and assemble host batches into a ring of slots allocated with
 *   ops->host_alloc (pinned on CUDA), so loading the next batches overlaps the
 *   step on the current one. The consumer takes batches in order
 *   (ld_loader_next) and gives each back (ld_loader_release).
 * - ld_device: the device side: copies a host batch to the device and runs
 *   ops->prep_spec (per-clip standardisation unless the recipe did it or
 *   ld_device_keep_spectrograms was called) and
 *   ops->prep_frames (crop, bilinear resize, flip, ImageNet normalisation).
 *   Double-buffered: batch k+1's copy runs while step k computes.
 *
 * Training drops the last partial batch (every step sees full batches, as
 * PyTorch's DataLoader(drop_last=True) of the authors' code); evaluation
 * keeps it.
 */
#ifndef TRAIN_LOADER_H
#define TRAIN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"
#include "store/store.h"
#include "kernels/kernels.h"
#include "train/rng.h"
#include "train/system.h"

/* ---- a split ---- */
typedef struct ld_data ld_data;

/* Opens every shard of `split` in `dir` (st_split_open, whose errors it
 * returns), and refuses a split of no shard or with metadata training cannot
 * use. Shards with zero samples open (count 0). */
ld_data *ld_data_open(const char *dir, const char *split, cm_err *err);
void ld_data_close(ld_data *d);
size_t ld_data_count(const ld_data *d);
const st_meta *ld_data_meta(const ld_data *d);
/* The id of sample i of the split (NULL when out of range). */
const char *ld_data_id(const ld_data *d, size_t i);
/* st_meta_compatible of their metadata. */
int ld_data_compatible(const ld_data *a, const ld_data *b, cm_err *err);
/* The identity of the data a model was trained on, as JSON (malloc'd):
 * {"dataset", "classes", "frames_per_sample", "bins", "frames", "recipe",
 * "content"}; content: the folder's digest (index.json "digest").
 * Stored in checkpoints and compared on --resume/--init/--teacher-ckpt. */
char *ld_data_identity(const ld_data *d);
/* Compares two identity JSON strings (classes, then recipe, F, shape);
 * 0 when equal, -1 naming the difference. */
int ld_identity_compare(const char *ours, const char *theirs, cm_err *err);
/* 0 when both identities name the same content (folder digest), or either
 * names none (written before it was recorded); else -1 naming both. For
 * --resume: a run continues only on the data it was trained on. */
int ld_identity_same_content(const char *ours, const char *theirs, cm_err *err);
/* The data identity a checkpoint was saved with (its root attribute
 * "recipe", written by tr_checkpoint_save from ld_data_identity), malloc'd
 * into *json, or *json = NULL when it carries none (e.g. converted from
 * PyTorch): then nothing can be compared. -1 when the file is not HDF5. */
int ld_ckpt_identity(const char *path, char **json, cm_err *err);
/* 1 when the recipe JSON says the spectrograms were already standardised per
 * clip (a key "normalize" with value "clip", true or 1 anywhere in it). */
int ld_recipe_standardized(const char *recipe_json);
/* st_split_exists. */
int ld_split_exists(const char *dir, const char *split);

/* ---- batches on the host ---- */
typedef struct ld_host_batch {
    int B;                 /* samples in this batch */
    int F;                 /* frames per sample */
    int64_t number;        /* batch index within the pass */
    void *spec;            /* [B, bins, T] raw values as stored (float16 or float32); NULL without audio */
    size_t spec_bytes;     /* bytes used in spec */
    uint8_t *pix;          /* decoded RGB images, packed */
    size_t pix_bytes;      /* bytes used in pix */
    be_crop *crops;        /* [B * F], offsets into pix; NULL without visual */
    int32_t *labels;       /* [B] */
    int64_t *index;        /* [B] sample indices within the split */
} ld_host_batch;

/* A bad sample (--bad-samples skip): its checksum does not match, a JPEG
 * does not decode, its label or frame count is out of range. */
typedef struct ld_bad {
    int64_t batch;         /* the batch (of the pass) whose position held it */
    int64_t index;         /* sample index within the split */
    int first;             /* 1 the first time this loader reports the sample */
    char id[ST_ID_MAX + 1];
    char msg[CM_ERR_MAX];  /* one line naming the sample and its shard */
} ld_bad;

typedef struct ld_opts {
    int batch;        /* batch size */
    int augment;      /* 1: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) + flip; 0: whole image */
    int shuffle;      /* 1: seeded permutation per pass; 0: shard order */
    int drop_last;    /* 1: drop the last partial batch */
    int threads;      /* worker threads (>= 1) */
    int slots;        /* host batches in flight (>= 2; 0: threads + 2) */
    int need_audio, need_visual;
    /* 0: a bad sample fails the pass (ld_loader_next returns -1 naming it).
     * 1: it is left out and reported (ld_loader_take_bad). With drop_last
     * (training) its position takes the next good sample of the pass order
     * (wrapping), loaded with the position's augmentation draw, so batches
     * stay full and numbered as in a clean pass; without (evaluation) it is
     * dropped and its batch has one sample fewer (a batch left empty is
     * passed over), so accuracies count exactly the good samples. Either
     * way the batches depend only on the data and the draws: runs stay
     * deterministic and resumable. */
    int skip_bad;

    /* Data parallel (DistributedSampler): rank of world (world <= 1: one
     * process). Each pass's order (shuffled or shard order) is computed in
     * full on every rank; with drop_last it is cut to a multiple of world,
     * and rank r takes the positions i with i mod world == r (each keeps its
     * position's augmentation seed). Without drop_last (evaluation) nothing
     * is cut, so the ranks' counts add up to the split. */
    int rank, world;
} ld_opts;

typedef struct ld_loader ld_loader;

ld_loader *ld_loader_create(ld_data *d, be_ctx *be, const ld_opts *o, cm_err *err);
void ld_loader_destroy(ld_loader *l);
/* Batches per pass (of this rank). */
size_t ld_loader_batches(const ld_loader *l);
/* Starts a pass: takes the pass's draws from rng (advancing it) and starts the
 * workers at batch `skip`. */
int ld_loader_start(ld_loader *l, tr_rng *rng, size_t skip, cm_err *err);
/* 1 with the next batch in *out, 0 at the end of the pass, -1 on a sample
 * that could not be loaded (message names the sample and its shard). */
int ld_loader_next(ld_loader *l, ld_host_batch **out, cm_err *err);
/* Takes the next bad-sample report of the batches handed out so far whose
 * batch number is <= upto, in position order: 1 with it in *out, 0 when
 * none is left. */
int ld_loader_take_bad(ld_loader *l, int64_t upto, ld_bad *out);
/* Gives a batch back (after the device has finished reading it: sync first). */
void ld_loader_release(ld_loader *l, ld_host_batch *b);
/* Stops the workers (also mid-pass). */
void ld_loader_stop(ld_loader *l);

/* torchvision's RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3,
 * 10 attempts, then the centre crop fallback) for a w x h image. */
void ld_random_resized_crop(tr_rng *r, int w, int h, int *x, int *y, int *cw, int *ch);

/* ---- the device side ---- */
typedef struct ld_device ld_device;

/* Buffers for batches of up to max_batch samples shaped like m (a split's
 * ld_data_meta): BE_STAGE_SLOTS slots of raw inputs, one set of prepared ones. */
ld_device *ld_device_create(be_ctx *be, const st_meta *m, int max_batch, int image_size,
                            int need_audio, int need_visual, cm_err *err);
/* Spectrograms are standardised per clip unless the recipe did it (the
 * default); after ld_device_keep_spectrograms they are used as stored (the
 * authors' code). */
void ld_device_keep_spectrograms(ld_device *dv);
void ld_device_destroy(ld_device *dv);

/* ld_device_next's return when the device side failed (the loader's own
 * failures return -1). */
#define LD_DEVICE_FAILED (-2)
/* The next batch of the pass of l, prepared on the device, in *out (device
 * pointers; valid until the next call); *hb is the host batch, to give back
 * with ld_loader_release after the step (sync first). The batch after it is
 * fetched and its copy started before returning (ops->stage_copy), so that
 * copy overlaps the step on this one. 1, 0 at the end of the pass, -1 (a
 * sample failed to load) or LD_DEVICE_FAILED. */
int ld_device_next(ld_device *dv, ld_loader *l, ld_host_batch **hb, tr_batch *out, cm_err *err);
/* Gives back a batch fetched ahead and frees the slots (a sync): call before
 * ld_loader_stop when leaving a pass before its end. */
void ld_device_drop(ld_device *dv);

/* The two halves of ld_device_next, for a caller that feeds batches itself:
 * ld_device_stage starts copying hb into the next slot (not ordered after the
 * compute already issued; at most BE_STAGE_SLOTS batches staged and not yet
 * prepared); ld_device_prepare makes the oldest staged batch, which must be
 * hb, ready for the step (the compute waits for its copy). hb must stay
 * untouched until the next sync. */
int ld_device_stage(ld_device *dv, ld_host_batch *hb, cm_err *err);
int ld_device_prepare(ld_device *dv, const ld_host_batch *hb, tr_batch *out, cm_err *err);
/* Both at once: ld_device_upload, train/loader_test.h (benchmarks, tests). */

#endif
