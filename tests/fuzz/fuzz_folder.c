/* Fuzz target: the shard folder as one whole (store/st_index.h, st_folder_check).
 *
 * The seed is a real folder written by ingest ($C2KD_FUZZ_SEED_FOLDER: several
 * shards in several splits). The input is a list of 4-byte operations done to
 * a copy of it, the damage users and scripts do to a folder as files: a shard
 * copied over another, deleted, renamed, swapped, truncated; index.json
 * deleted, a byte of it flipped, or edited as JSON (a count, file, digest,
 * ids or version of an entry replaced, a field deleted, an entry duplicated,
 * deleted or moved to another split, classes swapped, an alias added) and,
 * on request, "resealed" (its totals and folder digest recomputed, as a
 * careful hand edit would).
 *
 * The oracle: every split of the seed either is refused by st_split_open, or
 * reads exactly the seed's samples of that split (ids, labels, JPEG bytes,
 * spectrograms, in order); a split the edited index declares an alias (val ->
 * test, the only one accepted) must read the target's samples. Anything else
 * is a folder accepted with other data, and aborts. */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "store/st_index.h"
#include "store/store.h"
#include "tests/fuzz/fz_util.h"

#define MAXF 64
#define MAXS 8

typedef struct sample {
    st_record rec;
    float *spec;
} sample;

typedef struct split {
    char name[64];
    size_t n;
    sample *s;
} split;

static struct {
    char names[MAXF][64];
    uint8_t *data[MAXF];
    size_t size[MAXF];
    int nf;
    char *index;
    split splits[MAXS];
    int ns;
    size_t cells;
} P;

static char work[4200];

static void read_seed_split(const char *dir, const char *name)
{
    cm_err err;
    st_split *d = st_split_open(dir, name, &err);
    if (!d) {
        fprintf(stderr, "fuzz_folder: seed %s: %s\n", dir, err.msg);
        abort();
    }
    split *sp = &P.splits[P.ns++];
    snprintf(sp->name, sizeof sp->name, "%s", name);
    sp->n = st_split_count(d);
    sp->s = calloc(sp->n + 1, sizeof *sp->s);
    if (st_split_meta(d))
        P.cells = (size_t)st_split_meta(d)->bins * (size_t)st_split_meta(d)->frames;
    for (size_t i = 0; i < sp->n; i++) {
        sp->s[i].spec = malloc(P.cells * sizeof(float));
        if (st_split_read(d, i, &sp->s[i].rec, &err) != 0 || st_split_read_spec(d, i, NULL, sp->s[i].spec, &err) != 0)
            abort();
    }
    st_split_close(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *seed = getenv("C2KD_FUZZ_SEED_FOLDER");
    char path[4200];
    cm_err err;
    size_t n;
    if (!seed) {
        fprintf(stderr, "fuzz_folder: set C2KD_FUZZ_SEED_FOLDER to a folder written by ingest\n");
        abort();
    }
    DIR *dd = opendir(seed);
    struct dirent *de;
    while (dd && (de = readdir(dd)))
        if (cm_has_suffix(de->d_name, ".h5") && de->d_name[0] != '.' && P.nf < MAXF) {
            snprintf(P.names[P.nf], sizeof P.names[0], "%s", de->d_name);
            snprintf(path, sizeof path, "%s/%s", seed, de->d_name);
            if (cm_read_regular(path, (size_t)64 << 20, (char **)&P.data[P.nf], &P.size[P.nf], &err) != 0)
                abort();
            P.nf++;
        }
    if (dd)
        closedir(dd);
    snprintf(path, sizeof path, "%s/index.json", seed);
    if (P.nf < 2 || cm_read_file(path, &P.index, &n, &err) != 0)
        abort();
    cJSON *ix = cJSON_Parse(P.index), *sp;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(ix, "splits")) if (P.ns < MAXS)
        read_seed_split(seed, sp->string);
    cJSON_Delete(ix);
    snprintf(work, sizeof work, "%s/folder", fz_dir());
    return 0;
}

/* ---- the operations ---- */

static void clear_work(void)
{
    mkdir(work, 0755);
    DIR *d = opendir(work);
    struct dirent *de;
    char p[4400];
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", work, de->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
}

static void put(const char *name, const void *data, size_t n)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", work, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0)
        abort();
}

static void wpath(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", work, name);
}

/* A name among the seed's shards and a few others (a new shard of a split, not a shard). */
static const char *name_of(uint8_t k)
{
    static const char *const extra[] = {"train-00099.h5", "val-00000.h5", "test-00007.h5", "x.h5"};
    k %= (uint8_t)(P.nf + 4);
    return k < P.nf ? P.names[k] : extra[k - P.nf];
}

static void file_op(uint8_t kind, uint8_t a, uint8_t b, uint8_t c)
{
    char pa[4400], pb[4400], tmp[4400];
    wpath(pa, sizeof pa, name_of(a));
    wpath(pb, sizeof pb, name_of(b));
    char *data = NULL;
    size_t n = 0;
    cm_err err;
    switch (kind) {
    case 0: /* copy a over b */
        if (cm_read_regular(pa, (size_t)64 << 20, &data, &n, &err) == 0)
            put(name_of(b), data, n);
        free(data);
        break;
    case 1:
        unlink(pa);
        break;
    case 2:
        rename(pa, pb);
        break;
    case 3: /* swap */
        snprintf(tmp, sizeof tmp, "%s/swap.tmp", work);
        if (rename(pa, tmp) == 0 && rename(pb, pa) == 0)
            rename(tmp, pb);
        unlink(tmp);
        break;
    default: /* truncate a */
        if (truncate(pa, (off_t)(((unsigned)b << 8 | c) * 16)) != 0)
            break;
    }
}

static cJSON *entry_at(cJSON *ix, uint8_t k, cJSON **arr)
{
    int total = 0, seen = 0;
    cJSON *sp, *e;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(ix, "splits")) total +=
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sp, "shards"));
    if (total == 0)
        return NULL;
    k = (uint8_t)(k % total);
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(ix, "splits")) {
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(sp, "shards");
        cJSON_ArrayForEach(e, sh) if (seen++ == k) {
            if (arr)
                *arr = sh;
            return e;
        }
    }
    return NULL;
}

static cJSON *split_at(cJSON *ix, uint8_t k)
{
    cJSON *sps = cJSON_GetObjectItemCaseSensitive(ix, "splits");
    int n = cJSON_GetArraySize(sps);
    return n ? cJSON_GetArrayItem(sps, k % n) : NULL;
}

/* One field of entry a replaced by entry b's, or edited. */
static void field_op(cJSON *ix, uint8_t a, uint8_t b, uint8_t c)
{
    static const char *const fields[] = {"count", "file", "digest", "ids", "version", "items", "failed"};
    cJSON *e = entry_at(ix, a, NULL), *o = entry_at(ix, b, NULL);
    const char *f = fields[c % 7];
    if (!e || !o)
        return;
    if (c & 0x80) {
        cJSON_DeleteItemFromObjectCaseSensitive(e, f);
    } else if (!strcmp(f, "count") || !strcmp(f, "version") || !strcmp(f, "failed")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, f);
        double x = cJSON_IsNumber(v) ? v->valuedouble : 0;
        cJSON_DeleteItemFromObjectCaseSensitive(e, f);
        cJSON_AddNumberToObject(e, f, x + ((c >> 3) & 1 ? 1 : -1));
    } else {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
        if (v && e != o) {
            cJSON_DeleteItemFromObjectCaseSensitive(e, f);
            cJSON_AddItemToObject(e, f, cJSON_Duplicate(v, 1));
        }
    }
}

/* Totals and the folder digest made to agree with the entries (a careful hand edit). */
static void reseal(cJSON *ix)
{
    double total = 0;
    cJSON *sp, *e;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(ix, "splits")) {
        double n = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "count");
            n += cJSON_IsNumber(c) ? c->valuedouble : 0;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(sp, "count");
        cJSON_AddNumberToObject(sp, "count", n);
        total += n;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(ix, "count");
    cJSON_AddNumberToObject(ix, "count", total);
    char dg[ST_DIGEST_LEN + 1];
    st_folder_digest(cJSON_GetObjectItemCaseSensitive(ix, "splits"), cJSON_GetObjectItemCaseSensitive(ix, "aliases"),
                     dg);
    cJSON_DeleteItemFromObjectCaseSensitive(ix, "digest");
    cJSON_AddStringToObject(ix, "digest", dg);
}

static void index_op(cJSON *ix, uint8_t kind, uint8_t a, uint8_t b, uint8_t c)
{
    cJSON *arr = NULL, *e, *sp;
    switch (kind) {
    case 6:
        field_op(ix, a, b, c);
        break;
    case 7: /* duplicate entry a into split b */
        if ((e = entry_at(ix, a, NULL)) && (sp = split_at(ix, b))) {
            cJSON *d = cJSON_Duplicate(e, 1);
            if (!cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(sp, "shards"), d))
                cJSON_Delete(d);
        }
        break;
    case 8: /* delete entry a */
        if ((e = entry_at(ix, a, &arr)))
            cJSON_Delete(cJSON_DetachItemViaPointer(arr, e));
        break;
    case 9: /* move entry a to split b, at position c */
        if ((e = entry_at(ix, a, &arr)) && (sp = split_at(ix, b))) {
            cJSON_DetachItemViaPointer(arr, e);
            cJSON *to = cJSON_GetObjectItemCaseSensitive(sp, "shards");
            int n = cJSON_GetArraySize(to);
            int ok = cJSON_IsArray(to) && (n && c % (n + 1) < n ? cJSON_InsertItemInArray(to, c % (n + 1), e)
                                                                : cJSON_AddItemToArray(to, e));
            if (!ok)
                cJSON_Delete(e);
        }
        break;
    case 10: /* classes swapped, or an alias */
        if (c & 1) {
            cJSON *cl = cJSON_GetObjectItemCaseSensitive(ix, "classes");
            if (cJSON_GetArraySize(cl) >= 2)
                cJSON_AddItemToArray(cl, cJSON_DetachItemFromArray(cl, 0));
        } else {
            static const char *const names[] = {"val", "test", "train"};
            cJSON_DeleteItemFromObjectCaseSensitive(ix, "aliases");
            cJSON *al = cJSON_AddObjectToObject(ix, "aliases");
            cJSON_AddStringToObject(al, names[a % 3], names[b % 3]);
            if (c & 2) /* the aliased split's own entry dropped */
                cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(ix, "splits"), names[a % 3]);
        }
        break;
    default:
        reseal(ix);
    }
}

/* ---- the oracle ---- */

static const split *expected(const cJSON *ix, const char *name)
{
    const char *want = name;
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ix, "aliases"), name);
    if (!cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ix, "splits"), name) && cJSON_IsString(al))
        want = al->valuestring;
    for (int k = 0; k < P.ns; k++)
        if (!strcmp(P.splits[k].name, want))
            return &P.splits[k];
    return NULL;
}

static void check_split(const cJSON *ix, const char *name)
{
    cm_err err;
    st_split *d = st_split_open(work, name, &err);
    if (!d)
        return; /* refused */
    const split *want = expected(ix, name);
    int same = want && st_split_count(d) == want->n;
    float *spec = malloc((P.cells + 1) * sizeof *spec);
    for (size_t i = 0; same && i < want->n; i++) {
        st_record r;
        if (st_split_read(d, i, &r, &err) != 0)
            continue; /* a read that fails is not silent */
        const st_record *q = &want->s[i].rec;
        same = !strcmp(r.id, q->id) && r.label == q->label && r.frames_per_sample == q->frames_per_sample;
        for (int k = 0; same && k < r.frames_per_sample; k++)
            same = r.jpeg_len[k] == q->jpeg_len[k] &&
                   !memcmp(r.jpeg_buf + r.jpeg_off[k], q->jpeg_buf + q->jpeg_off[k], r.jpeg_len[k]);
        st_record_free(&r);
        if (same && st_split_read_spec(d, i, NULL, spec, &err) == 0)
            same = !memcmp(spec, want->s[i].spec, P.cells * sizeof *spec);
    }
    free(spec);
    st_split_close(d);
    if (!same) {
        fprintf(stderr, "fuzz_folder: split %s accepted with other samples than the seed's\n", name);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clear_work();
    for (int k = 0; k < P.nf; k++)
        put(P.names[k], P.data[k], P.size[k]);
    cJSON *ix = cJSON_Parse(P.index);
    int drop_index = 0; /* op 5 with c = 0; else a byte of the text flipped */
    size_t nflip = 0;
    uint32_t flips[16][2];
    for (size_t k = 0; k + 4 <= size && k < 4 * 32; k += 4) {
        uint8_t kind = data[k] % 12, a = data[k + 1], b = data[k + 2], c = data[k + 3];
        if (kind < 5)
            file_op(kind, a, b, c);
        else if (kind == 5 && c == 0)
            drop_index = 1;
        else if (kind == 5 && nflip < 16)
            flips[nflip][0] = (uint32_t)a << 8 | b, flips[nflip++][1] = c;
        else if (kind != 5)
            index_op(ix, kind, a, b, c);
    }
    char *text = cJSON_Print(ix);
    size_t tl = strlen(text);
    for (size_t k = 0; k < nflip && tl; k++)
        text[flips[k][0] % tl] ^= (char)flips[k][1];
    if (!drop_index)
        put("index.json", text, tl);
    cJSON *final = cJSON_Parse(text); /* what the folder says (NULL when not JSON: then nothing opens) */
    free(text);
    for (int k = 0; k < P.ns; k++)
        check_split(final, P.splits[k].name);
    cJSON_Delete(final);
    cJSON_Delete(ix);
    return 0;
}
