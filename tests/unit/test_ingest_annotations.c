/* ingest: every byte of an annotation file accounted for (issue 16): bad rows
 * (NUL bytes, control characters, invalid UTF-8, times that are not plain
 * decimals, ids over the shard format's limit) are one failure each and the
 * rows after them are read; labels trimmed; case variants noted. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "ingest/ig_text.h"
#include "ingest/ingest.h"

static char dir[256];

/* name <- n bytes of text (NUL bytes included) */
static void putn(const char *name, const char *text, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cm_err err;
    cr_assert_eq(cm_write_file_atomic(path, text, n, &err), 0, "%s", err.msg);
}

#define PUT(name, lit) putn(name, lit, sizeof lit - 1)

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/c2kd_test_annot_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(annotations, .init = setup, .fini = teardown);

static const char *fail_with(const ig_manifest *m, const char *needle)
{
    for (size_t i = 0; i < m->nfail; i++)
        if (strstr(m->fails[i].reason, needle))
            return m->fails[i].reason;
    return NULL;
}

static int has_id(const ig_manifest *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->items[i].id, id))
            return 1;
    return 0;
}

/* ---- the line walker ---- */

Test(annotations, lines_count_every_line_and_flag_the_bad_ones)
{
    /* BOM, blank lines (counted), CRLF, a NUL line, a control character, invalid UTF-8
     * (overlong, surrogate, over U+10FFFF, cut sequence), valid multi-byte text, no final LF */
    PUT("t.txt", "\xef\xbb\xbf" "one\n\n  \t\ntwo\r\nth\0ree\n\0\0\0\nfo\x01ur\nfi\xc0\xafve\nsi\xed\xa0\x80x\n"
                 "se\xf4\x90\x80\x80ven\nei\xe2\x82ght\nn\xc3\xa9uf \xe2\x82\xac \xf0\x9f\x90\xb6\na\rb\nlast");
    char path[512];
    snprintf(path, sizeof path, "%s/t.txt", dir);
    ig_lines t;
    cm_err err;
    cr_assert_eq(ig_lines_open(&t, path, IG_ANNOTATION_MAX, &err), 0, "%s", err.msg);
    static const struct {
        int lineno;
        const char *text, *bad;
    } want[] = {{1, "one", NULL},
                {4, "two", NULL},
                {5, "th", "NUL byte at column 3"},
                {6, "", "NUL byte at column 1"},
                {7, "fo", "control character 0x01 at column 3"},
                {8, "fi", "invalid UTF-8 (byte 0xc0) at column 3"},
                {9, "si", "invalid UTF-8 (byte 0xed) at column 3"},
                {10, "se", "invalid UTF-8 (byte 0xf4) at column 3"},
                {11, "ei", "invalid UTF-8 (byte 0xe2) at column 3"},
                {12, "n\xc3\xa9uf \xe2\x82\xac \xf0\x9f\x90\xb6", NULL},
                {13, "a", "control character 0x0d at column 2"},
                {14, "last", NULL}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char *l = ig_lines_next(&t);
        cr_assert_not_null(l, "line %d missing", want[i].lineno);
        cr_expect_eq(t.lineno, want[i].lineno);
        cr_expect_str_eq(l, want[i].text, "line %d", want[i].lineno);
        if (want[i].bad)
            cr_expect(t.bad && !strcmp(t.bad, want[i].bad), "line %d: %s", want[i].lineno, t.bad ? t.bad : "ok");
        else
            cr_expect_null(t.bad, "line %d: %s", want[i].lineno, t.bad);
    }
    cr_expect_null(ig_lines_next(&t));
    ig_lines_close(&t);
    /* a file over the limit is refused, not read in part */
    cr_assert_eq(ig_lines_open(&t, path, 10, &err), -1);
    cr_assert(strstr(err.msg, "more than the 10 this file may hold"), "%s", err.msg);
}

Test(annotations, trim_takes_spaces_and_tabs_off_both_ends_only)
{
    char a[] = " \t Dog  barking \t ", b[] = "   ", c[] = "x";
    cr_assert_str_eq(ig_trim(a), "Dog  barking");
    cr_assert_str_eq(ig_trim(b), "");
    cr_assert_str_eq(ig_trim(c), "x");
}

/* ---- item 3: a bad byte fails its row only, in every reader ---- */

Test(annotations, ave_nul_row_is_one_failure_and_the_rows_after_it_are_read)
{
    PUT("trainSet.txt", "Bark&a&good&0&3\nBark&b\0b&good&0&3\nBark&c&good&0&3\n\0\0\0\0\nBark&d&good&1&2\n");
    PUT("valSet.txt", "Bark&v\xff&good&0&3\nBark&w&good&0&3\n");
    PUT("testSet.txt", "Ba\x7frk&t&good&0&3\nBark&u&good&0&3");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 5);
    cr_assert_eq(m.nfail, 4);
    cr_assert(has_id(&m, "c_0_3") && has_id(&m, "d_1_2") && has_id(&m, "w_0_3") && has_id(&m, "u_0_3"));
    cr_assert_not_null(fail_with(&m, "trainSet.txt line 2: NUL byte at column 7"));
    cr_assert_not_null(fail_with(&m, "trainSet.txt line 4: NUL byte at column 1"));
    cr_assert_not_null(fail_with(&m, "valSet.txt line 1: invalid UTF-8 (byte 0xff) at column 7"));
    cr_assert_not_null(fail_with(&m, "testSet.txt line 1: control character 0x7f at column 3"));
    /* the id of the failure line: the VideoID when it lies whole before the bad byte */
    cr_assert_str_eq(m.fails[0].id, "-");
    cr_assert_str_eq(m.fails[0].split, "train");
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(annotations, cremad_vggsound_and_tsv_nul_rows_fail_alone)
{
    PUT("train.csv", "1001_A_NEU_XX,NEU\n1002_A_H\0P_XX,HAP\n1003_A_SAD_XX,SAD\n");
    PUT("test.csv", "1004_A_NEU_XX,N\0EU\n1005_A_NEU_XX,NEU\n");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_cremad(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 3);
    cr_assert_eq(m.nfail, 2);
    cr_assert(has_id(&m, "1003_A_SAD_XX") && has_id(&m, "1005_A_NEU_XX"));
    cr_assert_not_null(fail_with(&m, "train.csv line 2: NUL byte at column 9"));
    cr_assert_not_null(fail_with(&m, "test.csv line 1: NUL byte"));
    cr_assert_str_eq(m.fails[1].id, "1004_A_NEU_XX"); /* whole before the NUL */
    ig_manifest_free(&m);

    PUT("train_tiny.csv", "aaa,1,dog,train\nbbb,2,d\0g,train\nccc,3,dog,train\n");
    PUT("test_tiny.csv", "ddd,4,cat,test\n");
    ig_manifest_init(&m);
    cr_assert_eq(ig_read_vggsound(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 3);
    cr_assert_eq(m.nfail, 1);
    cr_assert(has_id(&m, "ccc_3"));
    cr_assert_not_null(fail_with(&m, "train_tiny.csv line 2: NUL byte at column 8"));
    cr_assert_str_eq(m.fails[0].id, "bbb");
    ig_manifest_free(&m);

    PUT("m.tsv", "# a comment with a NUL \0 is a comment\nid\taudio\tvideo\tlabel\tsplit\tstart\tend\n"
                 "a\t\ta.mp4\tdog\ttrain\t-\t-\nb\t\tb\0.mp4\tdog\ttrain\t-\t-\nc\t\tc.mp4\tdog\ttrain\t0\t1\n");
    char path[512];
    snprintf(path, sizeof path, "%s/m.tsv", dir);
    ig_manifest_init(&m);
    cr_assert_eq(ig_read_tsv(&m, &p, path, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(m.nfail, 1);
    cr_assert(has_id(&m, "c"));
    cr_assert_not_null(fail_with(&m, "manifest line 4: NUL byte at column 5"));
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(annotations, a_nul_in_a_preset_or_a_classes_file_is_an_error_naming_the_line)
{
    /* blank and comment lines counted: the error names the file's own line number */
    PUT("p.conf", "# preset\n\ndataset = x\n\nframes = 3\0 junk\nduration = 10\n");
    char path[512];
    snprintf(path, sizeof path, "%s/p.conf", dir);
    ig_preset p;
    ig_preset_init(&p);
    cm_err err;
    cr_assert_eq(ig_preset_load(&p, path, &err), -1);
    cr_assert(strstr(err.msg, "line 5: NUL byte at column 11"), "%s", err.msg);
    ig_preset_free(&p);
    PUT("q.conf", "\n\n# x\nframes 3\n");
    snprintf(path, sizeof path, "%s/q.conf", dir);
    ig_preset_init(&p);
    cr_assert_eq(ig_preset_load(&p, path, &err), -1);
    cr_assert(strstr(err.msg, "line 4"), "%s", err.msg);
    ig_preset_free(&p);

    PUT("m.tsv", "a\t\ta.mp4\tdog\ttrain\t-\t-\n");
    PUT("classes.txt", "cat\nd\0og\n");
    char mpath[512], cpath[512];
    snprintf(mpath, sizeof mpath, "%s/m.tsv", dir);
    snprintf(cpath, sizeof cpath, "%s/classes.txt", dir);
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cr_assert_eq(ig_read_tsv(&m, &p, mpath, NULL, cpath, &err), -1);
    cr_assert(strstr(err.msg, "classes.txt line 2: NUL byte at column 2"), "%s", err.msg);
    ig_manifest_free(&m);
    /* class names are trimmed as labels are */
    PUT("classes.txt", " cat \ndog\t\n");
    ig_manifest_init(&m);
    cr_assert_eq(ig_read_tsv(&m, &p, mpath, NULL, cpath, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n_classes, 2);
    cr_assert_str_eq(m.classes[0], "cat");
    cr_assert_str_eq(m.classes[1], "dog");
    cr_assert_eq(m.items[0].label_idx, 1);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

/* ---- item 10: one id limit (ST_ID_MAX) for ingest, the writer and the reader ---- */

Test(annotations, id_limit_is_the_shard_formats)
{
    char id[ST_ID_MAX + 2], why[160];
    memset(id, 'x', sizeof id - 1);
    id[ST_ID_MAX] = '\0';
    cr_assert_eq(ig_check_id("id", id, why, sizeof why), 0);
    id[ST_ID_MAX] = 'x';
    id[ST_ID_MAX + 1] = '\0';
    cr_assert_eq(ig_check_id("id", id, why, sizeof why), -1);
    cr_assert(strstr(why, "longer than 255 bytes (256)"), "%s", why);
    cr_assert_eq(ig_check_id("id", "a/b", why, sizeof why), -1); /* still a file-name-safe name */
    /* an AVE row whose id (VideoID + canonical times) is over the limit fails alone */
    char row[1024], vid[IG_NAME_MAX + 1];
    memset(vid, 'v', IG_NAME_MAX);
    vid[IG_NAME_MAX] = '\0';
    snprintf(row, sizeof row,
             "Bark&%s&good&0&3\n"
             "Bark&%s&good&0.0000000000000000000000001234567891234567&1.2345678901234567\n"
             "Bark&ok&good&0&3\n",
             vid, vid);
    putn("trainSet.txt", row, strlen(row));
    PUT("valSet.txt", "");
    PUT("testSet.txt", "Bark&t&good&0&3\n");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 3);
    cr_assert_eq(m.nfail, 1);
    cr_assert_not_null(fail_with(&m, "trainSet.txt line 2: id longer than 255 bytes (262)"), "%s",
                       m.fails[0].reason);
    cr_assert_str_eq(m.fails[0].id, vid);
    for (size_t i = 0; i < m.n; i++)
        cr_assert_leq(strlen(m.items[i].id), ST_ID_MAX);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

/* ---- times: strict decimals, one canonical text in the ids ---- */

Test(annotations, times_are_strict_and_canonical_in_ids)
{
    PUT("trainSet.txt", "Bark&v&good&0&3\nBark&v&good&0.0&3\nBark&v&good&00&3.000\nBark&w&good&0x1&3\n"
                        "Bark&w&good& 0.5&3\nBark&w&good&1e3&3\nBark&w&good&inf&3\nBark&w&good&0&nan\n"
                        "Bark&w&good&-0&3\nBark&x&good&0.50&2.25\n");
    PUT("valSet.txt", "");
    PUT("testSet.txt", "Bark&t&good&0&3\n");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_ave(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 5);
    cr_assert_str_eq(m.items[0].id, "v_0_3");
    cr_assert_str_eq(m.items[1].id, "v_0_3~2");
    cr_assert_str_eq(m.items[2].id, "v_0_3~3");
    cr_assert_str_eq(m.items[3].id, "x_0.5_2.25");
    cr_assert_eq(m.items[3].start, 0.5);
    cr_assert_eq(m.items[3].end, 2.25);
    cr_assert_eq(m.renamed, 2);
    cr_assert_eq(m.nfail, 6);
    static const char *const want[] = {"line 4: start \"0x1\"", "line 5: start \" 0.5\"", "line 6: start \"1e3\"",
                                       "line 7: start \"inf\"", "line 8: end \"nan\"", "line 9: start \"-0\""};
    for (size_t i = 0; i < 6; i++)
        cr_assert_not_null(fail_with(&m, want[i]), "%s", want[i]);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

/* ---- labels: trimmed; case variants are a note, or named when a class list refuses them ---- */

Test(annotations, labels_trimmed_and_case_variants_noted)
{
    PUT("train_tiny.csv", "a,1,\"Dog \",train\nb,1, Dog,train\nc,1,dog,train\nd,1,DOG,train\ne,1,cat,train\n");
    PUT("test_tiny.csv", "f,1,\tDog,test\n");
    ig_preset p;
    ig_preset_init(&p);
    ig_manifest m;
    ig_manifest_init(&m);
    cm_err err;
    cr_assert_eq(ig_read_vggsound(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 6);
    cr_assert_eq(m.nfail, 0);
    cr_assert_eq(m.n_classes, 4); /* sorted: DOG Dog cat dog */
    cr_assert_str_eq(m.classes[1], "Dog");
    cr_assert_eq(m.nnotes, 1);
    cr_assert_str_eq(m.notes[0], "labels that differ only in case are separate classes: \"DOG\" (1 row), "
                                 "\"Dog\" (3 rows), \"dog\" (1 row)");
    ig_manifest_free(&m);
    /* a preset class list: a label not in it fails, naming the listed spelling */
    cr_assert_eq(ig_preset_set(&p, "classes", "Dog | cat", &err), 0);
    cr_assert_eq(ig_preset_set(&p, "class_order", "preset", &err), 0);
    ig_manifest_init(&m);
    cr_assert_eq(ig_read_vggsound(&m, &p, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 4);
    cr_assert_eq(m.nfail, 2);
    cr_assert_not_null(fail_with(&m, "unknown label \"dog\" (the class list has \"Dog\")"));
    cr_assert_not_null(fail_with(&m, "unknown label \"DOG\" (the class list has \"Dog\")"));
    cr_assert_eq(m.nnotes, 0);
    ig_manifest_free(&m);
    ig_preset_free(&p);
}

Test(annotations, utf8_sequences_at_their_boundaries)
{
    static const struct {
        const char *s;
        size_t len;
    } cases[] = {{"\x7f", 1},         {"\xc2\x80", 2},         {"\xc1\xbf", 0},         {"\xdf\xbf", 2},
                 {"\xe0\xa0\x80", 3}, {"\xe0\x9f\xbf", 0},     {"\xed\x9f\xbf", 3},     {"\xed\xa0\x80", 0},
                 {"\xee\x80\x80", 3}, {"\xef\xbf\xbf", 3},     {"\xf0\x90\x80\x80", 4}, {"\xf0\x8f\xbf\xbf", 0},
                 {"\xf4\x8f\xbf\xbf", 4}, {"\xf4\x90\x80\x80", 0}, {"\xf5\x80\x80\x80", 0}, {"\x80", 0},
                 {"\xe2\x82", 0},     {"\xc3\x28", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        cr_expect_eq(ig_utf8_seq((const unsigned char *)cases[i].s, strlen(cases[i].s)), cases[i].len, "case %zu",
                     i);
}
