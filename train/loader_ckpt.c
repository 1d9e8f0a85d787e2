/* loader: the data identity stored in a checkpoint (root attribute written
 * by tr_checkpoint_save from its recipe_json argument). */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_err.h"

#include "train/loader.h"

static char *attr_str(hid_t loc, const char *name)
{
    if (H5Aexists(loc, name) <= 0)
        return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 converts no string between ASCII and UTF-8 */
        if (H5Tis_variable_str(ft) > 0) {
            H5Tset_size(mt, H5T_VARIABLE);
            char *v = NULL;
            if (H5Aread(a, mt, &v) >= 0 && v) {
                out = strdup(v);
                H5free_memory(v);
            }
        } else {
            size_t sz = H5Tget_size(ft);
            H5Tset_size(mt, sz + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            out = calloc(1, sz + 2);
            if (out && H5Aread(a, mt, out) < 0) {
                free(out);
                out = NULL;
            }
        }
        H5Tclose(mt);
    }
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return out;
}

/* *json: the identity JSON (malloc'd), or NULL when the file carries none
 * (e.g. a checkpoint converted from PyTorch): then nothing can be compared. */
int ld_ckpt_identity(const char *path, char **json, cm_err *err)
{
    *json = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (H5Fis_hdf5(path) <= 0)
        return cm_err_set(err, "not an HDF5 checkpoint");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return cm_err_set(err, "cannot open the checkpoint (corrupt HDF5)");
    static const char *const names[] = {"data_identity", "recipe", "recipe_json", "data"};
    for (size_t k = 0; k < sizeof names / sizeof *names && !*json; k++) {
        char *v = attr_str(f, names[k]);
        if (!v)
            continue;
        cJSON *j = cJSON_Parse(v);
        if (j && cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "classes"))
            *json = v;
        else
            free(v);
        cJSON_Delete(j);
    }
    H5Fclose(f);
    return 0;
}
