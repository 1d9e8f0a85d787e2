/* ingest: dataset readers (AVE, CREMA-D, VGGSound, normalized TSV) -> ig_manifest. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "common/cm_parse.h"
#include "common/cm_rand.h"
#include "ingest/ig_strmap.h"
#include "ingest/ig_text.h"
#include "ingest/ingest.h"

/* ---- text helpers ---- */

/* Splits one CSV record in place (quotes, "" escapes). Returns the field count (up to maxf). */
static int csv_fields(char *line, char **f, int maxf)
{
    int n = 0;
    char *r = line, *w = line;
    for (;;) {
        if (n == maxf)
            return n + 1; /* too many */
        f[n++] = w;
        if (*r == '"') {
            r++;
            for (;;) {
                if (*r == '\0')
                    break;
                if (*r == '"' && r[1] == '"') {
                    *w++ = '"';
                    r += 2;
                } else if (*r == '"') {
                    r++;
                    break;
                } else {
                    *w++ = *r++;
                }
            }
            while (*r && *r != ',')
                *w++ = *r++;
        } else {
            while (*r && *r != ',')
                *w++ = *r++;
        }
        if (*r == ',') {
            r++;
            *w++ = '\0';
            continue;
        }
        *w = '\0';
        return n;
    }
}

/* Splits a line in place on `sep` (no quoting). Returns the field count; maxf when there are maxf or more. */
static int split_fields(char *line, char sep, char **f, int maxf)
{
    int nf = 0;
    for (char *q = line; nf < maxf;) {
        f[nf++] = q;
        char *a = strchr(q, sep);
        if (!a)
            break;
        *a = '\0';
        q = a + 1;
    }
    return nf;
}

/* A time field: a plain decimal number of seconds (cm_parse_decimal) in [0, 1e7]; its
 * canonical text (cm_format_decimal: "00" and "0.0" are "0") into txt. 0, or -1 and why. */
static int parse_time(const char *what, const char *s, double *out, char *txt, size_t ntxt, char *why, size_t n)
{
    if (cm_parse_decimal(s, 0, 1e7, out) != 0)
        return snprintf(why, n, "%s \"%.32s\" is not a plain decimal number of seconds in [0, 1e7]", what, s), -1;
    if (txt)
        cm_format_decimal(txt, ntxt, *out);
    return 0;
}

/* Field idx of a line cut at its first bad byte (ig_lines_next), split on sep, when the
 * text before the cut holds it whole; else "-". For the failure line of a bad row. */
static const char *whole_field(char *line, char sep, int idx)
{
    char *s = line;
    for (int i = 0; i < idx && s; i++)
        if ((s = strchr(s, sep)))
            s++;
    char *e = s ? strchr(s, sep) : NULL;
    if (!e || e == s)
        return "-";
    *e = '\0';
    return s;
}

static void copy_path(char *out, size_t n, const char *s)
{
    size_t l = strnlen(s, n - 1);
    memcpy(out, s, l);
    out[l] = '\0';
}

static void join(char *out, size_t n, const char *a, const char *b)
{
    if (b[0] == '/' || !a || !*a) {
        copy_path(out, n, b);
        return;
    }
    size_t la = strnlen(a, n - 2);
    memcpy(out, a, la);
    out[la] = '/';
    copy_path(out + la + 1, n - la - 1, b);
}

/* ---- AVE ---- */

/* One AVE row (Category&VideoID&Quality&Start&End, split on '&' only); 0, or -1 out of memory.
 * The id is VideoID_Start_End with the times in canonical form: "0&3", "0.0&3" and "00&3.000"
 * are one segment (a repeat), and the usual integer times keep the id they are written as. */
static int ave_row(ig_manifest *m, const ig_preset *p, const char *root, ig_strmap *seen, ig_lines *t,
                   char *line, const char *file, const char *split)
{
    char *f[6], why[160], st_txt[64], en_txt[64];
    if (t->bad)
        return ig_manifest_fail(m, whole_field(line, '&', 1), split, "%s line %d: %s", file, t->lineno, t->bad)
                   ? -1 : 0;
    int nf = split_fields(line, '&', f, 6);
    double st, en;
    if (nf != 5 || !*f[0] || !*f[1])
        return ig_manifest_fail(m, nf >= 2 ? f[1] : "-", split, "%s line %d: not Category&VideoID&Quality&Start&End",
                                file, t->lineno) ? -1 : 0;
    char *label = ig_trim(f[0]);
    if (ig_check_name("VideoID", f[1], why, sizeof why) || ig_check_text("category", label, why, sizeof why) ||
        parse_time("start", f[3], &st, st_txt, sizeof st_txt, why, sizeof why) ||
        parse_time("end", f[4], &en, en_txt, sizeof en_txt, why, sizeof why))
        return ig_manifest_fail(m, f[1], split, "%s line %d: %s", file, t->lineno, why) ? -1 : 0;
    char id[2 * ST_ID_MAX], media[CM_PATH_MAX], rel[300];
    snprintf(id, sizeof id, "%s_%s_%s", f[1], st_txt, en_txt);
    /* the same video and segment listed again (with another label): keep it, make the id unique */
    int *rep = ig_strmap_put(seen, id, 0);
    if (!rep)
        return -1;
    if (++*rep > 1) {
        size_t l = strlen(id);
        snprintf(id + l, sizeof id - l, "~%d", *rep);
        m->renamed++;
    }
    if (ig_check_id("id", id, why, sizeof why))
        return ig_manifest_fail(m, f[1], split, "%s line %d: %s", file, t->lineno, why) ? -1 : 0;
    snprintf(rel, sizeof rel, "AVE/%s.mp4", f[1]);
    join(media, sizeof media, root, rel);
    double a = p->use_segment ? st : 0, b = p->use_segment ? en : -1;
    return ig_manifest_add(m, id, media, media, label, split, a, b);
}

int ig_read_ave(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err)
{
    static const char *const splits[] = {"train", "val", "test"};
    ig_strmap seen; /* id -> times seen */
    ig_strmap_init(&seen);
    int rc = 0;
    for (int s = 0; s < 3 && rc == 0; s++) {
        char path[CM_PATH_MAX], name[32];
        snprintf(name, sizeof name, "%sSet.txt", splits[s]);
        join(path, sizeof path, root, name);
        ig_lines t;
        if (ig_lines_open(&t, path, IG_ANNOTATION_MAX, err) != 0) {
            ig_strmap_free(&seen);
            return -1;
        }
        ig_manifest_split(m, splits[s]);
        char *line;
        while (rc == 0 && (line = ig_lines_next(&t)))
            rc = ave_row(m, p, root, &seen, &t, line, name, splits[s]);
        ig_lines_close(&t);
    }
    ig_strmap_free(&seen);
    if (rc != 0)
        return cm_err_set(err, "out of memory");
    return ig_manifest_finish(m, p, "test", err);
}

/* ---- CREMA-D ---- */

static int cremad_add(ig_manifest *m, const char *root, const char *clip, const char *label, const char *split)
{
    char video[CM_PATH_MAX], audio[CM_PATH_MAX], rel[600];
    snprintf(rel, sizeof rel, "VideoFlash/%s.flv", clip);
    join(video, sizeof video, root, rel);
    snprintf(rel, sizeof rel, "AudioWAV/%s.wav", clip);
    join(audio, sizeof audio, root, rel);
    if (!cm_is_file(audio))
        copy_path(audio, sizeof audio, video);
    return ig_manifest_add(m, clip, audio, video, label, split, 0, -1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One CREMA-D split file row (clip,LABEL); 0, or -1 out of memory. */
static int cremad_row(ig_manifest *m, const char *root, ig_lines *t, char *line, const char *split)
{
    char *f[3], why[160];
    if (t->bad)
        return ig_manifest_fail(m, whole_field(line, ',', 0), split, "%s.csv line %d: %s", split, t->lineno, t->bad)
                   ? -1 : 0;
    int nf = csv_fields(line, f, 2);
    if (nf != 2 || !*f[0] || !*f[1])
        return ig_manifest_fail(m, nf >= 1 ? f[0] : "-", split, "%s.csv line %d: not clip,LABEL", split, t->lineno)
                   ? -1 : 0;
    char *label = ig_trim(f[1]);
    if (ig_check_name("clip", f[0], why, sizeof why) ||
        ig_check_text("label", label, why, sizeof why))
        return ig_manifest_fail(m, f[0], split, "%s.csv line %d: %s", split, t->lineno, why) ? -1 : 0;
    return cremad_add(m, root, f[0], label, split);
}

int ig_read_cremad(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err)
{
    char tr[CM_PATH_MAX], te[CM_PATH_MAX];
    join(tr, sizeof tr, root, "train.csv");
    join(te, sizeof te, root, "test.csv");
    ig_manifest_split(m, "train");
    ig_manifest_split(m, "test");
    if (cm_is_file(tr) && cm_is_file(te)) {
        const char *files[2] = {tr, te}, *names[2] = {"train", "test"};
        for (int s = 0; s < 2; s++) {
            ig_lines t;
            if (ig_lines_open(&t, files[s], IG_ANNOTATION_MAX, err) != 0)
                return -1;
            char *line;
            int rc = 0;
            while (rc == 0 && (line = ig_lines_next(&t)))
                rc = cremad_row(m, root, &t, line, names[s]);
            ig_lines_close(&t);
            if (rc != 0)
                return cm_err_set(err, "out of memory");
        }
    } else {
        /* no split files: every VideoFlash/<clip>.flv, sorted, shuffled with splitmix64(seed)
         * (Fisher-Yates from the end), the first round(n * test_fraction) are test */
        char dir[CM_PATH_MAX];
        join(dir, sizeof dir, root, "VideoFlash");
        DIR *d = opendir(dir);
        if (!d)
            return cm_err_set(err, "neither train.csv/test.csv nor VideoFlash/ found");
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !cm_has_suffix(e->d_name, ".flv"))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                char **t = realloc(names, cap * sizeof *t);
                if (!t)
                    break;
                names = t;
            }
            names[n] = strndup(e->d_name, strlen(e->d_name) - 4);
            if (names[n])
                n++;
        }
        closedir(d);
        if (n > 1)
            qsort(names, n, sizeof *names, cmp_str);
        uint64_t st = p->seed;
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(cm_splitmix64(&st) % i);
            char *t = names[i - 1];
            names[i - 1] = names[j];
            names[j] = t;
        }
        size_t ntest = (size_t)((double)n * p->test_fraction + 0.5);
        /* keep each split in name order */
        if (ntest > 1)
            qsort(names, ntest, sizeof *names, cmp_str);
        if (n - ntest > 1)
            qsort(names + ntest, n - ntest, sizeof *names, cmp_str);
        int rc = 0;
        for (size_t pass = 0; pass < 2 && rc == 0; pass++)
            for (size_t i = pass ? 0 : ntest; i < (pass ? ntest : n) && rc == 0; i++) {
                /* label: third field of the clip name (1088_IOM_NEU_XX) */
                char lab[16] = "";
                const char *a = strchr(names[i], '_');
                const char *b = a ? strchr(a + 1, '_') : NULL;
                if (b) {
                    const char *c = strchr(b + 1, '_');
                    size_t l = c ? (size_t)(c - b - 1) : strlen(b + 1);
                    snprintf(lab, sizeof lab, "%.*s", (int)(l < 15 ? l : 15), b + 1);
                }
                rc = cremad_add(m, root, names[i], lab, pass ? "test" : "train");
            }
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        if (rc != 0)
            return cm_err_set(err, "out of memory");
    }
    return ig_manifest_finish(m, p, "test", err);
}

/* ---- VGGSound ---- */

/* The .mp4 names in root and root/video, listed once (a stat per row and
 * candidate would cost more than reading the list). */
typedef struct vgg_files {
    ig_strmap top, video;
    int has_video;
} vgg_files;

static int list_mp4(ig_strmap *h, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)))
        if (e->d_name[0] != '.' && cm_has_suffix(e->d_name, ".mp4"))
            rc = ig_strmap_put(h, e->d_name, 1) ? 0 : -1;
    closedir(d);
    return rc;
}

static int vgg_files_open(vgg_files *v, const char *root)
{
    char vdir[CM_PATH_MAX];
    ig_strmap_init(&v->top);
    ig_strmap_init(&v->video);
    join(vdir, sizeof vdir, root, "video");
    v->has_video = cm_is_dir(vdir);
    return list_mp4(&v->top, root) || list_mp4(&v->video, vdir) ? -1 : 0;
}

static void vgg_files_close(vgg_files *v)
{
    ig_strmap_free(&v->top);
    ig_strmap_free(&v->video);
}

/* <yt>_<start>.mp4 or <yt>_<start as %06d>.mp4, in root or root/video. */
static void vgg_media(char *out, size_t n, const vgg_files *v, const char *root, const char *yt, const char *start)
{
    char name[2][400], rel[420];
    snprintf(name[0], sizeof name[0], "%s_%s.mp4", yt, start);
    snprintf(name[1], sizeof name[1], "%s_%06ld.mp4", yt, strtol(start, NULL, 10));
    for (int i = 0; i < 4; i++) {
        int in_video = i >= 2;
        if (ig_strmap_get(in_video ? &v->video : &v->top, name[i % 2]) == 1) {
            snprintf(rel, sizeof rel, "%s%s", in_video ? "video/" : "", name[i % 2]);
            join(out, n, root, rel);
            return;
        }
    }
    snprintf(rel, sizeof rel, "%s%s", v->has_video ? "video/" : "", name[0]);
    join(out, n, root, rel); /* missing: reported by the worker */
}

/* One VGGSound row (YouTubeID,start,label,split); 0, or -1 out of memory. The id is
 * YouTubeID_start with the start in canonical form (as AVE's times); the media file is
 * looked up by the start as written. */
static int vgg_row(ig_manifest *m, const vgg_files *v, const char *root, ig_lines *t, char *line, const char *file,
                   const char *list_split)
{
    char *f[5], why[160], st_txt[64];
    if (t->bad)
        return ig_manifest_fail(m, whole_field(line, ',', 0), list_split, "%s line %d: %s", file, t->lineno, t->bad)
                   ? -1 : 0;
    int nf = csv_fields(line, f, 4);
    double st;
    if (nf != 4 || !*f[0] || !*f[2])
        return ig_manifest_fail(m, nf >= 1 ? f[0] : "-", list_split, "%s line %d: not YouTubeID,start,label,split",
                                file, t->lineno) ? -1 : 0;
    const char *split = *f[3] ? f[3] : list_split;
    char *label = ig_trim(f[2]);
    if (ig_check_name("YouTubeID", f[0], why, sizeof why) || ig_check_text("label", label, why, sizeof why) ||
        ig_check_split(split, why, sizeof why) ||
        parse_time("start", f[1], &st, st_txt, sizeof st_txt, why, sizeof why))
        return ig_manifest_fail(m, f[0], list_split, "%s line %d: %s", file, t->lineno, why) ? -1 : 0;
    char id[2 * ST_ID_MAX], media[CM_PATH_MAX];
    snprintf(id, sizeof id, "%s_%s", f[0], st_txt);
    if (ig_check_id("id", id, why, sizeof why))
        return ig_manifest_fail(m, f[0], list_split, "%s line %d: %s", file, t->lineno, why) ? -1 : 0;
    if (ig_manifest_split(m, split) < 0)
        return ig_manifest_fail(m, f[0], list_split, "%s line %d: more than %d splits", file, t->lineno,
                                IG_MAX_SPLITS) ? -1 : 0;
    vgg_media(media, sizeof media, v, root, f[0], f[1]);
    return ig_manifest_add(m, id, media, media, label, split, 0, -1);
}

int ig_read_vggsound(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err)
{
    int tiny = !strcmp(p->subset, "tiny");
    const char *names[2] = {tiny ? "train_tiny.csv" : "train.csv", tiny ? "test_tiny.csv" : "test.csv"};
    const char *splits[2] = {"train", "test"};
    ig_manifest_split(m, "train");
    ig_manifest_split(m, "test");
    vgg_files v;
    int rc = vgg_files_open(&v, root);
    for (int s = 0; s < 2 && rc == 0; s++) {
        char path[CM_PATH_MAX];
        join(path, sizeof path, root, names[s]);
        ig_lines t;
        if (ig_lines_open(&t, path, IG_ANNOTATION_MAX, err) != 0) {
            vgg_files_close(&v);
            return -1;
        }
        char *line;
        while (rc == 0 && (line = ig_lines_next(&t)))
            rc = vgg_row(m, &v, root, &t, line, names[s], splits[s]);
        ig_lines_close(&t);
    }
    vgg_files_close(&v);
    if (rc != 0)
        return cm_err_set(err, "out of memory");
    return ig_manifest_finish(m, p, NULL, err);
}

/* ---- normalized TSV ---- */

/* One manifest row: id audio video label split start end; 0, or -1 out of memory. */
static int tsv_row(ig_manifest *m, const char *base, ig_lines *t, char *line)
{
    char *f[8], why[160], w2[160];
    if (t->bad)
        return ig_manifest_fail(m, whole_field(line, '\t', 0), "-", "manifest line %d: %s", t->lineno, t->bad)
                   ? -1 : 0;
    int nf = split_fields(line, '\t', f, 8);
    if (nf == 7 && !strcmp(f[0], "id") && !strcmp(f[1], "audio"))
        return 0; /* header */
    if (nf != 7 || !*f[0] || !*f[2] || !*f[3] || !*f[4])
        return ig_manifest_fail(m, nf >= 1 ? f[0] : "-", nf >= 5 ? f[4] : "-",
                                "manifest line %d: expected id, audio, video, label, split, start, end "
                                "(tab-separated)", t->lineno) ? -1 : 0;
    double st = 0, en = -1;
    int whole = (!*f[5] || !strcmp(f[5], "-")) && (!*f[6] || !strcmp(f[6], "-"));
    const char *audio = *f[1] && strcmp(f[1], "-") ? f[1] : f[2];
    char *label = ig_trim(f[3]);
    if (ig_check_id("id", f[0], why, sizeof why) || ig_check_text("label", label, why, sizeof why) ||
        ig_check_split(f[4], why, sizeof why) || ig_check_path("video path", f[2], why, sizeof why) ||
        ig_check_path("audio path", audio, why, sizeof why) ||
        (!whole && (parse_time("start", f[5], &st, NULL, 0, why, sizeof why) ||
                    parse_time("end", f[6], &en, NULL, 0, why, sizeof why))))
        return ig_manifest_fail(m, f[0], ig_check_split(f[4], w2, sizeof w2) ? "-" : f[4], "manifest line %d: %s",
                                t->lineno, why) ? -1 : 0;
    if (ig_manifest_split(m, f[4]) < 0)
        return ig_manifest_fail(m, f[0], f[4], "manifest line %d: more than %d splits", t->lineno, IG_MAX_SPLITS)
                   ? -1 : 0;
    char a[CM_PATH_MAX], v[CM_PATH_MAX];
    join(v, sizeof v, base, f[2]);
    join(a, sizeof a, base, audio);
    return ig_manifest_add(m, f[0], a, v, label, f[4], st, en);
}

/* --classes FILE: one class name a line (trimmed, as labels are) into q->classes. A line
 * that is not text is an error: the class list fixes every label's index. */
static int read_classes(ig_preset *q, const char *file, cm_err *err)
{
    ig_lines t;
    if (ig_lines_open(&t, file, IG_ANNOTATION_MAX, err) != 0)
        return -1;
    char *line, why[160];
    int rc = 0;
    while (rc == 0 && (line = ig_lines_next(&t))) {
        if (t.bad) {
            rc = cm_err_set(err, "%s line %d: %s", file, t.lineno, t.bad);
            break;
        }
        line = ig_trim(line);
        if (ig_check_text("class name", line, why, sizeof why) != 0) {
            rc = cm_err_set(err, "%s line %d: %s", file, t.lineno, why);
            break;
        }
        char **c = realloc(q->classes, (size_t)(q->n_classes + 1) * sizeof *c);
        if (c)
            q->classes = c;
        if (!c || !(c[q->n_classes] = strdup(line)))
            rc = cm_err_set(err, "out of memory");
        else
            q->n_classes++;
    }
    ig_lines_close(&t);
    return rc;
}

int ig_read_tsv(ig_manifest *m, const ig_preset *p, const char *path, const char *root, const char *classes_file,
                cm_err *err)
{
    char base[CM_PATH_MAX];
    if (root) {
        copy_path(base, sizeof base, root);
    } else {
        copy_path(base, sizeof base, path);
        char *sl = strrchr(base, '/');
        if (sl)
            *sl = '\0';
        else
            snprintf(base, sizeof base, ".");
    }
    ig_preset q = *p; /* class order: the classes file, else sorted labels */
    q.classes = NULL;
    q.n_classes = 0;
    int rc = 0;
    if (classes_file) {
        rc = read_classes(&q, classes_file, err);
        snprintf(q.class_order, sizeof q.class_order, "preset");
    } else if (strcmp(p->class_order, "preset") != 0) {
        snprintf(q.class_order, sizeof q.class_order, "sorted");
    } else {
        q.classes = p->classes;
        q.n_classes = p->n_classes;
    }
    ig_lines t = {0};
    if (rc == 0)
        rc = ig_lines_open(&t, path, IG_ANNOTATION_MAX, err);
    char *line;
    while (rc == 0 && (line = ig_lines_next(&t)))
        if (line[0] != '#' && tsv_row(m, base, &t, line) != 0) /* '#': a comment, whatever it holds */
            rc = cm_err_set(err, "out of memory");
    ig_lines_close(&t);
    if (rc == 0)
        rc = ig_manifest_finish(m, &q, NULL, err);
    if (q.classes != p->classes) {
        for (int i = 0; i < q.n_classes; i++)
            free(q.classes[i]);
        free(q.classes);
    }
    return rc;
}

const ig_reader ig_readers[] = {
    {"ave", ig_read_ave, "trainSet.txt valSet.txt testSet.txt ('&'-separated), AVE/<VideoID>.mp4"},
    {"cremad", ig_read_cremad, "train.csv test.csv (or a seeded split), VideoFlash/<clip>.flv, AudioWAV/<clip>.wav"},
    {"vggsound", ig_read_vggsound, "train_tiny.csv test_tiny.csv (train.csv test.csv: --full), <YouTubeID>_<start>.mp4"},
    {"manifest", NULL, "a normalized manifest (--manifest FILE: id audio video label split start end)"},
};
const int ig_n_readers = (int)(sizeof ig_readers / sizeof ig_readers[0]);

const ig_reader *ig_reader_find(const char *name)
{
    for (int i = 0; i < ig_n_readers; i++)
        if (!strcmp(ig_readers[i].name, name))
            return &ig_readers[i];
    return NULL;
}

void ig_reader_names(char *out, size_t n, const char *sep)
{
    size_t w = 0;
    if (n)
        out[0] = '\0';
    for (int i = 0; i < ig_n_readers && w < n; i++)
        w += (size_t)snprintf(out + w, n - w, "%s%s", i ? sep : "", ig_readers[i].name);
}

int ig_read(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err)
{
    const ig_reader *r = ig_reader_find(p->reader);
    if (r && r->read)
        return r->read(m, p, root, err);
    return cm_err_set(err, "reader \"%s\" needs --manifest FILE", p->reader);
}
