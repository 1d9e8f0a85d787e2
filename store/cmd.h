/* store command: its subcommands (store/cmd_*.c) and the index.json they read.
 * Not part of libstore. A subcommand is int NAME(const st_cmd_args *a), its
 * arguments parsed by store/main.c from its row of the sub-command table; it
 * returns the exit status (0, 1, 2). */
#ifndef STORE_CMD_H
#define STORE_CMD_H

#include <cjson/cJSON.h>

/* A sub-command's command line, parsed. */
typedef struct st_cmd_args {
    const char *dir; /* the ingest output folder (every sub-command) */
    const char *id;  /* export: the sample */
    const char *out; /* export: -o PREFIX */
    int quiet, verbose;
} st_cmd_args;

int cmd_info(const st_cmd_args *a);
int cmd_verify(const st_cmd_args *a);
int cmd_export(const st_cmd_args *a);
int cmd_index(const st_cmd_args *a);

/* index.json of an ingest output folder, every field checked for its type
 * and range when present (splits and classes must be). */
typedef struct st_index {
    cJSON *root;
    const cJSON *splits;    /* object: name -> {"shards": [{"file", "count"}...], "count"} */
    const cJSON *classes;   /* array of strings */
    int n_classes;
    int has_shape, bins, frames;    /* spec_shape */
    int has_fps, fps;               /* frames_per_sample */
    char *recipe;           /* the recipe object printed unformatted, NULL when absent */
} st_index;

/* Loads and checks DIR/index.json; on failure prints "store: PATH: reason" and returns -1. */
int st_index_load(st_index *ix, const char *dir);
void st_index_free(st_index *ix);
/* Name of class c (valid after st_index_load). */
const char *st_index_class(const st_index *ix, int c);
/* A number field of o as a count (an integer in [0, 2^53)); -1 when absent or not one. */
double st_index_count(const cJSON *o, const char *key);

#endif
