/* ingest: a dataset (native layout or normalized manifest) -> HDF5 shards. */
#define TOOL_NAME "ingest"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "common/cm_file.h"
#include "common/cm_pool.h"
#include "ingest/ingest.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ingest --dataset NAME --root DIR [--out DIR] [--jobs N] [options]\n"
            "       ingest --manifest FILE [--dataset NAME] [--out DIR] [options]\n"
            "\n"
            "Turns a dataset into HDF5 shards (docs/FORMAT.md): for every row, the log\n"
            "spectrogram of its audio segment and F JPEG frames of its video, in parallel;\n"
            "rows that cannot be ingested go to OUT/failures.tsv. Re-running the same\n"
            "command keeps complete shards and does the rest (also after a kill).\n"
            "\n"
            "  --dataset NAME      preset manifests/NAME.conf: ave, cremad, vggsound, demo\n"
            "  --root DIR          the dataset in its native layout (see the preset)\n"
            "  --out DIR           output folder (default data/NAME)\n"
            "  --jobs N            worker threads (default: all cores)\n"
            "  --preset FILE       a preset file instead of manifests/NAME.conf\n"
            "  --manifest FILE     a normalized manifest (TSV: id audio video label split start end;\n"
            "                      paths relative to --root or to the manifest's folder; start/end '-'\n"
            "                      for the whole clip) instead of a native layout\n"
            "  --classes FILE      with --manifest: class names in index order, one per line\n"
            "                      (default: sorted labels)\n"
            "  --set KEY=VALUE     override one preset key (repeatable), e.g. --set frames=3\n"
            "  --full              VGGSound: the full lists (train.csv/test.csv), not the tiny ones\n"
            "  --shard-items N     rows covered by one shard (default: from --shard-size)\n"
            "  --shard-size BYTES  approximate shard size, suffix K/M/G (default 1G)\n"
            "  --float32           store spectrograms as float32 (default float16)\n"
            "  --write-manifest F  write the normalized manifest to F ('-': stdout), then stop\n"
            "  --wisdom FILE       FFTW wisdom file (default: the spectro cache)\n"
            "  --allow-truncated   keep media whose decoded audio or video ends clearly before the\n"
            "                      duration the file declares or the row's segment (default: the\n"
            "                      row goes to failures.tsv, \"truncated: decoded A s of B s\")\n"
            "  --quiet             no progress output\n"
            "  --help              this text\n"
            "\n"
            "Presets are found in $C2KD_MANIFESTS, then manifests/ beside the build folder,\n"
            "then ./manifests. Exit status: 0 all rows ingested, 1 some failed (listed) or a\n"
            "fatal error, 2 usage error.\n");
}

static int find_preset(char *out, size_t n, const char *name)
{
    char cand[3][CM_PATH_MAX];
    int nc = 0;
    const char *env = getenv("C2KD_MANIFESTS");
    if (env && *env)
        snprintf(cand[nc++], CM_PATH_MAX, "%s/%s.conf", env, name);
    char exe[CM_PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        exe[l] = '\0';
        char *s = strrchr(exe, '/'); /* .../build/bin/ingest -> .../manifests */
        for (int up = 0; s && up < 2; up++) {
            *s = '\0';
            s = strrchr(exe, '/');
        }
        if (s) {
            *s = '\0';
            snprintf(cand[nc++], CM_PATH_MAX, "%.3000s/manifests/%.200s.conf", exe, name);
        }
    }
    snprintf(cand[nc++], CM_PATH_MAX, "manifests/%.200s.conf", name);
    for (int i = 0; i < nc; i++)
        if (cm_is_file(cand[i])) {
            snprintf(out, n, "%s", cand[i]);
            return 0;
        }
    return -1;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0)
        return -1;
    double mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dataset = NULL, *root = NULL, *out = NULL, *preset_file = NULL, *manifest = NULL,
               *classes = NULL, *write_manifest = NULL, *wisdom = NULL;
    int jobs = 0, quiet = 0, full = 0, f32 = 0, allow_truncated = 0;
    size_t shard_items = 0, shard_bytes = (size_t)1 << 30;
    char *sets[64];
    int nsets = 0;
    enum { O_PRESET = 256, O_MANIFEST, O_CLASSES, O_SET, O_FULL, O_ITEMS, O_SIZE, O_F32, O_WM, O_WISDOM, O_QUIET, O_TRUNC };
    static const struct option opts[] = {
        {"dataset", required_argument, NULL, 'd'}, {"root", required_argument, NULL, 'r'},
        {"out", required_argument, NULL, 'o'}, {"jobs", required_argument, NULL, 'j'},
        {"preset", required_argument, NULL, O_PRESET}, {"manifest", required_argument, NULL, O_MANIFEST},
        {"classes", required_argument, NULL, O_CLASSES}, {"set", required_argument, NULL, O_SET},
        {"full", no_argument, NULL, O_FULL}, {"shard-items", required_argument, NULL, O_ITEMS},
        {"shard-size", required_argument, NULL, O_SIZE}, {"float32", no_argument, NULL, O_F32},
        {"write-manifest", required_argument, NULL, O_WM}, {"wisdom", required_argument, NULL, O_WISDOM},
        {"quiet", no_argument, NULL, O_QUIET}, {"allow-truncated", no_argument, NULL, O_TRUNC}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "d:r:o:j:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'd': dataset = optarg; break;
        case 'r': root = optarg; break;
        case 'o': out = optarg; break;
        case 'j':
            jobs = (int)strtol(optarg, &end, 10);
            if (*end || jobs < 1 || jobs > 1024) {
                fprintf(stderr, "ingest: --jobs: expected 1..1024, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case O_PRESET: preset_file = optarg; break;
        case O_MANIFEST: manifest = optarg; break;
        case O_CLASSES: classes = optarg; break;
        case O_SET:
            if (nsets == 64 || !strchr(optarg, '=')) {
                fprintf(stderr, "ingest: --set: expected KEY=VALUE, got \"%s\"\n", optarg);
                return 2;
            }
            sets[nsets++] = optarg;
            break;
        case O_FULL: full = 1; break;
        case O_ITEMS: {
            long long v = strtoll(optarg, &end, 10);
            if (*end || v < 1) {
                fprintf(stderr, "ingest: --shard-items: expected a positive integer, got \"%s\"\n", optarg);
                return 2;
            }
            shard_items = (size_t)v;
            break;
        }
        case O_SIZE:
            if (parse_size(optarg, &shard_bytes) != 0) {
                fprintf(stderr, "ingest: --shard-size: expected a size like 512M, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case O_F32: f32 = 1; break;
        case O_WM: write_manifest = optarg; break;
        case O_WISDOM: wisdom = optarg; break;
        case O_QUIET: quiet = 1; break;
        case O_TRUNC: allow_truncated = 1; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "Try '%s --help' for the options.\n", TOOL_NAME); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ingest: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!dataset && !manifest && !preset_file) {
        fprintf(stderr, "ingest: give --dataset NAME (or --manifest FILE); see --help\n");
        return 2;
    }
    av_log_set_level(AV_LOG_FATAL); /* decoding problems are reported per row, once */
    ig_preset p;
    ig_preset_init(&p);
    cm_err err = {{0}};
    char path[CM_PATH_MAX];
    if (preset_file || dataset) {
        if (!preset_file) {
            if (find_preset(path, sizeof path, dataset) != 0) {
                fprintf(stderr, "ingest: no preset manifests/%s.conf (known: ave, cremad, vggsound, demo)\n", dataset);
                return 2;
            }
            preset_file = path;
        }
        if (ig_preset_load(&p, preset_file, &err) != 0) {
            fprintf(stderr, "ingest: %s: %s\n", preset_file, err.msg);
            ig_preset_free(&p);
            return 2;
        }
    }
    if (dataset)
        snprintf(p.dataset, sizeof p.dataset, "%s", dataset);
    for (int i = 0; i < nsets; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", sets[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        if (ig_preset_set(&p, kv, eq + 1, &err) != 0) {
            fprintf(stderr, "ingest: --set %s: %s\n", sets[i], err.msg);
            ig_preset_free(&p);
            return 2;
        }
    }
    if (full)
        snprintf(p.subset, sizeof p.subset, "full");
    if (f32)
        p.spec_float32 = 1;
    if (p.sp.overlap >= p.sp.window) {
        fprintf(stderr, "ingest: overlap must be smaller than window\n");
        ig_preset_free(&p);
        return 2;
    }
    if (!manifest && !root) {
        fprintf(stderr, "ingest: give --root DIR (the dataset folder); see --help\n");
        ig_preset_free(&p);
        return 2;
    }
    if (root && !cm_is_dir(root)) {
        fprintf(stderr, "ingest: %s: not a directory\n", root);
        ig_preset_free(&p);
        return 2;
    }

    ig_manifest m;
    ig_manifest_init(&m);
    int rc = manifest ? ig_read_tsv(&m, &p, manifest, root, classes, &err) : ig_read(&m, &p, root, &err);
    if (rc != 0) {
        fprintf(stderr, "ingest: %s: %s\n", manifest ? manifest : root, err.msg);
        ig_manifest_free(&m);
        ig_preset_free(&p);
        return 1;
    }
    if (write_manifest) {
        FILE *f = strcmp(write_manifest, "-") ? fopen(write_manifest, "w") : stdout;
        if (!f) {
            fprintf(stderr, "ingest: %s: %s\n", write_manifest, strerror(errno));
            rc = 1;
        } else {
            ig_manifest_write_tsv(&m, f);
            if (f != stdout)
                fclose(f);
            for (size_t i = 0; i < m.nfail; i++)
                fprintf(stderr, "ingest: %s (%s): %s\n", m.fails[i].id, m.fails[i].split, m.fails[i].reason);
        }
        ig_manifest_free(&m);
        ig_preset_free(&p);
        return rc;
    }

    char outbuf[CM_PATH_MAX];
    if (!out) {
        snprintf(outbuf, sizeof outbuf, "data/%s", p.dataset);
        out = outbuf;
    }
    char wis[CM_PATH_MAX];
    if (!wisdom && sp_default_wisdom_path(wis, sizeof wis) == 0)
        wisdom = wis;
    ig_options o = {.out = out, .jobs = jobs > 0 ? jobs : cm_ncpu(), .shard_items = shard_items,
                    .shard_bytes = shard_bytes, .wisdom = wisdom, .log = quiet ? NULL : stderr,
                    .allow_truncated = allow_truncated};
    if (!quiet)
        fprintf(stderr, "ingest: %s: %zu rows (%zu rejected by the reader), %d worker(s) -> %s\n", p.dataset,
                m.n + m.nfail, m.nfail, o.jobs, out);
    if (!quiet && m.renamed)
        fprintf(stderr, "ingest: note: %zu row(s) repeat an earlier video and segment with another label; "
                        "kept as separate samples with ids suffixed ~2, ~3\n", m.renamed);
    ig_summary s;
    if (ig_run(&p, &m, &o, &s, &err) != 0) {
        fprintf(stderr, "ingest: %s\n", err.msg);
        ig_manifest_free(&m);
        ig_preset_free(&p);
        return 1;
    }
    if (s.failed) {
        /* one line per failed row (the first ones), all of them in failures.tsv */
        snprintf(path, sizeof path, "%.4000s/failures.tsv", out);
        char *text;
        size_t len;
        if (cm_read_file(path, &text, &len, &err) == 0) {
            size_t shown = 0;
            char *save = NULL;
            for (char *l = strtok_r(text, "\n", &save); l && shown < 20; l = strtok_r(NULL, "\n", &save), shown++) {
                char *t1 = strchr(l, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
                if (t1 && t2) {
                    *t1 = *t2 = '\0';
                    fprintf(stderr, "ingest: %s (%s): %s\n", l, t1 + 1, t2 + 1);
                }
            }
            if (s.failed > shown)
                fprintf(stderr, "ingest: ... and %zu more\n", s.failed - shown);
            free(text);
        }
    }
    fprintf(stderr, "ingest: %zu of %zu rows ingested into %zu shard(s) in %s (%zu kept from an earlier run); "
                    "%zu failed%s%s\n",
            s.written, s.items, s.shards, out, s.kept_shards, s.failed, s.failed ? ", see " : "",
            s.failed ? "failures.tsv" : "");
    ig_manifest_free(&m);
    ig_preset_free(&p);
    return s.failed ? 1 : 0;
}
