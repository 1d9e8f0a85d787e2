/* methods: THE table of methods (train/methods.c), the one place a method's
 * name is spelt: --method's choices and --help (train/opts.c), the
 * checkpoint's and options' "method" (train/ckpt.c, train/eval.c), the
 * run's records (train/main.c) and the system's parts (train/system.c) read
 * it. Internal to train/. */
#ifndef TRAIN_METHODS_H
#define TRAIN_METHODS_H

#include "train/method.h"
#include "train/config.h"

/* "|none|kd|...": the --method choices after a leading '|' (an array, so
 * that `tr_methods_choices + 1` initialises train/opts.c's option table). */
extern const char tr_methods_choices[];

/* Rows: the --method choices first (tr_method is their index), then the
 * methods chosen by a flag of their own (pretrain). */
int tr_methods_count(void);
/* The number of --method choices. */
int tr_methods_options(void);
const tr_method_def *tr_methods_row(int i, const char **name);
/* The row of a name, or NULL. */
const tr_method_def *tr_methods_find(const char *name);
/* The --method value of m, or NULL when out of range. */
const char *tr_methods_name(tr_method m);
/* The name of a row's definition ("pretrain" included), or NULL. */
const char *tr_methods_name_of(const tr_method_def *d);
/* What a configuration trains: pretrain's row with c->pretrain, else c->method's (NULL: out of range). */
const tr_method_def *tr_methods_of(const tr_config *c);

#endif
