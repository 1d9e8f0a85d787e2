/* Fuzz target: the dataset readers (AVE, CREMA-D, VGGSound) and the
 * normalized TSV manifest reader. The first byte picks the reader; the rest is
 * the annotation file's content, written under every name that reader opens.
 * A reader may reject the input (one-line error) but must not crash, leak or
 * hang, and when it reads the files:
 *  - every row is accounted for: items + failures = the rows of the files it
 *    opened (the lines that are not blank, counted here independently of the
 *    reader's walker; TSV comment lines and header lines aside), so no byte
 *    (a NUL, a stray CR, invalid UTF-8) can hide a row;
 *  - no item's id or split could escape a folder; ids fit the shard format
 *    (ST_ID_MAX bytes); ids, labels and splits are UTF-8 text without control
 *    characters, labels trimmed; failure lines are such text too (failures.tsv
 *    stays one line per failure and readable as UTF-8). */
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "tests/fuzz/fz_util.h"

static const char *const ave_files[] = {"trainSet.txt", "valSet.txt", "testSet.txt", NULL};
static const char *const csv_files[] = {"train.csv", "test.csv", "train_tiny.csv", "test_tiny.csv", NULL};
static const char *const tsv_files[] = {"manifest.tsv", NULL};

/* UTF-8 without control characters (TAB refused too), decoded code point by code point:
 * a second implementation, not the reader's. */
static int is_text(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, need;
        if (c < 0x80)
            need = 0;
        else if ((c & 0xe0) == 0xc0)
            need = 1;
        else if ((c & 0xf0) == 0xe0)
            need = 2;
        else if ((c & 0xf8) == 0xf0)
            need = 3;
        else
            return 0;
        unsigned long cp = need == 0 ? c : need == 1 ? c & 0x1f : need == 2 ? c & 0x0f : c & 0x07;
        for (unsigned i = 1; i <= need; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        static const unsigned long min_cp[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0x20 || cp == 0x7f)
            return 0;
        s += need + 1;
    }
    return 1;
}

static void check_item(const ig_manifest *m, const ig_item *it)
{
    /* Names that become file names must stay inside their folder. */
    if (strchr(it->id, '/') || !strcmp(it->id, "..") || !strcmp(it->id, "."))
        abort();
    const char *split = m->splits[it->split];
    if (strchr(split, '/') || strstr(split, ".."))
        abort();
    /* what the shard writer and reader accept, as text */
    size_t ll = strlen(it->label);
    if (!*it->id || strlen(it->id) > ST_ID_MAX || !is_text(it->id) || !is_text(it->label) || !is_text(split) ||
        !ll || it->label[0] == ' ' || it->label[ll - 1] == ' ')
        abort();
    if (it->label_idx < 0 || it->label_idx >= m->n_classes || strcmp(m->classes[it->label_idx], it->label))
        abort();
}

/* Rows of one file as documented (docs/FORMAT.md): a UTF-8 BOM skipped, lines ended by LF
 * (one CR before it dropped), lines of only spaces and tabs passed over; for the TSV
 * manifest, lines starting with '#' too. hdr: the rows that may be a TSV header line. */
static size_t count_rows(const uint8_t *d, size_t n, int tsv, size_t *hdr)
{
    size_t rows = 0, i = n >= 3 && d[0] == 0xef && d[1] == 0xbb && d[2] == 0xbf ? 3 : 0;
    *hdr = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && d[j] != '\n')
            j++;
        size_t e = j > i && d[j - 1] == '\r' ? j - 1 : j; /* one CR before the LF (or the end) */
        int blank = 1;
        for (size_t k = i; k < e && blank; k++)
            blank = d[k] == ' ' || d[k] == '\t';
        if (!blank && !(tsv && d[i] == '#')) {
            rows++;
            if (tsv && e - i >= 9 && !memcmp(d + i, "id\taudio\t", 9))
                (*hdr)++;
        }
        i = j + 1;
    }
    return rows;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const readers[] = {"ave", "cremad", "vggsound", "manifest"};
    int which = data[0] % 4;
    const char *const *names = which == 0 ? ave_files : which == 3 ? tsv_files : csv_files;
    char path[4200];
    for (int i = 0; names[i]; i++)
        fz_write(names[i], data + 1, size - 1, path, sizeof path);

    ig_preset p;
    ig_preset_init(&p);
    cm_err err = {0};
    if (ig_preset_set(&p, "reader", readers[which], &err) != 0)
        abort();
    if (which == 2)
        ig_preset_set(&p, "subset", (data[0] / 4) % 2 ? "full" : "tiny", &err);
    ig_manifest m;
    ig_manifest_init(&m);
    int rc = which == 3 ? ig_read_tsv(&m, &p, path, fz_dir(), NULL, &err) : ig_read(&m, &p, fz_dir(), &err);
    if (rc == 0)
        for (size_t i = 0; i < m.n; i++)
            check_item(&m, &m.items[i]);
    if (rc == 0 || !strcmp(err.msg, "no classes")) { /* the files were read to the end */
        size_t hdr, rows = count_rows(data + 1, size - 1, which == 3, &hdr);
        size_t copies = which == 0 ? 3 : which == 3 ? 1 : 2; /* files the reader opens */
        size_t got = m.n + m.nfail;
        if (got > copies * rows || got + hdr < copies * rows)
            abort(); /* a row vanished (or appeared) */
        for (size_t i = 0; i < m.nfail; i++)
            if (!is_text(m.fails[i].id) || !is_text(m.fails[i].split) || !is_text(m.fails[i].reason))
                abort();
        for (size_t i = 0; i < m.nnotes; i++)
            if (!is_text(m.notes[i]))
                abort();
    }
    ig_manifest_free(&m);
    ig_preset_free(&p);
    return 0;
}
