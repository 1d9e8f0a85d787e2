/* Unit tests of the trainer's loader (train/loader*.c) on tiny shards made
 * with the store writer and TurboJPEG. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "store/st_index.h"
#include "store/store.h"
#include "kernels/kernels.h"
#include "train/loader.h"

#define BINS 5
#define TF 7

static char g_dir[256];

static const char *const classes3[] = {"a", "b", "c"};
static const char *const classes3x[] = {"a", "b", "x"};

/* JPEG of a w x h image whose content depends on seed. */
static uint8_t *make_jpeg(int w, int h, int seed, size_t *len)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 7 + seed * 31);
            p[1] = (uint8_t)(y * 11 + seed * 17);
            p[2] = (uint8_t)((x + y) * 5 + seed);
        }
    tjhandle tj = tjInitCompress();
    unsigned char *out = NULL;
    unsigned long n = 0;
    cr_assert_eq(tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &out, &n, TJSAMP_420, 90, 0), 0);
    tjDestroy(tj);
    free(rgb);
    uint8_t *copy = malloc(n);
    memcpy(copy, out, n);
    tjFree(out);
    *len = n;
    return copy;
}

/* Writes a shard of n samples (ids "<prefix>-<i>", labels i % 3, F frames). */
static void write_shard(const char *name, const char *split, int n, int F, const char *const *classes,
                        const char *recipe, int base, int corrupt_at)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    st_meta m = {.dataset = "unit", .split = split, .n_classes = 3, .classes = classes, .frames_per_sample = F,
                 .bins = BINS, .frames = TF, .spec_float32 = 0, .recipe_json = recipe};
    cm_err err = {{0}};
    st_writer *w = st_writer_create(path, &m, &err);
    cr_assert(w, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", name, i);
        float spec[BINS * TF];
        for (int k = 0; k < BINS * TF; k++)
            spec[k] = (float)(base + i) + 0.01f * (float)k;
        const uint8_t *jp[4];
        size_t jl[4];
        float ft[4];
        for (int f = 0; f < F; f++) {
            jp[f] = make_jpeg(16 + (base + i) % 5 + f, 12 + (base + i) % 7, base + i + 100 * f, &jl[f]);
            ft[f] = (float)f;
            if (i == corrupt_at && f == 0) {
                uint8_t *bad = (uint8_t *)jp[f];
                memset(bad + 2, 0x00, jl[f] - 2); /* header gone: not a JPEG */
            }
        }
        st_sample s = {.id = id, .label = i % 3, .spec = spec, .jpeg = jp, .jpeg_len = jl, .seg_start = 0,
                       .seg_end = 1, .frame_time = ft};
        cr_assert_eq(st_writer_add(w, &s, &err), 0, "%s", err.msg);
        for (int f = 0; f < F; f++)
            free((void *)jp[f]);
    }
    cr_assert_eq(st_writer_close(w, &err), 0, "%s", err.msg);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Indexes the folder as `store index` does for a folder without plan.json: an
 * index listing every <split>-*.h5 in name order, completed from the shards
 * by st_index_write (counts, versions, digests, ids, the folder check).
 * Returns st_index_write's result (err says why when not 0). */
static int index_folder(const char *dir, cm_err *err)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64)
        if (de->d_name[0] != '.' && cm_has_suffix(de->d_name, ".h5"))
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    cJSON *ix = cJSON_CreateObject(), *sps = cJSON_AddObjectToObject(ix, "splits");
    for (int k = 0; k < n; k++) {
        char split[64];
        snprintf(split, sizeof split, "%.*s", (int)(strrchr(names[k], '-') - names[k]), names[k]);
        cJSON *sp = cJSON_GetObjectItemCaseSensitive(sps, split);
        if (!sp)
            cJSON_AddArrayToObject(sp = cJSON_AddObjectToObject(sps, split), "shards");
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "file", names[k]);
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(sp, "shards"), e);
        free(names[k]);
    }
    char *text = cJSON_Print(ix), path[600];
    snprintf(path, sizeof path, "%s/index.json", dir);
    cr_assert_eq(cm_write_file_atomic(path, text, strlen(text), err), 0);
    free(text);
    cJSON_Delete(ix);
    return st_index_write(dir, err);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/test_train_loader.XXXXXX");
    cr_assert(mkdtemp(g_dir));
    write_shard("train-00000.h5", "train", 7, 2, classes3, "{\"spectro\":{\"normalize\":\"none\"}}", 0, -1);
    write_shard("train-00001.h5", "train", 6, 2, classes3, "{\"spectro\":{\"normalize\":\"none\"}}", 7, -1);
    cm_err err;
    cr_assert_eq(index_folder(g_dir, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(loader, .init = setup, .fini = teardown);

typedef struct pass {
    int nb;
    int B[16];
    int64_t index[16][8];
    int32_t labels[16][8];
    be_crop crops[16][16];
    uint8_t *pix[16];
    size_t pix_bytes[16];
    uint16_t spec[16][8 * BINS * TF];
} pass;

static void run_pass(ld_data *d, be_ctx *be, ld_opts o, uint64_t seed, size_t skip, pass *p, uint64_t after[4])
{
    cm_err err = {{0}};
    ld_loader *l = ld_loader_create(d, be, &o, &err);
    cr_assert(l, "%s", err.msg);
    tr_rng r;
    tr_rng_seed(&r, seed);
    cr_assert_eq(ld_loader_start(l, &r, skip, &err), 0, "%s", err.msg);
    if (after)
        memcpy(after, r.s, sizeof r.s);
    memset(p, 0, sizeof *p);
    ld_host_batch *hb;
    int rc;
    while ((rc = ld_loader_next(l, &hb, &err)) == 1) {
        int k = p->nb++;
        cr_assert(k < 16);
        p->B[k] = hb->B;
        memcpy(p->index[k], hb->index, (size_t)hb->B * sizeof(int64_t));
        memcpy(p->labels[k], hb->labels, (size_t)hb->B * sizeof(int32_t));
        if (o.need_visual) {
            memcpy(p->crops[k], hb->crops, (size_t)hb->B * hb->F * sizeof(be_crop));
            p->pix[k] = malloc(hb->pix_bytes);
            memcpy(p->pix[k], hb->pix, hb->pix_bytes);
            p->pix_bytes[k] = hb->pix_bytes;
        }
        if (o.need_audio)
            memcpy(p->spec[k], hb->spec, hb->spec_bytes);
        if (k % 2)
            usleep(2000); /* vary the timing */
        ld_loader_release(l, hb);
    }
    cr_assert_eq(rc, 0, "%s", err.msg);
    ld_loader_destroy(l);
}

static void free_pass(pass *p)
{
    for (int k = 0; k < 16; k++)
        free(p->pix[k]);
}

static void assert_same(const pass *a, int a0, const pass *b, int b0, int n)
{
    for (int k = 0; k < n; k++) {
        int ka = a0 + k, kb = b0 + k;
        cr_assert_eq(a->B[ka], b->B[kb]);
        cr_assert_arr_eq(a->index[ka], b->index[kb], sizeof(int64_t) * (size_t)a->B[ka]);
        cr_assert_arr_eq(a->labels[ka], b->labels[kb], sizeof(int32_t) * (size_t)a->B[ka]);
        cr_assert_arr_eq(a->crops[ka], b->crops[kb], sizeof(be_crop) * 2 * (size_t)a->B[ka]);
        cr_assert_eq(a->pix_bytes[ka], b->pix_bytes[kb]);
        if (a->pix_bytes[ka])
            cr_assert_arr_eq(a->pix[ka], b->pix[kb], a->pix_bytes[ka]);
        cr_assert_arr_eq(a->spec[ka], b->spec[kb], sizeof(uint16_t) * BINS * TF * (size_t)a->B[ka]);
    }
}

Test(loader, opens_and_counts)
{
    cm_err err = {{0}};
    ld_data *d = ld_data_open(g_dir, "train", &err);
    cr_assert(d, "%s", err.msg);
    cr_assert_eq(ld_data_count(d), 13);
    cr_assert_eq(ld_data_meta(d)->frames_per_sample, 2);
    cr_assert_eq(ld_split_exists(g_dir, "train"), 1);
    cr_assert_eq(ld_split_exists(g_dir, "val"), 0);
    ld_data_close(d);
    cr_assert_null(ld_data_open(g_dir, "val", &err));
    cr_assert(strstr(err.msg, "val"), "%s", err.msg);
}

Test(loader, shuffle_is_seeded_permutation_and_thread_independent)
{
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(1, &err);
    cr_assert(be, "%s", err.msg);
    ld_data *d = ld_data_open(g_dir, "train", &err);
    cr_assert(d, "%s", err.msg);
    ld_opts o = {.batch = 4, .augment = 1, .shuffle = 1, .drop_last = 1, .threads = 1, .need_audio = 1, .need_visual = 1};
    static pass p1, p4, p5, q;
    run_pass(d, be, o, 42, 0, &p1, NULL);
    cr_assert_eq(p1.nb, 3); /* 13 samples, batch 4, last partial dropped */
    int seen[13] = {0};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 4; i++) {
            int64_t x = p1.index[k][i];
            cr_assert(x >= 0 && x < 13);
            cr_assert_eq(seen[x], 0, "index %lld twice", (long long)x);
            seen[x] = 1;
            cr_assert_eq(p1.labels[k][i], (int32_t)((x < 7 ? x : x - 7) % 3));
            /* spectrogram of sample x: first value = x (base + i) */
            uint16_t h = p1.spec[k][i * BINS * TF];
            cr_assert_float_eq(st_f16_to_f32(h), (float)x, 1e-3);
        }
    o.threads = 4;
    o.slots = 3;
    run_pass(d, be, o, 42, 0, &p4, NULL);
    assert_same(&p1, 0, &p4, 0, 3);
    /* resume at batch 1: same batches 1.. */
    run_pass(d, be, o, 42, 1, &p5, NULL);
    cr_assert_eq(p5.nb, 2);
    assert_same(&p1, 1, &p5, 0, 2);
    /* another seed: another order */
    run_pass(d, be, o, 43, 0, &q, NULL);
    int differ = 0;
    for (int k = 0; k < 3; k++)
        differ |= memcmp(p1.index[k], q.index[k], 4 * sizeof(int64_t)) != 0;
    cr_assert(differ);
    free_pass(&p1);
    free_pass(&p4);
    free_pass(&p5);
    free_pass(&q);
    ld_data_close(d);
    be->ops->destroy(be);
}

Test(loader, eval_pass_keeps_order_and_last_batch)
{
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(1, &err);
    ld_data *d = ld_data_open(g_dir, "train", &err);
    cr_assert(d, "%s", err.msg);
    ld_opts o = {.batch = 4, .augment = 0, .shuffle = 0, .drop_last = 0, .threads = 3, .need_audio = 0, .need_visual = 1};
    static pass p;
    uint64_t after[4];
    tr_rng r0;
    tr_rng_seed(&r0, 5);
    run_pass(d, be, o, 5, 0, &p, after);
    cr_assert_arr_eq(after, r0.s, sizeof after); /* no draws without shuffle/augment */
    cr_assert_eq(p.nb, 4);
    cr_assert_eq(p.B[3], 1);
    for (int k = 0; k < 4; k++) {
        size_t off = 0;
        for (int i = 0; i < p.B[k]; i++) {
            int64_t x = p.index[k][i];
            cr_assert_eq(x, k * 4 + i);
            for (int f = 0; f < 2; f++) {
                const be_crop *c = &p.crops[k][i * 2 + f];
                int w = 16 + (int)x % 5 + f, h = 12 + (int)x % 7;
                cr_assert_eq(c->src_w, w);
                cr_assert_eq(c->src_h, h);
                cr_assert_eq(c->x, 0);
                cr_assert_eq(c->y, 0);
                cr_assert_eq(c->w, w);
                cr_assert_eq(c->h, h);
                cr_assert_eq(c->flip, 0);
                cr_assert_eq(c->offset, off);
                off += (size_t)w * h * 3;
            }
        }
        cr_assert_eq(p.pix_bytes[k], off);
    }
    free_pass(&p);
    ld_data_close(d);
    be->ops->destroy(be);
}

Test(loader, random_resized_crop_follows_torchvision_rules)
{
    tr_rng r;
    tr_rng_seed(&r, 7);
    int fallback = 0;
    double amin = 1, amax = 0, rmin = 10, rmax = 0;
    for (int t = 0; t < 5000; t++) {
        int W = 100 + (int)tr_rng_below(&r, 400), H = 100 + (int)tr_rng_below(&r, 400);
        int x, y, w, h;
        ld_random_resized_crop(&r, W, H, &x, &y, &w, &h);
        cr_assert(w >= 1 && h >= 1 && x >= 0 && y >= 0 && x + w <= W && y + h <= H, "%dx%d: %d,%d %dx%d", W, H, x, y, w, h);
        double area = (double)w * h / ((double)W * H), ratio = (double)w / h;
        /* w, h are rounded: allow 2 % on area and ratio for sides >= 100 * sqrt(0.08) */
        int in_range = area >= 0.08 * 0.97 && area <= 1.0 && ratio >= 0.75 * 0.97 && ratio <= 4.0 / 3 * 1.03;
        int centre = x == (W - w) / 2 && y == (H - h) / 2;
        cr_assert(in_range || centre, "%dx%d: %d,%d %dx%d", W, H, x, y, w, h);
        if (!in_range)
            fallback++;
        amin = fmin(amin, area), amax = fmax(amax, area), rmin = fmin(rmin, ratio), rmax = fmax(rmax, ratio);
    }
    cr_assert(fallback < 50, "%d fallbacks", fallback);
    cr_assert(amin < 0.1 && amax > 0.95 && rmin < 0.8 && rmax > 1.25, "%g %g %g %g", amin, amax, rmin, rmax);
    /* an image far too tall for any ratio in [3/4, 4/3] at small scale: the fallback keeps
     * the full width and h = round(w / (3/4)), centred */
    int fb = 0;
    for (int t = 0; t < 200; t++) {
        int x, y, w, h;
        ld_random_resized_crop(&r, 3, 1000, &x, &y, &w, &h);
        cr_assert(x >= 0 && y >= 0 && x + w <= 3 && y + h <= 1000);
        if (w == 3 && h == 4 && x == 0 && y == 498)
            fb++;
    }
    cr_assert(fb > 100, "%d", fb);
}

Test(loader, mismatched_shards_are_refused)
{
    /* in one folder: the folder is refused as a whole (store/st_index.h) */
    write_shard("val-00000.h5", "val", 3, 2, classes3, "{\"spectro\":{\"normalize\":\"none\"}}", 0, -1);
    write_shard("val-00001.h5", "val", 3, 2, classes3x, "{\"spectro\":{\"normalize\":\"none\"}}", 0, -1);
    cm_err err = {{0}};
    cr_assert_eq(index_folder(g_dir, &err), 1);
    cr_assert(strstr(err.msg, "val-00001.h5") && strstr(err.msg, "class"), "%s", err.msg);
    /* two folders (the training data and another recipe's): compared by the loader */
    char other[300], path[400];
    snprintf(other, sizeof other, "%s/other", g_dir);
    cr_assert_eq(cm_mkdirs(other, &err), 0);
    write_shard("other/test-00000.h5", "test", 3, 2, classes3, "{\"spectro\":{\"normalize\":\"clip\"}}", 0, -1);
    cr_assert_eq(index_folder(other, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/val-00000.h5", g_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/val-00001.h5", g_dir);
    unlink(path);
    cr_assert_eq(index_folder(g_dir, &err), 0, "%s", err.msg);
    ld_data *tr = ld_data_open(g_dir, "train", &err);
    ld_data *te = ld_data_open(other, "test", &err);
    cr_assert(tr && te, "%s", err.msg);
    cr_assert_eq(ld_data_compatible(tr, te, &err), -1);
    cr_assert(strstr(err.msg, "recipe"), "%s", err.msg);
    char *a = ld_data_identity(tr), *b = ld_data_identity(te);
    cr_assert_eq(ld_identity_compare(a, a, &err), 0);
    cr_assert_eq(ld_identity_compare(a, b, &err), -1);
    cr_assert(strstr(err.msg, "recipe"), "%s", err.msg);
    cr_assert_eq(ld_identity_same_content(a, a, &err), 0);
    cr_assert_eq(ld_identity_same_content(a, b, &err), -1); /* other folders: other content */
    cr_assert(strstr(err.msg, "trained on other data"), "%s", err.msg);
    cr_assert_eq(ld_recipe_standardized(ld_data_meta(te)->recipe_json), 1);
    cr_assert_eq(ld_recipe_standardized(ld_data_meta(tr)->recipe_json), 0);
    free(a);
    free(b);
    ld_data_close(tr);
    ld_data_close(te);
}

Test(loader, corrupt_jpeg_names_the_sample)
{
    write_shard("test-00000.h5", "test", 5, 2, classes3, "{\"spectro\":{\"normalize\":\"none\"}}", 0, 3);
    cm_err err = {{0}};
    cr_assert_eq(index_folder(g_dir, &err), 0, "%s", err.msg);
    be_ctx *be = be_cpu_create(1, &err);
    ld_data *d = ld_data_open(g_dir, "test", &err);
    cr_assert(d, "%s", err.msg);
    ld_opts o = {.batch = 2, .augment = 0, .shuffle = 0, .drop_last = 0, .threads = 2, .need_audio = 1, .need_visual = 1};
    ld_loader *l = ld_loader_create(d, be, &o, &err);
    tr_rng r;
    tr_rng_seed(&r, 1);
    cr_assert_eq(ld_loader_start(l, &r, 0, &err), 0);
    ld_host_batch *hb;
    cr_assert_eq(ld_loader_next(l, &hb, &err), 1);
    ld_loader_release(l, hb);
    cr_assert_eq(ld_loader_next(l, &hb, &err), -1);
    cr_assert(strstr(err.msg, "test-00000.h5-3") && strstr(err.msg, "JPEG"), "%s", err.msg);
    ld_loader_destroy(l);
    ld_data_close(d);
    be->ops->destroy(be);
}

/* The device side's two slots (double buffering) on the CPU backend: two
 * batches staged ahead and prepared in order, a slot refilled once its batch
 * was used; misuse (a third batch staged, a batch prepared out of order) is
 * refused with a message. */
Test(loader_device, staged_slots_in_order)
{
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(1, &err);
    cr_assert_not_null(be, "%s", err.msg);
    st_meta m = {.dataset = "t", .split = "train", .n_classes = 3, .classes = classes3, .frames_per_sample = 1,
                 .bins = BINS, .frames = TF, .spec_float32 = 1, .recipe_json = "{\"normalize\": \"clip\"}"};
    ld_device *dv = ld_device_create(be, &m, 2, 8, 1, 0, &err);
    cr_assert_not_null(dv, "%s", err.msg);
    float spec[3][2 * BINS * TF];
    int32_t labels[3][2] = {{0, 1}, {2, 0}, {1, 2}};
    ld_host_batch hb[3];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 2 * BINS * TF; i++)
            spec[k][i] = (float)(k * 1000 + i);
        hb[k] = (ld_host_batch){.B = 2, .F = 1, .number = k, .spec = spec[k], .labels = labels[k]};
    }
    tr_batch out;
    cr_assert_eq(ld_device_stage(dv, &hb[0], &err), 0, "%s", err.msg);
    cr_assert_eq(ld_device_stage(dv, &hb[1], &err), 0, "%s", err.msg);
    cr_assert_eq(ld_device_stage(dv, &hb[2], &err), -1, "a third batch has no free slot");
    cr_assert(strstr(err.msg, "slot") != NULL, "%s", err.msg);
    cr_assert_eq(ld_device_prepare(dv, &hb[1], &out, &err), -1, "batch 1 is not the oldest staged");
    cr_assert(strstr(err.msg, "not staged next") != NULL, "%s", err.msg);
    for (int k = 0; k < 3; k++) {
        if (k == 2)
            cr_assert_eq(ld_device_stage(dv, &hb[2], &err), 0, "%s", err.msg); /* refills batch 0's slot */
        cr_assert_eq(ld_device_prepare(dv, &hb[k], &out, &err), 0, "%s", err.msg);
        cr_assert_eq(out.B, 2);
        cr_assert_null(out.visual);
        cr_assert_eq(memcmp(out.labels, labels[k], sizeof labels[k]), 0, "labels of batch %d", k);
        cr_assert_eq(memcmp(out.audio, spec[k], sizeof spec[k]), 0, "spectrograms of batch %d", k);
    }
    ld_device_destroy(dv);
    be->ops->destroy(be);
}
