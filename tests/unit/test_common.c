#include <criterion/criterion.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "common/cm_err.h"
#include "common/cm_file.h"
#include "common/cm_npy_test.h"
#include "common/cm_opts.h"
#include "common/cm_pool.h"

static char dir[256];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/c2kd_test_common_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static int count_entries(const char *d)
{
    DIR *dp = opendir(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")))
            n++;
    closedir(dp);
    return n;
}

Test(err, set_and_prefix)
{
    cm_err e;
    cr_assert_eq(cm_err_set(&e, "no audio stream"), -1);
    cr_assert_eq(cm_err_prefix(&e, "%s", "clip.mp4"), -1);
    cr_assert_str_eq(e.msg, "clip.mp4: no audio stream");
    cr_assert_eq(cm_err_set(NULL, "ignored"), -1);
}

Test(file, atomic_commit_and_abort, .init = mkdir_tmp)
{
    char path[512];
    cm_err e;
    snprintf(path, sizeof path, "%s/out.bin", dir);
    cm_atomic a;
    cr_assert_eq(cm_atomic_open(&a, path, &e), 0);
    fputs("hello", a.fp);
    cr_assert(!cm_is_file(path), "final name must not exist before commit");
    cr_assert_eq(cm_atomic_commit(&a, &e), 0, "%s", e.msg);
    cr_assert(cm_is_file(path));
    cr_assert_eq(count_entries(dir), 1, "no temporary left behind");

    snprintf(path, sizeof path, "%s/aborted.bin", dir);
    cr_assert_eq(cm_atomic_open(&a, path, &e), 0);
    fputs("partial", a.fp);
    cm_atomic_abort(&a);
    cr_assert(!cm_is_file(path));
    cr_assert_eq(count_entries(dir), 1, "aborted temporary removed");
}

Test(file, create_in_missing_folder_fails)
{
    cm_err e;
    cr_assert_eq(cm_write_file_atomic("/nonexistent-dir/x/y.bin", "a", 1, &e), -1);
    cr_assert(strstr(e.msg, "/nonexistent-dir/x/y.bin") != NULL, "message names the file: %s", e.msg);
}

Test(file, mkdirs_and_names, .init = mkdir_tmp)
{
    char path[512], base[64];
    cm_err e;
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    cr_assert_eq(cm_mkdirs(path, &e), 0, "%s", e.msg);
    cr_assert(cm_is_dir(path));
    cm_basename_noext(base, sizeof base, "x/y/clip.name.mp4");
    cr_assert_str_eq(base, "clip.name");
    cr_assert(cm_has_suffix("A.NPY", ".npy"));
    cr_assert(!cm_has_suffix("a.npy.tmp", ".npy"));
}

Test(npy, roundtrip, .init = mkdir_tmp)
{
    char path[512];
    cm_err e;
    snprintf(path, sizeof path, "%s/a.npy", dir);
    float data[6] = {1, 2, 3, 4, 5, 6.5f};
    size_t shape[2] = {2, 3};
    cr_assert_eq(cm_npy_write(path, "<f4", shape, 2, data, &e), 0, "%s", e.msg);
    cm_npy a;
    cr_assert_eq(cm_npy_read(path, &a, &e), 0, "%s", e.msg);
    cr_assert_str_eq(a.descr, "<f4");
    cr_assert_eq(a.ndim, 2);
    cr_assert_eq(a.shape[0], 2);
    cr_assert_eq(a.shape[1], 3);
    cr_assert_eq(memcmp(a.data, data, sizeof data), 0);
    cm_npy_free(&a);
    /* header length is a multiple of 64 as NumPy requires */
    struct stat st;
    stat(path, &st);
    cr_assert_eq((st.st_size - (off_t)sizeof data) % 64, 0);
}

Test(npy, rejects_garbage, .init = mkdir_tmp)
{
    char path[512];
    cm_err e;
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    cr_assert_eq(cm_write_file_atomic(path, "not numpy", 9, &e), 0);
    cm_npy a;
    cr_assert_eq(cm_npy_read(path, &a, &e), -1);
    cr_assert(strstr(e.msg, "not a .npy") != NULL, "%s", e.msg);
}

typedef struct { int hits[1000]; } pool_ctx;
static void mark(void *ctx, size_t i, int worker)
{
    (void)worker;
    __atomic_fetch_add(&((pool_ctx *)ctx)->hits[i], 1, __ATOMIC_RELAXED);
}

Test(pool, every_index_once)
{
    for (int jobs = 1; jobs <= 4; jobs++) {
        pool_ctx c;
        memset(&c, 0, sizeof c);
        cr_assert_eq(cm_parallel_for(1000, jobs, mark, &c), 0);
        for (int i = 0; i < 1000; i++)
            cr_assert_eq(c.hits[i], 1, "index %d with %d jobs", i, jobs);
    }
    cr_assert_geq(cm_ncpu(), 1);
}

Test(file, outputs_are_world_readable, .init = mkdir_tmp)
{
    char path[512];
    cm_err e;
    snprintf(path, sizeof path, "%s/perm.bin", dir);
    cr_assert_eq(cm_write_file_atomic(path, "x", 1, &e), 0, "%s", e.msg);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "mode %o", st.st_mode & 0777);
}

/* ---- cm_parse, cm_media ---- */
#include <math.h>

#include "common/cm_media.h"
#include "common/cm_parse.h"

Test(cm_parse, whole_string_in_range)
{
    int i = 7;
    double d = 7;
    cr_expect_eq(cm_parse_int("42", 1, 100, &i), 0);
    cr_expect_eq(i, 42);
    cr_expect_eq(cm_parse_int("101", 1, 100, &i), -1);
    cr_expect_eq(cm_parse_int("4x", 1, 100, &i), -1);
    cr_expect_eq(cm_parse_int("", 1, 100, &i), -1);
    cr_expect_eq(cm_parse_int("99999999999", -100, 100000000000L, &i), -1); /* not an int */
    cr_expect_eq(i, 42);
    cr_expect_eq(cm_parse_double("2.5", 0, 10, &d), 0);
    cr_expect_eq(d, 2.5);
    cr_expect_eq(cm_parse_double("nan", -INFINITY, INFINITY, &d), -1);
    cr_expect_eq(cm_parse_double("-1", 0, 10, &d), -1);
    cr_expect_eq(cm_parse_double("1e999", -INFINITY, INFINITY, &d), -1); /* overflow: ERANGE */
    cr_expect_eq(cm_parse_double("3 ", 0, 10, &d), -1);
    cr_expect_eq(d, 2.5);
}

/* Annotation times: plain unsigned decimals only, and one canonical text per value. */
Test(cm_parse, strict_decimal_and_its_canonical_form)
{
    static const char *const good[] = {"0", "10", "00", "0.0", "3.000", "2.5", "3.", ".25", "0.1", "007.50"};
    static const double val[] = {0, 10, 0, 0, 3, 2.5, 3, 0.25, 0.1, 7.5};
    static const char *const canon[] = {"0", "10", "0", "0", "3", "2.5", "3", "0.25", "0.1", "7.5"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        double d = -1;
        char buf[64];
        cr_expect_eq(cm_parse_decimal(good[i], 0, 1e7, &d), 0, "%s", good[i]);
        cr_expect_eq(d, val[i], "%s", good[i]);
        cm_format_decimal(buf, sizeof buf, d);
        cr_expect_str_eq(buf, canon[i], "%s", good[i]);
    }
    static const char *const bad[] = {"", ".", "0x1", " 0.5", "0.5 ", "1e3", "1E3", "inf", "nan", "-0", "+1",
                                      "-1", "1,5", "1..2", "0.5.1", "\t1", "10000001", NULL};
    for (size_t i = 0; bad[i]; i++) {
        double d = 42;
        cr_expect_eq(cm_parse_decimal(bad[i], 0, 1e7, &d), -1, "\"%s\" accepted", bad[i]);
        cr_expect_eq(d, 42);
    }
    /* the canonical text reads back as the same double, for values of every magnitude */
    double xs[] = {0.1 + 0.2, 1.0 / 3, 1e-7, 123456.789, 9999999.999999998, 5e-324, 1e-20 / 3};
    for (size_t i = 0; i < sizeof xs / sizeof *xs; i++) {
        char buf[64];
        cm_format_decimal(buf, sizeof buf, xs[i]);
        cr_expect_eq(strtod(buf, NULL), xs[i], "%s", buf);
        cr_expect(xs[i] < 1e-23 || !strchr(buf, 'e'), "%s", buf);
    }
}

Test(cm_media, truncation_margin)
{
    cm_trunc t;
    cr_expect_eq(cm_trunc_check(1.96, 8.17, &t), 1);
    char b[96];
    cm_trunc_format(&t, b, sizeof b);
    cr_expect_str_eq(b, "truncated: decoded 1.96 s of 8.17 s");
    cr_expect_eq(cm_trunc_check(2.6, 3.0, NULL), 0);   /* 0.4 s short of 3 s: within 0.5 s */
    cr_expect_eq(cm_trunc_check(2.4, 3.0, NULL), 1);   /* 0.6 s */
    cr_expect_eq(cm_trunc_check(96.0, 100.0, NULL), 0); /* 4 % of a long clip */
    cr_expect_eq(cm_trunc_check(94.0, 100.0, NULL), 1); /* 6 % */
    cr_expect_eq(cm_trunc_check(1.0, -1, &t), 0);      /* nothing declared */
    cr_expect_eq(t.measured, 0);
}

/* ---- cm_progress units, cm_version ---- */
#include "common/cm_progress.h"
#include "common/cm_version.h"

static char *progress_text(int units)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n); /* not a terminal: plain lines */
    cm_progress *p = cm_progress_create(f, "train", 100, 5.0);
    if (units)
        cm_progress_set_units(p, "steps", 0, 40);
    cm_progress_line(p, "train: epoch 1/2: a line between redraws");
    cm_progress_finish(p, 60, 0, "extra");
    cm_progress_destroy(p);
    fclose(f);
    return buf;
}

Test(progress, units_and_lines)
{
    char *plain = progress_text(0), *steps = progress_text(1);
    cr_assert(strstr(plain, "train: 60/100 (0 failed) "), "%s", plain);
    cr_assert(strstr(steps, "train: 60/100 steps "), "%s", steps);
    cr_assert(!strstr(steps, "failed"), "%s", steps);
    cr_assert(strstr(steps, "train: epoch 1/2: a line between redraws\n"), "%s", steps);
    cr_assert(strstr(steps, " extra\n"), "%s", steps);
    free(plain);
    free(steps);
}

Test(version, defined)
{
    cr_assert_str_eq(cm_version(), CM_VERSION);
    cr_assert(cm_git_revision()[0] != 0);
}

/* Only regular files are read, within their size limit: a FIFO (never opened for
 * writing here: a reader that waited would hang) and a device are refused at once. */
Test(file, read_regular_refuses_fifos_devices_and_oversize, .init = mkdir_tmp)
{
    char path[512], *buf = NULL;
    size_t n = 0;
    cm_err err;
    snprintf(path, sizeof path, "%s/ok.json", dir);
    cr_assert_eq(cm_write_file_atomic(path, "{\"a\":1}", 7, &err), 0);
    cr_assert_eq(cm_read_regular(path, 7, &buf, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 7);
    cr_assert_str_eq(buf, "{\"a\":1}");
    free(buf);
    cr_assert_eq(cm_read_regular(path, 6, &buf, &n, &err), -1);
    cr_assert(strstr(err.msg, "7 bytes, more than the 6") && strstr(err.msg, "ok.json"), "%s", err.msg);
    cr_assert_null(buf);
    snprintf(path, sizeof path, "%s/fifo", dir);
    cr_assert_eq(mkfifo(path, 0644), 0);
    cr_assert_eq(cm_read_file(path, &buf, &n, &err), -1);
    cr_assert(strstr(err.msg, "fifo: not a regular file (a FIFO)"), "%s", err.msg);
    cr_assert_eq(cm_check_regular(path, &err), -1);
    cr_assert_str_eq(err.msg, "not a regular file (a FIFO)");
    cr_assert_eq(cm_read_file("/dev/zero", &buf, &n, &err), -1);
    cr_assert(strstr(err.msg, "/dev/zero: not a regular file (a device)"), "%s", err.msg);
    cr_assert_eq(cm_check_regular(dir, &err), -1);
    cr_assert_str_eq(err.msg, "not a regular file (a directory)");
    snprintf(path, sizeof path, "%s/none", dir);
    cr_assert_eq(cm_check_regular(path, &err), -1);
    cr_assert_str_eq(err.msg, "no such file");
}


/* ---- cm_opts: the command-line grammar ---- */

typedef struct o_cli {
    const char *out, *mode;
    int count, flag, on, kind;
    double x;
    long long big;
} o_cli;

#define OO(f) offsetof(o_cli, f)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt o_rows[] = {
    {"output", 'o', CM_STR, OO(out), NULL, NULL, "OUT", "out"},
    {"count", 'c', CM_INT, OO(count), NULL, "1", "N", "count", CM_IN(1, 64)},
    {"flag", 'f', CM_FLAG, OO(flag), NULL, NULL, NULL, "flag"},
    {"detrend", 0, CM_BOOL, OO(on), NULL, "1", NULL, "bool"},
    {"window-kind", 0, CM_CHOICE, OO(kind), "tukey25|hann", "tukey25", NULL, "kind", .aliases = "window-fn",
     .value_aliases = "tukey=tukey25", .key = "window_kind"},
    {"mode", 0, CM_STR, OO(mode), "fast|slow", "fast", NULL, "mode"},
    {"x", 0, CM_DBL, OO(x), NULL, "0.5", "X", "x", .range = CM_LO | CM_HI_OPEN, .lo = 0, .hi = 1},
    {"big", 0, CM_LL, OO(big), NULL, "0", "N", "big"},
};
#pragma GCC diagnostic pop

static int o_parse(o_cli *c, cm_args *a, cm_err *err, int n, ...)
{
    char *argv[32] = {"prog"};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    memset(c, 0, sizeof *c);
    cm_opts_default(o_rows, sizeof o_rows / sizeof *o_rows, c);
    static cm_opt_group g;
    g = (cm_opt_group){NULL, o_rows, sizeof o_rows / sizeof *o_rows, c};
    cm_cli cl = {.prog = "prog", .usage = "usage: prog", .std = CM_STD_QUIET | CM_STD_VERBOSE | CM_STD_JOBS,
                 .max_pos = 2, .groups = &g, .ngroups = 1};
    return cm_cli_parse(&cl, n + 1, argv, a, err);
}

Test(opts, defaults_and_forms)
{
    o_cli c;
    cm_args a;
    cm_err err = {{0}};
    cr_assert_eq(o_parse(&c, &a, &err, 0), 0, "%s", err.msg);
    cr_assert(c.count == 1 && c.on == 1 && c.kind == 0 && !strcmp(c.mode, "fast") && c.x == 0.5);
    cm_args_free(&a);
    /* --name v, --name=v, -xV, -x V, bundles, --no-X, aliases, positionals mixed, "--" */
    cr_assert_eq(o_parse(&c, &a, &err, 12, "in1", "--count", "7", "-ofile", "-qvf", "--no-detrend", "--window-fn=tukey",
                         "-j", "3", "--", "-in2", "--x=0.25"), -1);
    cr_assert(strstr(err.msg, "unexpected argument \"--x=0.25\""), "%s", err.msg); /* after "--": a third positional */
    cm_args_free(&a);
    cr_assert_eq(o_parse(&c, &a, &err, 11, "in1", "--count", "7", "-ofile", "-qvf", "--no-detrend",
                         "--window-fn=hann", "-j", "3", "--", "-in2"), 0, "%s", err.msg);
    cr_assert(c.count == 7 && !strcmp(c.out, "file") && c.flag && !c.on && c.kind == 1);
    cr_assert(a.quiet && a.verbose && a.jobs == 3 && a.npos == 2 && !strcmp(a.pos[1], "-in2"));
    cr_assert(cm_args_given(&a, "window-kind") && cm_args_given(&a, "count") && !cm_args_given(&a, "x"));
    cm_args_free(&a);
    cr_assert_eq(o_parse(&c, &a, &err, 2, "--window-kind", "tukey"), 0, "%s", err.msg); /* an older value */
    cr_assert_eq(c.kind, 0);
    cm_args_free(&a);
}

Test(opts, errors_have_one_shape)
{
    o_cli c;
    cm_args a;
    cm_err err = {{0}};
    struct {
        int n;
        const char *a1, *a2, *msg;
    } cases[] = {
        {2, "--count", "0", "--count: 0 is not in [1, 64]"},
        {2, "--count", "x", "--count: \"x\" is not an integer"},
        {1, "--count=99999999999", NULL, "--count: \"99999999999\" is not an integer"},
        {2, "--x", "1", "--x: 1 is not in [0, 1)"},
        {2, "--x", "nan", "--x: \"nan\" is not a finite number"},
        {2, "--mode", "medium", "--mode: \"medium\" is not one of fast|slow"},
        {2, "--window-kind", "box", "--window-kind: \"box\" is not one of tukey25|hann"},
        {1, "--cout", NULL, "--cout: unknown option; did you mean --count?"},
        {1, "--zzzzzz", NULL, "--zzzzzz: unknown option (see --help)"},
        {1, "-z", NULL, "-z: unknown option (see --help)"},
        {1, "--flag=1", NULL, "--flag takes no value"},
        {1, "--count", NULL, "--count needs a value (N)"},
        {1, "--no-flag", NULL, "--no-flag: unknown option (see --help)"}, /* a FLAG has no --no- form */
        {1, "--flg", NULL, "--flg: unknown option; did you mean --flag?"},
        {1, "--detrend=1", NULL, "--detrend takes no value"}, /* a BOOL on the command line: --detrend, --no-detrend */
        {2, "-j", "0", "--jobs: 0 is not in [1, 1024]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = cases[i].n == 1 ? o_parse(&c, &a, &err, 1, cases[i].a1) : o_parse(&c, &a, &err, 2, cases[i].a1, cases[i].a2);
        cr_expect_eq(rc, -1, "%s", cases[i].a1);
        cr_expect_str_eq(err.msg, cases[i].msg);
        cm_args_free(&a);
    }
}

Test(opts, rows_check_file_values)
{
    o_cli c = {0};
    cm_err err = {{0}};
    const cm_opt *k = cm_opt_find(o_rows, sizeof o_rows / sizeof *o_rows, "window_fn"); /* an alias, '_' for '-' */
    cr_assert(k && !strcmp(cm_opt_key(k), "window_kind"));
    cr_assert_eq(cm_opt_set(k, &c, "hann", 1, &err), 0);
    char tb[16];
    cr_assert_str_eq(cm_opt_text(k, &c, tb, sizeof tb), "hann");
    cr_assert_eq(cm_opt_set(k, &c, "box", 1, &err), -1);
    cr_assert_str_eq(err.msg, "window_kind: \"box\" is not one of tukey25|hann"); /* a file names the key */
    const cm_opt *n = cm_opt_find(o_rows, sizeof o_rows / sizeof *o_rows, "count");
    c.count = 65;
    cr_assert_eq(cm_opt_check(n, &c, 0, &err), -1);
    cr_assert_str_eq(err.msg, "--count: 65 is not in [1, 64]");
    cr_assert_eq(cm_edit_distance("lrr", "lr"), 1);
    cr_assert_eq(cm_edit_distance("kitten", "sitting"), 3);
    cr_assert_eq(cm_edit_distance("", "abc"), 3);
}

Test(opts, help_is_generated_from_the_rows)
{
    o_cli c = {0};
    cm_opt_group g = {"things", o_rows, sizeof o_rows / sizeof *o_rows, &c};
    cm_cli cl = {.prog = "prog", .usage = "usage: prog X", .std = CM_STD_JOBS, .groups = &g, .ngroups = 1};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cm_cli_help(&cl, f);
    fclose(f);
    const char *want[] = {"usage: prog X", "things:", "  -o, --output OUT", "  -c, --count N", "(default 1; in [1, 64])",
                          "--detrend, --no-detrend", "--window-kind tukey25|hann", "also --window-fn",
                          "--x X", "in [0, 1)", "-j, --jobs N", "--version", "-h, --help"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_expect(strstr(buf, want[i]), "%s missing from:\n%s", want[i], buf);
    cr_expect_null(strstr(buf, "--quiet"), "not asked for");
    free(buf);
}

#include "common/cm_rand.h"

/* cm_splitmix64: the published SplitMix64 outputs from state 0 (the reference
 * values of Vigna's splitmix64.c, as quoted by every port), and the state
 * advancing by the golden-ratio increment. */
Test(rand, splitmix64_reference_values)
{
    uint64_t s = 0;
    cr_assert_eq(cm_splitmix64(&s), 0xe220a8397b1dcdafULL);
    cr_assert_eq(cm_splitmix64(&s), 0x6e789e6aa1b965f4ULL);
    cr_assert_eq(cm_splitmix64(&s), 0x06c45d188009454fULL);
    cr_assert_eq(s, 3 * 0x9e3779b97f4a7c15ULL);
}
