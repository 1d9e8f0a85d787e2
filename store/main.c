/* store: inspect, verify and export an ingested folder (index.json + shards).
 * Each subcommand lives in store/cmd_<name>.c; add one with one row in CMDS
 * (its name, arguments, options and help: the command line and --help are
 * generated from it, common/cm_opts.h). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/cm_file.h"
#include "common/cm_opts.h"
#include "store/cmd.h"

#define OFF(f) offsetof(st_cmd_args, f)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt export_opts[] = {
    {"output", 'o', CM_STR, OFF(out), NULL, NULL, "PREFIX", "write PREFIX.npy and PREFIX_K.jpg (required)"},
};
#pragma GCC diagnostic pop

/* The sub-commands: names, arguments and help (cm_sub, for --help), and what each runs. */
static const cm_sub SUBS[] = {
    {"info", "DIR", "splits, sample counts, shards, failures, class histogram, recipe"},
    {"verify", "DIR",
     "the folder as one whole (every listed shard present, unique and as listed: split, count, format version, ids, "
     "digest; ids unique in the folder; totals and folder digest; no unlisted shard), every shard matches the index "
     "(classes, frames per sample, spectrogram shape, recipe), every sample matches its checksums (format version 2; "
     "version 1 shards have none and are said so), every JPEG decodes (TurboJPEG), no NaN/Inf in any spectrogram, "
     "segments and frame times finite and not negative; prints one line per fault, naming the shard and the sample; "
     "exit 1 when there is any (-q: no summary line unless there are faults; -v: each shard as it is checked)"},
    {"export", "DIR ID -o PREFIX",
     "sample ID as PREFIX.npy (float32 [bins, frames]) and PREFIX_K.jpg (frame K = 0..F-1); its fields as one JSON "
     "line on stdout; a sample whose checksum does not match is refused"},
    {"index", "DIR",
     "index.json and failures.tsv of a folder written in parts (ingest --part K/N), from plan.json and the shards "
     "present; without plan.json, index.json recomputed from the shards it lists (an index written before index "
     "version 2, or by hand)"},
};

static const struct {
    int npos; /* positional arguments: DIR, or DIR ID */
    const cm_opt *opts;
    size_t nopts;
    int (*run)(const st_cmd_args *a);
} CMDS[] = {
    {1, NULL, 0, cmd_info},
    {1, NULL, 0, cmd_verify},
    {2, export_opts, sizeof export_opts / sizeof *export_opts, cmd_export},
    {1, NULL, 0, cmd_index},
};
_Static_assert(sizeof SUBS / sizeof *SUBS == sizeof CMDS / sizeof *CMDS, "one row of each per sub-command");
#define NCMDS (sizeof CMDS / sizeof *CMDS)

#define QUIET_HELP "verify: no summary line unless there are faults"
#define VERBOSE_HELP "verify: each shard as it is checked; index: a line when written"

static const char epilog[] =
    "DIR is an ingest output folder (index.json + <split>-NNNNN.h5 shards, docs/FORMAT.md).\n"
    "`store COMMAND --help` shows one command. Exit status: 0 ok, 1 faults or errors, 2 usage error.";

/* One sub-command: its own options and positionals, then its run. */
static int run_command(size_t c, int argc, char **argv, const cm_args *top)
{
    char prog[32], usage[128];
    snprintf(prog, sizeof prog, "store %s", SUBS[c].name);
    snprintf(usage, sizeof usage, "usage: store %s %s", SUBS[c].name, SUBS[c].args);
    st_cmd_args sa = {.quiet = top->quiet, .verbose = top->verbose};
    const cm_opt_group groups[] = {{NULL, CMDS[c].opts, CMDS[c].nopts, &sa}};
    const cm_cli cl = {.prog = prog, .usage = usage, .about = SUBS[c].help, .std = CM_STD_QUIET | CM_STD_VERBOSE,
                       .quiet_help = QUIET_HELP, .verbose_help = VERBOSE_HELP, .min_pos = CMDS[c].npos, .max_pos = CMDS[c].npos,
                       .pos_name = CMDS[c].npos > 1 ? "DIR and ID" : "DIR", .groups = groups,
                       .ngroups = CMDS[c].nopts ? 1 : 0};
    cm_args a;
    int rc = cm_cli_run(&cl, argc, argv, &a);
    if (rc < 0) {
        sa.quiet |= a.quiet;
        sa.verbose |= a.verbose;
        sa.dir = a.pos[0];
        sa.id = a.npos > 1 ? a.pos[1] : NULL;
        if (CMDS[c].opts == export_opts && !sa.out)
            rc = cm_cli_usage_error(&cl, stderr, "-o PREFIX is required");
        else if (!cm_is_dir(sa.dir) && snprintf(usage, sizeof usage, "%.100s: not a directory", sa.dir))
            rc = cm_cli_usage_error(&cl, stderr, usage);
        else
            rc = CMDS[c].run(&sa);
    }
    cm_args_free(&a);
    return rc;
}

int main(int argc, char **argv)
{
    const cm_cli cl = {.prog = "store", .usage = "usage: store [-q] [-v] COMMAND DIR [ARGS]", .epilog = epilog,
                       .std = CM_STD_QUIET | CM_STD_VERBOSE, .stop_at_pos = 1,
                       .quiet_help = QUIET_HELP, .verbose_help = VERBOSE_HELP, .subs = SUBS, .nsubs = NCMDS};
    cm_args a;
    cm_err err = {{0}};
    int rc = cm_cli_run(&cl, argc, argv, &a), c;
    if (rc >= 0)
        ;
    else if (a.rest >= argc)
        rc = cm_cli_usage_error(&cl, stderr, "no command given (see --help)");
    else if ((c = cm_cli_sub(&cl, argv[a.rest], &err)) < 0)
        rc = cm_cli_usage_error(&cl, stderr, err.msg);
    else
        rc = run_command((size_t)c, argc - a.rest, argv + a.rest, &a);
    cm_args_free(&a);
    return rc;
}
