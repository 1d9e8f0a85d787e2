/* store: inspect, verify and export an ingested folder (index.json + shards).
 * Each subcommand lives in store/cmd_<name>.c; add one with one line in CMDS. */
#include <stdio.h>
#include <string.h>

#include "common/cm_file.h"
#include "store/cmd.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] = name, argv[1] = DIR */
} CMDS[] = {
    {"info", cmd_info},
    {"verify", cmd_verify},
    {"export", cmd_export},
    {"index", cmd_index},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: store info DIR\n"
            "       store verify DIR\n"
            "       store export DIR ID -o PREFIX\n"
            "       store index DIR\n"
            "\n"
            "DIR is an ingest output folder (index.json + <split>-NNNNN.h5 shards, docs/FORMAT.md).\n"
            "  info     splits, sample counts, shards, failures, class histogram, recipe\n"
            "  verify   the folder as one whole (every listed shard present, unique and as\n"
            "           listed: split, count, format version, ids, digest; ids unique in the\n"
            "           folder; totals and folder digest; no unlisted shard), every shard\n"
            "           matches the index (classes, frames per sample, spectrogram shape,\n"
            "           recipe), every sample matches its checksums (format version 2; version\n"
            "           1 shards have none and are said so), every JPEG decodes (TurboJPEG),\n"
            "           no NaN/Inf in any spectrogram, segments and frame times finite and\n"
            "           not negative; prints one line per fault, naming the shard and the\n"
            "           sample; exit 1 when there is any\n"
            "  export   sample ID as PREFIX.npy (float32 [bins, frames]) and PREFIX_K.jpg\n"
            "           (frame K = 0..F-1); its fields as one JSON line on stdout; a sample\n"
            "           whose checksum does not match is refused\n"
            "  index    index.json and failures.tsv of a folder written in parts (ingest\n"
            "           --part K/N), from plan.json and the shards present; without\n"
            "           plan.json, index.json recomputed from the shards it lists (an index\n"
            "           written before index version 2, or by hand)\n"
            "  --help   this text\n"
            "Exit status: 0 ok, 1 faults or errors, 2 usage error.\n");
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
    if (!cm_is_dir(argv[2])) {
        fprintf(stderr, "store: %s: not a directory\n", argv[2]);
        return 2;
    }
    for (size_t c = 0; c < sizeof CMDS / sizeof *CMDS; c++)
        if (!strcmp(argv[1], CMDS[c].name)) {
            int rc = CMDS[c].run(argc - 1, argv + 1);
            if (rc == 2)
                usage(stderr);
            return rc;
        }
    usage(stderr);
    return 2;
}
