/* method_none: the student alone; term "ce_student". */
#include "train/method_none.h"

#include "train/system_internal.h"

static int none_losses(tr_system *s, int B, const int32_t *y, const tr_step_out *z, const char **names)
{
    names[0] = "ce_student";
    s->be->ops->ce(s->be, B, s->cfg.n_classes, z->zs, y, 1.0f, s->loss, s->dz_s);
    return 1;
}

const tr_method_def tr_method_none = {
    .help = "the student alone (cross-entropy)",
    .student = 1,
    .losses = none_losses,
};
