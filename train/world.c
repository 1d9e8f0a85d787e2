/* world: RUN/dist.json (train/world.h). */
#include "train/world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"

static void world_path(char *path, size_t n, const char *run_dir)
{
    snprintf(path, n, "%s/dist.json", run_dir);
}

int tr_world_save(const char *run_dir, cl_comm *comm, cm_err *err)
{
    if (cl_rank(comm) != 0)
        return 0;
    char path[CM_PATH_MAX], text[64];
    world_path(path, sizeof path, run_dir);
    int len = snprintf(text, sizeof text, "{\"world_size\": %d}\n", cl_size(comm));
    return cm_write_file_atomic(path, text, (size_t)len, err);
}

int tr_world_check(const char *run_dir, cl_comm *comm, cm_err *err)
{
    char path[CM_PATH_MAX];
    world_path(path, sizeof path, run_dir);
    int n = cl_size(comm), was = 1;
    if (cm_is_file(path)) {
        char *text = NULL;
        size_t len = 0;
        if (cm_read_file(path, &text, &len, err) != 0)
            return -1;
        const char *k = strstr(text, "\"world_size\":");
        was = k ? atoi(k + 13) : -1;
        free(text);
        if (was < 1)
            return cm_err_set(err, "%s: no world_size", path);
    }
    if (was != n)
        return cm_err_set(err, "the run was started with %d process%s and is resumed with %d: resume it with "
                          "the same number of ranks (the batches, sampling and batch-norm statistics depend on it)",
                          was, was == 1 ? "" : "es", n);
    return 0;
}
