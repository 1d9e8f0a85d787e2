/* st_index: the output folder's lock, and index.json + failures.tsv from plan.json and the shards. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "store/st_index.h"
#include "store/store.h"

/* ---- the lock ---- */

struct st_lock {
    int fd;
    char dir[CM_PATH_MAX];
};

enum { B_MUTEX = 0, B_SET = 1, B_PART = 2 };

static int lk(int fd, int cmd, short type, off_t start)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = 1};
    int rc;
    while ((rc = fcntl(fd, cmd, &fl)) != 0 && errno == EINTR)
        ;
    return rc;
}

/* pid of a process holding a lock on byte `start` that conflicts with `type`, 0 when none. */
static long holder(int fd, short type, off_t start)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = 1};
    if (fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
        return 0;
    return (long)fl.l_pid;
}

/* Writes the plan when alone, else checks it equals the running parts' plan. */
static int plan_join(st_lock *l, int alone, const char *plan, cm_err *err)
{
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%.4000s/plan.json", l->dir);
    if (alone)
        return cm_write_file_atomic(path, plan, strlen(plan), err);
    char *text = NULL;
    size_t n = 0;
    if (cm_read_regular(path, ST_INDEX_MAX, &text, &n, err) != 0)
        return -1;
    int same = n == strlen(plan) && !memcmp(text, plan, n);
    free(text);
    if (!same)
        return cm_err_set(err, "%s: the parts running there (pid %ld) use another manifest or other options "
                               "(plan.json differs); run every part with the same options",
                          l->dir, holder(l->fd, F_WRLCK, B_SET));
    return 0;
}

static int take(st_lock *l, int part_k, int part_n, const char *plan, cm_err *err)
{
    int part = part_n > 1;
    if (lk(l->fd, F_SETLK, part ? F_RDLCK : F_WRLCK, B_SET) != 0) {
        long pid = holder(l->fd, part ? F_RDLCK : F_WRLCK, B_SET);
        return cm_err_set(err, "%s: in use by another ingest, store index or train (pid %ld); wait for it to "
                               "finish or use another folder", l->dir, pid);
    }
    if (part && lk(l->fd, F_SETLK, F_WRLCK, B_PART + part_k) != 0)
        return cm_err_set(err, "%s: part %d/%d is already being written (pid %ld)", l->dir, part_k, part_n,
                          holder(l->fd, F_WRLCK, B_PART + part_k));
    if (!plan)
        return 0;
    int alone = !part || holder(l->fd, F_WRLCK, B_SET) == 0;
    if (plan_join(l, alone, plan, err) != 0)
        return -1;
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%.4000s/index.json", l->dir);
    if (unlink(path) != 0 && errno != ENOENT) /* a folder without index.json is unfinished */
        return cm_err_set(err, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

st_lock *st_lock_take(const char *dir, int part_k, int part_n, const char *plan_json, cm_err *err)
{
    st_lock *l = calloc(1, sizeof *l);
    if (!l) {
        cm_err_set(err, "out of memory");
        return NULL;
    }
    snprintf(l->dir, sizeof l->dir, "%s", dir);
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%.4000s/.lock", dir);
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
        cm_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        free(l);
        return NULL;
    }
    if (lk(l->fd, F_SETLKW, F_WRLCK, B_MUTEX) != 0) {
        cm_err_set(err, "%s: cannot lock: %s", path, strerror(errno));
        st_lock_release(l);
        return NULL;
    }
    int rc = take(l, part_k, part_n, plan_json, err);
    lk(l->fd, F_SETLK, F_UNLCK, B_MUTEX);
    if (rc != 0) {
        st_lock_release(l);
        return NULL;
    }
    return l;
}

int st_lock_index(st_lock *l, cm_err *err)
{
    if (lk(l->fd, F_SETLKW, F_WRLCK, B_MUTEX) != 0)
        return cm_err_set(err, "%s/.lock: cannot lock: %s", l->dir, strerror(errno));
    int rc = st_index_write(l->dir, err);
    lk(l->fd, F_SETLK, F_UNLCK, B_MUTEX);
    return rc;
}

void st_lock_release(st_lock *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd); /* releases every record lock of this process on the file */
    free(l);
}

/* ---- the index ---- */

static int safe_split(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return 0;
    return 1;
}

/* One field of failures.tsv: tabs, newlines and other control characters become spaces. */
static void put_field(FILE *f, const char *s, int last)
{
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
    fputc(last ? '\n' : '\t', f);
}

typedef struct shard_check {
    size_t count, nfailed;
    cJSON *fails; /* [[id, reason], ...] */
    int version;
    char digest[ST_DIGEST_LEN + 1];
    cJSON *ids;   /* [first, last] or [] */
} shard_check;

/* 0: complete and as planned; 1: missing or not the planned one (err says which). */
static int check_shard(const char *path, const char *cover, size_t rows, shard_check *c, cm_err *err)
{
    if (!cm_is_file(path))
        return cm_err_set(err, "%s: missing (a part not run or not finished?)", path), 1;
    cm_err e2;
    st_shard *s = st_shard_open(path, &e2);
    if (!s)
        return cm_err_set(err, "%s: %s", path, e2.msg), 1;
    char *note = st_shard_note(s, "ingest_cover"), *fn = st_shard_note(s, "ingest_failures");
    c->count = st_shard_count(s);
    c->fails = fn ? cJSON_Parse(fn) : NULL;
    int ok = note && !strcmp(note, cover) && cJSON_IsArray(c->fails);
    if (ok) {
        cJSON *e;
        cJSON_ArrayForEach(e, c->fails) ok = ok && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                                             cJSON_IsString(cJSON_GetArrayItem(e, 1));
    }
    c->nfailed = ok ? (size_t)cJSON_GetArraySize(c->fails) : 0;
    ok = ok && c->count + c->nfailed == rows;
    c->version = st_shard_version(s);
    st_shard_digest(s, c->digest);
    c->ids = cJSON_CreateArray();
    if (c->count) {
        cJSON_AddItemToArray(c->ids, cJSON_CreateString(st_shard_id(s, 0)));
        cJSON_AddItemToArray(c->ids, cJSON_CreateString(st_shard_id(s, c->count - 1)));
    }
    free(note);
    free(fn);
    st_shard_close(s);
    if (!ok) {
        cJSON_Delete(c->fails);
        cJSON_Delete(c->ids);
        c->fails = NULL;
        c->ids = NULL;
        return cm_err_set(err, "%s: not the shard plan.json expects (another run's, or incomplete)", path), 1;
    }
    return 0;
}

/* The shards of one split into `index_split` and their failures into f. 0, 1 (incomplete) or -1. */
static int index_split(const char *dir, const cJSON *sp, size_t M, cJSON *index_splits, FILE *f, size_t *count,
                       size_t *failed, cm_err *err)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "name");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(sp, "items");
    const cJSON *covers = cJSON_GetObjectItemCaseSensitive(sp, "covers");
    if (!cJSON_IsString(name) || !safe_split(name->valuestring) || !cJSON_IsNumber(items) ||
        items->valuedouble < 0 || items->valuedouble > 1e12 || !cJSON_IsArray(covers) ||
        (size_t)cJSON_GetArraySize(covers) != ((size_t)items->valuedouble + M - 1) / M)
        return cm_err_set(err, "%s/plan.json: a malformed split entry", dir);
    size_t n = (size_t)items->valuedouble, cnt = 0, nf = 0, k = 0;
    cJSON *o = cJSON_AddObjectToObject(index_splits, name->valuestring);
    cJSON *sh = cJSON_AddArrayToObject(o, "shards");
    const cJSON *cv;
    cJSON_ArrayForEach(cv, covers) {
        char file[64], path[CM_PATH_MAX];
        snprintf(file, sizeof file, "%s-%05zu.h5", name->valuestring, k);
        snprintf(path, sizeof path, "%.4000s/%s", dir, file);
        size_t lo = k * M, hi = lo + M < n ? lo + M : n;
        shard_check c = {0};
        if (!cJSON_IsString(cv))
            return cm_err_set(err, "%s/plan.json: a malformed split entry", dir);
        int rc = check_shard(path, cv->valuestring, hi - lo, &c, err);
        if (rc != 0)
            return rc;
        cJSON *e = cJSON_CreateObject(), *fe;
        cJSON_AddStringToObject(e, "file", file);
        cJSON_AddNumberToObject(e, "count", (double)c.count);
        cJSON_AddNumberToObject(e, "failed", (double)c.nfailed);
        cJSON *it = cJSON_AddArrayToObject(e, "items");
        cJSON_AddItemToArray(it, cJSON_CreateNumber((double)lo));
        cJSON_AddItemToArray(it, cJSON_CreateNumber((double)hi));
        cJSON_AddNumberToObject(e, "version", c.version);
        cJSON_AddStringToObject(e, "digest", c.digest);
        cJSON_AddItemToObject(e, "ids", c.ids);
        cJSON_AddItemToArray(sh, e);
        cJSON_ArrayForEach(fe, c.fails) {
            put_field(f, cJSON_GetArrayItem(fe, 0)->valuestring, 0);
            put_field(f, name->valuestring, 0);
            put_field(f, cJSON_GetArrayItem(fe, 1)->valuestring, 1);
        }
        cJSON_Delete(c.fails);
        cnt += c.count;
        nf += c.nfailed;
        k++;
    }
    cJSON_AddNumberToObject(o, "count", (double)cnt);
    cJSON_AddNumberToObject(o, "failed", (double)nf);
    cJSON_AddNumberToObject(o, "items", (double)n);
    *count += cnt;
    *failed += nf;
    return 0;
}

static cJSON *load_plan(const char *dir, cm_err *err)
{
    char path[CM_PATH_MAX], *text;
    size_t len;
    snprintf(path, sizeof path, "%.4000s/plan.json", dir);
    if (cm_read_regular(path, ST_INDEX_MAX, &text, &len, err) != 0)
        return NULL;
    cJSON *r = cJSON_Parse(text);
    free(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(r, "format");
    const cJSON *ix = cJSON_GetObjectItemCaseSensitive(r, "index");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ix, "shard_items");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, ST_PLAN_FORMAT) || !cJSON_IsObject(ix) ||
        !cJSON_IsNumber(m) || m->valuedouble < 1 || m->valuedouble > 1e12 ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r, "splits")) ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r, "reader_failures"))) {
        cJSON_Delete(r);
        cm_err_set(err, "%s: not an ingest plan (%s)", path, ST_PLAN_FORMAT);
        return NULL;
    }
    return r;
}

/* index.json: the plan's static fields, the splits found, the totals,
 * once the folder passes st_folder_check with it (nothing written else). */
static int write_index(const char *dir, cJSON *plan, char *tsv, size_t tsv_len, cm_err *err)
{
    char path[CM_PATH_MAX], digest[ST_DIGEST_LEN + 1];
    st_folder_digest(cJSON_GetObjectItemCaseSensitive(plan, "splits"), cJSON_GetObjectItemCaseSensitive(plan, "aliases"),
                     digest);
    cJSON_AddStringToObject(plan, "digest", digest);
    cJSON_AddNumberToObject(plan, "index_version", ST_INDEX_VERSION);
    if (st_folder_check(dir, plan, NULL, NULL, NULL, NULL, err) != 0)
        return 1;
    snprintf(path, sizeof path, "%.4000s/failures.tsv", dir);
    if (cm_write_file_atomic(path, tsv, tsv_len, err) != 0)
        return -1;
    char *text = cJSON_Print(plan);
    if (!text)
        return cm_err_set(err, "out of memory");
    size_t tl = strlen(text);
    text[tl] = '\n';
    snprintf(path, sizeof path, "%.4000s/index.json", dir);
    int rc = cm_write_file_atomic(path, text, tl + 1, err);
    free(text);
    return rc;
}

/* Sets o[key] to v (replacing). */
static void put(cJSON *o, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddItemToObject(o, key, v);
}

/* The fields the index states about the data, from the first shard where absent. */
static void fill_meta(cJSON *ix, const st_meta *m)
{
    if (!cJSON_GetObjectItemCaseSensitive(ix, "classes")) {
        cJSON *cl = cJSON_AddArrayToObject(ix, "classes");
        for (int c = 0; c < m->n_classes; c++)
            cJSON_AddItemToArray(cl, cJSON_CreateString(m->classes[c]));
    }
    if (!cJSON_GetObjectItemCaseSensitive(ix, "frames_per_sample"))
        cJSON_AddNumberToObject(ix, "frames_per_sample", m->frames_per_sample);
    if (!cJSON_GetObjectItemCaseSensitive(ix, "spec_shape")) {
        cJSON *sh = cJSON_AddArrayToObject(ix, "spec_shape");
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(m->bins));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(m->frames));
    }
    if (!cJSON_GetObjectItemCaseSensitive(ix, "spec_dtype"))
        cJSON_AddStringToObject(ix, "spec_dtype", m->spec_float32 ? "float32" : "float16");
    cJSON *r = cJSON_GetObjectItemCaseSensitive(ix, "recipe") ? NULL : cJSON_Parse(m->recipe_json);
    if (r)
        cJSON_AddItemToObject(ix, "recipe", r);
}

/* One listed shard's entry recomputed from the file: count, version, digest, ids. */
static int reindex_entry(const char *dir, cJSON *ix, cJSON *e, size_t *count, cm_err *err)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "file");
    if (!cJSON_IsString(f) || !f->valuestring[0] || f->valuestring[0] == '.' || strchr(f->valuestring, '/'))
        return cm_err_set(err, "index.json: a shard entry without a plain file name"), 1;
    char path[CM_PATH_MAX], dg[ST_DIGEST_LEN + 1];
    snprintf(path, sizeof path, "%.3000s/%s", dir, f->valuestring);
    cm_err e2;
    st_shard *s = cm_check_regular(path, &e2) == 0 ? st_shard_open(path, &e2) : NULL;
    if (!s)
        return cm_err_set(err, "%s: %s", f->valuestring, e2.msg), 1;
    size_t n = st_shard_count(s);
    st_shard_digest(s, dg);
    fill_meta(ix, st_shard_meta(s));
    cJSON *ids = cJSON_CreateArray();
    if (n) {
        cJSON_AddItemToArray(ids, cJSON_CreateString(st_shard_id(s, 0)));
        cJSON_AddItemToArray(ids, cJSON_CreateString(st_shard_id(s, n - 1)));
    }
    put(e, "count", cJSON_CreateNumber((double)n));
    put(e, "version", cJSON_CreateNumber(st_shard_version(s)));
    put(e, "digest", cJSON_CreateString(dg));
    put(e, "ids", ids);
    st_shard_close(s);
    *count += n;
    return 0;
}

/* A folder without plan.json (written before parts, or by hand): index.json
 * recomputed from the shards it lists. 0, 1 (a shard missing or refused) or -1. */
static int reindex_listed(const char *dir, cm_err *err)
{
    cJSON *ix = st_index_read(dir, err);
    if (!ix)
        return cm_err_prefix(err, "no plan.json and no index.json to re-index from");
    cJSON *sps = cJSON_GetObjectItemCaseSensitive(ix, "splits"), *sp, *e;
    size_t total = 0;
    int rc = cJSON_IsObject(sps) ? 0 : cm_err_set(err, "index.json: no \"splits\" object");
    cJSON_ArrayForEach(sp, sps) {
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(sp, "shards");
        size_t count = 0;
        if (rc == 0 && !cJSON_IsArray(sh))
            rc = cm_err_set(err, "index.json: split %s has no \"shards\" array", sp->string);
        cJSON_ArrayForEach(e, sh) if (rc == 0) rc = reindex_entry(dir, ix, e, &count, err);
        if (rc == 0)
            put(sp, "count", cJSON_CreateNumber((double)count));
        total += count;
    }
    if (rc == 0) {
        char dg[ST_DIGEST_LEN + 1];
        put(ix, "count", cJSON_CreateNumber((double)total));
        put(ix, "index_version", cJSON_CreateNumber(ST_INDEX_VERSION));
        st_folder_digest(sps, cJSON_GetObjectItemCaseSensitive(ix, "aliases"), dg);
        put(ix, "digest", cJSON_CreateString(dg));
        rc = st_folder_check(dir, ix, NULL, NULL, NULL, NULL, err) != 0 ? 1 : 0;
    }
    char *text = rc == 0 ? cJSON_Print(ix) : NULL;
    if (rc == 0 && !text)
        rc = cm_err_set(err, "out of memory");
    if (rc == 0) {
        char path[CM_PATH_MAX];
        snprintf(path, sizeof path, "%.4000s/index.json", dir);
        size_t tl = strlen(text);
        text[tl] = '\n';
        rc = cm_write_file_atomic(path, text, tl + 1, err);
    }
    free(text);
    cJSON_Delete(ix);
    return rc;
}

int st_index_write(const char *dir, cm_err *err)
{
    char pp[CM_PATH_MAX];
    snprintf(pp, sizeof pp, "%.4000s/plan.json", dir);
    struct stat st;
    if (lstat(pp, &st) != 0 && errno == ENOENT)
        return reindex_listed(dir, err);
    cJSON *plan = load_plan(dir, err);
    if (!plan)
        return -1;
    cJSON *ix = cJSON_GetObjectItemCaseSensitive(plan, "index");
    size_t M = (size_t)cJSON_GetObjectItemCaseSensitive(ix, "shard_items")->valuedouble;
    char *tsv = NULL;
    size_t tsv_len = 0, count = 0, failed = 0;
    FILE *f = open_memstream(&tsv, &tsv_len);
    if (!f) {
        cJSON_Delete(plan);
        return cm_err_set(err, "out of memory");
    }
    int rc = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(plan, "reader_notes")) { /* warnings, not failures */
        if (!cJSON_IsString(e)) {
            rc = cm_err_set(err, "%s/plan.json: a malformed reader note", dir);
            break;
        }
        put_field(f, "#note", 0);
        put_field(f, "-", 0);
        put_field(f, e->valuestring, 1);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(plan, "reader_failures")) {
        if (rc != 0)
            break;
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1), *c = cJSON_GetArrayItem(e, 2);
        if (!cJSON_IsString(a) || !cJSON_IsString(b) || !cJSON_IsString(c)) {
            rc = cm_err_set(err, "%s/plan.json: a malformed reader failure", dir);
            break;
        }
        put_field(f, a->valuestring, 0);
        put_field(f, b->valuestring, 0);
        put_field(f, c->valuestring, 1);
        failed++;
    }
    cJSON *sps = cJSON_AddObjectToObject(ix, "splits");
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(plan, "splits")) {
        if (rc != 0)
            break;
        rc = index_split(dir, e, M, sps, f, &count, &failed, err);
    }
    if (fclose(f) != 0 && rc == 0)
        rc = cm_err_set(err, "out of memory");
    if (rc == 0) {
        cJSON_AddNumberToObject(ix, "count", (double)count);
        cJSON_AddNumberToObject(ix, "failed", (double)failed);
        rc = write_index(dir, ix, tsv, tsv_len, err);
    }
    free(tsv);
    cJSON_Delete(plan);
    return rc;
}
