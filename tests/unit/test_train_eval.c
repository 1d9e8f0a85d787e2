/* Unit tests of train/eval.c: what an evaluation pass counts, checked against
 * values worked out by hand (top-1 with ties, top-5, cross-entropy, confusion,
 * per-class accuracy), and the checkpoint config parser's refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "collective/collective.h"
#include "train/eval.h"

Test(eval, counts_of_a_pass)
{
    cm_err err = {{0}};
    ev_pass *p = ev_pass_create(6, 1, &err);
    cr_assert(p, "%s", err.msg);
    /* sample 0: label 2 largest -> hit; sample 1: a tie between 1 and 3, label 3:
     * the first index (1) is predicted, the label ranks second; sample 2: label 5
     * ranks sixth (outside the top 5) */
    float z[3 * 6] = {0, 1, 3, 2, 0, 0,   0, 4, 0, 4, 1, 2,   5, 4, 3, 2, 1, 0};
    int32_t y[3] = {2, 3, 5};
    int64_t ix[3] = {10, 11, 12};
    cr_assert_eq(ev_pass_add(p, 3, z, y, ix, &err), 0);
    cr_assert_eq(p->n, 3);
    cr_assert_eq(p->top1, 1);
    cr_assert_eq(p->top5, 2);
    cr_assert_eq(p->pred[0], 2);
    cr_assert_eq(p->pred[1], 1);
    cr_assert_eq(p->pred[2], 0);
    cr_assert_eq(p->confusion[2 * 6 + 2], 1);
    cr_assert_eq(p->confusion[3 * 6 + 1], 1);
    cr_assert_eq(p->confusion[5 * 6 + 0], 1);
    /* cross-entropy of sample 0: log(sum exp z) - z_2 */
    double s0 = 3 * exp(0) + exp(1) + exp(3) + exp(2);
    double s1 = 2 * exp(0) + 2 * exp(4) + exp(1) + exp(2);
    double s2 = exp(5) + exp(4) + exp(3) + exp(2) + exp(1) + exp(0);
    double want = (log(s0) - 3) + (log(s1) - 4) + (log(s2) - 0);
    cr_assert_float_eq(ldexp((double)p->loss_fx, -32), want, 3 * ldexp(1, -33));
    cr_assert_float_eq(ev_mean_loss(p), want / 3, ldexp(1, -32));
    cr_assert_float_eq(p->prob[2], exp(3) / s0, 1e-15);
    cr_assert_float_eq(ev_top1(p), 1.0 / 3, 1e-15);
    cr_assert_float_eq(ev_class_acc(p, 2), 1.0, 0);
    cr_assert_float_eq(ev_class_acc(p, 3), 0.0, 0);
    cr_assert_lt(ev_class_acc(p, 0), 0); /* no sample of class 0 */
    double sum = 0;
    for (int c = 0; c < 6; c++)
        sum += p->prob[6 + c];
    cr_assert_float_eq(sum, 1.0, 1e-15);
    ev_pass_reset(p);
    cr_assert_eq(p->n, 0);
    cr_assert_eq(p->ns, 0);
    cr_assert_eq(p->confusion[2 * 6 + 2], 0);
    cr_assert_lt(ev_top1(p), 0);
    ev_pass_destroy(p);
}

Test(eval, many_samples_grow_the_kept_arrays)
{
    cm_err err = {{0}};
    ev_pass *p = ev_pass_create(2, 1, &err);
    float z[2] = {0, 1};
    int32_t y = 1;
    for (int64_t i = 0; i < 1000; i++)
        cr_assert_eq(ev_pass_add(p, 1, z, &y, &i, &err), 0);
    cr_assert_eq(p->ns, 1000);
    cr_assert_eq(p->index[999], 999);
    cr_assert_eq(p->top1, 1000);
    ev_pass_destroy(p);
}

Test(eval, config_from_json)
{
    cm_err err = {{0}};
    const char *good = "{\"pretrain\":0,\"method\":\"c2kd\",\"student\":\"visual\",\"teacher\":\"audio\","
                       "\"student_depth\":18,\"teacher_depth\":50,\"width\":8,\"n_classes\":28,\"frames\":3,"
                       "\"visual_mode\":\"fold\",\"image_size\":112,\"spec_bins\":257,\"spec_frames\":1004,"
                       "\"proxy\":\"cfa\",\"teacher_update\":\"top\"}";
    tr_config c;
    tr_config_default(&c);
    cr_assert_eq(ev_config_from_json(good, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.method, TR_C2KD);
    cr_assert_eq(c.student, TR_VISUAL);
    cr_assert_eq(c.teacher, TR_AUDIO);
    cr_assert_eq(c.teacher_depth, 50);
    cr_assert_eq(c.width, 8);
    cr_assert_eq(c.frames, 3);
    cr_assert_eq(c.visual_mode, TR_VISUAL_FOLD);
    cr_assert_eq(c.proxy, TR_PROXY_CFA);
    cr_assert_eq(c.teacher_update, TR_TEACHER_TOP);
    const char *bad[][2] = {
        {"[1]", "not a JSON object"},
        {"{\"pretrain\":0}", "method"},
        {"{\"pretrain\":0.5}", "pretrain"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        cr_assert_eq(ev_config_from_json(bad[k][0], &c, &err), -1);
        cr_assert(strstr(err.msg, bad[k][1]), "%s", err.msg);
    }
    char *other = strdup(good);
    memcpy(strstr(other, "\"fold\""), "\"wrap\"", 6);
    cr_assert_eq(ev_config_from_json(other, &c, &err), -1);
    cr_assert(strstr(err.msg, "visual_mode"), "%s", err.msg);
    free(other);
}
