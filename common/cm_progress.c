#include "common/cm_progress.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cm_progress {
    FILE *out;
    char label[64];
    size_t total;
    double interval;
    double start;
    double last;
    int tty;
    char unit[16];
    int hide_failed;
    size_t base;
};

double cm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

cm_progress *cm_progress_create(FILE *out, const char *label, size_t total, double interval)
{
    cm_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->out = out;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->interval = interval > 0 ? interval : 10.0;
    p->start = p->last = cm_now();
    p->tty = isatty(fileno(out));
    return p;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

static void draw(cm_progress *p, size_t done, size_t failed, const char *extra, int final)
{
    double now = cm_now(), el = now - p->start;
    size_t run = done > p->base ? done - p->base : 0;
    double rate = el > 0 ? (double)run / el : 0;
    double eta = rate > 0 && p->total >= done ? (double)(p->total - done) / rate : -1;
    char etab[32];
    fmt_eta(etab, sizeof etab, final ? el : eta);
    const char *ex = extra ? extra : "";
    char fb[48] = "";
    if (!p->hide_failed)
        snprintf(fb, sizeof fb, " (%zu failed)", failed);
    const char *sp = p->unit[0] ? " " : "";
    if (p->tty) {
        char bar[31];
        size_t fill = p->total ? done * 30 / p->total : 30;
        for (size_t i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(p->out, "\r%s [%s] %zu/%zu%s%s%s %.1f/s %s %s %s\033[K", p->label, bar, done, p->total, sp,
                p->unit, fb, rate, final ? "took" : "ETA", etab, ex);
        if (final)
            fputc('\n', p->out);
    } else {
        fprintf(p->out, "%s: %zu/%zu%s%s%s %.1f/s %s %s %s\n", p->label, done, p->total, sp, p->unit, fb, rate,
                final ? "took" : "ETA", etab, ex);
    }
    fflush(p->out);
}

void cm_progress_update(cm_progress *p, size_t done, size_t failed, const char *extra)
{
    if (!p)
        return;
    double now = cm_now();
    double every = p->tty ? 0.2 : p->interval;
    if (now - p->last < every)
        return;
    p->last = now;
    draw(p, done, failed, extra, 0);
}

void cm_progress_finish(cm_progress *p, size_t done, size_t failed, const char *extra)
{
    if (p)
        draw(p, done, failed, extra, 1);
}

void cm_progress_destroy(cm_progress *p)
{
    free(p);
}

void cm_progress_set_units(cm_progress *p, const char *unit, int show_failed, size_t base)
{
    if (!p)
        return;
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
    p->hide_failed = !show_failed;
    p->base = base;
}

void cm_progress_line(cm_progress *p, const char *text)
{
    if (!p)
        return;
    fprintf(p->out, "%s%s\n", p->tty ? "\r\033[K" : "", text);
    fflush(p->out);
}
