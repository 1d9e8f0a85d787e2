/* st_index: an ingest output folder written by one process or by N parts at once.
 *
 * The writer's lock: OUT/.lock, POSIX record locks (fcntl; released by the
 * kernel when the process ends, SIGKILL included; they work on NFS through
 * lockd). Byte 0 is a short mutex, byte 1 the folder (a whole run holds it
 * exclusively, each part shared), byte 2+K part K (exclusive). So one whole
 * run, or any number of distinct parts, write a folder at a time; a second
 * writer is refused at once with the holder's pid.
 *
 * OUT/plan.json records what the set will be (docs/FORMAT.md): the static
 * fields of index.json, per split the row count and each shard's expected
 * "ingest_cover" note, and the reader's failures. The first writer writes it;
 * a part that joins running parts must bring the same plan (same manifest and
 * options) or is refused. index.json and failures.tsv are then derived from
 * plan.json and the shards present (st_index_write), by the last part to
 * finish or by `store index DIR`.
 */
#ifndef ST_INDEX_H
#define ST_INDEX_H

#include <cjson/cJSON.h>

#include "common/cm_err.h"
#include "store/store.h"

#define ST_PLAN_FORMAT "c2kd-ingest-plan"

typedef struct st_lock st_lock;

/* Takes DIR's lock (DIR must exist). part_n <= 1: the whole set; else part
 * part_k of part_n. plan_json: the writer's plan, written to DIR/plan.json
 * when no other part runs, else compared with it; index.json is removed (a
 * folder without it is unfinished). plan_json NULL: exclusive, touching
 * nothing else (store index; train's run folder). NULL on refusal or error
 * (err says which). */
st_lock *st_lock_take(const char *dir, int part_k, int part_n, const char *plan_json, cm_err *err);
/* Under the lock's mutex: st_index_write. Returns its result. */
int st_lock_index(st_lock *l, cm_err *err);
void st_lock_release(st_lock *l);

/* Writes DIR/failures.tsv and DIR/index.json (atomically) from DIR/plan.json
 * and the shards; a folder without plan.json (written before parts, or by
 * hand) gets its index.json recomputed from the shards it lists (counts,
 * versions, digests, ids, totals; missing metadata from the first shard).
 * Either way the result must pass st_folder_check. Returns 0 when written,
 * 1 when a shard is missing, incomplete or refused (err names it; nothing
 * written), -1 on an error. */
int st_index_write(const char *dir, cm_err *err);

/* ---- The folder as one whole (st_folder.c; docs/FORMAT.md, "index.json") ----
 *
 * index.json (index_version 2) lists every shard of every split with its
 * split, sample count, format version, first and last id and digest
 * (st_shard_digest), and the folder's digest over them. A folder is
 * accepted only when all of it agrees: every listed shard present, a
 * regular file, listed once, its content unique (digest), and as listed
 * (split attribute, count, version, ids, digest, classes, frames per
 * sample, spectrogram shape and type, recipe); ids unique across the
 * folder; split and folder totals and digest as stated; aliases only
 * val -> another split that is not train; no unlisted shard (*.h5). */

#define ST_INDEX_VERSION 2
#define ST_INDEX_MAX (64u << 20) /* largest index.json or plan.json read (bytes) */

/* DIR/index.json parsed (free with cJSON_Delete). NULL with err set when
 * absent (an unfinished folder: err says how to finish it), not a regular
 * file, too large or not JSON. */
cJSON *st_index_read(const char *dir, cm_err *err);

/* Checks DIR against its parsed index (above); opens every listed shard.
 * 0 on success: when split != NULL, *shards (malloc'd, *n entries; the
 * caller closes each and frees the array) holds that split's shards in
 * order (an alias followed), the others are closed; digest (when not NULL)
 * receives the folder's digest. -1 with ONE line in err naming the file
 * and the reason. */
int st_folder_check(const char *dir, const cJSON *index, const char *split, st_shard ***shards, size_t *n,
                    char *digest, cm_err *err);

/* The folder digest of an index's "splits" and "aliases" (docs/FORMAT.md):
 * CRC-32 then Adler-32 over, per split in order, its name and a NUL, then per
 * shard its file name, a NUL, its digest and a NUL; then per alias its name,
 * a NUL, its target and a NUL. out: ST_DIGEST_LEN + 1 bytes. */
void st_folder_digest(const cJSON *splits, const cJSON *aliases, char *out);

#endif
