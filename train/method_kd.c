/* method_kd: Hinton's KD from a frozen pretrained teacher (evaluation mode);
 * terms "ce_student" and "kd" (tau^2 KL at kd_temp). */
#include "train/method_kd.h"

#include "train/system_internal.h"

static int kd_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    be_ctx *be = s->be;
    int C = s->cfg.n_classes;
    float T = s->cfg.kd_temp;
    names[0] = "ce_student";
    be->ops->ce(be, B, C, z->zs, y, 1.0f, s->loss, s->dz_s);
    names[1] = "kd";
    be->ops->kl(be, B, C, z->zt, z->zs, T, T * T, s->loss + 1, s->dz_s);
    return 2;
}

const tr_method_def tr_method_kd = {
    .help = "knowledge distillation (Hinton): CE + T^2 KL(teacher || student) at --kd-temp",
    .student = 1,
    .teacher = 1,
    .losses = kd_losses,
};
