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

/* A round tick step (1, 2 or 5 times a power of ten) giving about `n` ticks over span. */
static double nice_step(double span, int n)
{
    if (!(span > 0) || !isfinite(span))
        return 1;
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* Widens [*lo, *hi] to multiples of the round step (at least 1 for integer axes). */
static double round_range(double *lo, double *hi, int integer)
{
    double st = nice_step(*hi - *lo, 5);
    if (integer && st < 1)
        st = 1;
    *lo = floor(*lo / st + 1e-9) * st;
    *hi = ceil(*hi / st - 1e-9) * st;
    if (*hi <= *lo)
        *hi = *lo + st;
    return st;
}

static void fmt_tick(char *buf, size_t n, double v, double step)
{
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, n, "%.*f", dec, fabs(v) < step * 1e-6 ? 0.0 : v);
}

static void axes(FILE *f, const panel *p, double xstep, double ystep, const char *xlabel, const char *ylabel,
                 const char *title)
{
    char t[32];
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n", p->x0, p->y0,
            p->w, p->h);
    for (int i = 0; i <= 1000; i++) {
        double yv = p->ymin + i * ystep;
        if (yv > p->ymax + ystep * 1e-6)
            break;
        fmt_tick(t, sizeof t, yv, ystep);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", p->x0, py(p, yv),
                p->x0 + p->w, py(p, yv));
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%s</text>\n", p->x0 - 4,
                py(p, yv) + 4, t);
    }
    for (int i = 0; i <= 1000; i++) {
        double xv = p->xmin + i * xstep;
        if (xv > p->xmax + xstep * 1e-6)
            break;
        fmt_tick(t, sizeof t, xv, xstep);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%s</text>\n", px(p, xv),
                p->y0 + p->h + 14, t);
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

/* The confusion matrix in the box (x0, y0, side): rows (labels) normalised. */
static void confusion_panel(FILE *f, double x0, double y0, double side, const int64_t *cm, int C,
                            const char *const *classes, const char *title)
{
    double cell = side / C;
    int names = C <= 60 && classes, counts = C <= 15;
    double fs = cell * 0.6 < 11 ? cell * 0.6 : 11;
    if (fs < 5)
        fs = 5;
    for (int r = 0; r < C; r++) {
        int64_t n = 0;
        for (int c = 0; c < C; c++)
            n += cm[(size_t)r * (size_t)C + (size_t)c];
        for (int c = 0; c < C; c++) {
            int64_t v = cm[(size_t)r * (size_t)C + (size_t)c];
            double q = n ? (double)v / (double)n : 0;
            int shade = (int)lround(255 * (1 - q));
            fprintf(f, "<rect x='%.2f' y='%.2f' width='%.2f' height='%.2f' fill='rgb(%d,%d,255)' stroke='#eee' "
                       "stroke-width='0.3'><title>",
                    x0 + c * cell, y0 + r * cell, cell, cell, shade, shade);
            if (classes) {
                xml_text(f, classes[r]);
                fputs(" as ", f);
                xml_text(f, classes[c]);
            }
            fprintf(f, ": %lld</title></rect>\n", (long long)v);
            if (counts && v)
                fprintf(f, "<text x='%.1f' y='%.1f' font-size='%.1f' text-anchor='middle' fill='%s'>%lld</text>\n",
                        x0 + (c + 0.5) * cell, y0 + (r + 0.5) * cell + fs / 3, fs, q > 0.5 ? "white" : "black",
                        (long long)v);
        }
    }
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n", x0, y0, side,
            side);
    for (int k = 0; names && k < C; k++) {
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='%.1f' text-anchor='end'>", x0 - 3, y0 + (k + 0.5) * cell + fs / 3,
                fs);
        xml_text(f, classes[k]);
        double tx = x0 + (k + 0.5) * cell + fs / 3, ty = y0 + side + 4;
        fprintf(f, "</text>\n<text x='%.1f' y='%.1f' font-size='%.1f' text-anchor='end' transform='rotate(-90 %.1f %.1f)'>",
                tx, ty, fs, tx, ty);
        xml_text(f, classes[k]);
        fputs("</text>\n", f);
    }
    size_t longest = 0; /* the names' extent, about 0.6 em per character, at most 95 px */
    for (int k = 0; names && k < C; k++)
        if (strlen(classes[k]) > longest)
            longest = strlen(classes[k]);
    double lw = names ? 0.6 * fs * (double)longest + 8 : 0;
    if (lw > 95)
        lw = 95;
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='13' text-anchor='middle' font-weight='bold'>", x0 + side / 2, y0 - 8);
    xml_text(f, title);
    fprintf(f, "</text>\n<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle' "
               "transform='rotate(-90 %.1f %.1f)'>label</text>\n",
            x0 - lw - 8, y0 + side / 2, x0 - lw - 8, y0 + side / 2);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>predicted (row-normalised shade)</text>\n",
            x0 + side / 2, y0 + side + lw + 18);
}

int pl_write_confusion_svg(const char *svg_path, const char *title, const int64_t *counts, int C,
                           const char *const *classes, cm_err *err)
{
    cm_atomic a;
    if (C < 1)
        return cm_err_set(err, "no classes");
    if (cm_atomic_open(&a, svg_path, err) != 0)
        return -1;
    FILE *f = a.fp;
    fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
               "<svg xmlns='http://www.w3.org/2000/svg' width='640' height='660' viewBox='0 0 640 660' "
               "font-family='sans-serif'>\n<rect width='640' height='660' fill='white'/>\n");
    confusion_panel(f, 120, 50, 480, counts, C, classes, title ? title : "confusion matrix");
    fprintf(f, "</svg>\n");
    return cm_atomic_commit(&a, err);
}

int pl_write_svg(const char *metrics_path, const char *svg_path, const char *title, const pl_confusion *cm,
                 cm_err *err)
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
    pl.ymax = lmax > 0 ? lmax : 1;
    for (size_t k = 0; k < nacc; k++)
        for (size_t i = 0; i < acc[k].n; i++)
            if (acc[k].x[i] > pa.xmax)
                pa.xmax = acc[k].x[i];
    double lxs = round_range(&pl.xmin, &pl.xmax, 1), lys = round_range(&pl.ymin, &pl.ymax, 0);
    double axs = round_range(&pa.xmin, &pa.xmax, 1), ays = 20;
    int W = cm && cm->C > 0 ? 1420 : 960;

    cm_atomic a;
    if (cm_atomic_open(&a, svg_path, err) != 0)
        goto fail;
    FILE *f = a.fp;
    fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
               "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='420' viewBox='0 0 %d 420' "
               "font-family='sans-serif'>\n<rect width='%d' height='420' fill='white'/>\n", W, W, W);
    fprintf(f, "<text x='480' y='20' font-size='14' text-anchor='middle'>");
    xml_text(f, title ? title : "");
    fprintf(f, "</text>\n");
    axes(f, &pl, lxs, lys, "step", "training loss", "loss");
    line(f, &pl, &loss, 1);
    line(f, &pl, &eloss, 2);
    axes(f, &pa, axs, ays, "epoch", "top-1 accuracy (%)", "accuracy");
    for (size_t k = 0; k < nacc; k++)
        line(f, &pa, &acc[k], 2);
    if (cm && cm->C > 0)
        confusion_panel(f, 1110, 50, 260, cm->counts, cm->C, cm->classes, cm->caption ? cm->caption : "confusion");
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
