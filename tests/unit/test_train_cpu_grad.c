/* Finite-difference gradient checks of the CPU backend's backward passes.
 *
 * For each op, a scalar L = sum_i r_i * out_i (r fixed random weights, summed
 * in double) or the loss value itself; each input coordinate is moved by +-h
 * and (L+ - L-) / 2h is compared with the analytic gradient from the op's
 * backward pass. Inputs are float32, so the central difference carries the
 * forward pass's rounding: tolerance |fd - analytic| <= 2e-3 * max|analytic|
 * + 1e-2 * |analytic| (linear ops, h = 1e-2) and the same with h = 1e-3 for
 * the nonlinear ones (inputs kept away from kinks and ties by more than h).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static be_ctx *B;
static const be_ops *O;
static uint64_t rng_state = 88172645463325252ull;

static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void)
{
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}
static float *randv(size_t n, double scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(nrand() * scale);
    return p;
}
static double *randd(size_t n)
{
    double *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = nrand();
    return p;
}
static double dot(const float *y, const double *r, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += y[i] * r[i];
    return s;
}

static void setup(void)
{
    cm_err err;
    B = be_cpu_create(2, &err);
    cr_assert(B, "%s", err.msg);
    O = B->ops;
}
static void teardown(void)
{
    cm_err err;
    cr_expect_eq(O->status(B, &err), 0, "backend failed: %s", err.msg);
    O->destroy(B);
}
TestSuite(cpu_grad, .init = setup, .fini = teardown);

/* The scalar under test, as a function of the (mutable) input `v`. */
typedef double (*scalar_fn)(void *ctx);

/* Compares grad[i] with the central difference of f over v[i] for every i (or `maxcheck` of them). */
static void gradcheck(const char *what, scalar_fn f, void *ctx, float *v, const float *grad, size_t n, float h,
                      size_t maxcheck)
{
    double gmax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(grad[i]));
    cr_assert(gmax > 0, "%s: analytic gradient is all zero", what);
    size_t step = n > maxcheck ? n / maxcheck : 1;
    for (size_t i = 0; i < n; i += step) {
        float keep = v[i];
        v[i] = keep + h;
        double up = f(ctx);
        v[i] = keep - h;
        double dn = f(ctx);
        v[i] = keep;
        double fd = (up - dn) / ((double)(keep + h) - (double)(keep - h));
        double err = fabs(fd - grad[i]), tol = 2e-3 * gmax + 1e-2 * fabs(grad[i]);
        cr_assert(err <= tol, "%s[%zu]: analytic %.8g, finite difference %.8g (max |g| %.4g)", what, i, grad[i], fd,
                  gmax);
    }
}

/* ------------------------------------------------------------------ conv */

typedef struct conv_t {
    be_conv_shape s;
    float *x, *w, *y;
    double *r;
    size_t ny;
} conv_t;

static double conv_L(void *p)
{
    conv_t *c = p;
    O->conv_fwd(B, &c->s, c->x, c->w, c->y);
    return dot(c->y, c->r, c->ny);
}

static void conv_case(int n, int ch, int h, int w, int k, int kk, int stride, int pad)
{
    conv_t c = {.s = {n, ch, h, w, k, kk, kk, stride, pad}};
    int oh = (h + 2 * pad - kk) / stride + 1, ow = (w + 2 * pad - kk) / stride + 1;
    size_t nx = (size_t)n * ch * h * w, nw = (size_t)k * ch * kk * kk;
    c.ny = (size_t)n * k * oh * ow;
    c.x = randv(nx, 1);
    c.w = randv(nw, 0.3);
    c.y = malloc(c.ny * sizeof(float));
    c.r = randd(c.ny);
    float *dy = malloc(c.ny * sizeof(float)), *dx = malloc(nx * sizeof(float)), *dw = malloc(nw * sizeof(float));
    for (size_t i = 0; i < c.ny; i++)
        dy[i] = (float)c.r[i];
    O->conv_bwd_data(B, &c.s, dy, c.w, dx);
    O->conv_bwd_filter(B, &c.s, c.x, dy, dw);
    char name[96];
    snprintf(name, sizeof name, "conv %dx%d s%d p%d dx", kk, kk, stride, pad);
    gradcheck(name, conv_L, &c, c.x, dx, nx, 1e-2f, 300);
    snprintf(name, sizeof name, "conv %dx%d s%d p%d dw", kk, kk, stride, pad);
    gradcheck(name, conv_L, &c, c.w, dw, nw, 1e-2f, 300);
    free(c.x), free(c.w), free(c.y), free(c.r), free(dy), free(dx), free(dw);
}

Test(cpu_grad, conv_7x7_s2_p3) { conv_case(2, 3, 17, 15, 4, 7, 2, 3); }
Test(cpu_grad, conv_3x3_s2_p1) { conv_case(2, 4, 9, 10, 5, 3, 2, 1); }
Test(cpu_grad, conv_3x3_s1_p1) { conv_case(3, 3, 7, 8, 4, 3, 1, 1); }
Test(cpu_grad, conv_1x1_s2) { conv_case(2, 4, 9, 7, 6, 1, 2, 0); }
Test(cpu_grad, conv_1x1_s1_pooled) { conv_case(5, 8, 1, 1, 6, 1, 1, 0); }
Test(cpu_grad, conv_1x1_s1_big_plane) { conv_case(1, 3, 60, 60, 2, 1, 1, 0); }
Test(cpu_grad, conv_3x3_s1_big_plane) { conv_case(1, 2, 60, 56, 2, 3, 1, 1); }

/* ------------------------------------------------------------------ batch norm */

typedef struct bn_t {
    int n, c, hw;
    float *x, *g, *b, *rm, *rv, *y, *sm, *si;
    double *r;
} bn_t;

static double bn_L(void *p)
{
    bn_t *t = p;
    O->bn_fwd_train(B, t->n, t->c, t->hw, t->x, t->g, t->b, t->rm, t->rv, 0.1f, 1e-5f, t->y, t->sm, t->si);
    return dot(t->y, t->r, (size_t)t->n * t->c * t->hw);
}

Test(cpu_grad, batch_norm)
{
    bn_t t = {.n = 4, .c = 3, .hw = 6};
    size_t nx = (size_t)t.n * t.c * t.hw;
    t.x = randv(nx, 1.5);
    t.g = randv(3, 1);
    t.b = randv(3, 1);
    t.rm = randv(3, 1);
    t.rv = randv(3, 1);
    t.y = malloc(nx * sizeof(float));
    t.sm = malloc(3 * sizeof(float));
    t.si = malloc(3 * sizeof(float));
    t.r = randd(nx);
    float *dy = malloc(nx * sizeof(float)), *dx = malloc(nx * sizeof(float)), dg[3], db[3];
    for (size_t i = 0; i < nx; i++)
        dy[i] = (float)t.r[i];
    bn_L(&t);
    O->bn_bwd(B, t.n, t.c, t.hw, t.x, dy, t.g, t.sm, t.si, dx, dg, db);
    gradcheck("bn dx", bn_L, &t, t.x, dx, nx, 1e-3f, 1000);
    gradcheck("bn dgamma", bn_L, &t, t.g, dg, 3, 1e-3f, 10);
    gradcheck("bn dbeta", bn_L, &t, t.b, db, 3, 1e-3f, 10);
    free(t.x), free(t.g), free(t.b), free(t.rm), free(t.rv), free(t.y), free(t.sm), free(t.si), free(t.r);
    free(dy), free(dx);
}

/* ------------------------------------------------------------------ activations and pools */

typedef struct ew_t {
    int kind; /* 0 relu, 1 leaky, 2 maxpool, 3 avgpool */
    size_t nx, ny;
    float *x, *y;
    double *r;
    be_pool_shape ps;
} ew_t;

static double ew_L(void *p)
{
    ew_t *t = p;
    switch (t->kind) {
    case 0: O->relu_fwd(B, t->nx, t->x, t->y); break;
    case 1: O->leaky_fwd(B, t->nx, 0.1f, t->x, t->y); break;
    case 2: O->maxpool_fwd(B, &t->ps, t->x, t->y); break;
    default: O->avgpool_fwd(B, t->ps.n, t->ps.c, t->ps.h * t->ps.w, t->x, t->y); break;
    }
    return dot(t->y, t->r, t->ny);
}

static void ew_case(int kind, const char *name)
{
    ew_t t = {.kind = kind, .ps = {2, 3, 9, 8, 3, 3, 2, 1}};
    t.nx = (size_t)2 * 3 * 9 * 8;
    int oh = (9 + 2 - 3) / 2 + 1, ow = (8 + 2 - 3) / 2 + 1;
    t.ny = kind <= 1 ? t.nx : kind == 2 ? (size_t)2 * 3 * oh * ow : 6;
    t.x = malloc(t.nx * sizeof(float));
    /* distinct values on a grid of spacing 0.01, away from 0: no ties or kinks within h */
    for (size_t i = 0; i < t.nx; i++)
        t.x[i] = (float)(((i * 7919) % t.nx) * 0.01 - t.nx * 0.005 + 0.005);
    t.y = malloc(t.nx * sizeof(float));
    t.r = randd(t.ny);
    float *dy = malloc(t.ny * sizeof(float)), *dx = malloc(t.nx * sizeof(float));
    for (size_t i = 0; i < t.ny; i++)
        dy[i] = (float)t.r[i];
    ew_L(&t);
    switch (kind) {
    case 0: O->relu_bwd(B, t.nx, t.y, dy, dx); break;
    case 1: O->leaky_bwd(B, t.nx, 0.1f, t.x, dy, dx); break;
    case 2: O->maxpool_bwd(B, &t.ps, t.x, t.y, dy, dx); break;
    default: O->avgpool_bwd(B, 2, 3, 72, dy, dx); break;
    }
    gradcheck(name, ew_L, &t, t.x, dx, t.nx, 1e-3f, 1000);
    free(t.x), free(t.y), free(t.r), free(dy), free(dx);
}

Test(cpu_grad, relu) { ew_case(0, "relu"); }
Test(cpu_grad, leaky) { ew_case(1, "leaky"); }
Test(cpu_grad, maxpool) { ew_case(2, "maxpool"); }
Test(cpu_grad, avgpool) { ew_case(3, "avgpool"); }

/* ------------------------------------------------------------------ linear */

typedef struct lin_t {
    float *x, *w, *b, *y;
    double *r;
} lin_t;

static double lin_L(void *p)
{
    lin_t *t = p;
    O->linear_fwd(B, 5, 7, 4, t->x, t->w, t->b, t->y);
    return dot(t->y, t->r, 20);
}

Test(cpu_grad, linear)
{
    lin_t t = {randv(35, 1), randv(28, 1), randv(4, 1), malloc(20 * sizeof(float)), randd(20)};
    float dy[20], dx[35], dw[28], db[4];
    for (int i = 0; i < 20; i++)
        dy[i] = (float)t.r[i];
    O->linear_bwd(B, 5, 7, 4, t.x, t.w, dy, dx, dw, db);
    gradcheck("linear dx", lin_L, &t, t.x, dx, 35, 1e-2f, 100);
    gradcheck("linear dw", lin_L, &t, t.w, dw, 28, 1e-2f, 100);
    gradcheck("linear db", lin_L, &t, t.b, db, 4, 1e-2f, 100);
    free(t.x), free(t.w), free(t.b), free(t.y), free(t.r);
}

/* ------------------------------------------------------------------ losses */

enum { NB = 6, NC = 9 };
typedef struct loss_t {
    int kind; /* 0 ce, 1 kl, 2 nt_kl, 3 nkd */
    float t[NB * NC], s[NB * NC], keep[NB], temp;
    int32_t y[NB];
} loss_t;

static double loss_run(loss_t *l, float *grad)
{
    float loss = 0, scratch[NB * NC];
    float *d = grad ? grad : scratch;
    memset(d, 0, sizeof scratch);
    switch (l->kind) {
    case 0: O->ce(B, NB, NC, l->s, l->y, 0.7f, &loss, d); break;
    case 1: O->kl(B, NB, NC, l->t, l->s, l->temp, 0.7f, &loss, d); break;
    case 2: O->nt_kl(B, NB, NC, l->t, l->s, l->y, l->keep, 0.7f, &loss, d); break;
    default: O->nkd(B, NB, NC, l->t, l->s, l->y, l->temp, 1.5f, 0.7f, &loss, d); break;
    }
    return loss;
}
static double loss_L(void *p) { return loss_run(p, NULL); }

static void loss_case(int kind, float temp, const char *name)
{
    loss_t l = {.kind = kind, .temp = temp};
    for (int i = 0; i < NB * NC; i++)
        l.t[i] = (float)(2 * nrand()), l.s[i] = (float)(2 * nrand());
    for (int i = 0; i < NB; i++)
        l.y[i] = (int32_t)(urand() * NC), l.keep[i] = i % 3 != 1;
    float g[NB * NC];
    loss_run(&l, g);
    gradcheck(name, loss_L, &l, l.s, g, NB * NC, 1e-2f, 100);
    if (kind == 2) /* the target logit gets no gradient through NT */
        for (int i = 0; i < NB; i++)
            cr_expect_eq(g[i * NC + l.y[i]], 0.0f);
}

Test(cpu_grad, ce) { loss_case(0, 1, "ce"); }
Test(cpu_grad, kl) { loss_case(1, 1, "kl"); }
Test(cpu_grad, kl_temp4) { loss_case(1, 4, "kl T=4"); }
Test(cpu_grad, nt_kl) { loss_case(2, 1, "nt_kl"); }
Test(cpu_grad, nkd) { loss_case(3, 1, "nkd"); }
Test(cpu_grad, nkd_temp2) { loss_case(3, 2, "nkd T=2"); }

/* ------------------------------------------------------------------ constructor and status */

Test(cpu_create, bad_thread_count)
{
    cm_err err = {{0}};
    cr_assert_null(be_cpu_create(1 << 20, &err));
    cr_assert(strstr(err.msg, "thread") != NULL, "%s", err.msg);
    be_ctx *b = be_cpu_create(0, &err); /* 0: all cores */
    cr_assert_not_null(b, "%s", err.msg);
    cr_assert_str_eq(b->ops->name, "cpu");
    b->ops->destroy(b);
}

Test(cpu_create, sticky_failure)
{
    cm_err err;
    be_ctx *b = be_cpu_create(1, &err);
    cr_assert_not_null(b);
    float z[6] = {0}, dz[6] = {0}, loss = 0;
    int32_t y[2] = {0, 5};
    cr_assert_eq(b->ops->status(b, &err), 0);
    b->ops->ce(b, 2, 3, z, y, 1, &loss, dz);
    cr_assert_eq(b->ops->status(b, &err), -1);
    cr_assert(strstr(err.msg, "label 5") != NULL, "%s", err.msg);
    b->ops->destroy(b);
}
