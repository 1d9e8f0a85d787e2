/* Random sample reads from ingested shards (one thread): spectrogram as float32 + JPEG bytes.
 * usage: bench_store_read DIR SPLIT N [SEED]; prints samples/s. */
#include <stdio.h>
#include <stdlib.h>

#include "common/cm_progress.h"
#include "store/store.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_store_read DIR SPLIT N [SEED]\n");
        return 2;
    }
    cm_err err;
    st_split *d = st_split_open(argv[1], argv[2], &err);
    if (!d) {
        fprintf(stderr, "bench_store_read: %s: %s\n", argv[1], err.msg);
        return 1;
    }
    size_t n = st_split_count(d), reads = (size_t)atol(argv[3]);
    unsigned long long s = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    const st_meta *m = st_split_meta(d);
    if (!m || n == 0) {
        fprintf(stderr, "bench_store_read: empty split\n");
        return 1;
    }
    float *spec = malloc((size_t)m->bins * (size_t)m->frames * sizeof *spec);
    size_t bytes = 0;
    double t0 = cm_now();
    for (size_t r = 0; r < reads; r++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t i = (size_t)((s >> 33) % n);
        st_record rec;
        if (st_split_read(d, i, &rec, &err) != 0 || st_split_read_spec(d, i, NULL, spec, &err) != 0) {
            fprintf(stderr, "bench_store_read: sample %zu: %s\n", i, err.msg);
            return 1;
        }
        for (int k = 0; k < rec.frames_per_sample; k++)
            bytes += rec.jpeg_len[k];
        st_record_free(&rec);
    }
    double dt = cm_now() - t0;
    printf("%.1f samples/s (%zu random reads of %zu samples, %.1f KiB JPEG/sample, spec %dx%d)\n",
           (double)reads / dt, reads, n, (double)bytes / (double)reads / 1024, m->bins, m->frames);
    free(spec);
    st_split_close(d);
    return 0;
}
