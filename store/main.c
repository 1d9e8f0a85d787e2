/* store: inspect, verify and export an ingested folder (index.json + shards). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common/cm_file.h"
#include "common/cm_npy.h"
#include "store/st_index.h"
#include "store/store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: store info DIR\n"
            "       store verify DIR\n"
            "       store export DIR ID -o PREFIX\n"
            "       store index DIR   index.json + failures.tsv from plan.json and the shards (ingest --part)\n"
            "\n"
            "DIR is an ingest output folder (index.json + <split>-NNNNN.h5 shards, docs/FORMAT.md).\n"
            "  info     splits, sample counts, shards, failures, class histogram, recipe\n"
            "  verify   every shard listed in index.json opens, matches the index (count,\n"
            "           classes, frames per sample, spectrogram shape, recipe), every JPEG\n"
            "           decodes (TurboJPEG), no NaN/Inf in any spectrogram, no unlisted shard;\n"
            "           prints one line per fault; exit 1 when there is any\n"
            "  export   sample ID as PREFIX.npy (float32 [bins, frames]) and PREFIX_K.jpg\n"
            "           (frame K = 0..F-1); its fields as one JSON line on stdout\n"
            "  --help   this text\n"
            "Exit status: 0 ok, 1 faults or errors, 2 usage error.\n");
}

static cJSON *load_index(const char *dir)
{
    char path[CM_PATH_MAX], *text;
    size_t len;
    cm_err err;
    snprintf(path, sizeof path, "%s/index.json", dir);
    if (cm_read_file(path, &text, &len, &err) != 0) {
        fprintf(stderr, "store: %s\n", err.msg);
        return NULL;
    }
    cJSON *r = cJSON_Parse(text);
    free(text);
    if (!r || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r, "splits"))) {
        fprintf(stderr, "store: %s: not an ingest index (no \"splits\")\n", path);
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int cmd_info(const char *dir)
{
    cJSON *r = load_index(dir);
    if (!r)
        return 1;
    cJSON *cls = cJSON_GetObjectItemCaseSensitive(r, "classes");
    int nc = cJSON_GetArraySize(cls);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(r, "dataset");
    printf("dataset: %s\n", cJSON_IsString(ds) ? ds->valuestring : "?");
    printf("format: %s version %.0f\n", ST_FORMAT, num(r, "version"));
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(r, "spec_shape");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(r, "spec_dtype");
    const cJSON *b0 = cJSON_GetArrayItem(shape, 0), *b1 = cJSON_GetArrayItem(shape, 1);
    printf("spectrogram: %.0f x %.0f %s; frames per sample: %.0f\n", b0 ? b0->valuedouble : 0,
           b1 ? b1->valuedouble : 0, cJSON_IsString(dt) ? dt->valuestring : "?", num(r, "frames_per_sample"));
    printf("samples: %.0f; failed rows: %.0f (failures.tsv)\n", num(r, "count"), num(r, "failed"));
    int rc = 0;
    cJSON *sp;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(r, "splits")) {
        cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards");
        printf("split %s: %.0f samples in %d shard(s), %.0f failed\n", sp->string, num(sp, "count"),
               cJSON_GetArraySize(shards), num(sp, "failed"));
        size_t *hist = calloc((size_t)nc + 1, sizeof *hist);
        cm_err err;
        st_split *d = st_split_open(dir, sp->string, &err);
        if (!d) {
            printf("  (cannot read: %s)\n", err.msg);
            rc = 1;
        } else {
            for (size_t k = 0; k < st_split_nshards(d); k++) {
                st_shard *s = st_split_shard(d, k);
                for (size_t i = 0; i < st_shard_count(s); i++) {
                    int32_t l = st_shard_label(s, i);
                    if (l >= 0 && l < nc)
                        hist[l]++;
                }
            }
            st_split_close(d);
            for (int c = 0; c < nc; c++)
                printf("  %4d %-40s %zu\n", c, cJSON_GetArrayItem(cls, c)->valuestring, hist[c]);
        }
        free(hist);
    }
    cJSON *al;
    cJSON_ArrayForEach(al, cJSON_GetObjectItemCaseSensitive(r, "aliases"))
        if (cJSON_IsString(al))
            printf("split %s: the same samples as split %s\n", al->string, al->valuestring);
    char *rec = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r, "recipe"));
    printf("recipe: %s\n", rec ? rec : "{}");
    free(rec);
    cJSON_Delete(r);
    return rc;
}

typedef struct faults {
    size_t n;
} faults;

static void fault(faults *f, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fault(faults *f, const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("store: %s: ", file);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    f->n++;
}

static int listed(cJSON *r, const char *name)
{
    cJSON *sp, *e;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(r, "splits"))
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
            cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "file");
            if (cJSON_IsString(f) && !strcmp(f->valuestring, name))
                return 1;
        }
    return 0;
}

static int cmd_verify(const char *dir)
{
    cJSON *r = load_index(dir);
    if (!r)
        return 1;
    faults F = {0};
    tjhandle tj = tjInitDecompress();
    cJSON *cls = cJSON_GetObjectItemCaseSensitive(r, "classes");
    int nc = cJSON_GetArraySize(cls);
    char *recipe = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r, "recipe"));
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(r, "spec_shape");
    int bins = cJSON_GetArrayItem(shape, 0) ? cJSON_GetArrayItem(shape, 0)->valueint : 0;
    int frames = cJSON_GetArrayItem(shape, 1) ? cJSON_GetArrayItem(shape, 1)->valueint : 0;
    int fps = (int)num(r, "frames_per_sample");
    size_t samples = 0, jpegs = 0, total = 0;
    cJSON *sp, *e;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(r, "splits")) {
        size_t split_count = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sp, "shards")) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(e, "file");
            if (!cJSON_IsString(fn) || strchr(fn->valuestring, '/')) {
                fault(&F, "index.json", "bad shard entry in split %s", sp->string);
                continue;
            }
            const char *name = fn->valuestring;
            char path[CM_PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dir, name);
            cm_err err;
            st_shard *s = st_shard_open(path, &err);
            if (!s) {
                fault(&F, name, "%s", err.msg);
                continue;
            }
            const st_meta *m = st_shard_meta(s);
            size_t n = st_shard_count(s);
            split_count += n;
            if ((double)n != num(e, "count"))
                fault(&F, name, "%zu samples, index.json says %.0f", n, num(e, "count"));
            if (strcmp(m->split, sp->string))
                fault(&F, name, "split attribute \"%s\", listed under \"%s\"", m->split, sp->string);
            if (m->n_classes != nc) {
                fault(&F, name, "%d classes, index.json has %d", m->n_classes, nc);
            } else {
                for (int c = 0; c < nc; c++)
                    if (strcmp(m->classes[c], cJSON_GetArrayItem(cls, c)->valuestring)) {
                        fault(&F, name, "class %d is \"%s\", index.json says \"%s\"", c, m->classes[c],
                                  cJSON_GetArrayItem(cls, c)->valuestring);
                        break;
                    }
            }
            if (m->frames_per_sample != fps)
                fault(&F, name, "%d frames per sample, index.json says %d", m->frames_per_sample, fps);
            if (m->bins != bins || m->frames != frames)
                fault(&F, name, "spectrogram %d x %d, index.json says %d x %d", m->bins, m->frames, bins, frames);
            cJSON *sr = cJSON_Parse(m->recipe_json);
            char *srs = sr ? cJSON_PrintUnformatted(sr) : NULL;
            if (!srs || !recipe || strcmp(srs, recipe))
                fault(&F, name, "recipe differs from index.json");
            free(srs);
            cJSON_Delete(sr);
            size_t cnt = (size_t)m->bins * (size_t)m->frames;
            float *spec = malloc(cnt * sizeof *spec);
            for (size_t i = 0; i < n && spec; i++) {
                st_record rec;
                if (st_shard_read(s, i, &rec, &err) != 0) {
                    fault(&F, name, "sample %zu: %s", i, err.msg);
                    continue;
                }
                for (int k = 0; k < rec.frames_per_sample; k++) {
                    int w, h, sub, cs;
                    unsigned char *jb = rec.jpeg_buf + rec.jpeg_off[k];
                    unsigned long jl = (unsigned long)rec.jpeg_len[k];
                    if (!tj || jl == 0 || tjDecompressHeader3(tj, jb, jl, &w, &h, &sub, &cs) != 0 || w <= 0 || h <= 0) {
                        fault(&F, name, "sample %zu (%s) frame %d: not a JPEG", i, rec.id, k);
                        continue;
                    }
                    unsigned char *px = malloc((size_t)w * (size_t)h * 3);
                    if (!px || tjDecompress2(tj, jb, jl, px, w, 0, h, TJPF_RGB, 0) != 0)
                        fault(&F, name, "sample %zu (%s) frame %d: JPEG does not decode: %s", i, rec.id, k,
                              tjGetErrorStr2(tj));
                    else
                        jpegs++;
                    free(px);
                }
                if (st_shard_read_spec(s, i, NULL, spec, &err) != 0) {
                    fault(&F, name, "sample %zu (%s): %s", i, rec.id, err.msg);
                } else {
                    size_t bad = 0;
                    for (size_t q = 0; q < cnt; q++)
                        bad += !isfinite(spec[q]);
                    if (bad)
                        fault(&F, name, "sample %zu (%s): %zu NaN/Inf values in the spectrogram", i, rec.id, bad);
                }
                samples++;
                st_record_free(&rec);
            }
            free(spec);
            st_shard_close(s);
        }
        if ((double)split_count != num(sp, "count"))
            fault(&F, "index.json", "split %s: shards hold %zu samples, index says %.0f", sp->string, split_count,
                  num(sp, "count"));
        total += split_count;
    }
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && cm_has_suffix(de->d_name, ".h5") && !listed(r, de->d_name))
            fault(&F, de->d_name, "shard not listed in index.json");
    if (d)
        closedir(d);
    char fpath[CM_PATH_MAX];
    snprintf(fpath, sizeof fpath, "%s/failures.tsv", dir);
    if (!cm_is_file(fpath))
        fault(&F, "failures.tsv", "missing");
    if (tj)
        tjDestroy(tj);
    free(recipe);
    cJSON_Delete(r);
    printf("store: %s: %zu samples, %zu JPEG frames checked; %zu fault(s)\n", dir, samples, jpegs, F.n);
    (void)total;
    return F.n ? 1 : 0;
}

static int cmd_export(const char *dir, const char *id, const char *prefix)
{
    cJSON *r = load_index(dir);
    if (!r)
        return 1;
    int rc = 1, found = 0;
    cJSON *sp;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(r, "splits")) {
        if (found)
            break;
        cm_err err;
        st_split *d = st_split_open(dir, sp->string, &err);
        if (!d) {
            fprintf(stderr, "store: %s: split %s: %s\n", dir, sp->string, err.msg);
            continue;
        }
        for (size_t k = 0; k < st_split_nshards(d) && !found; k++) {
            st_shard *s = st_split_shard(d, k);
            for (size_t i = 0; i < st_shard_count(s) && !found; i++) {
                if (strcmp(st_shard_id(s, i), id))
                    continue;
                found = 1;
                const st_meta *m = st_shard_meta(s);
                st_record rec;
                size_t cnt = (size_t)m->bins * (size_t)m->frames;
                float *spec = malloc(cnt * sizeof *spec);
                if (!spec || st_shard_read(s, i, &rec, &err) != 0) {
                    fprintf(stderr, "store: %s: %s\n", st_shard_path(s), spec ? err.msg : "out of memory");
                    free(spec);
                    break;
                }
                char path[CM_PATH_MAX];
                snprintf(path, sizeof path, "%s.npy", prefix);
                size_t shape[2] = {(size_t)m->bins, (size_t)m->frames};
                int ok = st_shard_read_spec(s, i, NULL, spec, &err) == 0;
                if (!ok)
                    fprintf(stderr, "store: %s: %s\n", st_shard_path(s), err.msg);
                if (ok && cm_npy_write(path, "<f4", shape, 2, spec, &err) != 0) {
                    fprintf(stderr, "store: %s\n", err.msg);
                    ok = 0;
                }
                for (int f = 0; ok && f < rec.frames_per_sample; f++) {
                    snprintf(path, sizeof path, "%s_%d.jpg", prefix, f);
                    if (cm_write_file_atomic(path, rec.jpeg_buf + rec.jpeg_off[f], rec.jpeg_len[f], &err) != 0) {
                        fprintf(stderr, "store: %s\n", err.msg);
                        ok = 0;
                    }
                }
                if (ok) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "id", rec.id);
                    cJSON_AddStringToObject(o, "split", m->split);
                    cJSON_AddStringToObject(o, "shard", st_shard_path(s));
                    cJSON_AddNumberToObject(o, "index", (double)i);
                    cJSON_AddNumberToObject(o, "label", rec.label);
                    cJSON_AddStringToObject(o, "class", m->classes[rec.label]);
                    cJSON *sg = cJSON_AddArrayToObject(o, "segment");
                    cJSON_AddItemToArray(sg, cJSON_CreateNumber(rec.seg_start));
                    cJSON_AddItemToArray(sg, cJSON_CreateNumber(rec.seg_end));
                    cJSON *ft = cJSON_AddArrayToObject(o, "frame_time");
                    for (int f = 0; f < rec.frames_per_sample; f++)
                        cJSON_AddItemToArray(ft, cJSON_CreateNumber(rec.frame_time[f]));
                    char *t = cJSON_PrintUnformatted(o);
                    printf("%s\n", t ? t : "{}");
                    free(t);
                    cJSON_Delete(o);
                    rc = 0;
                }
                st_record_free(&rec);
                free(spec);
            }
        }
        st_split_close(d);
    }
    if (!found)
        fprintf(stderr, "store: %s: no sample with id \"%s\"\n", dir, id);
    cJSON_Delete(r);
    return rc;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1], *dir = argv[2];
    if (!cm_is_dir(dir)) {
        fprintf(stderr, "store: %s: not a directory\n", dir);
        return 2;
    }
    if (!strcmp(cmd, "info") && argc == 3)
        return cmd_info(dir);
    if (!strcmp(cmd, "index") && argc == 3) { cm_err e; st_lock *l = st_lock_take(dir, 0, 0, NULL, &e); int rc = l ? st_index_write(dir, &e) : -1; st_lock_release(l); return rc ? (fprintf(stderr, "store: %s\n", e.msg), 1) : 0; }
    if (!strcmp(cmd, "verify") && argc == 3)
        return cmd_verify(dir);
    if (!strcmp(cmd, "export") && argc == 6 && !strcmp(argv[4], "-o"))
        return cmd_export(dir, argv[3], argv[5]);
    usage(stderr);
    return 2;
}
