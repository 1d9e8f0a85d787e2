/* ingest: a dataset (native layout or normalized manifest) -> HDF5 shards. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "common/cm_file.h"
#include "common/cm_opts.h"
#include "common/cm_pool.h"
#include "ingest/ingest.h"
#include "h5/h5.h"

/* The datasets (presets found) and the readers (ig_readers), for --help. */
static void usage_datasets(FILE *f)
{
    char names[2048];
    ig_preset_names(names, sizeof names, ", ");
    fprintf(f, "\nDatasets (--dataset NAME: the presets found, manifests/NAME.conf): %s\n",
            names[0] ? names : "none found");
    fprintf(f, "Readers (a preset's `reader`, and what --root holds for it):\n");
    for (int i = 0; i < ig_n_readers; i++)
        fprintf(f, "  %-10s %s\n", ig_readers[i].name, ig_readers[i].layout);
}

static int parse_size(const char *s, void *field, cm_err *err)
{
    size_t *out = field;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || v > 1e15)
        return cm_err_set(err, "\"%s\" is not a size like 512M", s);
    double mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end)
        return cm_err_set(err, "\"%s\" is not a size like 512M", s);
    *out = (size_t)(v * mul);
    return 0;
}

/* ---- the command line ---- */

/* --set KEY=VALUE, repeatable. */
typedef struct sets {
    const char *kv[64];
    int n;
} sets;

/* --part K/N. */
typedef struct part {
    int k, n;
} part;

typedef struct cli {
    const char *dataset, *root, *out, *preset_file, *manifest, *classes, *write_manifest, *wisdom;
    int jobs, quiet, verbose, full, f32, allow_truncated;
    part part;
    long long shard_items;
    size_t shard_bytes;
    sets set;
} cli;

static int parse_set(const char *v, void *field, cm_err *err)
{
    sets *s = field;
    if (!strchr(v, '=') || v[0] == '=')
        return cm_err_set(err, "expected KEY=VALUE, got \"%s\"", v);
    if (s->n == 64)
        return cm_err_set(err, "more than 64 given");
    s->kv[s->n++] = v;
    return 0;
}

/* "K/N" with 0 <= K < N <= 65536. */
static int parse_part_text(const char *s, int *k, int *n)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/')
        return -1;
    const char *b0 = end + 1;
    long b = strtol(b0, &end, 10);
    if (end == b0 || *end || b < 1 || b > 65536 || a < 0 || a >= b)
        return -1;
    *k = (int)a;
    *n = (int)b;
    return 0;
}

/* The part from the launcher's environment (mpirun: Open MPI or PMI; srun):
 * 0 none or a usage error (2) naming the variable. */
static int part_from_env(cli *c)
{
    static const char *const vars[3][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                           {"PMI_RANK", "PMI_SIZE"},
                                           {"SLURM_PROCID", "SLURM_STEP_NUM_TASKS"}};
    for (int i = 0; i < 3; i++) {
        const char *r = getenv(vars[i][0]), *n = getenv(vars[i][1]);
        if (!r || !n)
            continue;
        char buf[64];
        snprintf(buf, sizeof buf, "%.20s/%.20s", r, n);
        if (parse_part_text(buf, &c->part.k, &c->part.n) != 0) {
            fprintf(stderr, "ingest: %s=%s, %s=%s: not a rank and a size\n", vars[i][0], r, vars[i][1], n);
            return 2;
        }
        return 0;
    }
    return 0;
}

static int parse_part(const char *v, void *field, cm_err *err)
{
    part *p = field;
    if (parse_part_text(v, &p->k, &p->n) != 0)
        return cm_err_set(err, "expected K/N with 0 <= K < N <= 65536, got \"%s\"", v);
    return 0;
}

#define OFF(f) offsetof(cli, f)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt opts[] = {
    {"dataset", 'd', CM_STR, OFF(dataset), NULL, NULL, "NAME", "preset manifests/NAME.conf (the datasets below)"},
    {"root", 'r', CM_STR, OFF(root), NULL, NULL, "DIR", "the dataset in its native layout (see the preset)"},
    {"out", 'o', CM_STR, OFF(out), NULL, NULL, "DIR", "output folder (default data/NAME)"},
    {"preset", 0, CM_STR, OFF(preset_file), NULL, NULL, "FILE", "a preset file instead of manifests/NAME.conf"},
    {"manifest", 0, CM_STR, OFF(manifest), NULL, NULL, "FILE",
     "a normalized manifest (TSV: id audio video label split start end; paths relative to --root or to the "
     "manifest's folder; start/end '-' for the whole clip) instead of a native layout"},
    {"classes", 0, CM_STR, OFF(classes), NULL, NULL, "FILE",
     "with --manifest: class names in index order, one per line (default: sorted labels)"},
    {"set", 0, CM_FN, OFF(set), NULL, NULL, "KEY=VALUE",
     "override one preset key (repeatable), e.g. --set frames=3; the spectrogram keys are spectro's settings "
     "(spectro --help)", .parse = parse_set},
    {"full", 0, CM_FLAG, OFF(full), NULL, NULL, NULL, "VGGSound: the full lists (train.csv/test.csv), not the tiny ones"},
    {"shard-items", 0, CM_LL, OFF(shard_items), NULL, NULL, "N", "rows covered by one shard (default: from --shard-size)",
     CM_MIN(1)},
    {"shard-size", 0, CM_FN, OFF(shard_bytes), NULL, "1G", "BYTES", "approximate shard size, suffix K/M/G",
     .parse = parse_size},
    {"float32", 0, CM_FLAG, OFF(f32), NULL, NULL, NULL, "store spectrograms as float32 (default float16)"},
    {"write-manifest", 0, CM_STR, OFF(write_manifest), NULL, NULL, "F",
     "write the normalized manifest to F ('-': stdout), then stop"},
    {"part", 0, CM_FN, OFF(part), NULL, NULL, "K/N",
     "only the plan's shards i with i mod N = K (shards numbered across splits in manifest order; the plan depends "
     "only on the manifest and the options), so N processes (Slurm array tasks: --part $SLURM_ARRAY_TASK_ID/N) "
     "fill one --out together; the last part to finish writes index.json (or `store index OUT`). Under mpirun or "
     "srun K/N default to the rank and size (OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/SIZE, or SLURM_PROCID/"
     "SLURM_STEP_NUM_TASKS); no MPI library is needed", .parse = parse_part},
    {"wisdom", 0, CM_STR, OFF(wisdom), NULL, NULL, "FILE", "FFTW wisdom file (default: the spectro cache)"},
    {"allow-truncated", 0, CM_FLAG, OFF(allow_truncated), NULL, NULL, NULL,
     "keep media whose decoded audio or video ends clearly before the duration the file declares or the row's "
     "segment (default: the row goes to failures.tsv, \"truncated: decoded A s of B s\")"},
};
#pragma GCC diagnostic pop

static const char about[] =
    "Turns a dataset into HDF5 shards (docs/FORMAT.md): for every row, the log\n"
    "spectrogram of its audio segment and F JPEG frames of its video, in parallel;\n"
    "rows that cannot be ingested go to OUT/failures.tsv. Re-running the same\n"
    "command keeps complete shards and does the rest (also after a kill).";

static const char epilog[] =
    "The output folder is locked (OUT/.lock): a second ingest into it is refused at\n"
    "once, naming the holder's pid; parts of one set run together only with the same\n"
    "manifest and options (OUT/plan.json). Annotation ids, splits and paths are\n"
    "checked (no '/', '..' or control characters; splits [A-Za-z0-9_-]; ids of at\n"
    "most 255 bytes); times are plain decimals (\"3\", \"2.5\"); a row that is not\n"
    "UTF-8 text (a NUL byte, a control character) or fails a check is one line of\n"
    "failures.tsv and the rows after it are read. Labels are trimmed; labels that\n"
    "differ only in case are noted (stderr, '#note' lines of failures.tsv).\n"
    "\n"
    "Presets are found in $C2KD_MANIFESTS, then manifests/ beside the build folder,\n"
    "then ./manifests. Exit status: 0 all rows ingested, 1 some failed (listed) or a\n"
    "fatal error, 2 usage error.";

/* -1: go on; else the exit status. */
static int parse_args(int argc, char **argv, cli *c)
{
    const cm_opt_group groups[] = {{NULL, opts, sizeof opts / sizeof *opts, c}};
    const cm_cli cl = {.prog = "ingest",
                       .usage = "usage: ingest --dataset NAME --root DIR [--out DIR] [--jobs N] [options]\n"
                                "       ingest --manifest FILE [--dataset NAME] [--out DIR] [options]",
                       .about = about, .epilog = epilog, .std = CM_STD_QUIET | CM_STD_VERBOSE | CM_STD_JOBS,
                       .jobs_help = "worker threads (default: all cores)",
                       .quiet_help = "no progress output",
                       .verbose_help = "let FFmpeg print its warnings (decoding problems are otherwise reported "
                                       "once per row, in failures.tsv)",
                       .max_pos = 0, .groups = groups, .ngroups = 1};
    cm_args a;
    cm_err err = {{0}};
    int rc = -1;
    if (cm_cli_parse(&cl, argc, argv, &a, &err) != 0) {
        cm_args_free(&a);
        return cm_cli_usage_error(&cl, stderr, err.msg);
    }
    if (a.help) {
        cm_cli_help(&cl, stdout);
        usage_datasets(stdout); /* after the generated help: the preset files and the reader table */
        rc = 0;
    } else if (a.version) {
        cm_cli_version(&cl, stdout);
        rc = 0;
    }
    int part_given = cm_args_given(&a, "part");
    c->quiet = a.quiet;
    c->verbose = a.verbose;
    c->jobs = a.jobs;
    cm_args_free(&a);
    if (rc >= 0)
        return rc;
    if (!c->dataset && !c->manifest && !c->preset_file) {
        fprintf(stderr, "ingest: give --dataset NAME (or --manifest FILE); see --help\n");
        return 2;
    }
    if (!c->manifest && !c->root) {
        fprintf(stderr, "ingest: give --root DIR (the dataset folder); see --help\n");
        return 2;
    }
    if (c->root && !cm_is_dir(c->root)) {
        fprintf(stderr, "ingest: %s: not a directory\n", c->root);
        return 2;
    }
    return part_given ? -1 : (part_from_env(c) ? 2 : -1);
}

/* The preset file, the --set overrides and the option shortcuts: 0 or the exit status. */
static int load_preset(const cli *c, ig_preset *p)
{
    cm_err err = {{0}};
    char path[CM_PATH_MAX];
    const char *file = c->preset_file;
    if (file || c->dataset) {
        if (!file) {
            if (ig_preset_find(c->dataset, path, sizeof path) != 0) {
                char names[2048];
                ig_preset_names(names, sizeof names, ", ");
                fprintf(stderr, "ingest: no preset manifests/%s.conf (known: %s)\n", c->dataset,
                        names[0] ? names : "none found");
                return 2;
            }
            file = path;
        }
        if (ig_preset_load(p, file, &err) != 0) {
            fprintf(stderr, "ingest: %s: %s\n", file, err.msg);
            return 2;
        }
    }
    if (c->dataset)
        snprintf(p->dataset, sizeof p->dataset, "%s", c->dataset);
    for (int i = 0; i < c->set.n; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", c->set.kv[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        if (ig_preset_set(p, kv, eq + 1, &err) != 0) {
            fprintf(stderr, "ingest: --set %s: %s\n", c->set.kv[i], err.msg);
            return 2;
        }
    }
    if (c->full)
        snprintf(p->subset, sizeof p->subset, "full");
    if (c->f32)
        p->spec_float32 = 1;
    if (sp_params_check(&p->sp, &err) != 0) {
        fprintf(stderr, "ingest: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* The reader's notes (labels that differ only in case), also in failures.tsv. */
static void print_notes(const ig_manifest *m)
{
    for (size_t i = 0; i < m->nnotes; i++)
        fprintf(stderr, "ingest: note: %s\n", m->notes[i]);
}

/* --write-manifest: the normalized manifest (atomically, or to stdout) and the reader's failures. */
static int write_manifest(const char *path, const ig_manifest *m)
{
    cm_err err = {{0}};
    int rc = 0;
    if (!strcmp(path, "-")) {
        ig_manifest_write_tsv(m, stdout);
        rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : cm_err_set(&err, "stdout: write failed");
    } else {
        cm_atomic a;
        rc = cm_atomic_open(&a, path, &err);
        if (rc == 0) {
            ig_manifest_write_tsv(m, a.fp);
            rc = cm_atomic_commit(&a, &err);
        }
    }
    if (rc != 0)
        fprintf(stderr, "ingest: %s\n", err.msg);
    for (size_t i = 0; i < m->nfail; i++)
        fprintf(stderr, "ingest: %s (%s): %s\n", m->fails[i].id, m->fails[i].split, m->fails[i].reason);
    print_notes(m);
    return rc ? 1 : 0;
}

/* The first failed rows (all of them are in failures.tsv), one line each. */
static void show_failures(const char *out, size_t failed)
{
    char path[CM_PATH_MAX], *text;
    size_t len, shown = 0;
    cm_err err;
    snprintf(path, sizeof path, "%.4000s/failures.tsv", out);
    if (cm_read_file(path, &text, &len, &err) != 0)
        return;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && shown < 20; l = strtok_r(NULL, "\n", &save)) {
        char *t1 = strchr(l, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (t1 && t2 && l[0] != '#') { /* '#note' lines: printed from the manifest */
            shown++;
            *t1 = *t2 = '\0';
            fprintf(stderr, "ingest: %s (%s): %s\n", l, t1 + 1, t2 + 1);
        }
    }
    if (failed > shown)
        fprintf(stderr, "ingest: ... and %zu more\n", failed - shown);
    free(text);
}

static void report(const cli *c, const ig_options *o, const ig_manifest *m, const ig_summary *s)
{
    if (s->indexed && s->failed)
        show_failures(o->out, s->failed);
    print_notes(m);
    char part[64] = "";
    if (o->part_n > 1)
        snprintf(part, sizeof part, "part %d/%d: ", o->part_k, o->part_n);
    fprintf(stderr, "ingest: %s%zu of %zu rows ingested into %zu shard(s) in %s (%zu kept from an earlier run); "
                    "%zu failed%s\n",
            part, s->written, s->items, s->shards, o->out, s->kept_shards, s->failed,
            !s->failed ? "" : s->indexed ? ", see failures.tsv" : "");
    if (o->part_n > 1 && !c->quiet)
        fprintf(stderr, s->indexed ? "ingest: every part is done: index.json and failures.tsv written\n"
                                   : "ingest: other parts are not done: the last one writes index.json (or run "
                                     "`store index %s`)\n",
                o->out);
}

static int ingest(const cli *c, const ig_preset *p, const ig_manifest *m, const ig_options *o)
{
    if (!c->quiet)
        fprintf(stderr, "ingest: %s: %zu rows (%zu rejected by the reader), %d worker(s) -> %s\n", p->dataset,
                m->n + m->nfail, m->nfail, o->jobs, o->out);
    if (!c->quiet && m->renamed)
        fprintf(stderr, "ingest: note: %zu row(s) repeat an earlier video and segment with another label; "
                        "kept as separate samples with ids suffixed ~2, ~3\n", m->renamed);
    ig_summary s;
    cm_err err = {{0}};
    if (ig_run(p, m, o, &s, &err) != 0) {
        fprintf(stderr, "ingest: %s\n", err.msg);
        return 1;
    }
    report(c, o, m, &s);
    return s.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    h5_no_close_at_exit();
    cli c = {.shard_bytes = (size_t)1 << 30};
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0)
        return rc;
    av_log_set_level(c.verbose ? AV_LOG_WARNING : AV_LOG_FATAL); /* decoding problems are reported per row, once */
    ig_preset p;
    ig_preset_init(&p);
    if ((rc = load_preset(&c, &p)) != 0) {
        ig_preset_free(&p);
        return rc;
    }
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err = {{0}};
    rc = c.manifest ? ig_read_tsv(&m, &p, c.manifest, c.root, c.classes, &err) : ig_read(&m, &p, c.root, &err);
    if (rc != 0) {
        /* the rows refused before it (every row, when no class is left) */
        for (size_t i = 0; i < m.nfail && i < 20; i++)
            fprintf(stderr, "ingest: %s (%s): %s\n", m.fails[i].id, m.fails[i].split, m.fails[i].reason);
        if (m.nfail > 20)
            fprintf(stderr, "ingest: ... and %zu more rows refused\n", m.nfail - 20);
        fprintf(stderr, "ingest: %s: %s\n", c.manifest ? c.manifest : c.root, err.msg);
        rc = 1;
    } else if (c.write_manifest) {
        rc = write_manifest(c.write_manifest, &m);
    } else {
        char outbuf[CM_PATH_MAX], wis[CM_PATH_MAX];
        if (!c.out)
            snprintf(outbuf, sizeof outbuf, "data/%s", p.dataset);
        if (!c.wisdom && sp_default_wisdom_path(wis, sizeof wis) == 0)
            c.wisdom = wis;
        ig_options o = {.out = c.out ? c.out : outbuf, .jobs = c.jobs > 0 ? c.jobs : cm_ncpu(),
                        .shard_items = (size_t)c.shard_items, .shard_bytes = c.shard_bytes, .wisdom = c.wisdom,
                        .log = c.quiet ? NULL : stderr, .part_k = c.part.k, .part_n = c.part.n,
                        .allow_truncated = c.allow_truncated};
        rc = ingest(&c, &p, &m, &o);
    }
    ig_manifest_free(&m);
    ig_preset_free(&p);
    return rc;
}
