/* ingest: readers on small hand-written annotation files, presets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cm_file.h"
#include "ingest/ingest.h"

static char dir[256];

static void put(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cm_err err;
    cr_assert_eq(cm_write_file_atomic(path, text, strlen(text), &err), 0, "%s", err.msg);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/c2kd_test_ingest_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(readers, .init = setup, .fini = teardown);

Test(readers, ave_splits_on_ampersand_renames_repeats_keeps_empty_segment)
{
    put("trainSet.txt", "Male speech, man speaking&abc&good&0&10\nBark&def&good&0&0\n\n");
    put("valSet.txt", "Female speech, woman speaking&abc&good&0&10\nbroken&line\n");
    put("testSet.txt", "Bark&ghi&good&2&5\r\nMale speech, man speaking&jkl&good&1&3\n");
    ig_preset p;
    ig_preset_init(&p);
    snprintf(p.class_order, sizeof p.class_order, "first-in-test");
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 5);
    cr_assert_eq(m.nfail, 1);
    cr_assert(strstr(m.fails[0].reason, "valSet.txt line 2"), "%s", m.fails[0].reason);
    cr_assert_str_eq(m.items[0].id, "abc_0_10");
    cr_assert_str_eq(m.items[0].label, "Male speech, man speaking");
    cr_assert_str_eq(m.items[2].id, "abc_0_10~2");
    cr_assert_str_eq(m.items[1].id, "def_0_0");
    cr_assert_eq(m.items[1].start, 0);
    cr_assert_eq(m.items[1].end, 0);
    cr_assert_eq(m.renamed, 1);
    cr_assert(strstr(m.items[0].video, "/AVE/abc.mp4"));
    /* classes: first appearance in test, then the others */
    cr_assert_eq(m.n_classes, 3);
    cr_assert_str_eq(m.classes[0], "Bark");
    cr_assert_str_eq(m.classes[1], "Male speech, man speaking");
    cr_assert_str_eq(m.classes[2], "Female speech, woman speaking");
    cr_assert_eq(m.items[3].start, 2);
    cr_assert_eq(m.items[3].end, 5);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(readers, vggsound_csv_bom_crlf_quotes_and_padded_names)
{
    put("train_tiny.csv", "\xef\xbb\xbf" "aaa,30,\"subway, metro, underground\",train\r\n"
                          "bbb,7,\"say \"\"hi\"\", twice\",train\r\n");
    put("test_tiny.csv", "ccc,0,dog barking,test\r\nddd,x,bad start,test\r\n");
    char vdir[400];
    snprintf(vdir, sizeof vdir, "%s/video", dir);
    mkdir(vdir, 0755);
    put("video/aaa_000030.mp4", "x");
    put("bbb_7.mp4", "x");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_vggsound(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 3);
    cr_assert_eq(m.nfail, 1);
    cr_assert_str_eq(m.items[0].id, "aaa_30");
    cr_assert_str_eq(m.items[0].label, "subway, metro, underground");
    cr_assert(strstr(m.items[0].video, "/video/aaa_000030.mp4"), "%s", m.items[0].video);
    cr_assert_str_eq(m.items[1].label, "say \"hi\", twice");
    cr_assert(strstr(m.items[1].video, "/bbb_7.mp4") && !strstr(m.items[1].video, "video/"));
    cr_assert(strstr(m.items[2].video, "/video/ccc_0.mp4"), "missing: a path under video/");
    cr_assert_str_eq(m.splits[m.items[2].split], "test");
    cr_assert_eq(m.n_classes, 3); /* sorted */
    cr_assert_str_eq(m.classes[0], "dog barking");
    cr_assert_str_eq(m.classes[2], "subway, metro, underground");
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

static void cremad_seeded(uint64_t seed, char out[4][32])
{
    ig_preset p;
    ig_preset_init(&p);
    cm_err err;
    cr_assert_eq(ig_preset_set(&p, "classes", "NEU | HAP | SAD", &err), 0);
    cr_assert_eq(ig_preset_set(&p, "class_order", "preset", &err), 0);
    p.seed = seed;
    p.test_fraction = 0.25;
    ig_manifest m;
    ig_manifest_init(&m);
    cr_assert_eq(ig_read_cremad(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 7);
    cr_assert_eq(m.nfail, 1); /* the XYZ clip: unknown label */
    cr_assert(strstr(m.fails[0].reason, "unknown label"));
    int nt = 0, k = 0;
    for (size_t i = 0; i < m.n; i++) {
        if (!strcmp(m.splits[m.items[i].split], "test")) {
            nt++;
            snprintf(out[k++], 32, "%s", m.items[i].id);
        }
        char want[8];
        snprintf(want, sizeof want, "%.3s", m.items[i].id + 9);
        cr_assert_str_eq(m.items[i].label, want);
        cr_assert_eq(strcmp(m.items[i].audio, m.items[i].video) == 0,
                     strstr(m.items[i].id, "1002") != NULL, "wav used when present");
    }
    cr_assert_eq(nt, 2); /* round(8 * 0.25) */
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(readers, cremad_seeded_split_is_deterministic)
{
    char path[400];
    snprintf(path, sizeof path, "%s/VideoFlash", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/AudioWAV", dir);
    mkdir(path, 0755);
    const char *clips[] = {"1001_IEO_NEU_XX", "1002_IEO_HAP_XX", "1003_IEO_SAD_XX", "1004_IEO_NEU_XX",
                           "1005_IEO_HAP_XX", "1006_IEO_SAD_XX", "1007_IEO_NEU_XX", "1008_IEO_XYZ_XX"};
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "VideoFlash/%s.flv", clips[i]);
        put(path, "x");
        if (i != 1) {
            snprintf(path, sizeof path, "AudioWAV/%s.wav", clips[i]);
            put(path, "x");
        }
    }
    char a[4][32] = {{0}}, b[4][32] = {{0}}, c[4][32] = {{0}};
    cremad_seeded(7, a);
    cremad_seeded(7, b);
    cr_assert(!memcmp(a, b, sizeof a), "same seed, same split");
    int differs = 0;
    for (uint64_t s = 0; s < 8 && !differs; s++) {
        cremad_seeded(s + 100, c);
        differs = memcmp(a, c, sizeof a) != 0;
    }
    cr_assert(differs, "the seed changes the split");
}

Test(presets, load_and_errors)
{
    put("x.conf", "# comment\ndataset = vgg\nreader = vggsound\nframes = 3 # three\nduration = 10\n"
                  "classes = a, b | c\n");
    char path[400];
    snprintf(path, sizeof path, "%s/x.conf", dir);
    ig_preset p;
    ig_preset_init(&p);
    cm_err err;
    cr_assert_eq(ig_preset_load(&p, path, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p.dataset, "vgg");
    cr_assert_eq(p.frames, 3);
    cr_assert_eq(p.n_classes, 2);
    cr_assert_str_eq(p.classes[0], "a, b");
    cr_assert_eq(p.sp.window, 512);
    cr_assert_eq(ig_preset_set(&p, "frames", "0", &err), -1);
    cr_assert_eq(ig_preset_set(&p, "nope", "1", &err), -1);
    cr_assert_eq(ig_preset_set(&p, "window_kind", "box", &err), -1);
    char *r = ig_preset_recipe_json(&p);
    cr_assert(strstr(r, "\"count\":3") && strstr(r, "\"frames\":1004"), "%s", r);
    free(r);
    ig_preset_free(&p);
    put("y.conf", "frames 3\n");
    snprintf(path, sizeof path, "%s/y.conf", dir);
    ig_preset_init(&p);
    cr_assert_eq(ig_preset_load(&p, path, &err), -1);
    cr_assert(strstr(err.msg, "line 1"), "%s", err.msg);
    ig_preset_free(&p);
}

/* ---- hostile and large annotation files (issue 13) ---- */

#include <sys/types.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

Test(readers, tsv_short_and_long_rows_fail_without_reading_past_the_fields)
{
    put("m.tsv", "a\n\tb\na\tb\nid1\t\tv.mp4\tdog\ttrain\nid2\t\tv.mp4\tdog\ttrain\t-\n"
                 "id3\t\tv.mp4\tdog\ttrain\t-\t-\textra\nok\t\tv.mp4\tdog\ttrain\t-\t-\n");
    char path[512];
    snprintf(path, sizeof path, "%s/m.tsv", dir);
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_tsv(&m, &p, path, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 1);
    cr_assert_str_eq(m.items[0].id, "ok");
    cr_assert_eq(m.nfail, 6);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(readers, names_splits_and_paths_are_checked)
{
    char why[160];
    cr_assert_eq(ig_check_name("id", "abc_0_10~2", why, sizeof why), 0);
    cr_assert_eq(ig_check_name("id", "../../outside", why, sizeof why), -1);
    cr_assert_eq(ig_check_name("id", "a/b", why, sizeof why), -1);
    cr_assert_eq(ig_check_name("id", "a\x01", why, sizeof why), -1);
    cr_assert_eq(ig_check_name("id", "", why, sizeof why), -1);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(ig_check_name("id", longname, why, sizeof why), -1);
    cr_assert_eq(ig_check_split("train", why, sizeof why), 0);
    cr_assert_eq(ig_check_split("val_2-b", why, sizeof why), 0);
    cr_assert_eq(ig_check_split("../../ESCAPED", why, sizeof why), -1);
    cr_assert_eq(ig_check_split("a b", why, sizeof why), -1);
    cr_assert_eq(ig_check_path("video path", "clips/a.mp4", why, sizeof why), 0);
    cr_assert_eq(ig_check_path("video path", "/data/a.mp4", why, sizeof why), 0);
    cr_assert_eq(ig_check_path("video path", "a..b/c.mp4", why, sizeof why), 0);
    cr_assert_eq(ig_check_path("video path", "../a.mp4", why, sizeof why), -1);
    cr_assert_eq(ig_check_path("video path", "x/../../a.mp4", why, sizeof why), -1);
    cr_assert_eq(ig_check_path("video path", "a\nb", why, sizeof why), -1);
}

Test(readers, hostile_rows_become_failures_and_the_others_go_on)
{
    put("trainSet.txt", "Bark&../../outside&good&0&3\nBark&ok&good&0&3\nBa\x02rk&x&good&0&3\n");
    put("valSet.txt", "");
    put("testSet.txt", "Bark&t&good&0&3\n");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(m.nfail, 2);
    cr_assert(strstr(m.fails[0].reason, "VideoID"), "%s", m.fails[0].reason);
    for (size_t i = 0; i < m.n; i++)
        cr_assert_null(strstr(m.items[i].video, ".."));
    ig_manifest_free(&m);
    ig_manifest_init(&m);
    put("train_tiny.csv", "abc,1,dog,train\nxyz,2,dog,../../ESCAPED\n");
    put("test_tiny.csv", "s1,1,dog,s1\ns2,1,dog,s2\ns3,1,dog,s3\ns4,1,dog,s4\ns5,1,dog,s5\ns6,1,dog,s6\n"
                         "s7,1,dog,s7\n");
    cr_assert_eq(ig_read_vggsound(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 7);      /* train, test + 6 more splits: 8 */
    cr_assert_eq(m.nfail, 2);  /* the escaping split, and the 9th split */
    cr_assert(strstr(m.fails[0].reason, "[A-Za-z0-9_-]"), "%s", m.fails[0].reason);
    cr_assert(strstr(m.fails[1].reason, "more than 8 splits"), "%s", m.fails[1].reason);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(readers, a_fifo_is_refused_at_once)
{
    char path[512];
    snprintf(path, sizeof path, "%s/trainSet.txt", dir);
    cr_assert_eq(mkfifo(path, 0644), 0);
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), -1);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

/* VGGSound's full train list has 183 730 rows; AVE-like lists with many repeats. Linear readers
 * read them in a fraction of a second (the time is logged, not asserted). */
Test(readers, full_size_lists_are_read_in_linear_time)
{
    size_t n = 183730, cap = n * 48 + 64, len = 0;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "Y%010zu,%zu,\"class, %zu\",train\n", i, i % 300,
                                i % 309);
    put("train.csv", text);
    put("test.csv", "Ztest,1,\"class, 1\",test\n");
    ig_preset p;
    ig_preset_init(&p);
    snprintf(p.subset, sizeof p.subset, "full");
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    double t0 = now();
    cr_assert_eq(ig_read_vggsound(&m, &p, dir, &err), 0, "%s", err.msg);
    double t1 = now();
    cr_assert_eq(m.n, n + 1);
    cr_assert_eq(m.n_classes, 309);
    cr_log_info("vggsound reader: %zu rows in %.3f s", n + 1, t1 - t0);
    fprintf(stderr, "vggsound reader: %zu rows in %.3f s\n", n + 1, t1 - t0);
    ig_manifest_free(&m);
    /* AVE: 80 000 rows, every id listed twice (the repeat rule walks them all) */
    len = 0;
    for (size_t i = 0; i < 80000; i++)
        len += (size_t)snprintf(text + len, cap - len, "Bark&v%zu&good&0&3\n", i / 2);
    put("trainSet.txt", text);
    put("valSet.txt", "");
    put("testSet.txt", "Bark&t&good&0&3\n");
    snprintf(p.class_order, sizeof p.class_order, "first-in-test");
    ig_manifest_init(&m);
    t0 = now();
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), 0, "%s", err.msg);
    t1 = now();
    cr_assert_eq(m.n, 80001);
    cr_assert_eq(m.renamed, 40000);
    cr_assert_str_eq(m.items[1].id, "v0_0_3~2");
    fprintf(stderr, "ave reader: 80001 rows in %.3f s\n", t1 - t0);
    ig_manifest_free(&m);
    ig_preset_free(&p);
    free(text);
}
