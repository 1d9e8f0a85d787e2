/* ingest: the normalized manifest (items + failures), classes, TSV. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

/* Tabs and newlines would break failures.tsv: replace them by spaces. */
static void clean(char *s)
{
    for (; *s; s++)
        if (*s == '\t' || *s == '\n' || *s == '\r')
            *s = ' ';
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int find_class(char **classes, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(classes[i], name))
            return i;
    return -1;
}

static int add_class(ig_manifest *m, const char *name)
{
    if (find_class(m->classes, m->n_classes, name) >= 0)
        return 0;
    char **c = realloc(m->classes, (size_t)(m->n_classes + 1) * sizeof *c);
    if (!c)
        return -1;
    m->classes = c;
    if (!(c[m->n_classes] = strdup(name)))
        return -1;
    m->n_classes++;
    return 0;
}

/* Hash set of ids (open addressing) to find repeats in O(n). */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int ig_manifest_finish(ig_manifest *m, const ig_preset *p, const char *first, cm_err *err)
{
    /* classes */
    if (!strcmp(p->class_order, "preset")) {
        for (int i = 0; i < p->n_classes; i++)
            if (add_class(m, p->classes[i]) != 0)
                return cm_err_set(err, "out of memory");
    } else if (!strcmp(p->class_order, "first-in-test")) {
        int fs = -1;
        for (int i = 0; first && i < m->n_splits; i++)
            if (!strcmp(m->splits[i], first))
                fs = i;
        for (size_t i = 0; i < m->n; i++)
            if (m->items[i].split == fs && add_class(m, m->items[i].label) != 0)
                return cm_err_set(err, "out of memory");
        for (size_t i = 0; i < m->n; i++) /* classes absent from that split: first appearance elsewhere */
            if (add_class(m, m->items[i].label) != 0)
                return cm_err_set(err, "out of memory");
    } else {
        for (size_t i = 0; i < m->n; i++)
            if (add_class(m, m->items[i].label) != 0)
                return cm_err_set(err, "out of memory");
        if (m->n_classes > 1)
            qsort(m->classes, (size_t)m->n_classes, sizeof *m->classes, cmp_str);
    }
    /* label indices; unknown labels and repeated ids become failures */
    size_t cap = 16;
    while (cap < 2 * m->n + 2)
        cap *= 2;
    size_t *slot = malloc(cap * sizeof *slot);
    if (!slot)
        return cm_err_set(err, "out of memory");
    for (size_t i = 0; i < cap; i++)
        slot[i] = (size_t)-1;
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        ig_item it = m->items[i];
        int bad = 0;
        it.label_idx = find_class(m->classes, m->n_classes, it.label);
        if (it.label_idx < 0) {
            ig_manifest_fail(m, it.id, m->splits[it.split], "unknown label \"%s\"", it.label);
            bad = 1;
        } else {
            size_t h = (size_t)hash_str(it.id) & (cap - 1);
            while (slot[h] != (size_t)-1 && strcmp(m->items[slot[h]].id, it.id))
                h = (h + 1) & (cap - 1);
            if (slot[h] != (size_t)-1) {
                ig_manifest_fail(m, it.id, m->splits[it.split], "duplicate id (kept the first, split %s)",
                                 m->splits[m->items[slot[h]].split]);
                bad = 1;
            } else {
                slot[h] = w; /* items[w] will hold this item */
            }
        }
        if (bad) {
            free(it.id);
            free(it.audio);
            free(it.video);
            free(it.label);
            continue;
        }
        m->items[w++] = it;
    }
    free(slot);
    m->n = w;
    if (m->n_classes == 0)
        return cm_err_set(err, "no classes");
    return 0;
}

static void fmt_time(char *b, size_t n, double t)
{
    snprintf(b, n, "%.17g", t);
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
