/* method_nkd: normalized KD from a frozen pretrained teacher (evaluation
 * mode); terms "ce_student" and "nkd" (--nkd-temp, --nkd-gamma). */
#include "train/method_nkd.h"

#include "train/system_internal.h"

static int nkd_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    be_ctx *be = s->be;
    const tr_config *c = &s->cfg;
    names[0] = "ce_student";
    be->ops->ce(be, B, c->n_classes, z->zs, y, 1.0f, s->loss, s->dz_s);
    names[1] = "nkd";
    be->ops->nkd(be, B, c->n_classes, z->zt, z->zs, y, c->nkd_temp, c->nkd_gamma, 1.0f, s->loss + 1, s->dz_s);
    return 2;
}

const tr_method_def tr_method_nkd = {
    .help = "normalized knowledge distillation: CE + NKD at --nkd-temp, --nkd-gamma",
    .student = 1,
    .teacher = 1,
    .losses = nkd_losses,
};
