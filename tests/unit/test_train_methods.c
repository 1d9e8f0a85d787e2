/* train/methods.c (the table of methods) and train/parts.h (the list of
 * trained parts): every --method name once, in the order of tr_method; each
 * method's parts are the checkpoint groups docs/FORMAT.md lists for it; SGD
 * moves the parts a method trains and leaves a frozen teacher bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/methods.h"
#include "train/system.h"
#include "train/system_test.h"

Test(train_methods, one_row_per_name_in_enum_order)
{
    /* the names the docs and options.json use, in the order of tr_method */
    static const char *want[] = {"none", "kd", "nkd", "c2kd", "shake", "review"};
    static const tr_method constant[] = {TR_NONE, TR_KD, TR_NKD, TR_C2KD, TR_SHAKE, TR_REVIEW};
    cr_assert_eq(tr_methods_options(), 6);
    char choices[256] = "";
    for (int i = 0; i < 6; i++) {
        const char *name = NULL;
        const tr_method_def *row = tr_methods_row(i, &name);
        cr_assert(row && name);
        cr_assert_str_eq(name, want[i]);
        cr_assert_str_eq(tr_methods_name((tr_method)i), want[i]);
        cr_assert_eq((int)constant[i], i);
        cr_assert_eq(tr_methods_find(want[i]), row);
        cr_assert_str_eq(tr_methods_name_of(row), want[i]);
        cr_assert(row->losses, "%s has no losses", name);
        strcat(choices, "|");
        strcat(choices, want[i]);
    }
    cr_assert_str_eq(tr_methods_choices, choices);
    cr_assert_eq(tr_methods_count(), tr_methods_options() + 1);
    tr_config c;
    tr_config_default(&c);
    c.pretrain = 1;
    cr_assert_eq(tr_methods_of(&c), tr_methods_find("pretrain"));
    cr_assert_str_eq(tr_methods_name_of(tr_methods_of(&c)), "pretrain");
    cr_assert_null(tr_methods_find("kd2"));
    cr_assert_null(tr_methods_find(""));
    cr_assert_null(tr_methods_name((tr_method)tr_methods_options()));
    cr_assert_null(tr_methods_row(tr_methods_options() + 1, NULL));
    c.pretrain = 0;
    c.method = (tr_method)tr_methods_options();
    cr_assert_null(tr_methods_of(&c));
}

static tr_system *make(be_ctx *be, int pretrain, tr_method m, tr_teacher_update up)
{
    tr_config c;
    tr_config_default(&c);
    c.pretrain = pretrain;
    c.method = m;
    c.teacher_update = up;
    c.width = 4;
    c.n_classes = 3;
    c.spec_bins = 32;
    c.spec_frames = 40;
    c.image_size = 32;
    c.max_batch = 4;
    cm_err err = {{0}};
    tr_system *s = tr_system_create(be, &c, 5, &err);
    cr_assert(s, "%s", err.msg);
    return s;
}

Test(train_methods, parts_are_the_checkpoint_groups_of_each_method)
{
    /* docs/FORMAT.md, "Checkpoints": the groups of each kind of run */
    static const struct {
        int pretrain;
        tr_method m;
        const char *groups;
    } cases[] = {
        {1, TR_C2KD, "teacher"},
        {0, TR_NONE, "student"},
        {0, TR_KD, "student teacher"},
        {0, TR_NKD, "student teacher"},
        {0, TR_C2KD, "student teacher student_proxy teacher_proxy"},
        {0, TR_SHAKE, "student teacher shadow"},
        {0, TR_REVIEW, "student teacher review"},
    };
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(1, &err);
    cr_assert(be, "%s", err.msg);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tr_system *s = make(be, cases[k].pretrain, cases[k].m, TR_TEACHER_FULL);
        tr_reg *regs[TR_MAX_PARTS];
        int n = tr_system_regs(s, regs);
        char got[256] = "";
        for (int i = 0; i < n; i++) {
            if (i)
                strcat(got, " ");
            strcat(got, regs[i]->group);
        }
        cr_assert_str_eq(got, cases[k].groups, "case %zu", k);
        /* every tensor of the tests' index belongs to one of them */
        for (size_t t = 0; t < tr_system_num_tensors(s); t++) {
            const char *name;
            cr_assert_eq(tr_system_tensor(s, t, &name, NULL, NULL, NULL), 0);
            size_t g = strcspn(name, "/");
            int found = 0;
            for (int i = 0; i < n; i++)
                found |= strlen(regs[i]->group) == g && strncmp(name, regs[i]->group, g) == 0;
            cr_assert(found, "%s in no part", name);
        }
        tr_system_destroy(s);
    }
    be->ops->destroy(be);
}

/* Copies of every parameter value (host), in the index's order. */
static float **snapshot(be_ctx *be, tr_system *s)
{
    size_t n = tr_system_num_tensors(s);
    float **v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        size_t count;
        float *dev;
        tr_system_tensor(s, i, NULL, &count, &dev, NULL);
        v[i] = malloc(count * sizeof(float));
        be->ops->to_host(be, v[i], dev, count * sizeof(float));
    }
    return v;
}

/* 1 when tensor i (a parameter: with a gradient) changed. */
static int moved(be_ctx *be, tr_system *s, float **before, size_t i, int *is_param)
{
    size_t count;
    float *dev, *grad;
    tr_system_tensor(s, i, NULL, &count, &dev, &grad);
    *is_param = grad != NULL;
    float *now = malloc(count * sizeof(float));
    be->ops->to_host(be, now, dev, count * sizeof(float));
    int d = memcmp(now, before[i], count * sizeof(float)) != 0;
    free(now);
    return d;
}

/* One step of each method: every trained part moves, a frozen teacher does
 * not (bit for bit); with --teacher-update top only the teacher's layer4 and fc. */
Test(train_methods, sgd_moves_what_the_method_trains)
{
    static const struct {
        tr_method m;
        tr_teacher_update up;
    } cases[] = {{TR_KD, TR_TEACHER_FULL},     {TR_NKD, TR_TEACHER_FULL},   {TR_SHAKE, TR_TEACHER_FULL},
                 {TR_REVIEW, TR_TEACHER_FULL}, {TR_C2KD, TR_TEACHER_FULL},  {TR_C2KD, TR_TEACHER_TOP},
                 {TR_C2KD, TR_TEACHER_FROZEN}};
    cm_err err = {{0}};
    be_ctx *be = be_cpu_create(1, &err);
    cr_assert(be, "%s", err.msg);
    size_t na = 4 * 32 * 40, nv = 4 * 3 * 32 * 32;
    float *h = malloc(nv * sizeof(float));
    for (size_t i = 0; i < nv; i++)
        h[i] = (float)sin((double)i * 0.37) + 0.1f * (float)(i % 7);
    float *audio = be->ops->alloc(be, na * sizeof(float)), *visual = be->ops->alloc(be, nv * sizeof(float));
    int32_t *labels = be->ops->alloc(be, 4 * sizeof(int32_t)), y[4] = {0, 1, 2, 1};
    be->ops->to_device(be, audio, h, na * sizeof(float));
    be->ops->to_device(be, visual, h, nv * sizeof(float));
    be->ops->to_device(be, labels, y, sizeof y);
    free(h);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tr_system *s = make(be, 0, cases[k].m, cases[k].up);
        float **before = snapshot(be, s);
        tr_batch b = {.B = 4, .audio = audio, .visual = visual, .labels = labels};
        tr_stats st;
        cr_assert_eq(tr_system_step(s, &b, 0.1f, &st, &err), 0, "%s", err.msg);
        int frozen = cases[k].m != TR_C2KD || cases[k].up == TR_TEACHER_FROZEN;
        for (size_t i = 0; i < tr_system_num_tensors(s); i++) {
            const char *name;
            int param;
            tr_system_tensor(s, i, &name, NULL, NULL, NULL);
            int d = moved(be, s, before, i, &param);
            int teacher = strncmp(name, "teacher/", 8) == 0;
            int top = teacher && (strncmp(name, "teacher/layer4.", 15) == 0 || strncmp(name, "teacher/fc.", 11) == 0);
            if (teacher && frozen)
                cr_assert(!d, "case %zu: frozen %s moved", k, name);
            else if (teacher && cases[k].up == TR_TEACHER_TOP && param && !top)
                cr_assert(!d, "case %zu: %s below layer4 moved", k, name);
            else if (param && (!teacher || top || cases[k].up == TR_TEACHER_FULL))
                cr_assert(d, "case %zu: trained %s did not move", k, name);
            free(before[i]);
        }
        free(before);
        tr_system_destroy(s);
    }
    be->ops->free(be, audio);
    be->ops->free(be, visual);
    be->ops->free(be, labels);
    be->ops->destroy(be);
}
