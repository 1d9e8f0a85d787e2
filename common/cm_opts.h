/* cm_opts: one command-line grammar for every command.
 *
 * A command describes its options in tables of cm_opt rows (name, short
 * alias, type, the field it sets, default, allowed values or range, older
 * spellings, help); cm_cli_parse reads argv against them, cm_cli_help prints
 * the help generated from them, and the same rows check values read from
 * files (options.json, presets: cm_opt_set, cm_opt_check). Every command gets
 * the same standard options: -h/--help, --version, and when it asks for them
 * -q/--quiet, -v/--verbose, -j/--jobs N. Errors have one shape,
 * "PROG: --count: 0 is not in [1, 64]", and an unknown option names the
 * nearest known one ("did you mean --lr?"). Usage errors exit with 2.
 *
 * Grammar: --name VALUE, --name=VALUE, -x VALUE, -xVALUE, bundled short
 * flags (-qv), --no-name for a boolean, "--" ends the options; options and
 * positional arguments may be mixed (positionals keep their order). */
#ifndef CM_OPTS_H
#define CM_OPTS_H

#include <stddef.h>
#include <stdio.h>

#include "common/cm_err.h"

typedef enum cm_opt_type {
    CM_FLAG,   /* int = 1 when given */
    CM_BOOL,   /* int 0/1: --name sets 1, --no-name 0; "0"/"1" as a value (files) */
    CM_STR,    /* const char * (points into argv or the given value); choices restrict it */
    CM_INT,    /* int (range, or choices such as "18|50") */
    CM_LL,     /* long long */
    CM_DBL,    /* double, finite */
    CM_CHOICE, /* int: the index of the value in choices ("a|b|c") */
    CM_FN,     /* parse(value, field, err): the command's own syntax (times, sizes, K/N) */
} cm_opt_type;

/* Range bits (lo, hi): inclusive, or open with the _OPEN bits. */
enum { CM_LO = 1, CM_LO_OPEN = 2, CM_HI = 4, CM_HI_OPEN = 8 };
#define CM_IN(a, b) .range = CM_LO | CM_HI, .lo = (a), .hi = (b)
#define CM_MIN(a) .range = CM_LO, .lo = (a)
#define CM_ABOVE(a) .range = CM_LO_OPEN, .lo = (a)

/* Row flags. */
enum {
    CM_OPT_HIDDEN = 1, /* accepted, not shown in --help */
    CM_OPT_USER1 = 1 << 8, /* the command's own marks (train: saved in options.json, ...) */
    CM_OPT_USER2 = 1 << 9,
};

typedef struct cm_opt {
    const char *name;     /* long name without "--": "sample-rate" */
    char short_name;      /* 'o', or 0 */
    cm_opt_type type;
    size_t off;           /* the field in the group's struct (offsetof) */
    const char *choices;  /* "a|b|c" or NULL */
    const char *def;      /* the default as it would be given (shown in --help); NULL: none */
    const char *arg;      /* the value's placeholder in --help ("N", "FILE") */
    const char *help;
    unsigned range;       /* CM_LO | CM_HI ... */
    double lo, hi;
    const char *aliases;  /* older names, "window-fn|window_fn": accepted on the command line and as keys */
    const char *value_aliases; /* older values of a CHOICE row: "tukey=tukey25|tukey0.25=tukey25" */
    const char *key;      /* the name in files (recipe JSON, attributes, presets); NULL: name */
    int (*parse)(const char *v, void *field, cm_err *err); /* CM_FN */
    unsigned flags;
    int ext;              /* the command's own use (train: the tr_config field's kind) */
    size_t ext_off;
} cm_opt;

/* A table and the struct its rows' offsets point into. */
typedef struct cm_opt_group {
    const char *title;    /* heading in --help ("Output", ...); NULL: none */
    const cm_opt *opts;
    size_t n;
    void *base;
} cm_opt_group;

/* Standard options a command asks for. -h/--help and --version are always there. */
enum { CM_STD_QUIET = 1, CM_STD_VERBOSE = 2, CM_STD_JOBS = 4 };

/* A sub-command (store info, store verify, ...): its name, arguments and help. */
typedef struct cm_sub {
    const char *name, *args, *help;
} cm_sub;

typedef struct cm_cli {
    const char *prog;      /* the name in messages: "spectro", "store verify" */
    const char *usage;     /* "usage: ..." lines, without the final newline */
    const char *about;     /* the paragraph after them (may be NULL) */
    const char *epilog;    /* after the options (exit status, environment; may be NULL) */
    unsigned std;          /* CM_STD_* */
    const char *jobs_help; /* -j's help ("inputs processed in parallel (default: all cores)") */
    const char *quiet_help, *verbose_help;
    int min_pos, max_pos;  /* positional arguments allowed (max_pos < 0: any number) */
    const char *pos_name;  /* their name in messages ("INPUT") */
    int stop_at_pos;       /* 1: the first positional ends the options (a sub-command follows) */
    const cm_opt_group *groups;
    size_t ngroups;
    const cm_sub *subs;    /* sub-commands listed in --help (with stop_at_pos) */
    size_t nsubs;
} cm_cli;

typedef struct cm_args {
    int help, version, quiet, verbose, jobs; /* jobs 0: not given */
    char **pos;           /* the positional arguments (malloc'd array; cm_args_free) */
    int npos;
    int rest;             /* stop_at_pos: the index in argv of the first positional */
    const char **given;   /* the names of the options given (canonical names), NULL-terminated */
    int ngiven;
} cm_args;

/* Parses argv[1..] into the groups' structs (their fields hold the defaults
 * already: cm_opts_default). 0, or -1 with the reason in err (no program
 * name: cm_cli_usage_error prints it). */
int cm_cli_parse(const cm_cli *c, int argc, char **argv, cm_args *a, cm_err *err);
void cm_args_free(cm_args *a);
/* 1 when the option `name` (its canonical name) was given. */
int cm_args_given(const cm_args *a, const char *name);

/* Sets every row that has a default. */
void cm_opts_default(const cm_opt *opts, size_t n, void *base);

/* The index of sub-command `name` in c->subs, or -1 with the reason ("verfy:
 * unknown command; did you mean verify?"). */
int cm_cli_sub(const cm_cli *c, const char *name, cm_err *err);

/* The help generated from the table. */
void cm_cli_help(const cm_cli *c, FILE *f);
/* One item of a help text as the options are printed: `left` ("  --name X"),
 * then `text` from column 26, wrapped at 100 columns. */
void cm_help_item(FILE *f, const char *left, const char *text);
/* "PROG (c2kd) 0.1, git revision abc123" */
void cm_cli_version(const cm_cli *c, FILE *f);
/* Prints "PROG: MSG" on f; returns 2 (the exit status of a usage error). */
int cm_cli_usage_error(const cm_cli *c, FILE *f, const char *msg);

/* The usual start of a main: parse; on a usage error print it and return 2;
 * on --help or --version print to stdout and return 0; else -1 (go on). */
int cm_cli_run(const cm_cli *c, int argc, char **argv, cm_args *a);

/* ---- the rows as a checker of values from files ---- */

/* The row named `name` (long name, key or an alias; '-' and '_' alike), NULL. */
const cm_opt *cm_opt_find(const cm_opt *opts, size_t n, const char *name);
/* Sets the row's field from text, checked (type, choices, range). The
 * message names the option as "--name" (how = 0) or by its key (how = 1). */
int cm_opt_set(const cm_opt *o, void *base, const char *v, int how, cm_err *err);
/* Checks the value the field holds against the row's range: 0 or -1. */
int cm_opt_check(const cm_opt *o, const void *base, int how, cm_err *err);
/* The field as a number (FLAG, BOOL, INT, LL, DBL, CHOICE); 0 for others. */
double cm_opt_number(const cm_opt *o, const void *base);
/* The field of a CHOICE row as text (the canonical choice, written into buf
 * of n bytes) or of a STR row (the pointer it holds); NULL for other rows or a
 * CHOICE index out of its list. */
const char *cm_opt_text(const cm_opt *o, const void *base, char *buf, size_t n);
/* Index of v in "a|b|c", or -1. */
int cm_choice_index(const char *choices, const char *v);
/* The row's name in files. */
static inline const char *cm_opt_key(const cm_opt *o) { return o->key ? o->key : o->name; }

/* Levenshtein distance of a and b (bounded inputs). */
int cm_edit_distance(const char *a, const char *b);

#endif
