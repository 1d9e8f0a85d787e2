/* Fuzz target: the shard reader. The input is a whole shard file (seeds are
 * real shards written by ingest); every sample is read, its spectrogram
 * converted. Damaged files must give an error, never a crash, a read out of
 * bounds, or an allocation the file's size cannot justify. */
#include <stdlib.h>

#include "store/store.h"
#include "tests/fuzz/fz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4200];
    fz_write("shard.h5", data, size, path, sizeof path);
    cm_err err = {0};
    st_shard *s = st_shard_open(path, &err);
    if (!s)
        return 0;
    const st_meta *meta = st_shard_meta(s);
    size_t cells = (size_t)meta->bins * (size_t)meta->frames;
    float *f32 = malloc(cells * sizeof *f32 + 1);
    for (size_t i = 0; f32 && i < st_shard_count(s); i++) {
        st_record r;
        if (st_shard_read(s, i, &r, &err) == 0)
            st_record_free(&r);
        st_shard_read_spec(s, i, NULL, f32, &err);
    }
    free(f32);
    st_shard_close(s);
    return 0;
}
