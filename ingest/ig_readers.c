/* ingest: dataset readers (AVE, CREMA-D, VGGSound, normalized TSV) -> ig_manifest. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "ingest/ig_strmap.h"
#include "ingest/ingest.h"

#define ANNOTATION_MAX ((size_t)1 << 30) /* bytes of one annotation file */

/* ---- text helpers ---- */

/* Next line of a NUL-terminated buffer (CRLF or LF), modified in place. NULL at the end. */
static char *next_line(char **cur)
{
    char *s = *cur;
    if (!s || !*s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *cur = nl + 1;
    } else {
        *cur = s + strlen(s);
    }
    size_t n = strlen(s);
    if (n && s[n - 1] == '\r')
        s[n - 1] = '\0';
    return s;
}

static char *skip_bom(char *s)
{
    return (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb && (unsigned char)s[2] == 0xbf ? s + 3 : s;
}

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

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

/* A text file read whole, walked line by line (BOM skipped, CRLF or LF), blank lines passed over. */
typedef struct text_lines {
    char *text, *cur;
    int lineno; /* of the line last returned, counting blank ones */
} text_lines;

/* A regular file read whole (common/cm_file.h: opened without blocking, a
 * FIFO or device refused, at most ANNOTATION_MAX bytes). */
static int read_regular(const char *path, char **text, cm_err *err)
{
    size_t n = 0;
    return cm_read_regular(path, ANNOTATION_MAX, text, &n, err);
}

static int lines_open(text_lines *t, const char *path, cm_err *err)
{
    t->lineno = 0;
    t->cur = NULL;
    t->text = NULL;
    if (read_regular(path, &t->text, err) != 0)
        return -1;
    t->cur = skip_bom(t->text);
    return 0;
}

/* The next line that is not blank, or NULL at the end. */
static char *lines_next(text_lines *t)
{
    char *line;
    while ((line = next_line(&t->cur))) {
        t->lineno++;
        if (!is_blank(line))
            return line;
    }
    return NULL;
}

static void lines_close(text_lines *t)
{
    free(t->text);
    t->text = NULL;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= 0) || x > 1e7)
        return -1;
    *out = x;
    return 0;
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

/* One AVE row (Category&VideoID&Quality&Start&End, split on '&' only); 0, or -1 out of memory. */
static int ave_row(ig_manifest *m, const ig_preset *p, const char *root, ig_strmap *seen, char *line,
                   const char *file, int lineno, const char *split)
{
    char *f[6], why[160];
    int nf = split_fields(line, '&', f, 6);
    double st, en;
    if (nf != 5 || !*f[0] || !*f[1] || parse_seconds(f[3], &st) || parse_seconds(f[4], &en))
        return ig_manifest_fail(m, nf >= 2 ? f[1] : "-", split, "%s line %d: not Category&VideoID&Quality&Start&End",
                                file, lineno) ? -1 : 0;
    if (ig_check_name("VideoID", f[1], why, sizeof why) || ig_check_text("category", f[0], why, sizeof why))
        return ig_manifest_fail(m, f[1], split, "%s line %d: %s", file, lineno, why) ? -1 : 0;
    char id[300], media[CM_PATH_MAX], rel[300];
    snprintf(id, sizeof id, "%s_%s_%s", f[1], f[3], f[4]);
    /* the same video and segment listed again (with another label): keep it, make the id unique */
    int *rep = ig_strmap_put(seen, id, 0);
    if (!rep)
        return -1;
    if (++*rep > 1) {
        size_t l = strlen(id);
        snprintf(id + l, sizeof id - l, "~%d", *rep);
        m->renamed++;
    }
    snprintf(rel, sizeof rel, "AVE/%s.mp4", f[1]);
    join(media, sizeof media, root, rel);
    double a = p->use_segment ? st : 0, b = p->use_segment ? en : -1;
    return ig_manifest_add(m, id, media, media, f[0], split, a, b);
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
        text_lines t;
        if (lines_open(&t, path, err) != 0) {
            ig_strmap_free(&seen);
            return -1;
        }
        ig_manifest_split(m, splits[s]);
        char *line;
        while (rc == 0 && (line = lines_next(&t)))
            rc = ave_row(m, p, root, &seen, line, name, t.lineno, splits[s]);
        lines_close(&t);
    }
    ig_strmap_free(&seen);
    if (rc != 0)
        return cm_err_set(err, "out of memory");
    return ig_manifest_finish(m, p, "test", err);
}

/* ---- CREMA-D ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

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
            text_lines t;
            if (lines_open(&t, files[s], err) != 0)
                return -1;
            char *line;
            while ((line = lines_next(&t))) {
                char *f[3], why[160];
                int nf = csv_fields(line, f, 2);
                if (nf != 2 || !*f[0] || !*f[1]) {
                    ig_manifest_fail(m, nf >= 1 ? f[0] : "-", names[s], "%s.csv line %d: not clip,LABEL", names[s],
                                     t.lineno);
                    continue;
                }
                if (ig_check_name("clip", f[0], why, sizeof why) || ig_check_text("label", f[1], why, sizeof why)) {
                    ig_manifest_fail(m, f[0], names[s], "%s.csv line %d: %s", names[s], t.lineno, why);
                    continue;
                }
                if (cremad_add(m, root, f[0], f[1], names[s]) != 0) {
                    lines_close(&t);
                    return cm_err_set(err, "out of memory");
                }
            }
            lines_close(&t);
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
            size_t j = (size_t)(splitmix64(&st) % i);
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

/* One VGGSound row (YouTubeID,start,label,split); 0, or -1 out of memory. */
static int vgg_row(ig_manifest *m, const vgg_files *v, const char *root, char *line, const char *file, int lineno,
                   const char *list_split)
{
    char *f[5], why[160];
    int nf = csv_fields(line, f, 4);
    double st;
    if (nf != 4 || !*f[0] || !*f[2] || parse_seconds(f[1], &st))
        return ig_manifest_fail(m, nf >= 1 ? f[0] : "-", list_split, "%s line %d: not YouTubeID,start,label,split",
                                file, lineno) ? -1 : 0;
    const char *split = *f[3] ? f[3] : list_split;
    if (ig_check_name("YouTubeID", f[0], why, sizeof why) || ig_check_text("label", f[2], why, sizeof why) ||
        ig_check_split(split, why, sizeof why))
        return ig_manifest_fail(m, f[0], list_split, "%s line %d: %s", file, lineno, why) ? -1 : 0;
    if (ig_manifest_split(m, split) < 0)
        return ig_manifest_fail(m, f[0], list_split, "%s line %d: more than %d splits", file, lineno,
                                IG_MAX_SPLITS) ? -1 : 0;
    char id[300], media[CM_PATH_MAX];
    snprintf(id, sizeof id, "%s_%s", f[0], f[1]);
    vgg_media(media, sizeof media, v, root, f[0], f[1]);
    return ig_manifest_add(m, id, media, media, f[2], split, 0, -1);
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
        text_lines t;
        if (lines_open(&t, path, err) != 0) {
            vgg_files_close(&v);
            return -1;
        }
        char *line;
        while (rc == 0 && (line = lines_next(&t)))
            rc = vgg_row(m, &v, root, line, names[s], t.lineno, splits[s]);
        lines_close(&t);
    }
    vgg_files_close(&v);
    if (rc != 0)
        return cm_err_set(err, "out of memory");
    return ig_manifest_finish(m, p, NULL, err);
}

/* ---- normalized TSV ---- */

/* One manifest row: id audio video label split start end; 0, or -1 out of memory. */
static int tsv_row(ig_manifest *m, const char *base, char *line, int lineno)
{
    char *f[8], why[160], w2[160];
    int nf = split_fields(line, '\t', f, 8);
    if (nf == 7 && !strcmp(f[0], "id") && !strcmp(f[1], "audio"))
        return 0; /* header */
    double st = 0, en = -1;
    int whole = nf == 7 && (!*f[5] || !strcmp(f[5], "-")) && (!*f[6] || !strcmp(f[6], "-"));
    if (nf != 7 || !*f[0] || !*f[2] || !*f[3] || !*f[4] ||
        (!whole && (parse_seconds(f[5], &st) || parse_seconds(f[6], &en))))
        return ig_manifest_fail(m, nf >= 1 ? f[0] : "-", nf >= 5 ? f[4] : "-",
                                "manifest line %d: expected id, audio, video, label, split, start, end "
                                "(tab-separated)", lineno) ? -1 : 0;
    const char *audio = *f[1] && strcmp(f[1], "-") ? f[1] : f[2];
    if (ig_check_name("id", f[0], why, sizeof why) || ig_check_text("label", f[3], why, sizeof why) ||
        ig_check_split(f[4], why, sizeof why) || ig_check_path("video path", f[2], why, sizeof why) ||
        ig_check_path("audio path", audio, why, sizeof why))
        return ig_manifest_fail(m, f[0], ig_check_split(f[4], w2, sizeof w2) ? "-" : f[4], "manifest line %d: %s",
                                lineno, why) ? -1 : 0;
    if (ig_manifest_split(m, f[4]) < 0)
        return ig_manifest_fail(m, f[0], f[4], "manifest line %d: more than %d splits", lineno, IG_MAX_SPLITS)
                   ? -1 : 0;
    char a[CM_PATH_MAX], v[CM_PATH_MAX];
    join(v, sizeof v, base, f[2]);
    join(a, sizeof a, base, audio);
    return ig_manifest_add(m, f[0], a, v, f[3], f[4], st, en);
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
    if (classes_file) {
        text_lines t;
        if (lines_open(&t, classes_file, err) != 0)
            return -1;
        char *line;
        while ((line = lines_next(&t))) {
            char **c = realloc(q.classes, (size_t)(q.n_classes + 1) * sizeof *c);
            if (!c || !(c[q.n_classes] = strdup(line))) {
                free(c ? c : q.classes);
                lines_close(&t);
                return cm_err_set(err, "out of memory");
            }
            q.classes = c;
            q.n_classes++;
        }
        lines_close(&t);
        snprintf(q.class_order, sizeof q.class_order, "preset");
    } else if (strcmp(p->class_order, "preset") != 0) {
        snprintf(q.class_order, sizeof q.class_order, "sorted");
    } else {
        q.classes = p->classes;
        q.n_classes = p->n_classes;
    }
    text_lines t;
    int rc = lines_open(&t, path, err);
    char *line;
    while (rc == 0 && (line = lines_next(&t)))
        if (line[0] != '#')
            rc = tsv_row(m, base, line, t.lineno);
    if (rc != 0 && t.text)
        cm_err_set(err, "out of memory");
    lines_close(&t);
    if (rc == 0)
        rc = ig_manifest_finish(m, &q, NULL, err);
    if (q.classes != p->classes) {
        for (int i = 0; i < q.n_classes; i++)
            free(q.classes[i]);
        free(q.classes);
    }
    return rc;
}

int ig_read(ig_manifest *m, const ig_preset *p, const char *root, cm_err *err)
{
    if (!strcmp(p->reader, "ave"))
        return ig_read_ave(m, p, root, err);
    if (!strcmp(p->reader, "cremad"))
        return ig_read_cremad(m, p, root, err);
    if (!strcmp(p->reader, "vggsound"))
        return ig_read_vggsound(m, p, root, err);
    return cm_err_set(err, "reader \"%s\" needs --manifest FILE", p->reader);
}
