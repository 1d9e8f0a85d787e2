/* plot: SVG of the loss and accuracy curves. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "train/metrics.h"
#include "train/plot.h"

typedef struct series {
    const char *key, *label, *color;
    int dashed;
    double *x, *y;
    size_t n, cap;
} series;

static void push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *nx = realloc(s->x, cap * sizeof *nx), *ny = realloc(s->y, cap * sizeof *ny);
        if (nx)
            s->x = nx;
        if (ny)
            s->y = ny;
        if (!nx || !ny)
            return;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

typedef struct panel {
    double x0, y0, w, h;        /* pixel box */
    double xmin, xmax, ymin, ymax;
} panel;

static double px(const panel *p, double x)
{
    return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w;
}
static double py(const panel *p, double y)
{
    return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h;
}

static void axes(FILE *f, const panel *p, const char *xlabel, const char *ylabel, const char *title)
{
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n", p->x0, p->y0,
            p->w, p->h);
    for (int i = 0; i <= 4; i++) {
        double yv = p->ymin + (p->ymax - p->ymin) * i / 4, xv = p->xmin + (p->xmax - p->xmin) * i / 4;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", p->x0, py(p, yv),
                p->x0 + p->w, py(p, yv));
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%.3g</text>\n", p->x0 - 4,
                py(p, yv) + 4, yv);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%.4g</text>\n", px(p, xv),
                p->y0 + p->h + 14, xv);
    }
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>%s</text>\n", p->x0 + p->w / 2,
            p->y0 + p->h + 30, xlabel);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle' transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
            p->x0 - 40, p->y0 + p->h / 2, p->x0 - 40, p->y0 + p->h / 2, ylabel);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='13' text-anchor='middle' font-weight='bold'>%s</text>\n",
            p->x0 + p->w / 2, p->y0 - 8, title);
}

static void line(FILE *f, const panel *p, const series *s, double width)
{
    if (s->n == 0)
        return;
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='%.1f'%s points='", s->color, width,
            s->dashed ? " stroke-dasharray='5,3'" : "");
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%.1f,%.1f ", px(p, s->x[i]), py(p, s->y[i]));
    fprintf(f, "'/>\n");
    if (s->n == 1)
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", px(p, s->x[0]), py(p, s->y[0]), s->color);
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

int pl_write_svg(const char *metrics_path, const char *svg_path, const char *title, cm_err *err)
{
    mt_reader r;
    if (mt_reader_open(&r, metrics_path, err) != 0)
        return -1;
    series loss = {"loss", "loss per step", "#9bb7d4", 0, 0, 0, 0, 0};
    series eloss = {"train_loss", "mean per epoch", "#1f4e79", 0, 0, 0, 0, 0};
    series acc[] = {
        {"train_acc_student", "student train", "#2ca02c", 1, 0, 0, 0, 0},
        {"val_acc_student", "student val", "#1f77b4", 0, 0, 0, 0, 0},
        {"test_acc_student", "student test", "#d62728", 0, 0, 0, 0, 0},
        {"train_acc_teacher", "teacher train", "#98df8a", 1, 0, 0, 0, 0},
        {"val_acc_teacher", "teacher val", "#aec7e8", 0, 0, 0, 0, 0},
        {"test_acc_teacher", "teacher test", "#ff9896", 0, 0, 0, 0, 0},
    };
    const size_t nacc = sizeof acc / sizeof *acc;
    double steps_per_epoch = 0;
    cJSON *j;
    while ((j = mt_reader_next(&r, NULL))) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
        cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step"), *ep = cJSON_GetObjectItemCaseSensitive(j, "epoch");
        if (type && strcmp(type, "step") == 0 && cJSON_IsNumber(st)) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "loss");
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble))
                push(&loss, st->valuedouble, v->valuedouble);
        } else if (type && strcmp(type, "epoch") == 0 && cJSON_IsNumber(ep)) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "train_loss");
            if (cJSON_IsNumber(st) && ep->valuedouble > 0)
                steps_per_epoch = st->valuedouble / ep->valuedouble;
            if (cJSON_IsNumber(v) && cJSON_IsNumber(st))
                push(&eloss, st->valuedouble, v->valuedouble);
            for (size_t k = 0; k < nacc; k++) {
                cJSON *a = cJSON_GetObjectItemCaseSensitive(j, acc[k].key);
                if (cJSON_IsNumber(a))
                    push(&acc[k], ep->valuedouble, 100 * a->valuedouble);
            }
        }
        cJSON_Delete(j);
    }
    mt_reader_close(&r);
    (void)steps_per_epoch;

    panel pl = {70, 50, 380, 260, 0, 1, 0, 1}, pa = {540, 50, 380, 260, 0, 1, 0, 100};
    double lmax = 0;
    for (size_t i = 0; i < loss.n; i++) {
        if (loss.y[i] > lmax)
            lmax = loss.y[i];
        if (loss.x[i] > pl.xmax)
            pl.xmax = loss.x[i];
    }
    pl.ymax = lmax > 0 ? lmax * 1.05 : 1;
    for (size_t k = 0; k < nacc; k++)
        for (size_t i = 0; i < acc[k].n; i++)
            if (acc[k].x[i] > pa.xmax)
                pa.xmax = acc[k].x[i];

    cm_atomic a;
    if (cm_atomic_open(&a, svg_path, err) != 0)
        goto fail;
    FILE *f = a.fp;
    fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
               "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='420' viewBox='0 0 960 420' "
               "font-family='sans-serif'>\n<rect width='960' height='420' fill='white'/>\n");
    fprintf(f, "<text x='480' y='20' font-size='14' text-anchor='middle'>");
    xml_text(f, title ? title : "");
    fprintf(f, "</text>\n");
    axes(f, &pl, "step", "training loss", "loss");
    line(f, &pl, &loss, 1);
    line(f, &pl, &eloss, 2);
    axes(f, &pa, "epoch", "top-1 accuracy (%)", "accuracy");
    for (size_t k = 0; k < nacc; k++)
        line(f, &pa, &acc[k], 2);
    /* legends */
    double ly = 360;
    series *ls[] = {&loss, &eloss};
    for (size_t k = 0; k < 2; k++, ly += 16)
        fprintf(f, "<line x1='80' y1='%.0f' x2='100' y2='%.0f' stroke='%s' stroke-width='2'/>"
                   "<text x='106' y='%.0f' font-size='11'>%s</text>\n", ly, ly, ls[k]->color, ly + 4, ls[k]->label);
    int col = 0, row = 0;
    for (size_t k = 0; k < nacc; k++) {
        if (acc[k].n == 0)
            continue;
        double lx = 550 + col * 130, yy = 360 + row * 16;
        fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='%s' stroke-width='2'%s/>"
                   "<text x='%.0f' y='%.0f' font-size='11'>%s</text>\n", lx, yy, lx + 20, yy, acc[k].color,
                acc[k].dashed ? " stroke-dasharray='5,3'" : "", lx + 26, yy + 4, acc[k].label);
        if (++col == 3) {
            col = 0;
            row++;
        }
    }
    fprintf(f, "</svg>\n");
    int rc = cm_atomic_commit(&a, err);
    free(loss.x), free(loss.y), free(eloss.x), free(eloss.y);
    for (size_t k = 0; k < nacc; k++)
        free(acc[k].x), free(acc[k].y);
    return rc;
fail:
    free(loss.x), free(loss.y), free(eloss.x), free(eloss.y);
    for (size_t k = 0; k < nacc; k++)
        free(acc[k].x), free(acc[k].y);
    return -1;
}
