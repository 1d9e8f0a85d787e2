/* Fuzz target: the dataset readers (AVE, CREMA-D, VGGSound) and the
 * normalized TSV manifest reader. The first byte picks the reader; the rest is
 * the annotation file's content, written under every name that reader opens.
 * A reader may reject the input (one-line error) but must not crash, leak,
 * hang, or produce an item whose id or split could escape a folder. */
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "tests/fuzz/fz_util.h"

static const char *const ave_files[] = {"trainSet.txt", "valSet.txt", "testSet.txt", NULL};
static const char *const csv_files[] = {"train.csv", "test.csv", "train_tiny.csv", "test_tiny.csv", NULL};
static const char *const tsv_files[] = {"manifest.tsv", NULL};

static void check_item(const ig_manifest *m, const ig_item *it)
{
    /* Names that become file names must stay inside their folder. */
    if (strchr(it->id, '/') || !strcmp(it->id, "..") || !strcmp(it->id, "."))
        abort();
    const char *split = m->splits[it->split];
    if (strchr(split, '/') || strstr(split, ".."))
        abort();
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
    ig_manifest_free(&m);
    ig_preset_free(&p);
    return 0;
}
