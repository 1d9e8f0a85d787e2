/* ingest: the normalized manifest (items + failures), classes, TSV. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_parse.h"
#include "ingest/ig_strmap.h"
#include "ingest/ig_text.h"
#include "ingest/ingest.h"

void ig_manifest_init(ig_manifest *m)
{
    memset(m, 0, sizeof *m);
}

void ig_manifest_free(ig_manifest *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].id);
        free(m->items[i].audio);
        free(m->items[i].video);
        free(m->items[i].label);
    }
    free(m->items);
    for (size_t i = 0; i < m->nfail; i++) {
        free(m->fails[i].id);
        free(m->fails[i].split);
        free(m->fails[i].reason);
    }
    free(m->fails);
    for (size_t i = 0; i < m->nnotes; i++)
        free(m->notes[i]);
    free(m->notes);
    for (int i = 0; i < m->n_classes; i++)
        free(m->classes[i]);
    free(m->classes);
    for (int i = 0; i < m->n_splits; i++)
        free(m->splits[i]);
    memset(m, 0, sizeof *m);
}

int ig_manifest_split(ig_manifest *m, const char *name)
{
    for (int i = 0; i < m->n_splits; i++)
        if (!strcmp(m->splits[i], name))
            return i;
    if (m->n_splits == IG_MAX_SPLITS)
        return -1;
    if (!(m->splits[m->n_splits] = strdup(name)))
        return -1;
    return m->n_splits++;
}

int ig_manifest_add(ig_manifest *m, const char *id, const char *audio, const char *video, const char *label,
                    const char *split, double start, double end)
{
    int s = ig_manifest_split(m, split);
    if (s < 0)
        return -1;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        ig_item *it = realloc(m->items, cap * sizeof *it);
        if (!it)
            return -1;
        m->items = it;
        m->cap = cap;
    }
    ig_item *it = &m->items[m->n];
    it->id = strdup(id);
    it->audio = strdup(audio);
    it->video = strdup(video);
    it->label = strdup(label);
    it->split = s;
    it->label_idx = -1;
    it->start = start;
    it->end = end;
    if (!it->id || !it->audio || !it->video || !it->label) {
        free(it->id);
        free(it->audio);
        free(it->video);
        free(it->label);
        return -1;
    }
    m->n++;
    return 0;
}

/* Tabs, newlines and other control characters would break failures.tsv: spaces; a byte
 * that is not UTF-8 (a reason that quotes a field cut mid-character): '?'. */
static void clean(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : ig_utf8_seq((const unsigned char *)s + i, n - i);
        if (c < 0x20 || c == 0x7f)
            s[i] = ' ';
        else if (!l)
            s[i] = '?';
        i += l ? l : 1;
    }
}

/* ---- names and paths from annotation files ---- */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int check_text(const char *what, const char *s, size_t max, char *why, size_t n)
{
    if (!*s)
        return snprintf(why, n, "empty %s", what), -1;
    if (strlen(s) > max)
        return snprintf(why, n, "%s longer than %zu bytes (%zu)", what, max, strlen(s)), -1;
    if (has_control(s))
        return snprintf(why, n, "%s holds a control character", what), -1;
    return 0;
}

static int check_name(const char *what, const char *s, size_t max, char *why, size_t n)
{
    if (check_text(what, s, max, why, n) != 0)
        return -1;
    if (strchr(s, '/') || strchr(s, '\\') || strstr(s, ".."))
        return snprintf(why, n, "%s \"%.64s\" holds '/', '\\' or '..'", what, s), -1;
    return 0;
}

int ig_check_text(const char *what, const char *s, char *why, size_t n)
{
    return check_text(what, s, IG_NAME_MAX, why, n);
}

int ig_check_name(const char *what, const char *s, char *why, size_t n)
{
    return check_name(what, s, IG_NAME_MAX, why, n);
}

int ig_check_id(const char *what, const char *s, char *why, size_t n)
{
    return check_name(what, s, ST_ID_MAX, why, n);
}

int ig_check_split(const char *s, char *why, size_t n)
{
    size_t l = strlen(s);
    int ok = l >= 1 && l <= IG_SPLIT_MAX;
    for (const char *c = s; ok && *c; c++)
        ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
             *c == '-';
    if (!ok)
        return snprintf(why, n, "split \"%.40s\" is not 1..%d of [A-Za-z0-9_-]", s, IG_SPLIT_MAX), -1;
    return 0;
}

int ig_check_path(const char *what, const char *s, char *why, size_t n)
{
    if (!*s)
        return snprintf(why, n, "empty %s", what), -1;
    if (strlen(s) > 2048)
        return snprintf(why, n, "%s longer than 2048 bytes", what), -1;
    if (has_control(s))
        return snprintf(why, n, "%s holds a control character", what), -1;
    if (s[0] == '/')
        return 0; /* absolute: taken as given */
    for (const char *c = s; *c;) {
        size_t l = strcspn(c, "/");
        if (l == 2 && c[0] == '.' && c[1] == '.')
            return snprintf(why, n, "relative %s \"%.64s\" leaves its folder ('..')", what, s), -1;
        c += l;
        c += *c == '/';
    }
    return 0;
}

int ig_manifest_fail(ig_manifest *m, const char *id, const char *split, const char *fmt, ...)
{
    if (m->nfail == m->capf) {
        size_t cap = m->capf ? m->capf * 2 : 64;
        ig_fail *f = realloc(m->fails, cap * sizeof *f);
        if (!f)
            return -1;
        m->fails = f;
        m->capf = cap;
    }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ig_fail *f = &m->fails[m->nfail];
    f->id = strdup(id && *id ? id : "-");
    f->split = strdup(split && *split ? split : "-");
    f->reason = strdup(buf);
    if (!f->id || !f->split || !f->reason) {
        free(f->id);
        free(f->split);
        free(f->reason);
        return -1;
    }
    clean(f->id);
    clean(f->split);
    clean(f->reason);
    m->nfail++;
    return 0;
}

int ig_manifest_note(ig_manifest *m, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **t = realloc(m->notes, (m->nnotes + 1) * sizeof *t);
    if (!t)
        return -1;
    m->notes = t;
    if (!(t[m->nnotes] = strdup(buf)))
        return -1;
    clean(t[m->nnotes++]);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds class `name` unless `known` has it (known: name -> 1). */
static int add_class(ig_manifest *m, ig_strmap *known, const char *name)
{
    int *v = ig_strmap_put(known, name, 0);
    if (!v)
        return -1;
    if (*v)
        return 0;
    char **c = realloc(m->classes, (size_t)(m->n_classes + 1) * sizeof *c);
    if (!c)
        return -1;
    m->classes = c;
    if (!(c[m->n_classes] = strdup(name)))
        return -1;
    m->n_classes++;
    *v = 1;
    return 0;
}

/* The class list in p->class_order. */
static int make_classes(ig_manifest *m, const ig_preset *p, const char *first)
{
    ig_strmap known;
    ig_strmap_init(&known);
    int rc = 0;
    if (!strcmp(p->class_order, "preset")) {
        for (int i = 0; rc == 0 && i < p->n_classes; i++)
            rc = add_class(m, &known, p->classes[i]);
    } else if (!strcmp(p->class_order, "first-in-test")) {
        int fs = -1;
        for (int i = 0; first && i < m->n_splits; i++)
            if (!strcmp(m->splits[i], first))
                fs = i;
        for (size_t i = 0; rc == 0 && i < m->n; i++)
            if (m->items[i].split == fs)
                rc = add_class(m, &known, m->items[i].label);
        for (size_t i = 0; rc == 0 && i < m->n; i++) /* classes absent from that split: first appearance elsewhere */
            rc = add_class(m, &known, m->items[i].label);
    } else {
        for (size_t i = 0; rc == 0 && i < m->n; i++)
            rc = add_class(m, &known, m->items[i].label);
        if (m->n_classes > 1)
            qsort(m->classes, (size_t)m->n_classes, sizeof *m->classes, cmp_str);
    }
    ig_strmap_free(&known);
    return rc;
}

/* s in ASCII lower case (malloc'd), or NULL out of memory. */
static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *c = d; c && *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    return d;
}

typedef struct folded {
    char *low;
    int cls;
} folded;

static int cmp_folded(const void *a, const void *b)
{
    const folded *x = a, *y = b;
    int c = strcmp(x->low, y->low);
    return c ? c : (x->cls > y->cls) - (x->cls < y->cls);
}

/* One note per group of classes (with rows) whose names differ only in ASCII case:
 * each is a class of its own, which is rarely what the annotator meant. */
static int case_notes(ig_manifest *m)
{
    size_t nc = (size_t)m->n_classes, nf = 0, *rows = calloc(nc + 1, sizeof *rows);
    folded *f = calloc(nc + 1, sizeof *f);
    int rc = rows && f ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < m->n; i++)
        rows[m->items[i].label_idx]++;
    for (size_t c = 0; rc == 0 && c < nc; c++)
        if (rows[c] && !(f[nf].cls = (int)c, f[nf++].low = lower_dup(m->classes[c])))
            rc = -1;
    if (rc == 0 && nf > 1)
        qsort(f, nf, sizeof *f, cmp_folded);
    for (size_t i = 0, j; rc == 0 && i < nf; i = j) {
        for (j = i + 1; j < nf && !strcmp(f[i].low, f[j].low); j++)
            ;
        if (j - i < 2)
            continue;
        char buf[900];
        size_t l = 0;
        for (size_t k = i; k < j && l < sizeof buf; k++)
            l += (size_t)snprintf(buf + l, sizeof buf - l, "%s\"%s\" (%zu row%s)", k > i ? ", " : "",
                                  m->classes[f[k].cls], rows[f[k].cls], rows[f[k].cls] == 1 ? "" : "s");
        rc = ig_manifest_note(m, "labels that differ only in case are separate classes: %s", buf);
    }
    for (size_t i = 0; i < nf; i++)
        free(f[i].low);
    free(f);
    free(rows);
    return rc;
}

/* Moves item i to the failures when its label is not a class (naming a class that
 * differs only in case), its id is repeated or too long; else stores its label
 * index. 1 moved, 0 kept, -1 out of memory. */
static int check_item(ig_manifest *m, ig_item *it, size_t w, ig_strmap *cls, ig_strmap *lowcls, ig_strmap *ids)
{
    const char *split = m->splits[it->split];
    it->label_idx = ig_strmap_get(cls, it->label);
    if (it->label_idx < 0) {
        char *low = lower_dup(it->label);
        int near = low ? ig_strmap_get(lowcls, low) : -1;
        free(low);
        if (near >= 0)
            return ig_manifest_fail(m, it->id, split, "unknown label \"%s\" (the class list has \"%s\")", it->label,
                                    m->classes[near]) ? -1 : 1;
        return ig_manifest_fail(m, it->id, split, "unknown label \"%s\"", it->label) ? -1 : 1;
    }
    if (strlen(it->id) > ST_ID_MAX)
        return ig_manifest_fail(m, it->id, split, "id longer than %d bytes", ST_ID_MAX) ? -1 : 1;
    int *first_at = ig_strmap_put(ids, it->id, (int)w);
    if (!first_at)
        return -1;
    if ((size_t)*first_at != w)
        return ig_manifest_fail(m, it->id, split, "duplicate id (kept the first, split %s)",
                                m->splits[m->items[*first_at].split]) ? -1 : 1;
    return 0;
}

int ig_manifest_finish(ig_manifest *m, const ig_preset *p, const char *first, cm_err *err)
{
    ig_strmap cls, lowcls, ids;
    ig_strmap_init(&cls);
    ig_strmap_init(&lowcls);
    ig_strmap_init(&ids);
    int rc = make_classes(m, p, first);
    for (int i = 0; rc == 0 && i < m->n_classes; i++) {
        char *low = lower_dup(m->classes[i]);
        rc = low && ig_strmap_put(&cls, m->classes[i], i) && ig_strmap_put(&lowcls, low, i) ? 0 : -1;
        free(low);
    }
    /* label indices; unknown labels, repeated and over-long ids become failures */
    size_t w = 0;
    for (size_t i = 0; rc == 0 && i < m->n; i++) {
        ig_item it = m->items[i];
        int moved = check_item(m, &it, w, &cls, &lowcls, &ids);
        if (moved == 0) {
            m->items[w++] = it;
            continue;
        }
        free(it.id);
        free(it.audio);
        free(it.video);
        free(it.label);
        if (moved < 0) { /* the items not walked yet are freed with the manifest */
            rc = -1;
            for (size_t j = i + 1; j < m->n; j++)
                m->items[w++] = m->items[j];
        }
    }
    ig_strmap_free(&cls);
    ig_strmap_free(&lowcls);
    ig_strmap_free(&ids);
    m->n = w;
    if (rc == 0)
        rc = case_notes(m);
    if (rc != 0)
        return cm_err_set(err, "out of memory");
    if (m->n_classes == 0)
        return cm_err_set(err, "no classes");
    return 0;
}

/* The canonical decimal (cm_format_decimal), which every reader parses back exactly. */
static void fmt_time(char *b, size_t n, double t)
{
    cm_format_decimal(b, n, t);
}

void ig_manifest_write_tsv(const ig_manifest *m, FILE *f)
{
    fprintf(f, "#classes");
    for (int i = 0; i < m->n_classes; i++)
        fprintf(f, "\t%s", m->classes[i]);
    fprintf(f, "\nid\taudio\tvideo\tlabel\tsplit\tstart\tend\n");
    for (size_t i = 0; i < m->n; i++) {
        const ig_item *it = &m->items[i];
        char s[32] = "-", e[32] = "-";
        if (it->end >= 0) {
            fmt_time(s, sizeof s, it->start);
            fmt_time(e, sizeof e, it->end);
        }
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it->id, it->audio, it->video, it->label, m->splits[it->split],
                s, e);
    }
}
