/* store command: its subcommands (store/cmd_*.c) and the index.json they read.
 * Not part of libstore. A subcommand is int NAME(int argc, char **argv) with
 * argv[0] the subcommand's name; it returns the exit status (0, 1, 2). */
#ifndef STORE_CMD_H
#define STORE_CMD_H

#include <cjson/cJSON.h>

int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_index(int argc, char **argv);

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
