/* method_pretrain: the teacher network alone (--pretrain; --method is
 * ignored), in train mode, every parameter updated; term "ce_teacher". */
#include "train/method_pretrain.h"

#include "train/system_internal.h"

static void pretrain_teacher(const tr_system *s, int *train, int *full, int *sgd)
{
    (void)s;
    *train = *full = *sgd = 1;
}

static int pretrain_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    names[0] = "ce_teacher";
    s->be->ops->ce(s->be, B, s->cfg.n_classes, z->zt, y, 1.0f, s->loss, s->dz_t);
    return 1;
}

const tr_method_def tr_method_pretrain = {
    .help = "the teacher network alone (cross-entropy)",
    .teacher = 1,
    .teacher_mode = pretrain_teacher,
    .losses = pretrain_losses,
};
