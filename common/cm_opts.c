/* cm_opts: see cm_opts.h. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_opts.h"
#include "common/cm_parse.h"
#include "common/cm_version.h"

#define JOBS_MAX 1024

/* The standard options, as rows of a table whose fields are cm_args'. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const cm_opt std_help = {"help", 'h', CM_FLAG, offsetof(cm_args, help), .help = "this help"};
static const cm_opt std_version = {"version", 0, CM_FLAG, offsetof(cm_args, version),
                                   .help = "print the version and the git revision it was built from"};
static const cm_opt std_quiet = {"quiet", 'q', CM_FLAG, offsetof(cm_args, quiet), .help = "no progress display"};
static const cm_opt std_verbose = {"verbose", 'v', CM_FLAG, offsetof(cm_args, verbose), .help = "more detail on stderr"};
static const cm_opt std_jobs = {"jobs", 'j', CM_INT, offsetof(cm_args, jobs), .arg = "N", .help = "parallel jobs",
                                CM_IN(1, JOBS_MAX)};
#pragma GCC diagnostic pop

/* Equal names, '-' and '_' alike. */
static int same_name(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
        if (x != y)
            return 0;
    }
    return 1;
}

/* 1 when name (len) is one of the '|'-separated names in list. */
static int in_list(const char *list, const char *name, size_t len)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char buf[64];
        if (l < sizeof buf) {
            memcpy(buf, p, l);
            buf[l] = 0;
            if (same_name(name, len, buf))
                return 1;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int row_is(const cm_opt *o, const char *name, size_t len)
{
    return same_name(name, len, o->name) || (o->key && same_name(name, len, o->key)) || in_list(o->aliases, name, len);
}

const cm_opt *cm_opt_find(const cm_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (row_is(&opts[i], name, strlen(name)))
            return &opts[i];
    return NULL;
}

int cm_choice_index(const char *choices, const char *v)
{
    size_t n = strlen(v);
    int k = 0;
    for (const char *p = choices; p && *p; k++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return k;
        if (!e)
            break;
        p = e + 1;
    }
    return -1;
}

/* v with its older spelling replaced ("tukey=tukey25|..."): the canonical value in buf, or v. */
static const char *unalias_value(const cm_opt *o, const char *v, char *buf, size_t n)
{
    for (const char *p = o->value_aliases; p && *p;) {
        const char *eq = strchr(p, '='), *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (eq && eq < p + len && (size_t)(eq - p) == strlen(v) && strncmp(p, v, (size_t)(eq - p)) == 0) {
            snprintf(buf, n, "%.*s", (int)(p + len - eq - 1), eq + 1);
            return buf;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return v;
}

/* "--name" or "name" as a message names the row. */
static const char *label(const cm_opt *o, int how, char *buf, size_t n)
{
    snprintf(buf, n, how ? "%s" : "--%s", how ? cm_opt_key(o) : o->name);
    return buf;
}

static void range_text(const cm_opt *o, char *buf, size_t n)
{
    unsigned r = o->range;
    int lo = r & (CM_LO | CM_LO_OPEN), hi = r & (CM_HI | CM_HI_OPEN);
    if (lo && hi)
        snprintf(buf, n, "in %c%g, %g%c", r & CM_LO_OPEN ? '(' : '[', o->lo, o->hi, r & CM_HI_OPEN ? ')' : ']');
    else if (lo)
        snprintf(buf, n, "%s %g", r & CM_LO_OPEN ? ">" : ">=", o->lo);
    else if (hi)
        snprintf(buf, n, "%s %g", r & CM_HI_OPEN ? "<" : "<=", o->hi);
    else
        buf[0] = 0;
}

static int in_range(const cm_opt *o, double x)
{
    unsigned r = o->range;
    return !((r & CM_LO && !(x >= o->lo)) || (r & CM_LO_OPEN && !(x > o->lo)) || (r & CM_HI && !(x <= o->hi)) ||
             (r & CM_HI_OPEN && !(x < o->hi)));
}

static int range_error(const cm_opt *o, const char *shown, int how, cm_err *err)
{
    char l[80], rt[96];
    range_text(o, rt, sizeof rt);
    return cm_err_set(err, "%s: %s is not %s", label(o, how, l, sizeof l), shown, rt);
}

int cm_opt_check(const cm_opt *o, const void *base, int how, cm_err *err)
{
    if (!o->range || o->type == CM_STR || o->type == CM_FN || o->type == CM_CHOICE)
        return 0;
    double x = cm_opt_number(o, base);
    if (in_range(o, x))
        return 0;
    char shown[40];
    snprintf(shown, sizeof shown, "%.17g", x);
    return range_error(o, shown, how, err);
}

/* A number of the row's type from text (the range checked by the caller):
 * cm_parse's whole-string rules for int and double. */
static int parse_number(const cm_opt *o, const char *v, double *x, long long *ll, const char *l, cm_err *err)
{
    if (o->type == CM_DBL) {
        if (cm_parse_double(v, -INFINITY, INFINITY, x) != 0 || !isfinite(*x))
            return cm_err_set(err, "%s: \"%s\" is not a finite number", l, v);
        return 0;
    }
    if (o->type == CM_INT) {
        int i;
        if (cm_parse_int(v, INT_MIN, INT_MAX, &i) != 0)
            return cm_err_set(err, "%s: \"%s\" is not an integer", l, v);
        *ll = i;
        *x = i;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    *ll = strtoll(v, &end, 10);
    if (!*v || *end || errno)
        return cm_err_set(err, "%s: \"%s\" is not an integer", l, v);
    *x = (double)*ll;
    return 0;
}

int cm_opt_set(const cm_opt *o, void *base, const char *v, int how, cm_err *err)
{
    char l[80], abuf[64];
    void *field = (char *)base + o->off;
    label(o, how, l, sizeof l);
    v = unalias_value(o, v, abuf, sizeof abuf);
    if (o->choices && o->type != CM_BOOL && cm_choice_index(o->choices, v) < 0)
        return cm_err_set(err, "%s: \"%s\" is not one of %s", l, v, o->choices);
    switch (o->type) {
    case CM_FLAG:
        *(int *)field = 1;
        return 0;
    case CM_BOOL:
        if (strcmp(v, "0") && strcmp(v, "1"))
            return cm_err_set(err, "%s: \"%s\" is not 0 or 1", l, v);
        *(int *)field = v[0] == '1';
        return 0;
    case CM_STR: /* value_aliases apply to CHOICE rows only (a STR field points at the text given) */
        *(const char **)field = v;
        return 0;
    case CM_CHOICE:
        *(int *)field = cm_choice_index(o->choices, v);
        return 0;
    case CM_FN:
        if (o->parse(v, field, err) != 0)
            return cm_err_prefix(err, "%s", l);
        return 0;
    default:
        break;
    }
    double x = 0;
    long long ll = 0;
    if (parse_number(o, v, &x, &ll, l, err) != 0)
        return -1;
    if (!in_range(o, x))
        return range_error(o, v, how, err);
    if (o->type == CM_DBL)
        *(double *)field = x;
    else if (o->type == CM_LL)
        *(long long *)field = ll;
    else
        *(int *)field = (int)ll;
    return 0;
}

double cm_opt_number(const cm_opt *o, const void *base)
{
    const void *field = (const char *)base + o->off;
    switch (o->type) {
    case CM_FLAG:
    case CM_BOOL:
    case CM_INT:
    case CM_CHOICE:
        return *(const int *)field;
    case CM_LL:
        return (double)*(const long long *)field;
    case CM_DBL:
        return *(const double *)field;
    default:
        return 0;
    }
}

const char *cm_opt_text(const cm_opt *o, const void *base, char *buf, size_t n)
{
    const void *field = (const char *)base + o->off;
    if (o->type == CM_STR)
        return *(const char *const *)field;
    if (o->type != CM_CHOICE)
        return NULL;
    int k = *(const int *)field;
    const char *p = k < 0 ? NULL : o->choices;
    for (; k > 0 && p; k--) {
        p = strchr(p, '|');
        p = p ? p + 1 : NULL;
    }
    if (!p)
        return NULL;
    const char *e = strchr(p, '|');
    snprintf(buf, n, "%.*s", (int)(e ? (size_t)(e - p) : strlen(p)), p);
    return buf;
}

void cm_opts_default(const cm_opt *opts, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].def)
            cm_opt_set(&opts[i], base, opts[i].def, 0, NULL); /* the table's defaults are valid */
}

int cm_edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63)
        return 99;
    int d[64];
    for (size_t j = 0; j <= m; j++)
        d[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int diag = d[0];
        d[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int up = d[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (d[j - 1] + 1 < best)
                best = d[j - 1] + 1;
            diag = up;
            d[j] = best;
        }
    }
    return d[m];
}

/* ---- the command line ---- */

/* A row and the struct it sets. */
typedef struct found {
    const cm_opt *o;
    void *base;
    int negated; /* --no-NAME of a BOOL */
} found;

/* Calls fn on every row the command accepts (standard ones first). */
static int each_row(const cm_cli *c, cm_args *a, int (*fn)(const cm_opt *, void *, void *), void *ctx)
{
    const cm_opt *std[] = {&std_help, &std_version, c->std & CM_STD_QUIET ? &std_quiet : NULL,
                           c->std & CM_STD_VERBOSE ? &std_verbose : NULL, c->std & CM_STD_JOBS ? &std_jobs : NULL};
    for (size_t i = 0; i < sizeof std / sizeof *std; i++)
        if (std[i] && fn(std[i], a, ctx))
            return 1;
    for (size_t g = 0; g < c->ngroups; g++)
        for (size_t i = 0; i < c->groups[g].n; i++)
            if (fn(&c->groups[g].opts[i], c->groups[g].base, ctx))
                return 1;
    return 0;
}

typedef struct lookup {
    const char *name;
    size_t len;
    char short_name;
    found f;
    int best_d;
    const char *best;
} lookup;

static int match_long(const cm_opt *o, void *base, void *ctx)
{
    lookup *l = ctx;
    if (same_name(l->name, l->len, o->name) || in_list(o->aliases, l->name, l->len)) {
        l->f = (found){o, base, 0};
        return 1;
    }
    if (o->type == CM_BOOL && l->len > 3 && strncmp(l->name, "no-", 3) == 0 &&
        same_name(l->name + 3, l->len - 3, o->name)) {
        l->f = (found){o, base, 1};
        return 1;
    }
    return 0;
}

static int match_short(const cm_opt *o, void *base, void *ctx)
{
    lookup *l = ctx;
    if (o->short_name && o->short_name == l->short_name) {
        l->f = (found){o, base, 0};
        return 1;
    }
    return 0;
}

static int nearest(const cm_opt *o, void *base, void *ctx)
{
    (void)base;
    lookup *l = ctx;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)l->len, l->name);
    int d = cm_edit_distance(name, o->name);
    if (d < l->best_d && !(o->flags & CM_OPT_HIDDEN)) {
        l->best_d = d;
        l->best = o->name;
    }
    return 0;
}

static int unknown_option(const cm_cli *c, cm_args *a, const char *name, size_t len, cm_err *err)
{
    lookup l = {.name = name, .len = len, .best_d = 1000};
    each_row(c, a, nearest, &l);
    /* a near miss: at most 2 edits, and fewer than half the name */
    if (l.best && l.best_d <= 2 && (size_t)l.best_d * 2 < len + 1)
        return cm_err_set(err, "--%.*s: unknown option; did you mean --%s?", (int)len, name, l.best);
    return cm_err_set(err, "--%.*s: unknown option (see --help)", (int)len, name);
}

static int takes_value(const cm_opt *o)
{
    return o->type != CM_FLAG && o->type != CM_BOOL;
}

static void note_given(cm_args *a, const char *name)
{
    for (int i = 0; i < a->ngiven; i++)
        if (!strcmp(a->given[i], name))
            return;
    a->given[a->ngiven++] = name;
}

/* The value of f, set; BOOL given as a flag. */
static int apply(cm_args *a, const found *f, const char *v, cm_err *err)
{
    note_given(a, f->o->name);
    if (f->o->type == CM_BOOL && !v)
        v = f->negated ? "0" : "1";
    return cm_opt_set(f->o, f->base, v ? v : "", 0, err);
}

static const char *what_value(const cm_opt *o)
{
    return o->choices ? o->choices : o->arg ? o->arg : "a value";
}

/* One "--name[=v]" argument (may take argv[*i + 1]). */
static int parse_long(const cm_cli *c, cm_args *a, int argc, char **argv, int *i, cm_err *err)
{
    const char *s = argv[*i] + 2, *eq = strchr(s, '=');
    lookup l = {.name = s, .len = eq ? (size_t)(eq - s) : strlen(s)};
    if (!each_row(c, a, match_long, &l))
        return unknown_option(c, a, s, l.len, err);
    const char *v = eq ? eq + 1 : NULL;
    if (!takes_value(l.f.o)) {
        if (eq)
            return cm_err_set(err, "--%s takes no value", l.f.o->name);
    } else if (!v) {
        if (*i + 1 >= argc)
            return cm_err_set(err, "--%s needs a value (%s)", l.f.o->name, what_value(l.f.o));
        v = argv[++*i];
    }
    return apply(a, &l.f, v, err);
}

/* One "-x..." argument: bundled flags, or a short option and its value. */
static int parse_short(const cm_cli *c, cm_args *a, int argc, char **argv, int *i, cm_err *err)
{
    for (const char *p = argv[*i] + 1; *p; p++) {
        lookup l = {.short_name = *p};
        if (!each_row(c, a, match_short, &l))
            return cm_err_set(err, "-%c: unknown option (see --help)", *p);
        if (!takes_value(l.f.o)) {
            if (apply(a, &l.f, NULL, err) != 0)
                return -1;
            continue;
        }
        const char *v = p[1] ? p + 1 : NULL;
        if (!v) {
            if (*i + 1 >= argc)
                return cm_err_set(err, "-%c needs a value (%s)", *p, what_value(l.f.o));
            v = argv[++*i];
        }
        return apply(a, &l.f, v, err);
    }
    return 0;
}

void cm_args_free(cm_args *a)
{
    free(a->pos);
    free(a->given);
    a->pos = NULL;
    a->given = NULL;
}

int cm_args_given(const cm_args *a, const char *name)
{
    for (int i = 0; i < a->ngiven; i++)
        if (!strcmp(a->given[i], name))
            return 1;
    return 0;
}

/* The count of positional arguments against the command's limits. */
static int check_positionals(const cm_cli *c, const cm_args *a, cm_err *err)
{
    const char *what = c->pos_name ? c->pos_name : "argument";
    if (c->max_pos >= 0 && a->npos > c->max_pos)
        return cm_err_set(err, "unexpected argument \"%s\"", a->pos[c->max_pos]);
    if (a->npos < c->min_pos)
        return cm_err_set(err, "no %s given (see --help)", what);
    return 0;
}

int cm_cli_parse(const cm_cli *c, int argc, char **argv, cm_args *a, cm_err *err)
{
    memset(a, 0, sizeof *a);
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    a->given = calloc((size_t)argc + 1, sizeof *a->given);
    a->rest = argc;
    if (!a->pos || !a->given) {
        cm_args_free(a);
        return cm_err_set(err, "out of memory");
    }
    int rc = 0, opts_done = 0;
    for (int i = 1; rc == 0 && i < argc; i++) {
        const char *s = argv[i];
        if (!opts_done && !strcmp(s, "--")) {
            opts_done = 1;
        } else if (!opts_done && s[0] == '-' && s[1] == '-') {
            rc = parse_long(c, a, argc, argv, &i, err);
        } else if (!opts_done && s[0] == '-' && s[1]) {
            rc = parse_short(c, a, argc, argv, &i, err);
        } else if (c->stop_at_pos) {
            a->rest = i;
            break;
        } else {
            a->pos[a->npos++] = argv[i];
        }
    }
    if (rc == 0 && !a->help && !a->version && !c->stop_at_pos)
        rc = check_positionals(c, a, err);
    return rc;
}

/* ---- help ---- */

/* Writes text wrapped to the width, every line after the first indented. */
static void wrap(FILE *f, const char *text, int col, int indent, int width)
{
    const char *p = text;
    int first = 1;
    while (*p) {
        const char *w = p;
        while (*w && *w != ' ')
            w++;
        int len = (int)(w - p);
        if (!first && col + 1 + len > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (!first) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", len, p);
        col += len;
        first = 0;
        p = *w ? w + 1 : w;
    }
    fputc('\n', f);
}

#define HELP_COL 26
#define HELP_WIDTH 100

/* "(default X; in [a, b]; also --old)" after a row's help. */
static void help_extra(const cm_opt *o, char *extra, size_t n)
{
    char rt[96];
    size_t e = 0;
    extra[0] = 0;
    range_text(o, rt, sizeof rt);
    if (o->def && o->type != CM_FLAG)
        e += (size_t)snprintf(extra + e, n - e, "default %s",
                              o->type == CM_BOOL ? (o->def[0] == '1' ? "on" : "off") : o->def);
    if (rt[0] && e < n)
        e += (size_t)snprintf(extra + e, n - e, "%s%s", e ? "; " : "", rt);
    if (o->aliases && e < n) {
        e += (size_t)snprintf(extra + e, n - e, "%salso --", e ? "; " : "");
        for (const char *p = o->aliases; *p && e + 4 < n; p++)
            e += (size_t)snprintf(extra + e, n - e, *p == '|' ? ", --" : "%c", *p);
    }
}

static void help_row(FILE *f, const cm_opt *o, const char *help_override)
{
    if (o->flags & CM_OPT_HIDDEN)
        return;
    char left[160], extra[256], text[2048];
    int n = o->short_name ? snprintf(left, sizeof left, "  -%c, --%s", o->short_name, o->name)
                          : snprintf(left, sizeof left, "      --%s", o->name);
    if (o->type == CM_BOOL)
        snprintf(left + n, sizeof left - (size_t)n, ", --no-%s", o->name);
    else if (o->type != CM_FLAG)
        snprintf(left + n, sizeof left - (size_t)n, " %s", o->choices ? o->choices : o->arg ? o->arg : "X");
    help_extra(o, extra, sizeof extra);
    snprintf(text, sizeof text, "%s%s%s%s", help_override ? help_override : o->help ? o->help : "",
             extra[0] ? " (" : "", extra, extra[0] ? ")" : "");
    cm_help_item(f, left, text);
}

void cm_help_item(FILE *f, const char *left, const char *text)
{
    int col = (int)strlen(left);
    fputs(left, f);
    if (col + 1 >= HELP_COL)
        fprintf(f, "\n%*s", HELP_COL, "");
    else
        fprintf(f, "%*s", HELP_COL - col, "");
    wrap(f, text, HELP_COL, HELP_COL, HELP_WIDTH);
}

int cm_cli_sub(const cm_cli *c, const char *name, cm_err *err)
{
    size_t best = 0;
    int bd = 1000;
    for (size_t i = 0; i < c->nsubs; i++) {
        if (!strcmp(name, c->subs[i].name))
            return (int)i;
        int d = cm_edit_distance(name, c->subs[i].name);
        if (d < bd)
            bd = d, best = i;
    }
    if (c->nsubs && bd <= 2 && (size_t)bd * 2 < strlen(name) + 1)
        return cm_err_set(err, "%.60s: unknown command; did you mean %s?", name, c->subs[best].name);
    return cm_err_set(err, "%.60s: unknown command (see --help)", name);
}

void cm_cli_help(const cm_cli *c, FILE *f)
{
    fprintf(f, "%s\n", c->usage);
    if (c->about && strchr(c->about, '\n'))
        fprintf(f, "\n%s\n", c->about);
    else if (c->about) { /* one paragraph: wrapped */
        fputc('\n', f);
        wrap(f, c->about, 0, 0, 80);
    }
    if (c->nsubs)
        fprintf(f, "\ncommands:\n");
    for (size_t i = 0; i < c->nsubs; i++) {
        fprintf(f, "  %s %s\n%*s", c->subs[i].name, c->subs[i].args, 6, "");
        wrap(f, c->subs[i].help, 6, 6, 80);
    }
    for (size_t g = 0; g < c->ngroups; g++) {
        fprintf(f, "\n%s:\n", c->groups[g].title ? c->groups[g].title : "options");
        for (size_t i = 0; i < c->groups[g].n; i++)
            help_row(f, &c->groups[g].opts[i], NULL);
    }
    fprintf(f, "\ncommon options:\n");
    if (c->std & CM_STD_JOBS)
        help_row(f, &std_jobs, c->jobs_help);
    if (c->std & CM_STD_QUIET)
        help_row(f, &std_quiet, c->quiet_help);
    if (c->std & CM_STD_VERBOSE)
        help_row(f, &std_verbose, c->verbose_help);
    help_row(f, &std_version, NULL);
    help_row(f, &std_help, NULL);
    if (c->epilog)
        fprintf(f, "\n%s\n", c->epilog);
}

void cm_cli_version(const cm_cli *c, FILE *f)
{
    fprintf(f, "%s (c2kd) %s, git revision %s\n", c->prog, cm_version(), cm_git_revision());
}

int cm_cli_usage_error(const cm_cli *c, FILE *f, const char *msg)
{
    fprintf(f, "%s: %s\n", c->prog, msg);
    return 2;
}

int cm_cli_run(const cm_cli *c, int argc, char **argv, cm_args *a)
{
    cm_err err = {{0}};
    if (cm_cli_parse(c, argc, argv, a, &err) != 0)
        return cm_cli_usage_error(c, stderr, err.msg);
    if (a->help) {
        cm_cli_help(c, stdout);
        return 0;
    }
    if (a->version) {
        cm_cli_version(c, stdout);
        return 0;
    }
    return -1;
}
