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

#include "common/cm_err.h"

#define ST_PLAN_FORMAT "c2kd-ingest-plan"

typedef struct st_lock st_lock;

/* Takes DIR's lock (DIR must exist). part_n <= 1: the whole set; else part
 * part_k of part_n. plan_json: the writer's plan, written to DIR/plan.json
 * when no other part runs, else compared with it; index.json is removed (a
 * folder without it is unfinished). plan_json NULL: an indexer (store index),
 * exclusive, touching nothing. NULL on refusal or error (err says which). */
st_lock *st_lock_take(const char *dir, int part_k, int part_n, const char *plan_json, cm_err *err);
/* Under the lock's mutex: st_index_write. Returns its result. */
int st_lock_index(st_lock *l, cm_err *err);
void st_lock_release(st_lock *l);

/* Writes DIR/failures.tsv and DIR/index.json (atomically) from DIR/plan.json
 * and the shards. Returns 0 when written, 1 when a planned shard is missing
 * or incomplete (err names it; nothing written), -1 on an error. */
int st_index_write(const char *dir, cm_err *err);

#endif
