/* ingest: dataset readers -> normalized manifest -> parallel pipeline -> shards.
 *
 * ig_preset     one manifests/<name>.conf file (recipe + reader options)
 * ig_manifest   the normalized manifest: items (id, audio, video, label, split,
 *               segment) + the rows that could not become items (failures)
 * ig_run        workers (spectro + frames per item) and one HDF5 writer,
 *               resumable, deterministic shard boundaries
 */
#ifndef INGEST_H
#define INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/cm_err.h"
#include "spectro/spectro.h"
#include "store/store.h"

#define IG_MAX_SPLITS 8

typedef struct ig_preset {
    char dataset[64];       /* name written in the shards */
    char reader[32];        /* a name of ig_readers (ig_reader_find) */
    sp_params sp;           /* spectrogram recipe */
    int frames;             /* F */
    int use_segment;        /* 1: audio and frames from the annotated segment; 0: whole clip */
    int short_side;         /* frames resized so the shorter side is this (0: original) */
    int jpeg_quality;       /* 1..100 */
    int spec_float32;       /* 0: float16 spectrograms */
    char class_order[32];   /* first-in-test | sorted | preset */
    char **classes;         /* preset class list (class_order = preset) */
    int n_classes;
    char subset[16];        /* vggsound: tiny | full */
    uint64_t seed;          /* cremad: seeded split when train.csv/test.csv are absent */
    double test_fraction;
    char val_alias[16];     /* "test": the val split is the test split (index.json alias) */
} ig_preset;

void ig_preset_init(ig_preset *p);
void ig_preset_free(ig_preset *p);
int ig_preset_load(ig_preset *p, const char *path, cm_err *err);
/* One key = value setting (the file's lines and --set overrides). */
int ig_preset_set(ig_preset *p, const char *key, const char *value, cm_err *err);
/* The recipe as a JSON string (malloc'd): every spectro and frames parameter. */
char *ig_preset_recipe_json(const ig_preset *p);

typedef struct ig_item {
    char *id, *audio, *video, *label;
    int split;              /* index into ig_manifest.splits */
    int label_idx;          /* index into ig_manifest.classes */
    double start, end;      /* seconds; end < 0: the whole clip */
} ig_item;

typedef struct ig_fail {
    char *id, *split, *reason;
} ig_fail;

typedef struct ig_manifest {
    ig_item *items;
    size_t n, cap;
    ig_fail *fails;         /* rows that are not items (unknown label, duplicate id, bad line) */
    size_t nfail, capf;
    char **notes;           /* warnings that fail no row (labels that differ only in case) */
    size_t nnotes;
    char **classes;
    int n_classes;
    char *splits[IG_MAX_SPLITS];
    int n_splits;
    char alias_from[16], alias_to[16]; /* e.g. val -> test */
    size_t renamed;         /* AVE rows whose repeated id got a ~N suffix */
} ig_manifest;

void ig_manifest_init(ig_manifest *m);
void ig_manifest_free(ig_manifest *m);
int ig_manifest_split(ig_manifest *m, const char *name);        /* index, adding it */
int ig_manifest_add(ig_manifest *m, const char *id, const char *audio, const char *video,
                    const char *label, const char *split, double start, double end);
int ig_manifest_fail(ig_manifest *m, const char *id, const char *split, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int ig_manifest_note(ig_manifest *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Classes and label indices (per p->class_order; `first` = the split whose
 * first appearances fix the order for first-in-test); items with an unknown
 * label, a repeated id or an id over ST_ID_MAX bytes move to the failures;
 * classes that differ only in (ASCII) case get a note. */
int ig_manifest_finish(ig_manifest *m, const ig_preset *p, const char *first, cm_err *err);
/* TSV: id audio video label split start end (see docs/FORMAT.md). */
void ig_manifest_write_tsv(const ig_manifest *m, FILE *f);

/* Checks of what annotation files and manifests say (0 ok, else -1 and a
 * reason in why): text (labels): 1..IG_NAME_MAX bytes, no control character;
 * a name (video ids, clips: they become file names and parts of ids): that,
 * and no '/', '\\' or '..'; a sample id: a name of 1..ST_ID_MAX bytes (the
 * shard writer's limit, store.h); a split: 1..IG_SPLIT_MAX of [A-Za-z0-9_-];
 * a media path: no control character, and when relative no '..' component
 * (absolute ones are taken as given: a hand-written manifest may point
 * anywhere). */
#define IG_NAME_MAX 200
#define IG_SPLIT_MAX 32
int ig_check_text(const char *what, const char *s, char *why, size_t n);
int ig_check_name(const char *what, const char *s, char *why, size_t n);
int ig_check_id(const char *what, const char *s, char *why, size_t n);
int ig_check_split(const char *s, char *why, size_t n);
int ig_check_path(const char *what, const char *s, char *why, size_t n);

/* Readers: `root` holds the dataset in its native layout. Annotation files
 * must be regular files (a FIFO or a device is refused, never waited on);
 * rows whose fields fail the checks above go to the failures; every reader
 * is linear in rows. */
int ig_read_ave(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err);
int ig_read_cremad(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err);
int ig_read_vggsound(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err);
/* A hand-written normalized manifest; relative paths are taken from `root`
 * (NULL: the manifest's folder). classes_file: one class per line (NULL: sorted labels). */
int ig_read_tsv(ig_manifest *m, const ig_preset *p, const char *path, const char *root,
                const char *classes_file, cm_err *err);
/* Dispatch on p->reader (ig_readers). */
int ig_read(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err);

/* The readers, one row each: every list of reader names (the preset key
 * `reader`, the dispatch, --help) reads this table. A new dataset layout is
 * one reader function, one row here and one manifests/NAME.conf preset. */
typedef struct ig_reader {
    const char *name;       /* the preset's `reader = NAME` */
    int (*read)(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err); /* NULL: --manifest */
    const char *layout;     /* one line: what --root holds (or what --manifest reads) */
} ig_reader;
extern const ig_reader ig_readers[];
extern const int ig_n_readers;
/* The row named name, or NULL. */
const ig_reader *ig_reader_find(const char *name);
/* The names of the readers, joined by sep, into out (size n). */
void ig_reader_names(char *out, size_t n, const char *sep);

/* ---- the datasets: the presets manifests/NAME.conf ----
 * A dataset is its preset file; the folders searched, in order: $C2KD_MANIFESTS,
 * manifests/ beside the build folder of the running program
 * (.../build/bin/ingest -> .../manifests), ./manifests. The Makefile
 * (DATASETS) and tools/reproduce list the same files. */
/* The preset file of dataset `name` (the first folder that has NAME.conf) into
 * out. 0, or -1 when none has it. */
int ig_preset_find(const char *name, char *out, size_t n);
/* The names of every preset found (NAME of NAME.conf, sorted, each once),
 * joined by sep, into out (size n; "" when none). */
void ig_preset_names(char *out, size_t n, const char *sep);

typedef struct ig_options {
    const char *out;        /* output folder */
    int jobs;               /* worker threads */
    size_t shard_items;     /* items covered by one shard (0: from shard_bytes) */
    size_t shard_bytes;     /* target shard size */
    const char *wisdom;     /* FFTW wisdom path or NULL */
    FILE *log;              /* progress and notes (NULL: silent) */
    int part_k, part_n;     /* part_n > 1: only plan shards i with i mod part_n = part_k */
    int allow_truncated;    /* 1: keep truncated media (spectro/frames allow_truncated); 0: failures.tsv */
} ig_options;

typedef struct ig_summary {
    size_t items;           /* rows of the manifest (reader failures included) */
    size_t written, failed; /* samples in this run's shards; its failed rows + the reader's */
    size_t kept_shards, shards, total_shards; /* this run's shards (kept), the whole plan's */
    size_t done_now, failed_now; /* items processed by this run, failed among them */
    int indexed;            /* index.json and failures.tsv written (the whole set is there) */
} ig_summary;

/* Runs the pipeline in phases: plan (shards of fixed row ranges) -> lock the
 * output folder (store/st_index.h; plan.json) -> keep the complete shards of
 * an earlier run -> workers + the writer -> index.json and failures.tsv once
 * every shard of the set is there (a part leaves that to the last part).
 * Returns 0 when it ran to the end (failed items are in the shards' notes,
 * failures.tsv and the summary), -1 on a fatal error (output folder, lock,
 * HDF5, disk): err names the file and the cause. */
int ig_run(const ig_preset *p, const ig_manifest *m, const ig_options *o, ig_summary *s, cm_err *err);

#endif
