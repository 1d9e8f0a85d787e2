/* store: the HDF5 shard format (docs/FORMAT.md is the contract).
 *
 * Threads: one writer per shard file, used by one thread (ingest's single
 * writer). st_shard_open maps every sample's spectrogram chunk and the JPEG
 * bytes to file offsets once; st_shard_read and st_shard_read_spec then use
 * pread() only (no HDF5 call), so many threads may read the same or
 * different shards at once. st_shard_open/close/note, st_split_open/close
 * and the st_writer calls go through HDF5: serialise them (HDF5 may be built
 * without thread safety).
 */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cm_err.h"

#define ST_FORMAT "c2kd-shard"
/* Written by st_writer. Readers accept 1 (no checksums) to ST_VERSION. */
#define ST_VERSION 2

/* Return code of the sample reads (st_shard_read, st_shard_read_spec,
 * st_split_read, st_split_read_spec) when the bytes read do not match the
 * sample's stored checksum; err->msg then starts "checksum mismatch" and
 * names the sample id and the shard file. Every other failure returns -1.
 * Both leave nothing to free. */
#define ST_ERR_CHECKSUM (-2)

/* Bounds on what a shard's header may declare (larger is refused at open). */
#define ST_MAX_FRAMES 64                 /* frames per sample */
#define ST_MAX_SPEC_VALUES (1u << 24)    /* bins x frames of one spectrogram */
/* Bytes of a sample id (UTF-8, without its terminating NUL): the one limit of
 * the writer (st_writer_add refuses a longer id), the reader (st_record.id,
 * the dataset `id` at open) and ingest (a longer row is one failure). */
#define ST_ID_MAX 255

/* ---- Metadata ------------------------------------------------------------- */

typedef struct st_meta {
    const char *dataset;            /* "ave" */
    const char *split;              /* "train", "val", "test" */
    int n_classes;
    const char *const *classes;     /* class names in index order */
    int frames_per_sample;          /* F */
    int bins, frames;               /* spectrogram shape [bins, frames] */
    int spec_float32;               /* 0: float16 (default), 1: float32 */
    const char *recipe_json;        /* every parameter of spectro and frames */
} st_meta;

/* ---- Writing a shard ------------------------------------------------------ */

typedef struct st_sample {
    const char *id;
    int32_t label;
    const float *spec;              /* [bins, frames] */
    const uint8_t *const *jpeg;     /* F JPEG files */
    const size_t *jpeg_len;         /* F lengths */
    float seg_start, seg_end;
    const float *frame_time;        /* F timestamps actually used */
} st_sample;

typedef struct st_writer st_writer;

/* Creates `path` under a temporary name; nothing appears at `path` until close.
 * Every failure of the writer names the shard file and the cause (the
 * operating system's reason when there is one: "No space left on device"). */
st_writer *st_writer_create(const char *path, const st_meta *meta, cm_err *err);
/* Adds one sample (and its checksums). On failure nothing is added. */
int st_writer_add(st_writer *w, const st_sample *s, cm_err *err);
size_t st_writer_count(const st_writer *w);
/* Extra root string attribute written at close (ingest's bookkeeping:
 * "ingest_cover", "ingest_failures"; see docs/FORMAT.md). */
int st_writer_set_note(st_writer *w, const char *name, const char *value, cm_err *err);
/* Finishes, fsyncs and renames to `path`; frees w in any case. On failure
 * the temporary file is removed and nothing appears at `path`. */
int st_writer_close(st_writer *w, cm_err *err);
/* Removes the temporary file; frees w. */
void st_writer_abort(st_writer *w);

/* ---- Reading a shard ------------------------------------------------------ */

typedef struct st_shard st_shard;

typedef struct st_record {
    char id[ST_ID_MAX + 1];
    int32_t label;
    float seg_start, seg_end;
    int frames_per_sample;
    float frame_time[ST_MAX_FRAMES];
    /* JPEGs: frame k is jpeg_buf[jpeg_off[k] .. + jpeg_len[k]) (jpeg_buf
     * malloc'd by the reader, free with st_record_free) */
    uint8_t *jpeg_buf;
    size_t jpeg_len[ST_MAX_FRAMES];
    size_t jpeg_off[ST_MAX_FRAMES];
} st_record;

/* Opens and validates a shard: only the layout the direct reads handle is
 * accepted (docs/FORMAT.md); any other is refused with a message naming
 * the dataset. */
st_shard *st_shard_open(const char *path, cm_err *err);
void st_shard_close(st_shard *s);
size_t st_shard_count(const st_shard *s);
/* Metadata of the shard; strings owned by the shard. */
const st_meta *st_shard_meta(const st_shard *s);
/* Path the shard was opened from. */
const char *st_shard_path(const st_shard *s);
/* Format version of the file (1: no checksums). */
int st_shard_version(const st_shard *s);
/* 1 when the shard stores per-sample checksums (version >= 2). */
int st_shard_has_checksums(const st_shard *s);
/* Sample i's id (owned by the shard), NULL when i is out of range. */
const char *st_shard_id(const st_shard *s, size_t i);
int32_t st_shard_label(const st_shard *s, size_t i);
/* Root string attribute `name` of the shard (malloc'd, free()), or NULL when absent. */
char *st_shard_note(const st_shard *s, const char *name);

/* Reads sample i's fields except the spectrogram, and checks the record
 * checksum (id, label, segment, frame times, JPEG lengths and bytes).
 * 0, -1 or ST_ERR_CHECKSUM; r is empty after a failure. */
int st_shard_read(st_shard *s, size_t i, st_record *r, cm_err *err);
void st_record_free(st_record *r);
/* Reads sample i's spectrogram [bins, frames] and checks its checksum: as
 * stored (raw 2- or 4-byte little-endian values) into `raw` when raw !=
 * NULL, converted to float32 into `f32` when f32 != NULL.
 * 0, -1 or ST_ERR_CHECKSUM (the buffers then hold the bytes as read). */
int st_shard_read_spec(st_shard *s, size_t i, void *raw, float *f32, cm_err *err);
/* The shard's digest, ST_DIGEST_LEN hex digits (docs/FORMAT.md, "index.json"):
 * zlib's CRC-32 then Adler-32 of, per sample in order, its id and a NUL, then
 * (version 2) crc32/record[i] and crc32/spec[i], or (version 1, no checksums)
 * label[i], each 4 bytes little endian. Identifies the shard's content
 * without reading the bulk data (the checksums cover it). */
#define ST_DIGEST_LEN 16
void st_shard_digest(const st_shard *s, char out[ST_DIGEST_LEN + 1]);
/* Checksum checks of the two reads: on (1, the default) or off (0; `store
 * verify` reads a mismatching sample again to report what else is wrong).
 * Set it before sharing the shard between threads. */
void st_shard_set_checks(st_shard *s, int on);

/* ---- A split: the shards of one split of an ingested folder --------------- */

/* Every shard of `split` listed in DIR/index.json, in order, as one sequence
 * of samples, after the whole folder is checked as one (st_folder_check in
 * store/st_index.h: every listed shard of every split present, unique and as
 * listed, ids unique, no unlisted shard); a folder without a complete index
 * is refused. A split of zero shards opens (count 0, meta NULL). Same
 * threading rules as st_shard. */
typedef struct st_split st_split;
st_split *st_split_open(const char *dir, const char *split, cm_err *err);
/* 1 when `split` is listed in DIR/index.json (a split or an alias), else 0
 * (also when there is no readable index: st_split_open reports it). */
int st_split_exists(const char *dir, const char *split);
/* 0 when a and b hold the same classes, frames per sample, spectrogram
 * shape and type, and recipe (compared as JSON), else -1 naming the first
 * difference. */
int st_meta_compatible(const st_meta *a, const st_meta *b, cm_err *err);
void st_split_close(st_split *d);
size_t st_split_count(const st_split *d);
size_t st_split_nshards(const st_split *d);
/* The folder's digest (index.json "digest", checked at open): identifies the
 * content of every split of the folder. */
const char *st_split_folder_digest(const st_split *d);
st_shard *st_split_shard(st_split *d, size_t k);
/* Meta of the first shard (all shards of a split share it). NULL when no shard. */
const st_meta *st_split_meta(const st_split *d);
/* Maps global sample i to (shard k, local j); -1 when out of range. */
int st_split_locate(const st_split *d, size_t i, size_t *k, size_t *j);
/* The same over any list of nshards shards whose first samples have the
 * global indices first[0..nshards] (first[0] = 0, first[nshards] = the total):
 * the one shard k with first[k] <= i < first[k + 1] (never an empty one). */
int st_locate(const size_t *first, size_t nshards, size_t i, size_t *k, size_t *j);
/* As st_shard_read / st_shard_read_spec (same return codes). */
int st_split_read(st_split *d, size_t i, st_record *r, cm_err *err);
int st_split_read_spec(st_split *d, size_t i, void *raw, float *f32, cm_err *err);

/* ---- float16 -------------------------------------------------------------- */

/* IEEE binary16 <-> binary32, round to nearest even (subnormals, Inf, NaN kept). */
uint16_t st_f32_to_f16(float f);
float st_f16_to_f32(uint16_t h);
void st_f32_to_f16_n(const float *in, uint16_t *out, size_t n);
void st_f16_to_f32_n(const uint16_t *in, float *out, size_t n);

#endif
