/* loader: the data identity stored in a checkpoint (root attribute written
 * by tr_checkpoint_save from its recipe_json argument). */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_err.h"
#include "common/cm_file.h"

#include "h5/h5.h"
#include "train/loader.h"

/* *json: the identity JSON (malloc'd), or NULL when the file carries none
 * (e.g. a checkpoint converted from PyTorch): then nothing can be compared. */
int ld_ckpt_identity(const char *path, char **json, cm_err *err)
{
    *json = NULL;
    if (cm_check_regular(path, err) != 0)
        return -1;
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -2;
    if (f < 0) {
        h5_quiet_end(&q);
        return cm_err_set(err, f == -2 ? "not an HDF5 checkpoint" : "cannot open the checkpoint (corrupt HDF5)");
    }
    static const char *const names[] = {"data_identity", "recipe", "recipe_json", "data"};
    char buf[64];
    const char *rv = h5_vlen_refusal(f, "format_version", 2, buf, sizeof buf);
    for (size_t k = 0; k < sizeof names / sizeof *names && !*json; k++) {
        char *v = NULL;
        int rc = h5_attr_read_str(f, names[k], rv, &v, err);
        if (rc == -2) { /* present but refused (a variable-length string in a new checkpoint): not skipped */
            H5Fclose(f);
            h5_quiet_end(&q);
            return -1;
        }
        if (rc != 0)
            continue;
        cJSON *j = cJSON_Parse(v);
        if (j && cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "classes"))
            *json = v;
        else
            free(v);
        cJSON_Delete(j);
    }
    H5Fclose(f);
    h5_quiet_end(&q);
    return 0;
}
