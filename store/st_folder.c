/* st_folder: an ingest output folder checked as one whole against index.json
 * (store/st_index.h; docs/FORMAT.md, "index.json"). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/cm_file.h"
#include "store/st_index.h"
#include "store/store.h"

/* ---- digests ---- */

static void hash_str(uLong *c, uLong *a, const char *s)
{
    uInt n = (uInt)strlen(s) + 1; /* with its NUL */
    *c = crc32(*c, (const Bytef *)s, n);
    *a = adler32(*a, (const Bytef *)s, n);
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

void st_folder_digest(const cJSON *splits, const cJSON *aliases, char *out)
{
    uLong c = crc32(0L, Z_NULL, 0), a = adler32(0L, Z_NULL, 0);
    const cJSON *sp, *e;
    cJSON_ArrayForEach(sp, splits) {
        hash_str(&c, &a, sp->string ? sp->string : "");
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
            hash_str(&c, &a, str_of(e, "file"));
            hash_str(&c, &a, str_of(e, "digest"));
        }
    }
    cJSON_ArrayForEach(e, aliases) {
        hash_str(&c, &a, e->string ? e->string : "");
        hash_str(&c, &a, cJSON_IsString(e) ? e->valuestring : "");
    }
    snprintf(out, ST_DIGEST_LEN + 1, "%08lx%08lx", (unsigned long)c & 0xffffffffUL, (unsigned long)a & 0xffffffffUL);
}

/* ---- index.json ---- */

cJSON *st_index_read(const char *dir, cm_err *err)
{
    char path[CM_PATH_MAX], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%.4000s/index.json", dir);
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT) {
        cm_err_set(err, "no index.json: an unfinished ingest output (finish it: rerun `ingest` with the same "
                        "options; a folder written with --part: run the missing parts, or `store index %s` once all "
                        "are done)", dir);
        return NULL;
    }
    if (cm_read_regular(path, ST_INDEX_MAX, &text, &len, err) != 0)
        return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        cm_err_set(err, "index.json: not valid JSON (an object)");
        return NULL;
    }
    return root;
}

/* ---- the folder ---- */

typedef struct fshard {
    const char *split, *file;
    const cJSON *entry;
    st_shard *s;
} fshard;

typedef struct folder {
    const char *dir;
    const cJSON *ix, *splits, *aliases, *classes, *recipe;
    int fps, bins, frames, f32;
    fshard *sh;
    size_t n;
} folder;

static int is_count(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0 &&
           v->valuedouble == floor(v->valuedouble);
}

static int is_digest(const cJSON *v)
{
    if (!cJSON_IsString(v) || strlen(v->valuestring) != ST_DIGEST_LEN)
        return 0;
    for (const char *p = v->valuestring; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int plain_name(const cJSON *f)
{
    return cJSON_IsString(f) && f->valuestring[0] && f->valuestring[0] != '.' && !strchr(f->valuestring, '/') &&
           cm_has_suffix(f->valuestring, ".h5");
}

/* The reason a shard entry is malformed, NULL when well formed. */
static const char *entry_problem(const cJSON *e)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
    const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(e, "count");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(e, "version");
    if (!cJSON_IsObject(e) || !plain_name(cJSON_GetObjectItemCaseSensitive(e, "file")))
        return "a shard entry without a plain *.h5 file name";
    if (!is_count(cnt))
        return "a shard's count is not a non-negative integer";
    if (!cJSON_IsNumber(ver) || (ver->valuedouble != 1 && ver->valuedouble != 2))
        return "a shard's format version is not 1 or 2";
    if (!is_digest(cJSON_GetObjectItemCaseSensitive(e, "digest")))
        return "a shard's digest is not 16 hex digits";
    int nid = cJSON_GetArraySize(ids);
    if (!cJSON_IsArray(ids) || nid != (cnt->valuedouble > 0 ? 2 : 0) ||
        (nid && (!cJSON_IsString(cJSON_GetArrayItem(ids, 0)) || !cJSON_IsString(cJSON_GetArrayItem(ids, 1)))))
        return "a shard's ids are not [first, last] (or [] when it holds no sample)";
    return NULL;
}

/* An index written from an ingest plan (it states "shard_items" M): shard k
 * of a split of N manifest rows covers rows [k*M, min((k+1)*M, N)), every
 * row either a sample or a failure, the shards in order and none missing. */
static const char *tiling_problem(const cJSON *sp, double M)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(sp, "items"), *e;
    if (!is_count(items))
        return "a split's \"items\" (its manifest rows) is missing or not a count";
    double N = items->valuedouble, k = 0, failed = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(e, "items"), *fl = cJSON_GetObjectItemCaseSensitive(e, "failed");
        double lo = k * M, hi = lo + M < N ? lo + M : N;
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !is_count(fl) ||
            cJSON_GetArrayItem(it, 0)->valuedouble != lo || cJSON_GetArrayItem(it, 1)->valuedouble != hi || lo >= N ||
            cJSON_GetObjectItemCaseSensitive(e, "count")->valuedouble + fl->valuedouble != hi - lo)
            return "the shards do not cover the split's manifest rows in order (an entry missing, moved or edited)";
        failed += fl->valuedouble;
        k++;
    }
    if (k * M < N)
        return "the shards do not cover the split's manifest rows in order (an entry missing, moved or edited)";
    if (!is_count(cJSON_GetObjectItemCaseSensitive(sp, "failed")) ||
        cJSON_GetObjectItemCaseSensitive(sp, "failed")->valuedouble != failed)
        return "a split's \"failed\" is not the sum of its shards'";
    return NULL;
}

/* The index's own fields: types, ranges and sums. */
static const char *index_problem(folder *f)
{
    const cJSON *ix = f->ix, *c, *sp, *e;
    const cJSON *iv = cJSON_GetObjectItemCaseSensitive(ix, "index_version");
    if (!cJSON_IsNumber(iv) || iv->valuedouble != ST_INDEX_VERSION)
        return "unsupported index_version (this reader: 2)";
    f->splits = cJSON_GetObjectItemCaseSensitive(ix, "splits");
    f->classes = cJSON_GetObjectItemCaseSensitive(ix, "classes");
    f->aliases = cJSON_GetObjectItemCaseSensitive(ix, "aliases");
    f->recipe = cJSON_GetObjectItemCaseSensitive(ix, "recipe");
    const cJSON *fps = cJSON_GetObjectItemCaseSensitive(ix, "frames_per_sample");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(ix, "spec_shape");
    const char *dt = str_of(ix, "spec_dtype");
    if (!cJSON_IsObject(f->splits) || !cJSON_GetArraySize(f->splits))
        return "no \"splits\" object (or no split in it)";
    if (!cJSON_IsArray(f->classes) || !cJSON_GetArraySize(f->classes))
        return "\"classes\" is not a non-empty array";
    cJSON_ArrayForEach(c, f->classes)
        if (!cJSON_IsString(c))
            return "\"classes\" holds a value that is not a string";
    if (!is_count(fps) || fps->valuedouble > ST_MAX_FRAMES)
        return "\"frames_per_sample\" is not an integer in [0, 64]";
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 || !is_count(cJSON_GetArrayItem(shape, 0)) ||
        !is_count(cJSON_GetArrayItem(shape, 1)))
        return "\"spec_shape\" is not two integers";
    if (strcmp(dt, "float16") && strcmp(dt, "float32"))
        return "\"spec_dtype\" is not float16 or float32";
    if (!cJSON_IsObject(f->recipe))
        return "\"recipe\" is not an object";
    f->fps = (int)fps->valuedouble;
    f->bins = (int)cJSON_GetArrayItem(shape, 0)->valuedouble;
    f->frames = (int)cJSON_GetArrayItem(shape, 1)->valuedouble;
    f->f32 = !strcmp(dt, "float32");
    double total = 0;
    const cJSON *M = cJSON_GetObjectItemCaseSensitive(ix, "shard_items");
    if (M && (!is_count(M) || M->valuedouble < 1))
        return "\"shard_items\" is not a positive integer";
    cJSON_ArrayForEach(sp, f->splits) {
        const cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards");
        if (!cJSON_IsObject(sp) || !cJSON_IsArray(shards))
            return "a split is not an object with a \"shards\" array";
        double sum = 0;
        cJSON_ArrayForEach(e, shards) {
            const char *why = entry_problem(e);
            if (why)
                return why;
            sum += cJSON_GetObjectItemCaseSensitive(e, "count")->valuedouble;
        }
        if (!is_count(cJSON_GetObjectItemCaseSensitive(sp, "count")) ||
            cJSON_GetObjectItemCaseSensitive(sp, "count")->valuedouble != sum)
            return "a split's count is not the sum of its shards' counts";
        const char *why = M ? tiling_problem(sp, M->valuedouble) : NULL;
        if (why)
            return why;
        total += sum;
    }
    if (!is_count(cJSON_GetObjectItemCaseSensitive(ix, "count")) ||
        cJSON_GetObjectItemCaseSensitive(ix, "count")->valuedouble != total)
        return "\"count\" is not the sum of the splits' counts";
    if (f->aliases && !cJSON_IsObject(f->aliases))
        return "\"aliases\" is not an object";
    cJSON_ArrayForEach(e, f->aliases)
        if (strcmp(e->string, "val") || !cJSON_IsString(e) || !strcmp(e->valuestring, "train") ||
            !strcmp(e->valuestring, "val") || !cJSON_GetObjectItemCaseSensitive(f->splits, e->valuestring) ||
            cJSON_GetObjectItemCaseSensitive(f->splits, "val"))
            return "an alias other than val -> an existing split that is not train (and no split val)";
    return NULL;
}

/* The shard against its entry and the index's metadata. */
static int shard_matches(const folder *f, const fshard *x, cm_err *err)
{
    const st_shard *s = x->s;
    const st_meta *m = st_shard_meta(s);
    const cJSON *e = x->entry, *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
    size_t n = st_shard_count(s);
    char dg[ST_DIGEST_LEN + 1];
    if (strcmp(m->split, x->split))
        return cm_err_set(err, "%s: holds split \"%s\", listed under \"%s\" in index.json", x->file, m->split,
                          x->split);
    if ((double)n != cJSON_GetObjectItemCaseSensitive(e, "count")->valuedouble)
        return cm_err_set(err, "%s: %zu samples, index.json says %.0f", x->file, n,
                          cJSON_GetObjectItemCaseSensitive(e, "count")->valuedouble);
    if ((double)st_shard_version(s) != cJSON_GetObjectItemCaseSensitive(e, "version")->valuedouble)
        return cm_err_set(err, "%s: format version %d, index.json says %.0f (a changed version is refused)", x->file,
                          st_shard_version(s), cJSON_GetObjectItemCaseSensitive(e, "version")->valuedouble);
    if (n && (strcmp(st_shard_id(s, 0), cJSON_GetArrayItem(ids, 0)->valuestring) ||
              strcmp(st_shard_id(s, n - 1), cJSON_GetArrayItem(ids, 1)->valuestring)))
        return cm_err_set(err, "%s: holds ids \"%s\" to \"%s\", index.json says \"%s\" to \"%s\" (another shard's "
                               "content)", x->file, st_shard_id(s, 0), st_shard_id(s, n - 1),
                          cJSON_GetArrayItem(ids, 0)->valuestring, cJSON_GetArrayItem(ids, 1)->valuestring);
    st_shard_digest(s, dg);
    if (strcmp(dg, str_of(e, "digest")))
        return cm_err_set(err, "%s: content digest %s, index.json says %s (a shard replaced or changed)", x->file,
                          dg, str_of(e, "digest"));
    if (m->n_classes != cJSON_GetArraySize(f->classes))
        return cm_err_set(err, "%s: %d classes, index.json has %d", x->file, m->n_classes,
                          cJSON_GetArraySize(f->classes));
    for (int c = 0; c < m->n_classes; c++)
        if (strcmp(m->classes[c], cJSON_GetArrayItem(f->classes, c)->valuestring))
            return cm_err_set(err, "%s: class %d is \"%s\", index.json says \"%s\"", x->file, c, m->classes[c],
                              cJSON_GetArrayItem(f->classes, c)->valuestring);
    if (m->frames_per_sample != f->fps)
        return cm_err_set(err, "%s: %d frames per sample, index.json says %d", x->file, m->frames_per_sample, f->fps);
    if (m->bins != f->bins || m->frames != f->frames || m->spec_float32 != f->f32)
        return cm_err_set(err, "%s: spectrogram %d x %d %s, index.json says %d x %d %s", x->file, m->bins, m->frames,
                          m->spec_float32 ? "float32" : "float16", f->bins, f->frames, f->f32 ? "float32" : "float16");
    cJSON *r = cJSON_Parse(m->recipe_json ? m->recipe_json : "");
    int same = r && cJSON_Compare(r, f->recipe, 1);
    cJSON_Delete(r);
    if (!same)
        return cm_err_set(err, "%s: its recipe differs from index.json's", x->file);
    return 0;
}

/* Opens every listed shard (once each) and checks it against its entry. */
static int open_all(folder *f, cm_err *err)
{
    const cJSON *sp, *e;
    size_t cap = 0;
    cJSON_ArrayForEach(sp, f->splits) cap += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sp, "shards"));
    if (!(f->sh = calloc(cap + 1, sizeof *f->sh)))
        return cm_err_set(err, "out of memory");
    cJSON_ArrayForEach(sp, f->splits) cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
        fshard *x = &f->sh[f->n];
        x->split = sp->string;
        x->file = str_of(e, "file");
        x->entry = e;
        for (size_t k = 0; k < f->n; k++) {
            if (!strcmp(f->sh[k].file, x->file))
                return cm_err_set(err, "index.json: %s is listed twice (under %s and %s)", x->file, f->sh[k].split,
                                  x->split);
            if (cJSON_GetObjectItemCaseSensitive(e, "count")->valuedouble > 0 &&
                !strcmp(str_of(f->sh[k].entry, "digest"), str_of(e, "digest")))
                return cm_err_set(err, "index.json: %s and %s have one digest (one content listed twice)",
                                  f->sh[k].file, x->file);
        }
        char path[CM_PATH_MAX];
        snprintf(path, sizeof path, "%.3000s/%s", f->dir, x->file);
        struct stat st;
        if (lstat(path, &st) != 0 && errno == ENOENT)
            return cm_err_set(err, "%s: missing (listed in index.json)", x->file);
        if (cm_check_regular(path, err) != 0)
            return cm_err_prefix(err, "%s (listed in index.json)", x->file);
        if (!(x->s = st_shard_open(path, err)))
            return cm_err_prefix(err, "%s", x->file);
        f->n++;
        if (shard_matches(f, x, err) != 0)
            return -1;
    }
    return 0;
}

typedef struct idref {
    const char *id;
    const char *file;
} idref;

static int cmp_id(const void *a, const void *b)
{
    return strcmp(((const idref *)a)->id, ((const idref *)b)->id);
}

/* Every id once in the whole folder. */
static int ids_unique(const folder *f, cm_err *err)
{
    size_t total = 0, k = 0;
    for (size_t s = 0; s < f->n; s++)
        total += st_shard_count(f->sh[s].s);
    idref *v = malloc((total + 1) * sizeof *v);
    if (!v)
        return cm_err_set(err, "out of memory");
    for (size_t s = 0; s < f->n; s++)
        for (size_t i = 0; i < st_shard_count(f->sh[s].s); i++)
            v[k++] = (idref){st_shard_id(f->sh[s].s, i), f->sh[s].file};
    qsort(v, total, sizeof *v, cmp_id);
    int rc = 0;
    for (size_t i = 1; i < total && rc == 0; i++)
        if (!strcmp(v[i - 1].id, v[i].id))
            rc = v[i - 1].file == v[i].file
                     ? cm_err_set(err, "%s: id \"%s\" is there twice (ids must be unique in the folder)", v[i].file,
                                  v[i].id)
                     : cm_err_set(err, "id \"%s\" is in both %s and %s (ids must be unique in the folder)", v[i].id,
                                  v[i - 1].file, v[i].file);
    free(v);
    return rc;
}

/* No *.h5 file in the folder that the index does not list. */
static int none_unlisted(const folder *f, cm_err *err)
{
    DIR *d = opendir(f->dir);
    if (!d)
        return cm_err_set(err, "cannot list the folder: %s", strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !cm_has_suffix(de->d_name, ".h5"))
            continue;
        size_t k = 0;
        while (k < f->n && strcmp(f->sh[k].file, de->d_name))
            k++;
        if (k == f->n)
            rc = cm_err_set(err, "%s: a shard that index.json does not list (another run's? remove it, or rerun "
                                 "`ingest` / `store index DIR`)", de->d_name);
    }
    closedir(d);
    return rc;
}

static void close_all(folder *f)
{
    for (size_t k = 0; k < f->n; k++)
        st_shard_close(f->sh[k].s);
    free(f->sh);
}

int st_folder_check(const char *dir, const cJSON *index, const char *split, st_shard ***shards, size_t *n,
                    char *digest, cm_err *err)
{
    folder f = {.dir = dir, .ix = index};
    if (!cJSON_GetObjectItemCaseSensitive(index, "index_version"))
        return cm_err_set(err, "index.json: written before index version 2 (no shard digests): run `store index %s` "
                               "to re-index it from its shards", dir);
    const char *why = index_problem(&f);
    if (why)
        return cm_err_set(err, "index.json: %s", why);
    char dg[ST_DIGEST_LEN + 1];
    st_folder_digest(f.splits, f.aliases, dg);
    if (open_all(&f, err) != 0 || ids_unique(&f, err) != 0 || none_unlisted(&f, err) != 0 ||
        (strcmp(str_of(index, "digest"), dg) &&
         cm_err_set(err, "index.json: \"digest\" is not the digest of its shards (edited by hand? run `store index "
                         "%s` to re-index)", dir))) {
        close_all(&f);
        return -1;
    }
    if (digest)
        snprintf(digest, ST_DIGEST_LEN + 1, "%s", str_of(index, "digest"));
    if (split) {
        const cJSON *al = cJSON_GetObjectItemCaseSensitive(f.aliases, split);
        const char *want = cJSON_GetObjectItemCaseSensitive(f.splits, split) ? split
                           : cJSON_IsString(al)                               ? al->valuestring
                                                                              : NULL;
        if (!want) {
            close_all(&f);
            return cm_err_set(err, "index.json: no split \"%s\"", split);
        }
        size_t m = 0;
        *shards = calloc(f.n + 1, sizeof **shards);
        if (!*shards) {
            close_all(&f);
            return cm_err_set(err, "out of memory");
        }
        for (size_t k = 0; k < f.n; k++)
            if (!strcmp(f.sh[k].split, want)) {
                (*shards)[m++] = f.sh[k].s;
                f.sh[k].s = NULL;
            }
        *n = m;
    }
    close_all(&f);
    return 0;
}
