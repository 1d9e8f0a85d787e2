/* loss (CPU): cross-entropy, KL, non-target KL (C2KD), NKD on logits [B, C];
 * softmaxes and sums in double. kl() returns KL at temperature temp WITHOUT
 * the temp^2 factor (put it in weight); nkd() follows the NKD authors' code:
 * the target term uses the temperature-1 softmaxes, the non-target term has
 * gamma*temp^2 built in. Mirrors kernels/cuda/loss.cu. */
#pragma GCC optimize("O3") /* vectorise the simple loops (-O2 in gcc 12 only does the very cheap ones) */
#include <math.h>

#include "kernels/cpu/cpu_internal.h"

/* ---------------------------------------------------------------- losses */

/* lp[c] = log_softmax(scale * z[c]) over C values (with z[skip] replaced by 0 when skip >= 0). */
static void log_softmax_row(int C, const float *z, double scale, int skip, double *lp)
{
    double m = -INFINITY;
    for (int c = 0; c < C; c++) {
        lp[c] = c == skip ? 0.0 : scale * z[c];
        if (lp[c] > m)
            m = lp[c];
    }
    double s = 0;
    for (int c = 0; c < C; c++)
        s += exp(lp[c] - m);
    double lse = m + log(s);
    for (int c = 0; c < C; c++)
        lp[c] -= lse;
}

/* The same over the classes other than `excl` (which gets -inf). */
static void log_softmax_excl(int C, const float *z, double scale, int excl, double *lp)
{
    double m = -INFINITY;
    for (int c = 0; c < C; c++)
        if (c != excl && scale * z[c] > m)
            m = scale * z[c];
    double s = 0;
    for (int c = 0; c < C; c++)
        if (c != excl)
            s += exp(scale * z[c] - m);
    double lse = m + log(s);
    for (int c = 0; c < C; c++)
        lp[c] = c == excl ? -INFINITY : scale * z[c] - lse;
}

static double *loss_buf(cpu_ctx *c, int C)
{
    return (double *)cpu_workspace(c, (size_t)8 * C + 16); /* 4 rows of C doubles */
}

static int bad_label(cpu_ctx *c, const char *op, int32_t y, int C)
{
    if (y < 0 || y >= C) {
        cpu_fail(c, "%s: label %d out of range [0, %d)", op, (int)y, C);
        return 1;
    }
    return 0;
}

void cpu_ce(be_ctx *b, int B, int C, const float *z, const int32_t *y, float weight, float *loss, float *dz)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *lp = loss_buf(c, C);
    if (!lp)
        return;
    double total = 0, g = (double)weight / B;
    for (int i = 0; i < B; i++) {
        if (bad_label(c, "ce", y[i], C))
            return;
        const float *zi = z + (size_t)i * C;
        log_softmax_row(C, zi, 1.0, -1, lp);
        total -= lp[y[i]];
        float *d = dz + (size_t)i * C;
        for (int k = 0; k < C; k++)
            d[k] += (float)(g * (exp(lp[k]) - (k == y[i])));
    }
    loss[0] += (float)(weight * total / B);
}

void cpu_kl(be_ctx *b, int B, int C, const float *t, const float *s, float temp, float weight, float *loss,
                   float *ds)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *lp = loss_buf(c, C);
    if (!lp)
        return;
    double *lq = lp + C;
    double total = 0, g = (double)weight / B / temp;
    for (int i = 0; i < B; i++) {
        log_softmax_row(C, t + (size_t)i * C, 1.0 / temp, -1, lp);
        log_softmax_row(C, s + (size_t)i * C, 1.0 / temp, -1, lq);
        float *d = ds + (size_t)i * C;
        for (int k = 0; k < C; k++) {
            double p = exp(lp[k]);
            if (p > 0)
                total += p * (lp[k] - lq[k]);
            d[k] += (float)(g * (exp(lq[k]) - p));
        }
    }
    loss[0] += (float)(weight * total / B);
}

void cpu_nt_kl(be_ctx *b, int B, int C, const float *src, const float *dst, const int32_t *y,
                      const float *keep, float weight, float *loss, float *ddst)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *la = loss_buf(c, C);
    if (!la)
        return;
    double *lq = la + C;
    double total = 0, g = (double)weight / B;
    for (int i = 0; i < B; i++) {
        if (bad_label(c, "nt_kl", y[i], C))
            return;
        if (keep[i] == 0.0f)
            continue;
        double kp = keep[i];
        log_softmax_row(C, src + (size_t)i * C, 1.0, y[i], la);
        log_softmax_row(C, dst + (size_t)i * C, 1.0, y[i], lq);
        float *d = ddst + (size_t)i * C;
        double row = 0;
        for (int k = 0; k < C; k++) {
            double a = exp(la[k]);
            if (a > 0)
                row += a * (la[k] - lq[k]);
            if (k != y[i]) /* the target logit is multiplied by 0: no gradient */
                d[k] += (float)(g * kp * (exp(lq[k]) - a));
        }
        total += kp * row;
    }
    loss[0] += (float)(weight * total / B);
}

void cpu_nkd(be_ctx *b, int B, int C, const float *t, const float *s, const int32_t *y, float temp,
                    float gamma, float weight, float *loss, float *ds)
{
    cpu_ctx *c = (cpu_ctx *)b;
    double *lt = loss_buf(c, C);
    if (!lt)
        return;
    double *ls = lt + C, *nt = lt + 2 * C, *ns = lt + 3 * C;
    double total = 0, g = (double)weight / B;
    for (int i = 0; i < B; i++) {
        if (bad_label(c, "nkd", y[i], C))
            return;
        int yi = y[i];
        const float *ti = t + (size_t)i * C, *si = s + (size_t)i * C;
        log_softmax_row(C, ti, 1.0, -1, lt);
        log_softmax_row(C, si, 1.0, -1, ls);
        log_softmax_excl(C, ti, 1.0 / temp, yi, nt);
        log_softmax_excl(C, si, 1.0 / temp, yi, ns);
        double ty = exp(lt[yi]);
        double row = -ty * ls[yi], non = 0;
        float *d = ds + (size_t)i * C;
        for (int k = 0; k < C; k++) {
            /* target term: d(-ty log S_y)/ds_k = ty (S_k - [k == y]) */
            double gk = ty * (exp(ls[k]) - (k == yi));
            if (k != yi) {
                double pt = exp(nt[k]);
                if (pt > 0)
                    non += pt * ns[k];
                /* non-target term: gamma temp^2 * (1/temp) (N(S)_k - N(T)_k) */
                gk += gamma * temp * (exp(ns[k]) - pt);
            }
            d[k] += (float)(g * gk);
        }
        total += row - gamma * (double)temp * temp * non;
    }
    loss[0] += (float)(weight * total / B);
}
