/* parts: the list of trained parts (parts.h). */
#include "train/parts.h"

#include <string.h>

int tr_parts_add(tr_parts *l, tr_reg *r, int sgd, size_t off, int counts, cm_err *err)
{
    if (l->n == TR_MAX_PARTS)
        return cm_err_set(err, "%s: more than %d trained parts", r->group, TR_MAX_PARTS);
    l->p[l->n++] = (tr_part){.reg = r, .sgd = sgd, .off = off, .counts = counts};
    return 0;
}

tr_reg *tr_parts_find(const tr_parts *l, const char *group)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->p[i].reg->group, group) == 0)
            return l->p[i].reg;
    return NULL;
}

void tr_parts_sgd(const tr_parts *l, be_ctx *be, float lr, float momentum)
{
    for (int i = 0; i < l->n; i++) {
        const tr_part *p = &l->p[i];
        tr_reg *r = p->reg;
        if (p->sgd)
            be->ops->sgd(be, r->np - p->off, r->w + p->off, r->g + p->off, r->m + p->off, lr, momentum);
    }
    for (int i = 0; i < l->n; i++)
        if (l->p[i].counts)
            l->p[i].reg->nbt++;
}

void tr_parts_buffers(const tr_parts *l, be_ctx *be, int restore)
{
    for (int i = 0; i < l->n; i++) {
        tr_reg *r = l->p[i].reg;
        if (!r->nb)
            continue;
        if (restore)
            be->ops->copy(be, r->buf, r->buf_save, r->nb * sizeof(float));
        else
            be->ops->copy(be, r->buf_save, r->buf, r->nb * sizeof(float));
    }
}
