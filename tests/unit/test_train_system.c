/* train/system.c: failed steps change nothing, checkpoint round trips, the
 * `which` mapping, bad batches. (The numerical proof against PyTorch is
 * tests/oracle/test_train_step.py.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/system.h"
#include "train/system_test.h"

typedef struct fixture {
    be_ctx *be;
    tr_system *s;
    tr_config c;
    float *audio, *visual;
    int32_t *labels;
    size_t na, nv;
} fixture;

static void setup(fixture *f, tr_method m, uint64_t seed)
{
    cm_err err = {{0}};
    f->be = be_cpu_create(1, &err);
    cr_assert(f->be, "%s", err.msg);
    tr_config_default(&f->c);
    f->c.method = m;
    f->c.width = 4;
    f->c.n_classes = 3;
    f->c.spec_bins = 32;
    f->c.spec_frames = 40;
    f->c.image_size = 32;
    f->c.max_batch = 4;
    f->s = tr_system_create(f->be, &f->c, seed, &err);
    cr_assert(f->s, "%s", err.msg);
    f->na = 4 * 32 * 40;
    f->nv = 4 * 3 * 32 * 32;
    f->audio = f->be->ops->alloc(f->be, f->na * sizeof(float));
    f->visual = f->be->ops->alloc(f->be, f->nv * sizeof(float));
    f->labels = f->be->ops->alloc(f->be, 4 * sizeof(int32_t));
    float *h = malloc(f->nv * sizeof(float));
    for (size_t i = 0; i < f->nv; i++)
        h[i] = (float)sin((double)i * 0.37) + 0.1f * (float)(i % 7);
    f->be->ops->to_device(f->be, f->audio, h, f->na * sizeof(float));
    f->be->ops->to_device(f->be, f->visual, h, f->nv * sizeof(float));
    int32_t y[4] = {0, 1, 2, 1};
    f->be->ops->to_device(f->be, f->labels, y, sizeof y);
    f->be->ops->sync(f->be);
    free(h);
}

static void teardown(fixture *f)
{
    f->be->ops->free(f->be, f->audio);
    f->be->ops->free(f->be, f->visual);
    f->be->ops->free(f->be, f->labels);
    tr_system_destroy(f->s);
    f->be->ops->destroy(f->be);
}

/* All tensors (parameters and running statistics) on the host, concatenated. */
static float *snapshot(fixture *f, size_t *n)
{
    size_t tot = 0;
    for (size_t i = 0; i < tr_system_num_tensors(f->s); i++) {
        size_t c;
        tr_system_tensor(f->s, i, NULL, &c, NULL, NULL);
        tot += c;
    }
    float *h = malloc(tot * sizeof(float)), *p = h;
    for (size_t i = 0; i < tr_system_num_tensors(f->s); i++) {
        size_t c;
        float *v;
        tr_system_tensor(f->s, i, NULL, &c, &v, NULL);
        f->be->ops->to_host(f->be, p, v, c * sizeof(float));
        p += c;
    }
    *n = tot;
    return h;
}

static tr_batch batch(fixture *f, int B)
{
    tr_batch b = {.B = B, .audio = f->audio, .visual = f->visual, .labels = f->labels};
    return b;
}

Test(train_system, nan_loss_names_step_and_changes_nothing)
{
    fixture f;
    setup(&f, TR_C2KD, 1);
    cm_err err = {{0}};
    tr_batch b = batch(&f, 4);
    tr_stats st;
    cr_assert_eq(tr_system_step(f.s, &b, 0.01f, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.n_terms, 8);
    cr_assert(st.kept >= 0 && st.kept <= 1);
    size_t n0, n1;
    float *before = snapshot(&f, &n0);
    float nan = NAN;
    f.be->ops->to_device(f.be, f.visual + 5, &nan, sizeof nan);
    f.be->ops->sync(f.be);
    cr_assert_eq(tr_system_step(f.s, &b, 0.01f, &st, &err), -1);
    cr_assert(strstr(err.msg, "step 2") && strstr(err.msg, "non-finite"), "%s", err.msg);
    float *after = snapshot(&f, &n1);
    cr_assert_eq(n0, n1);
    cr_assert_eq(memcmp(before, after, n0 * sizeof(float)), 0, "a failed step changed parameters or running statistics");
    cr_assert_eq(tr_system_steps(f.s), 1);
    free(before);
    free(after);
    teardown(&f);
}

Test(train_system, bad_batches)
{
    fixture f;
    setup(&f, TR_C2KD, 1);
    cm_err err = {{0}};
    tr_batch b = batch(&f, 5);
    cr_assert_eq(tr_system_step(f.s, &b, 0.01f, NULL, &err), -1);
    cr_assert(strstr(err.msg, "batch of 5"), "%s", err.msg);
    b = batch(&f, 1);
    cr_assert_eq(tr_system_step(f.s, &b, 0.01f, NULL, &err), -1);
    cr_assert(strstr(err.msg, "at least 2"), "%s", err.msg);
    b = batch(&f, 4);
    b.audio = NULL;
    cr_assert_eq(tr_system_step(f.s, &b, 0.01f, NULL, &err), -1);
    cr_assert(strstr(err.msg, "audio"), "%s", err.msg);
    teardown(&f);
}

Test(train_system, bad_configs)
{
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(1, &err);
    tr_config c;
    tr_config_default(&c);
    c.n_classes = 3;
    c.student_depth = 34;
    cr_assert_null(tr_system_create(be, &c, 1, &err));
    cr_assert(strstr(err.msg, "student depth 34"), "%s", err.msg);
    c.student_depth = 18;
    c.teacher_depth = 101;
    cr_assert_null(tr_system_create(be, &c, 1, &err));
    cr_assert(strstr(err.msg, "teacher depth 101"), "%s", err.msg);
    c.teacher_depth = 50;
    c.n_classes = 1;
    cr_assert_null(tr_system_create(be, &c, 1, &err));
    c.n_classes = 3;
    c.student = c.teacher = TR_AUDIO;
    cr_assert_null(tr_system_create(be, &c, 1, &err));
    be->ops->destroy(be);
}

Test(train_system, checkpoint_round_trip_and_resume)
{
    /* Two steps, save, two more steps; a second system loading the checkpoint
     * and doing the same two steps ends with identical values. */
    fixture a, b;
    setup(&a, TR_C2KD, 1);
    setup(&b, TR_C2KD, 99);
    cm_err err = {{0}};
    char path[] = "/tmp/test_train_system_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    tr_batch ba = batch(&a, 4), bb = batch(&b, 4);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tr_system_step(a.s, &ba, 0.05f, NULL, &err), 0, "%s", err.msg);
    tr_position pos = {.epoch = 3, .step = 2, .seed = 7, .rng_state = {1, 2, 3, 4}, .best_val = 0.5, .best_epoch = 2, .best_test = 0.25};
    cr_assert_eq(tr_checkpoint_save(a.s, path, &pos, "{\"recipe\":1}", &err), 0, "%s", err.msg);
    tr_position got;
    cr_assert_eq(tr_checkpoint_load(b.s, path, NULL, 1, &got, &err), 0, "%s", err.msg);
    cr_assert_eq(got.epoch, 3);
    cr_assert_eq(got.step, 2);
    cr_assert_eq(got.rng_state[3], 4);
    cr_assert_eq(got.best_epoch, 2);
    cr_assert_eq(tr_system_steps(b.s), 2);
    char *cj, *rj;
    cr_assert_eq(tr_checkpoint_read_meta(path, &cj, &rj, &err), 0);
    cr_assert(cj && strstr(cj, "\"width\":4"));
    cr_assert_str_eq(rj, "{\"recipe\":1}");
    free(cj);
    free(rj);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tr_system_step(a.s, &ba, 0.05f, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(tr_system_step(b.s, &bb, 0.05f, NULL, &err), 0, "%s", err.msg);
    }
    size_t na, nb;
    float *va = snapshot(&a, &na), *vb = snapshot(&b, &nb);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(va, vb, na * sizeof(float)), 0, "resumed run differs from the uninterrupted one");
    free(va);
    free(vb);
    unlink(path);
    teardown(&a);
    teardown(&b);
}

Test(train_system, which_maps_groups)
{
    /* "teacher=student" loads the file's student into this run's teacher. */
    fixture a, b;
    setup(&a, TR_C2KD, 1);
    setup(&b, TR_KD, 2);
    cm_err err = {{0}};
    char path[] = "/tmp/test_train_which_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    /* a's student sees visual input; b's teacher is audio: shapes differ -> clear error */
    cr_assert_eq(tr_checkpoint_save(a.s, path, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(tr_checkpoint_load(b.s, path, "teacher=student", 0, NULL, &err), -1);
    cr_assert(strstr(err.msg, "student/conv1.weight: shape [4, 3, 7, 7] in the file, [4, 1, 7, 7] expected"), "%s", err.msg);
    cr_assert_eq(tr_checkpoint_load(b.s, path, "teacher=nothing", 0, NULL, &err), -1);
    cr_assert(strstr(err.msg, "no group 'nothing'"), "%s", err.msg);
    cr_assert_eq(tr_checkpoint_load(b.s, path, "proxy", 0, NULL, &err), -1);
    cr_assert(strstr(err.msg, "no network 'proxy'"), "%s", err.msg);
    /* same modality: a's teacher (audio) into b's teacher (audio) */
    cr_assert_eq(tr_checkpoint_load(b.s, path, "teacher", 0, NULL, &err), 0, "%s", err.msg);
    const char *name;
    size_t ca, cb;
    float *pa, *pb;
    for (size_t i = 0; i < tr_system_num_tensors(a.s); i++) {
        tr_system_tensor(a.s, i, &name, &ca, &pa, NULL);
        if (strcmp(name, "teacher/layer2.0.conv1.weight") == 0)
            break;
    }
    for (size_t i = 0; i < tr_system_num_tensors(b.s); i++) {
        tr_system_tensor(b.s, i, &name, &cb, &pb, NULL);
        if (strcmp(name, "teacher/layer2.0.conv1.weight") == 0)
            break;
    }
    cr_assert_eq(ca, cb);
    float *ha = malloc(ca * sizeof(float)), *hb = malloc(cb * sizeof(float));
    a.be->ops->to_host(a.be, ha, pa, ca * sizeof(float));
    b.be->ops->to_host(b.be, hb, pb, cb * sizeof(float));
    cr_assert_eq(memcmp(ha, hb, ca * sizeof(float)), 0);
    free(ha);
    free(hb);
    unlink(path);
    teardown(&a);
    teardown(&b);
}

/* Moments of the tensors whose names pass `want` (host copies): count, mean,
 * standard deviation, fraction within one standard deviation of `centre`. */
typedef struct moments {
    size_t n;
    double mean, sd, within1;
} moments;

static moments tensor_moments(fixture *f, int (*want)(const char *), double centre, double sd_ref)
{
    moments m = {0};
    double s = 0, s2 = 0;
    size_t in1 = 0;
    for (size_t i = 0; i < tr_system_num_tensors(f->s); i++) {
        const char *name;
        size_t c;
        float *v;
        tr_system_tensor(f->s, i, &name, &c, &v, NULL);
        if (!want(name))
            continue;
        float *h = malloc(c * sizeof(float));
        f->be->ops->to_host(f->be, h, v, c * sizeof(float));
        for (size_t j = 0; j < c; j++) {
            s += h[j];
            s2 += (double)h[j] * h[j];
            in1 += fabs(h[j] - centre) <= sd_ref;
        }
        free(h);
        m.n += c;
    }
    m.mean = s / (double)m.n;
    m.sd = sqrt((s2 - s * s / (double)m.n) / (double)(m.n - 1));
    m.within1 = (double)in1 / (double)m.n;
    return m;
}

static int resnet_bn_weight(const char *n)
{
    return (!strncmp(n, "student/", 8) || !strncmp(n, "teacher/", 8)) &&
           (strstr(n, "bn") || strstr(n, "downsample.1.")) && strstr(n, ".weight");
}

static int resnet_bn_bias(const char *n)
{
    return (!strncmp(n, "student/", 8) || !strncmp(n, "teacher/", 8)) &&
           (strstr(n, "bn") || strstr(n, "downsample.1.")) && strstr(n, ".bias");
}

static int proxy_conv(const char *n)
{
    return strstr(n, "_proxy/conv.weight") != NULL;
}

static int proxy_bn_weight(const char *n)
{
    return strstr(n, "_proxy/bn.weight") != NULL;
}

/* The authors' initialisation (backbone.py, module.py): ResNet BN weights
 * N(1, 0.02), biases 0; the proxies' 1x1 convolution Kaiming normal fan_out,
 * std sqrt(2 / C); their BN 1. Sample mean and standard deviation within 5
 * standard errors of the formula's, and the share within one standard
 * deviation that of a normal (0.6827; a uniform law gives 0.577). */
Test(train_system, initialisation_follows_the_authors)
{
    fixture f;
    cm_err err = {{0}};
    f.be = be_cpu_create(1, &err);
    cr_assert(f.be, "%s", err.msg);
    tr_config_default(&f.c);
    f.c.method = TR_C2KD;
    f.c.depth = 50; /* many BN channels; layer3: 16 w channels */
    f.c.width = 16;
    f.c.n_classes = 3;
    f.c.spec_bins = 32;
    f.c.spec_frames = 40;
    f.c.image_size = 32;
    f.c.max_batch = 2;
    f.s = tr_system_create(f.be, &f.c, 7, &err);
    cr_assert(f.s, "%s", err.msg);
    const double p1 = 0.682689492;
    moments w = tensor_moments(&f, resnet_bn_weight, 1.0, 0.02);
    double se = 0.02 / sqrt((double)w.n);
    cr_assert_gt(w.n, 10000, "%zu BN weights", w.n);
    cr_assert_lt(fabs(w.mean - 1.0), 5 * se, "BN weight mean %g (n %zu)", w.mean, w.n);
    cr_assert_lt(fabs(w.sd / 0.02 - 1.0), 5 / sqrt(2.0 * (double)w.n), "BN weight sd %g", w.sd);
    cr_assert_lt(fabs(w.within1 - p1), 5 * sqrt(p1 * (1 - p1) / (double)w.n), "within 1 sd: %g", w.within1);
    moments b = tensor_moments(&f, resnet_bn_bias, 0.0, 0.0);
    cr_assert(b.n == w.n && b.mean == 0.0 && b.within1 == 1.0, "BN biases: n %zu mean %g", b.n, b.mean);
    int C = 16 * f.c.width; /* ResNet-50 layer3 channels: the proxy's width */
    double sd = sqrt(2.0 / C);
    moments p = tensor_moments(&f, proxy_conv, 0.0, sd);
    cr_assert_eq(p.n, (size_t)2 * C * C);
    cr_assert_lt(fabs(p.mean), 5 * sd / sqrt((double)p.n), "proxy conv mean %g", p.mean);
    cr_assert_lt(fabs(p.sd / sd - 1.0), 5 / sqrt(2.0 * (double)p.n), "proxy conv sd %g, formula %g", p.sd, sd);
    cr_assert_lt(fabs(p.within1 - p1), 5 * sqrt(p1 * (1 - p1) / (double)p.n), "within 1 sd: %g", p.within1);
    moments pb = tensor_moments(&f, proxy_bn_weight, 1.0, 0.0);
    cr_assert(pb.n == (size_t)2 * C && pb.mean == 1.0 && pb.within1 == 1.0, "proxy BN weight mean %g", pb.mean);
    tr_system_destroy(f.s);
    f.be->ops->destroy(f.be);
}
