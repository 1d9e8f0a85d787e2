/* Fuzz target: damaged sample data must never be returned as good.
 *
 * The input is a list of 5-byte patches (a 32-bit position, an XOR byte)
 * applied to a real shard (the seed, $C2KD_FUZZ_SEED_SHARD), at positions
 * inside the bytes that hold samples: every spectrogram chunk, the JPEG bytes
 * and the small per-sample datasets (labels, offsets, segments, frame times,
 * the checksums themselves). This is the damage a disk or a copy does; the
 * HDF5 metadata is left alone (tests/fuzz/fuzz_shard.c mutates whole files).
 *
 * The oracle: after opening the damaged copy, every read that succeeds must
 * return exactly what the pristine shard returns (id, label, JPEG bytes,
 * spectrogram); anything else is silent corruption and aborts. Reads may
 * fail (checksum mismatch, refused offsets): that is the point. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "store/store.h"
#include "tests/fuzz/fz_util.h"

typedef struct range {
    uint64_t at, len;
} range;

typedef struct pristine {
    uint8_t *file;
    size_t size;
    range ranges[4096];
    int nranges;
    uint64_t total;            /* bytes over all ranges */
    size_t n, cells;
    st_record *rec;            /* [n] */
    float *spec;               /* [n, cells] */
} pristine;

static pristine P;

static void add_range(uint64_t at, uint64_t len)
{
    if (len == 0 || at == HADDR_UNDEF || P.nranges == (int)(sizeof P.ranges / sizeof *P.ranges))
        return;
    P.ranges[P.nranges++] = (range){at, len};
    P.total += len;
}

/* Where the seed keeps its sample bytes (the HDF5 API, read once). */
static void find_ranges(const char *path)
{
    static const char *const contiguous[] = {"video/jpeg", "video/offset", "label", "segment",
                                             "frame_time", "crc32/spec", "crc32/record", "id"};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        abort();
    for (size_t k = 0; k < sizeof contiguous / sizeof *contiguous; k++) {
        if (H5Lexists(f, "crc32", H5P_DEFAULT) <= 0 && !strncmp(contiguous[k], "crc32/", 6))
            continue;
        hid_t d = H5Dopen2(f, contiguous[k], H5P_DEFAULT);
        if (d < 0)
            continue;
        add_range(H5Dget_offset(d), H5Dget_storage_size(d));
        H5Dclose(d);
    }
    hid_t d = H5Dopen2(f, "audio/spec", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t nchunks = 0;
    H5Dget_num_chunks(d, sp, &nchunks);
    for (hsize_t c = 0; c < nchunks; c++) {
        hsize_t off[3];
        unsigned mask;
        haddr_t addr;
        hsize_t size;
        if (H5Dget_chunk_info(d, sp, c, off, &mask, &addr, &size) >= 0)
            add_range(addr, size);
    }
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
}

static void read_pristine(const char *path)
{
    cm_err err;
    st_shard *s = st_shard_open(path, &err);
    if (!s) {
        fprintf(stderr, "fuzz_shard_data: seed %s: %s\n", path, err.msg);
        abort();
    }
    if (!st_shard_has_checksums(s)) {
        fprintf(stderr, "fuzz_shard_data: seed %s has no checksums (format version 1): make a new one\n", path);
        abort();
    }
    const st_meta *m = st_shard_meta(s);
    P.n = st_shard_count(s);
    P.cells = (size_t)m->bins * (size_t)m->frames;
    P.rec = calloc(P.n, sizeof *P.rec);
    P.spec = malloc(P.n * P.cells * sizeof *P.spec);
    for (size_t i = 0; i < P.n; i++)
        if (st_shard_read(s, i, &P.rec[i], &err) != 0 || st_shard_read_spec(s, i, NULL, P.spec + i * P.cells, &err))
            abort();
    st_shard_close(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *seed = getenv("C2KD_FUZZ_SEED_SHARD");
    cm_err err;
    char *data;
    if (!seed || cm_read_file(seed, &data, &P.size, &err) != 0) {
        fprintf(stderr, "fuzz_shard_data: set C2KD_FUZZ_SEED_SHARD to a shard written by ingest\n");
        abort();
    }
    P.file = (uint8_t *)data;
    find_ranges(seed);
    read_pristine(seed);
    if (P.total == 0 || P.n == 0)
        abort();
    return 0;
}

static uint64_t position(uint32_t r)
{
    uint64_t p = r % P.total;
    for (int k = 0; k < P.nranges; k++) {
        if (p < P.ranges[k].len)
            return P.ranges[k].at + p;
        p -= P.ranges[k].len;
    }
    abort();
}

static void check_sample(st_shard *s, size_t i, float *spec)
{
    cm_err err;
    st_record r;
    if (st_shard_read(s, i, &r, &err) == 0) {
        const st_record *q = &P.rec[i];
        int same = !strcmp(r.id, q->id) && r.label == q->label && r.frames_per_sample == q->frames_per_sample;
        for (int k = 0; same && k < r.frames_per_sample; k++)
            same = r.jpeg_len[k] == q->jpeg_len[k] &&
                   !memcmp(r.jpeg_buf + r.jpeg_off[k], q->jpeg_buf + q->jpeg_off[k], r.jpeg_len[k]);
        st_record_free(&r);
        if (!same) {
            fprintf(stderr, "fuzz_shard_data: sample %zu returned with damaged fields or JPEG bytes\n", i);
            abort();
        }
    }
    if (st_shard_read_spec(s, i, NULL, spec, &err) == 0 && memcmp(spec, P.spec + i * P.cells, P.cells * sizeof *spec)) {
        fprintf(stderr, "fuzz_shard_data: sample %zu returned with a damaged spectrogram\n", i);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(P.size);
    memcpy(copy, P.file, P.size);
    for (size_t k = 0; k + 5 <= size; k += 5) {
        uint32_t r;
        memcpy(&r, data + k, 4);
        copy[position(r)] ^= data[k + 4] ? data[k + 4] : 0xff;
    }
    char path[4200];
    fz_write("shard.h5", copy, P.size, path, sizeof path);
    free(copy);
    cm_err err;
    st_shard *s = st_shard_open(path, &err);
    if (!s)
        return 0;
    float *spec = malloc(P.cells * sizeof *spec);
    for (size_t i = 0; i < st_shard_count(s) && i < P.n; i++)
        check_sample(s, i, spec);
    free(spec);
    st_shard_close(s);
    return 0;
}
