/* train/profile.c: the Markdown report of a backend's raw profile, on a made-up
 * profile whose numbers are worked out by hand below. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/profile.h"

static char *report(const be_profile *p, int steps, int top, double *ret)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    cr_assert_not_null(f);
    *ret = tr_profile_report(f, p, steps, top);
    fclose(f);
    return text;
}

static const be_prof_row ROWS[] = {{"conv", "a", 3.0, 2}, {"conv", "b", 1.0, 1}, {"relu", "a", 2.0, 4}};
static const be_prof_span OPS[] = {{5, 7}, {0, 2}, {1, 3}}; /* union: [0, 3] and [5, 7] */
static const be_prof_span COPIES[] = {{2, 6}, {8, 9}};       /* 1 + 1 ms of the first under the ops */

static be_profile made_up(void)
{
    be_profile p = {ROWS, 3, OPS, 3, COPIES, 2, 2u << 20, 1024u << 20, 0.5, 1, 3u << 20, 4u << 20, 7};
    return p;
}

Test(train_profile, report_per_step)
{
    be_profile p = made_up();
    double ms;
    char *t = report(&p, 2, 2, &ms);
    cr_assert_float_eq(ms, 3.0, 1e-12, "6 ms over 2 steps");
    /* per kind: conv 4 ms in 3 calls, relu 2 ms in 4 calls; slowest first */
    const char *conv = strstr(t, "| conv | 1.5 | 2.000 | 66.7 % |"), *relu = strstr(t, "| relu | 2.0 | 1.000 | 33.3 % |");
    cr_assert(conv && relu && conv < relu, "%s", t);
    cr_assert(strstr(t, "| **all ops** | | **3.000** | |"), "%s", t);
    /* the top 2 (op, shape): conv a, relu a; conv b is third */
    cr_assert(strstr(t, "### Top 2 (op, shape)"), "%s", t);
    cr_assert(strstr(t, "| conv | a | 1.0 | 1500.0 | 1.500 | 50.0 % |"), "%s", t);
    cr_assert(strstr(t, "| relu | a | 2.0 | 500.0 | 1.000 | 33.3 % |"), "%s", t);
    cr_assert_null(strstr(t, "| conv | b |"), "%s", t);
    /* copies: 4 + 1 ms, 2 ms of them under the ops */
    cr_assert(strstr(t, "- staged copies: 2, 5.000 ms in all; 2.000 ms of it (40.0 %) ran while an op was running"), "%s", t);
    cr_assert(strstr(t, "| 0 | 2.000 | 6.000 |\n| 1 | 8.000 | 9.000 |\n"), "%s", t);
    cr_assert(strstr(t, "- convolution workspace: 2.0 MiB (limit 1024 MiB); algorithm search: 0.50 s host time, 1 searches "
                        "fell back to heuristics"), "%s", t);
    cr_assert(strstr(t, "- allocated now: 3.0 MiB in 7 allocations; peak 4.0 MiB"), "%s", t);
    free(t);
}

Test(train_profile, totals_and_empty)
{
    be_profile p = made_up();
    double ms;
    char *t = report(&p, 0, 40, &ms); /* steps < 1: totals */
    cr_assert_float_eq(ms, 6.0, 1e-12);
    cr_assert(strstr(t, "| conv | b | 1.0 | 1000.0 | 1.000 | 16.7 % |"), "%s", t);
    free(t);
    be_profile e;
    memset(&e, 0, sizeof e);
    t = report(&e, 1, 40, &ms);
    cr_assert_float_eq(ms, 0.0, 1e-12);
    cr_assert(strstr(t, "| **all ops** | | **0.000** | |"), "%s", t);
    cr_assert(strstr(t, "- staged copies: 0, 0.000 ms in all; 0.000 ms of it (0.0 %)"), "%s", t);
    free(t);
}

/* A backend without a profile (the CPU has no profile_data) writes nothing. */
Test(train_profile, backend_without_profile)
{
    cm_err err = {{0}};
    be_ctx *b = be_cpu_create(1, &err);
    cr_assert_not_null(b, "%s", err.msg);
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    cr_assert_eq(tr_profile_write(b, f, 1, 40), -1.0);
    fclose(f);
    cr_assert_eq(n, 0);
    free(text);
    b->ops->destroy(b);
}
