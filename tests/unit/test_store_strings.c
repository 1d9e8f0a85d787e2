/* store: strings are fixed-length in format version 2 (docs/FORMAT.md,
 * "Strings"); a variable-length string (read through libhdf5's global heap,
 * which trusts the file's sizes) is refused in version 2 before anything is
 * read, and still read in version 1. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "h5/h5.h"
#include "h5/h5_test.h"
#include "store/store.h"

static char dir[256];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/c2kd_test_strings_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *const CLASSES[] = {"dog", "Male speech, man speaking", "cat"};
static const char *const IDS[] = {"a", "clip_with_a_longer_id_é", "b"};

static void write_shard(const char *path)
{
    st_meta m = {.dataset = "ave", .split = "train", .n_classes = 3, .classes = CLASSES,
                 .frames_per_sample = 1, .bins = 2, .frames = 3, .recipe_json = "{\"k\":\"vé\"}"};
    cm_err err = {{0}};
    st_writer *w = st_writer_create(path, &m, &err);
    cr_assert_not_null(w, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        float spec[6] = {1, 2, 3, 4, 5, (float)i};
        uint8_t j0[2] = {(uint8_t)i, 1};
        const uint8_t *jp[1] = {j0};
        size_t jl[1] = {2};
        float ft[1] = {0.5f};
        st_sample s = {.id = IDS[i], .label = i, .spec = spec, .jpeg = jp, .jpeg_len = jl, .frame_time = ft};
        cr_assert_eq(st_writer_add(w, &s, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(st_writer_set_note(w, "ingest_cover", "{\"x\":1}", &err), 0);
    cr_assert_eq(st_writer_close(w, &err), 0, "%s", err.msg);
}

static int attr_is_vlen(hid_t f, const char *name)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
    int v = H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0;
    cr_assert_eq(H5Tget_class(t), H5T_STRING, "%s", name);
    cr_assert_eq(H5Tget_cset(t), H5T_CSET_UTF8, "%s", name);
    H5Tclose(t);
    H5Aclose(a);
    return v;
}

/* Replaces the string attribute `name` by a variable-length one (scalar, or
 * n values when n > 0), as version 1 writers did. */
static void set_vlen_attr(hid_t f, const char *name, const char *const *v, int n)
{
    if (H5Aexists(f, name) > 0)
        cr_assert_geq(H5Adelete(f, name), 0);
    hid_t t = h5_vlen_utf8();
    hsize_t d = (hsize_t)n;
    hid_t sp = n > 0 ? H5Screate_simple(1, &d, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Awrite(a, t, v), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void set_id_dataset(hid_t f, hid_t t, const void *buf)
{
    cr_assert_geq(H5Ldelete(f, "id", H5P_DEFAULT), 0);
    hsize_t n = 3;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "id", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
    H5Dclose(d);
    H5Sclose(sp);
}

static void set_version(hid_t f, int64_t v)
{
    hid_t a = H5Aopen(f, "version", H5P_DEFAULT);
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
}

static void expect_refused(const char *path, const char *needle)
{
    cm_err err = {{0}};
    st_shard *s = st_shard_open(path, &err);
    cr_assert_null(s, "opened; expected: %s", needle);
    cr_assert(strstr(err.msg, needle), "'%s' does not say '%s'", err.msg, needle);
}

Test(strings, version_2_writes_fixed_length_utf8_strings_and_reads_them)
{
    mkdir_tmp();
    char path[300];
    snprintf(path, sizeof path, "%s/train-00000.h5", dir);
    write_shard(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    const char *names[] = {"format", "dataset", "split", "classes", "recipe", "tool_version", "spec_dtype",
                           "checksum", "ingest_cover"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        cr_assert_not(attr_is_vlen(f, names[k]), "%s is variable-length", names[k]);
    hid_t d = H5Dopen2(f, "id", H5P_DEFAULT), t = H5Dget_type(d);
    cr_assert_eq(H5Tis_variable_str(t), 0);
    cr_assert_eq(H5Tget_size(t), strlen(IDS[1]), "fixed length = the longest id");
    cr_assert_eq(H5Tget_cset(t), H5T_CSET_UTF8);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    cm_err err = {{0}};
    st_shard *s = st_shard_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(st_shard_id(s, (size_t)i), IDS[i]);
    cr_assert_str_eq(st_shard_meta(s)->classes[1], CLASSES[1]);
    cr_assert_str_eq(st_shard_meta(s)->recipe_json, "{\"k\":\"vé\"}");
    char *note = st_shard_note(s, "ingest_cover");
    cr_assert_str_eq(note, "{\"x\":1}");
    free(note);
    st_shard_close(s);
    rm_tmp();
}

Test(strings, variable_length_strings_in_version_2_are_refused_before_reading)
{
    mkdir_tmp();
    char path[300];
    snprintf(path, sizeof path, "%s/train-00000.h5", dir);
    const char *rec[] = {"{}"};
    const char *attrs[] = {"format", "dataset", "split", "recipe"};
    for (size_t k = 0; k < 4; k++) {
        write_shard(path);
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        const char *v[] = {k == 0 ? "c2kd-shard" : rec[0]};
        set_vlen_attr(f, attrs[k], v, 0);
        H5Fclose(f);
        char needle[200];
        snprintf(needle, sizeof needle, "attribute %s: variable-length string not accepted in format version 2",
                 attrs[k]);
        expect_refused(path, needle);
    }
    write_shard(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    set_vlen_attr(f, "classes", (const char *const *)CLASSES, 3);
    H5Fclose(f);
    expect_refused(path, "attribute classes: variable-length string not accepted in format version 2");
    write_shard(path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t t = h5_vlen_utf8();
    set_id_dataset(f, t, IDS);
    H5Tclose(t);
    H5Fclose(f);
    expect_refused(path, "dataset id: variable-length string not accepted in format version 2");
    /* A note in variable length: not read (absent) in version 2. */
    write_shard(path);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *cov[] = {"{\"x\":2}"};
    set_vlen_attr(f, "ingest_cover", cov, 0);
    H5Fclose(f);
    cm_err err = {{0}};
    st_shard *s = st_shard_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_null(st_shard_note(s, "ingest_cover"));
    st_shard_close(s);
    rm_tmp();
}

Test(strings, a_fixed_length_id_over_255_bytes_is_refused)
{
    mkdir_tmp();
    char path[300];
    snprintf(path, sizeof path, "%s/train-00000.h5", dir);
    write_shard(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    char buf[3 * 300] = {0};
    for (int i = 0; i < 3; i++)
        memcpy(buf + i * 300, IDS[i], strlen(IDS[i]));
    hid_t t = h5_fixed_utf8(300);
    set_id_dataset(f, t, buf);
    H5Tclose(t);
    H5Fclose(f);
    expect_refused(path, "dataset id: fixed-length string of 300 bytes (at most 255)");
    rm_tmp();
}

Test(strings, version_1_variable_length_strings_are_still_read)
{
    mkdir_tmp();
    char path[300];
    snprintf(path, sizeof path, "%s/train-00000.h5", dir);
    write_shard(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *fmt[] = {"c2kd-shard"}, *ds[] = {"ave"}, *sp[] = {"train"}, *rec[] = {"{\"k\":\"vé\"}"},
               *cov[] = {"{\"x\":1}"};
    set_vlen_attr(f, "format", fmt, 0);
    set_vlen_attr(f, "dataset", ds, 0);
    set_vlen_attr(f, "split", sp, 0);
    set_vlen_attr(f, "recipe", rec, 0);
    set_vlen_attr(f, "ingest_cover", cov, 0);
    set_vlen_attr(f, "classes", (const char *const *)CLASSES, 3);
    hid_t t = h5_vlen_utf8();
    set_id_dataset(f, t, IDS);
    H5Tclose(t);
    set_version(f, 1);
    H5Fclose(f);
    cm_err err = {{0}};
    st_shard *s = st_shard_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(st_shard_version(s), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(st_shard_id(s, (size_t)i), IDS[i]);
    cr_assert_str_eq(st_shard_meta(s)->classes[2], "cat");
    cr_assert_str_eq(st_shard_meta(s)->recipe_json, rec[0]);
    char *note = st_shard_note(s, "ingest_cover");
    cr_assert_str_eq(note, cov[0]);
    free(note);
    st_shard_close(s);
    rm_tmp();
}

/* The fuzzer's reproducers (libhdf5 1.10 H5HG_read heap overflow; 12.7 GB
 * allocation in H5T__conv_vlen) are version-1 shards with damaged global-heap
 * references; with their version attribute set to 2 (the *-as-v2.h5 copies),
 * they are refused before any variable-length read. */
Test(strings, fuzz_reproducers_as_version_2_are_refused_cleanly)
{
    const char *files[] = {"tests/fuzz/regressions/shard/crash-as-v2.h5", "tests/fuzz/regressions/shard/oom-as-v2.h5"};
    for (int k = 0; k < 2; k++) {
        cr_assert(cm_is_file(files[k]), "%s: run the tests from the repository root", files[k]);
        expect_refused(files[k], "attribute format: variable-length string not accepted in format version 2");
    }
}

Test(strings, checkpoint_policy_follows_format_version)
{
    mkdir_tmp();
    char path[300], buf[64];
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *v[] = {"{\"a\":1}"};
    set_vlen_attr(f, "config", v, 0);
    cr_assert_eq(h5_attr_str(f, "recipe", "{\"b\":2}"), 0);
    cr_assert_null(h5_vlen_refusal(f, "format_version", 2, buf, sizeof buf), "no marker: an old file");
    char *s = NULL;
    cm_err err = {{0}};
    cr_assert_eq(h5_attr_read_str(f, "config", NULL, &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s, v[0]);
    free(s);
    cr_assert_eq(h5_attr_read_str(f, "recipe", NULL, &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s, "{\"b\":2}");
    free(s);
    cr_assert_eq(h5_attr_read_str(f, "nope", NULL, &s, &err), -1);
    cr_assert_str_eq(err.msg, "attribute nope: missing");
    int32_t fv = 2;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &fv);
    H5Aclose(a);
    H5Sclose(sp);
    const char *rv = h5_vlen_refusal(f, "format_version", 2, buf, sizeof buf);
    cr_assert_str_eq(rv, "in format_version 2");
    cr_assert_eq(h5_attr_read_str(f, "config", rv, &s, &err), -2);
    cr_assert_null(s);
    cr_assert_str_eq(err.msg, "attribute config: variable-length string not accepted in format_version 2");
    cr_assert_eq(h5_attr_read_str(f, "recipe", rv, &s, &err), 0, "%s", err.msg);
    free(s);
    H5Fclose(f);
    rm_tmp();
}
