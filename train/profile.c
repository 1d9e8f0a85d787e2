/* profile: the Markdown report of a backend's raw profile (train/profile.h). */
#include <stdlib.h>
#include <string.h>

#include "train/profile.h"

typedef struct kind_acc {
    const char *op;
    double ms;
    long calls;
} kind_acc;

static int by_ms_desc(double a, double b) { return a > b ? -1 : a < b ? 1 : 0; }

static int kind_cmp(const void *a, const void *b)
{
    const kind_acc *x = a, *y = b;
    int c = by_ms_desc(x->ms, y->ms);
    return c ? c : strcmp(x->op, y->op);
}

static int row_cmp(const void *a, const void *b)
{
    const be_prof_row *x = a, *y = b;
    int c = by_ms_desc(x->ms, y->ms);
    if (c)
        return c;
    c = strcmp(x->op, y->op);
    return c ? c : strcmp(x->shape, y->shape);
}

static int span_cmp(const void *a, const void *b)
{
    const be_prof_span *x = a, *y = b;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0 ? 1 : 0;
}

/* Per op kind (summed over shapes, in the rows' order), slowest first. */
static void write_op_kinds(FILE *f, const be_profile *p, int steps, double total)
{
    kind_acc *k = calloc(p->n_rows ? p->n_rows : 1, sizeof *k);
    size_t nk = 0;
    for (size_t i = 0; k && i < p->n_rows; i++) {
        size_t j = 0;
        while (j < nk && strcmp(k[j].op, p->rows[i].op) != 0)
            j++;
        if (j == nk)
            k[nk++].op = p->rows[i].op;
        k[j].ms += p->rows[i].ms;
        k[j].calls += p->rows[i].calls;
    }
    if (k)
        qsort(k, nk, sizeof *k, kind_cmp);
    fprintf(f, "### GPU time per op kind (CUDA events around each op; per step, %d steps)\n\n", steps);
    fprintf(f, "| op | calls/step | ms/step | share |\n|---|---|---|---|\n");
    for (size_t j = 0; j < nk; j++)
        fprintf(f, "| %s | %.1f | %.3f | %.1f %% |\n", k[j].op, (double)k[j].calls / steps, k[j].ms / steps,
                total > 0 ? 100.0 * k[j].ms / total : 0.0);
    fprintf(f, "| **all ops** | | **%.3f** | |\n\n", total / steps);
    free(k);
}

static void write_top_shapes(FILE *f, const be_profile *p, int steps, int top, double total)
{
    be_prof_row *rows = malloc((p->n_rows ? p->n_rows : 1) * sizeof *rows);
    size_t n = rows ? p->n_rows : 0;
    if (n) {
        memcpy(rows, p->rows, n * sizeof *rows);
        qsort(rows, n, sizeof *rows, row_cmp);
    }
    fprintf(f, "### Top %d (op, shape) by GPU time (conv shape: NxCxHxW kK RxS stride pad; cuDNN algo and workspace)\n\n", top);
    fprintf(f, "| op | shape | calls/step | mean us | ms/step | share |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n && (int)i < top; i++)
        fprintf(f, "| %s | %s | %.1f | %.1f | %.3f | %.1f %% |\n", rows[i].op, rows[i].shape, (double)rows[i].calls / steps,
                rows[i].calls ? 1e3 * rows[i].ms / rows[i].calls : 0.0, rows[i].ms / steps,
                total > 0 ? 100.0 * rows[i].ms / total : 0.0);
    free(rows);
}

/* Milliseconds of the staged copies that ran while some op was running on the
 * compute stream (the union of the op spans intersected with each copy). */
static double copies_overlapped_ms(const be_profile *p, double *copy_ms)
{
    be_prof_span *m = malloc((p->n_ops ? p->n_ops : 1) * sizeof *m);
    size_t nm = 0;
    *copy_ms = 0;
    if (m && p->n_ops) {
        memcpy(m, p->ops, p->n_ops * sizeof *m);
        qsort(m, p->n_ops, sizeof *m, span_cmp);
        for (size_t i = 0; i < p->n_ops; i++) { /* merged in place: the union of the spans */
            if (nm && m[i].t0 <= m[nm - 1].t1)
                m[nm - 1].t1 = m[nm - 1].t1 > m[i].t1 ? m[nm - 1].t1 : m[i].t1;
            else
                m[nm++] = m[i];
        }
    }
    double over = 0;
    for (size_t c = 0; c < p->n_copies; c++) {
        be_prof_span cp = p->copies[c];
        *copy_ms += cp.t1 - cp.t0;
        size_t lo = 0, hi = nm; /* the first merged span with t1 >= cp.t0 */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (m[mid].t1 < cp.t0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < nm && m[i].t0 < cp.t1; i++)
            over += (cp.t1 < m[i].t1 ? cp.t1 : m[i].t1) - (cp.t0 > m[i].t0 ? cp.t0 : m[i].t0);
    }
    free(m);
    return over;
}

static void write_copy_overlap(FILE *f, const be_profile *p)
{
    double copy_ms = 0, over = copies_overlapped_ms(p, &copy_ms);
    fprintf(f, "\n### Staged input copies (copy stream) against the ops (compute stream)\n\n");
    fprintf(f, "- staged copies: %zu, %.3f ms in all; %.3f ms of it (%.1f %%) ran while an op was running\n", p->n_copies,
            copy_ms, over, copy_ms > 0 ? 100.0 * over / copy_ms : 0.0);
    fprintf(f, "- timeline (ms since the profile started) of the first copies:\n\n| copy | start | end |\n|---|---|---|\n");
    for (size_t i = 0; i < p->n_copies && i < 8; i++)
        fprintf(f, "| %zu | %.3f | %.3f |\n", i, p->copies[i].t0, p->copies[i].t1);
}

double tr_profile_report(FILE *f, const be_profile *p, int steps, int top)
{
    if (steps < 1)
        steps = 1;
    double total = 0;
    for (size_t i = 0; i < p->n_rows; i++)
        total += p->rows[i].ms;
    write_op_kinds(f, p, steps, total);
    write_top_shapes(f, p, steps, top, total);
    write_copy_overlap(f, p);
    fprintf(f, "\n### Backend memory\n\n");
    fprintf(f, "- convolution workspace: %.1f MiB (limit %.0f MiB); algorithm search: %.2f s host time, %d searches fell back to heuristics\n",
            p->workspace_bytes / 1048576.0, p->workspace_limit / 1048576.0, p->setup_seconds, p->search_fallbacks);
    fprintf(f, "- allocated now: %.1f MiB in %zu allocations; peak %.1f MiB\n", p->current_bytes / 1048576.0, p->allocations,
            p->peak_bytes / 1048576.0);
    return total / steps;
}

double tr_profile_write(be_ctx *b, FILE *f, int steps, int top)
{
    be_profile p;
    if (!b->ops->profile_data || b->ops->profile_data(b, &p) != 0)
        return -1;
    return tr_profile_report(f, &p, steps, top);
}
