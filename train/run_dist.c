/* run_dist: RUN/dist.json, the world size a run was started with. */
#include "train/run_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"

int tr_run_world(const char *run_dir, int resuming, ds_comm *comm, cm_err *err)
{
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/dist.json", run_dir);
    int n = ds_size(comm);
    if (!resuming) {
        if (ds_rank(comm) != 0)
            return 0;
        char text[64];
        int len = snprintf(text, sizeof text, "{\"world_size\": %d}\n", n);
        return cm_write_file_atomic(path, text, (size_t)len, err);
    }
    int was = 1;
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
