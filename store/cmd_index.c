/* store index DIR: index.json and failures.tsv of a folder written in parts
 * (ingest --part K/N), from DIR/plan.json and the shards present. Takes the
 * folder's lock exclusively, so it never runs beside a writer. */
#include <stdio.h>

#include "store/cmd.h"
#include "store/st_index.h"

int cmd_index(const st_cmd_args *a)
{
    const char *dir = a->dir;
    cm_err err;
    st_lock *l = st_lock_take(dir, 0, 0, NULL, &err);
    int rc = l ? st_index_write(dir, &err) : -1;
    st_lock_release(l);
    if (rc != 0) {
        fprintf(stderr, "store: %s: %s\n", dir, err.msg);
        return 1;
    }
    if (a->verbose)
        printf("store: %s: index.json and failures.tsv written\n", dir);
    return 0;
}
