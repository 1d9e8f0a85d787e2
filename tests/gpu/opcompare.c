/* opcompare: every operation of kernels/kernels.h, forward and backward, run
 * through the CPU backend and the CUDA backend on the same random inputs;
 * prints the error of each output against its tolerance and exits 1 when one
 * fails (2 when the CUDA backend cannot be created).
 *
 * Driven by the table COVER below: every entry of be_ops names the test that
 * runs it, and the program refuses to run (exit 2) when an entry of be_ops has
 * no row (tools/check_structure.py checks the same by name), so no op can be
 * skipped. C2KD_GPUTEST_ON_CPU=1 runs the harness with the CPU backend in the
 * GPU's place (a self-check on a machine without a GPU).
 *
 *   opcompare [--tf32 0|1] [--small] [--seed N]
 *
 * Errors: "rel" is ||gpu - cpu||_2 / ||cpu||_2 over the whole output, "max"
 * the largest absolute difference. Outputs that backward ops overwrite are
 * poisoned with NaN on the GPU first, so an element the GPU leaves unwritten
 * fails. Tolerances (on rel) are in the table `TOL_*` below: float32 paths
 * 1e-5 (element-wise, losses), 1e-4 (reductions: conv, BN, linear); with TF32
 * convolutions and linear layers 5e-3. Integer outputs (argmax, the Kendall
 * selection) must be equal.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static uint64_t rng_s;
static uint64_t next_u64(void)
{
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float unif(void) { return (float)((next_u64() >> 11) * (1.0 / 9007199254740992.0)); }
static float gauss(void)
{
    float u = unif() + 1e-12f, v = unif();
    return sqrtf(-2.f * logf(u)) * cosf(6.2831853f * v);
}

static be_ctx *cpu, *gpu;
static int failures, checks, tf32;
static be_options bopt; /* the CUDA backend's options (--tf32, --bn, --cudnn-find) */
static double TOL_EW = 1e-5, TOL_RED = 1e-4, TOL_MM;

static float *hrand(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = gauss() * scale;
    return p;
}
static float *hcopy(const float *x, size_t n)
{
    float *p = malloc(n * sizeof *p);
    memcpy(p, x, n * sizeof *p);
    return p;
}
/* device copy of a host array */
static void *up(const void *h, size_t bytes)
{
    void *d = gpu->ops->alloc(gpu, bytes);
    if (d && bytes) gpu->ops->to_device(gpu, d, h, bytes);
    gpu->ops->sync(gpu);
    return d;
}
static void *poisoned(size_t n)
{
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    void *d = up(h, n * sizeof *h);
    free(h);
    return d;
}
static float *down(const void *d, size_t n)
{
    float *h = malloc(n * sizeof *h + 1);
    gpu->ops->to_host(gpu, h, d, n * sizeof *h);
    return h;
}

static void check(const char *op, const char *what, const float *ref, const float *dev_ptr, size_t n, double tol)
{
    float *g = down(dev_ptr, n);
    double num = 0, den = 0, mx = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)g[i] - ref[i];
        if (isnan(g[i]) != isnan(ref[i]) || isinf(g[i]) != isinf(ref[i])) bad++;
        if (isfinite(d)) {
            num += d * d;
            if (fabs(d) > mx) mx = fabs(d);
        }
        if (isfinite(ref[i])) den += (double)ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int ok = bad == 0 && rel <= tol;
    checks++;
    if (!ok) failures++;
    printf("%-4s %-22s %-10s n=%-9zu rel=%.3e max=%.3e tol=%.0e%s\n", ok ? "ok" : "FAIL", op, what, n, rel, mx, tol,
           bad ? " (non-finite mismatch)" : "");
    free(g);
}
static void check_i32(const char *op, const int32_t *ref, const void *dev_ptr, size_t n)
{
    int32_t *g = malloc(n * sizeof *g + 1);
    gpu->ops->to_host(gpu, g, dev_ptr, n * sizeof *g);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += g[i] != ref[i];
    checks++;
    if (diff) failures++;
    printf("%-4s %-22s %-10s n=%-9zu differing=%zu\n", diff ? "FAIL" : "ok", op, "exact", n, diff);
    free(g);
}
static void check_status(const char *op)
{
    cm_err e = {{0}};
    if (gpu->ops->status(gpu, &e) != 0) {
        printf("FAIL %-22s cuda status: %s\n", op, e.msg);
        failures++;
        exit(1);
    }
    if (cpu->ops->status(cpu, &e) != 0) {
        printf("FAIL %-22s cpu status: %s\n", op, e.msg);
        failures++;
        exit(1);
    }
}

/* ---------------- tests ---------------- */

static void t_conv(int n, int c, int h, int w, int k, int kh, int stride, int pad)
{
    be_conv_shape s = {n, c, h, w, k, kh, kh, stride, pad};
    int oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kh) / stride + 1;
    size_t nx = (size_t)n * c * h * w, nw = (size_t)k * c * kh * kh, ny = (size_t)n * k * oh * ow;
    float *x = hrand(nx, 1), *wt = hrand(nw, 1.f / sqrtf((float)c * kh * kh)), *dy = hrand(ny, 1);
    float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4);
    cpu->ops->conv_fwd(cpu, &s, x, wt, y);
    cpu->ops->conv_bwd_data(cpu, &s, dy, wt, dx);
    cpu->ops->conv_bwd_filter(cpu, &s, x, dy, dw);
    float *gx = up(x, nx * 4), *gw = up(wt, nw * 4), *gdy = up(dy, ny * 4);
    float *gy = poisoned(ny), *gdx = poisoned(nx), *gdw = poisoned(nw);
    gpu->ops->conv_fwd(gpu, &s, gx, gw, gy);
    gpu->ops->conv_bwd_data(gpu, &s, gdy, gw, gdx);
    gpu->ops->conv_bwd_filter(gpu, &s, gx, gdy, gdw);
    /* a second call uses the cached algorithm */
    gpu->ops->conv_fwd(gpu, &s, gx, gw, gy);
    check_status("conv");
    char name[64];
    snprintf(name, sizeof name, "conv %dx%d s%d c%d>%d", kh, kh, stride, c, k);
    check(name, "y", y, gy, ny, TOL_MM);
    check(name, "dx", dx, gdx, nx, TOL_MM);
    check(name, "dw", dw, gdw, nw, TOL_MM);
    free(x); free(wt); free(dy); free(y); free(dx); free(dw);
    gpu->ops->free(gpu, gx); gpu->ops->free(gpu, gw); gpu->ops->free(gpu, gdy);
    gpu->ops->free(gpu, gy); gpu->ops->free(gpu, gdx); gpu->ops->free(gpu, gdw);
}

static void t_bn(int n, int c, int hw)
{
    size_t nx = (size_t)n * c * hw;
    float *x = hrand(nx, 2), *dy = hrand(nx, 1), *gamma = hrand(c, 1), *beta = hrand(c, 1);
    for (size_t i = 0; i < nx; i++) x[i] += 0.5f;
    float *rm = hrand(c, 0.1f), *rv = malloc(c * 4);
    for (int i = 0; i < c; i++) rv[i] = 0.5f + unif();
    float *rm0 = hcopy(rm, c), *rv0 = hcopy(rv, c);
    float *y = malloc(nx * 4), *sm = malloc(c * 4), *si = malloc(c * 4), *dx = malloc(nx * 4), *dg = malloc(c * 4),
          *db = malloc(c * 4), *ye = malloc(nx * 4);
    cpu->ops->bn_fwd_train(cpu, n, c, hw, x, gamma, beta, rm, rv, 0.1f, 1e-5f, y, sm, si);
    cpu->ops->bn_bwd(cpu, n, c, hw, x, dy, gamma, sm, si, dx, dg, db);
    cpu->ops->bn_fwd_eval(cpu, n, c, hw, x, gamma, beta, rm, rv, 1e-5f, ye);
    float *gx = up(x, nx * 4), *gdy = up(dy, nx * 4), *gg = up(gamma, c * 4), *gb = up(beta, c * 4);
    float *grm = up(rm0, c * 4), *grv = up(rv0, c * 4);
    float *gy = poisoned(nx), *gsm = poisoned(c), *gsi = poisoned(c), *gdx = poisoned(nx), *gdg = poisoned(c),
          *gdb = poisoned(c), *gye = poisoned(nx);
    gpu->ops->bn_fwd_train(gpu, n, c, hw, gx, gg, gb, grm, grv, 0.1f, 1e-5f, gy, gsm, gsi);
    gpu->ops->bn_bwd(gpu, n, c, hw, gx, gdy, gg, gsm, gsi, gdx, gdg, gdb);
    gpu->ops->bn_fwd_eval(gpu, n, c, hw, gx, gg, gb, grm, grv, 1e-5f, gye);
    check_status("bn");
    char name[64];
    snprintf(name, sizeof name, "bn n%d c%d hw%d", n, c, hw);
    check(name, "y", y, gy, nx, TOL_RED);
    check(name, "run_mean", rm, grm, c, TOL_RED);
    check(name, "run_var", rv, grv, c, TOL_RED);
    check(name, "save_mean", sm, gsm, c, TOL_RED);
    check(name, "save_invstd", si, gsi, c, TOL_RED);
    check(name, "dx", dx, gdx, nx, TOL_RED);
    check(name, "dgamma", dg, gdg, c, TOL_RED);
    check(name, "dbeta", db, gdb, c, TOL_RED);
    check(name, "y(eval)", ye, gye, nx, TOL_RED);
    free(x); free(dy); free(gamma); free(beta); free(rm); free(rv); free(rm0); free(rv0);
    free(y); free(sm); free(si); free(dx); free(dg); free(db); free(ye);
    void *ds[] = {gx, gdy, gg, gb, grm, grv, gy, gsm, gsi, gdx, gdg, gdb, gye};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_act(size_t n)
{
    float *x = hrand(n, 1), *dy = hrand(n, 1);
    for (size_t i = 0; i < n; i += 7) x[i] = 0.f; /* the boundary */
    float *y = malloc(n * 4), *dx = malloc(n * 4), *ly = malloc(n * 4), *ldx = malloc(n * 4);
    cpu->ops->relu_fwd(cpu, n, x, y);
    cpu->ops->relu_bwd(cpu, n, y, dy, dx);
    cpu->ops->leaky_fwd(cpu, n, 0.1f, x, ly);
    cpu->ops->leaky_bwd(cpu, n, 0.1f, x, dy, ldx);
    float *gx = up(x, n * 4), *gdy = up(dy, n * 4), *gy = poisoned(n), *gdx = poisoned(n), *gly = poisoned(n),
          *gldx = poisoned(n);
    gpu->ops->relu_fwd(gpu, n, gx, gy);
    gpu->ops->relu_bwd(gpu, n, gy, gdy, gdx);
    gpu->ops->leaky_fwd(gpu, n, 0.1f, gx, gly);
    gpu->ops->leaky_bwd(gpu, n, 0.1f, gx, gdy, gldx);
    check_status("activations");
    check("relu", "y", y, gy, n, TOL_EW);
    check("relu", "dx", dx, gdx, n, TOL_EW);
    check("leaky_relu", "y", ly, gly, n, TOL_EW);
    check("leaky_relu", "dx", ldx, gldx, n, TOL_EW);
    /* in place */
    gpu->ops->relu_fwd(gpu, n, gx, gx);
    check("relu in-place", "y", y, gx, n, TOL_EW);
    free(x); free(dy); free(y); free(dx); free(ly); free(ldx);
    void *ds[] = {gx, gdy, gy, gdx, gly, gldx};
    for (size_t i = 0; i < 6; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_pool(int n, int c, int h, int w)
{
    be_pool_shape s = {n, c, h, w, 3, 3, 2, 1};
    int oh = (h + 2 - 3) / 2 + 1, ow = (w + 2 - 3) / 2 + 1;
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * oh * ow;
    float *x = hrand(nx, 1), *dy = hrand(ny, 1);
    for (size_t i = 0; i < nx; i++) x[i] = roundf(x[i] * 2.f) / 2.f; /* many ties */
    float *y = malloc(ny * 4), *dx = malloc(nx * 4);
    cpu->ops->maxpool_fwd(cpu, &s, x, y);
    cpu->ops->maxpool_bwd(cpu, &s, x, y, dy, dx);
    float *gx = up(x, nx * 4), *gdy = up(dy, ny * 4), *gy = poisoned(ny), *gdx = poisoned(nx);
    gpu->ops->maxpool_fwd(gpu, &s, gx, gy);
    gpu->ops->maxpool_bwd(gpu, &s, gx, gy, gdy, gdx);
    check_status("maxpool");
    check("maxpool 3x3 s2 p1 ties", "y", y, gy, ny, TOL_EW);
    check("maxpool 3x3 s2 p1 ties", "dx", dx, gdx, nx, TOL_EW);
    /* global average pool */
    int hw = h * w;
    float *ay = malloc((size_t)n * c * 4), *adx = malloc(nx * 4);
    float *ady = hrand((size_t)n * c, 1);
    cpu->ops->avgpool_fwd(cpu, n, c, hw, x, ay);
    cpu->ops->avgpool_bwd(cpu, n, c, hw, ady, adx);
    float *gay = poisoned((size_t)n * c), *gady = up(ady, (size_t)n * c * 4), *gadx = poisoned(nx);
    gpu->ops->avgpool_fwd(gpu, n, c, hw, gx, gay);
    gpu->ops->avgpool_bwd(gpu, n, c, hw, gady, gadx);
    check_status("avgpool");
    check("avgpool", "y", ay, gay, (size_t)n * c, TOL_EW);
    check("avgpool", "dx", adx, gadx, nx, TOL_EW);
    free(x); free(dy); free(y); free(dx); free(ay); free(adx); free(ady);
    void *ds[] = {gx, gdy, gy, gdx, gay, gady, gadx};
    for (size_t i = 0; i < 7; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_linear(int n, int in, int out)
{
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = hrand(nx, 1), *w = hrand(nw, 1.f / sqrtf((float)in)), *bias = hrand(out, 1), *dy = hrand(ny, 1);
    float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *db = malloc(out * 4), *y2 = malloc(ny * 4);
    cpu->ops->linear_fwd(cpu, n, in, out, x, w, bias, y);
    cpu->ops->linear_fwd(cpu, n, in, out, x, w, NULL, y2);
    cpu->ops->linear_bwd(cpu, n, in, out, x, w, dy, dx, dw, db);
    float *gx = up(x, nx * 4), *gw = up(w, nw * 4), *gb = up(bias, out * 4), *gdy = up(dy, ny * 4);
    float *gy = poisoned(ny), *gy2 = poisoned(ny), *gdx = poisoned(nx), *gdw = poisoned(nw), *gdb = poisoned(out),
          *gdw2 = poisoned(nw);
    gpu->ops->linear_fwd(gpu, n, in, out, gx, gw, gb, gy);
    gpu->ops->linear_fwd(gpu, n, in, out, gx, gw, NULL, gy2);
    gpu->ops->linear_bwd(gpu, n, in, out, gx, gw, gdy, gdx, gdw, gdb);
    gpu->ops->linear_bwd(gpu, n, in, out, gx, gw, gdy, NULL, gdw2, NULL);
    check_status("linear");
    char name[64];
    snprintf(name, sizeof name, "linear %d>%d n%d", in, out, n);
    check(name, "y", y, gy, ny, TOL_MM);
    check(name, "y(nobias)", y2, gy2, ny, TOL_MM);
    check(name, "dx", dx, gdx, nx, TOL_MM);
    check(name, "dw", dw, gdw, nw, TOL_MM);
    check(name, "dbias", db, gdb, out, TOL_RED);
    check(name, "dw(no dx)", dw, gdw2, nw, TOL_MM);
    free(x); free(w); free(bias); free(dy); free(y); free(dx); free(dw); free(db); free(y2);
    void *ds[] = {gx, gw, gb, gdy, gy, gy2, gdx, gdw, gdb, gdw2};
    for (size_t i = 0; i < 10; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_elementwise(size_t n)
{
    float *a = hrand(n, 1), *c = hrand(n, 1), *y = malloc(n * 4), *ax = hcopy(c, n), *sc = hcopy(a, n);
    cpu->ops->add(cpu, n, a, c, y);
    cpu->ops->axpy(cpu, n, 0.37f, a, ax);
    cpu->ops->scale(cpu, n, -1.7f, sc);
    float *ga = up(a, n * 4), *gc = up(c, n * 4), *gy = poisoned(n), *gax = up(c, n * 4), *gsc = up(a, n * 4);
    gpu->ops->add(gpu, n, ga, gc, gy);
    gpu->ops->axpy(gpu, n, 0.37f, ga, gax);
    gpu->ops->scale(gpu, n, -1.7f, gsc);
    check_status("element-wise");
    check("add", "y", y, gy, n, TOL_EW);
    check("axpy", "y", ax, gax, n, TOL_EW);
    check("scale", "y", sc, gsc, n, TOL_EW);
    /* sgd: odd length and an unaligned start exercise both kernel paths */
    size_t m = n - 3;
    float *p = hrand(n, 1), *g = hrand(n, 1), *mo = hrand(n, 1);
    float *gp = up(p, n * 4), *gg = up(g, n * 4), *gm = up(mo, n * 4);
    cpu->ops->sgd(cpu, m, p + 1, g + 1, mo + 1, 0.01f, 0.9f);
    gpu->ops->sgd(gpu, m, gp + 1, gg + 1, gm + 1, 0.01f, 0.9f);
    cpu->ops->sgd(cpu, n, p, g, mo, 0.02f, 0.9f);
    gpu->ops->sgd(gpu, n, gp, gg, gm, 0.02f, 0.9f);
    check_status("sgd");
    check("sgd", "param", p, gp, n, TOL_EW);
    check("sgd", "momentum", mo, gm, n, TOL_EW);
    free(a); free(c); free(y); free(ax); free(sc); free(p); free(g); free(mo);
    void *ds[] = {ga, gc, gy, gax, gsc, gp, gg, gm};
    for (size_t i = 0; i < 8; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_losses(int B, int C)
{
    size_t n = (size_t)B * C;
    float *z = hrand(n, 3), *t = hrand(n, 3), *d0 = hrand(n, 0.01f);
    int32_t *y = malloc(B * 4);
    float *keep = malloc(B * 4);
    for (int i = 0; i < B; i++) {
        y[i] = (int32_t)(next_u64() % C);
        keep[i] = (i % 3) ? 1.f : 0.f;
    }
    int32_t *gy = up(y, B * 4);
    float *gz = up(z, n * 4), *gt = up(t, n * 4), *gk = up(keep, B * 4);
    struct {
        const char *name;
        int which;
        float temp;
    } L[] = {{"ce", 0, 1}, {"kl T=1", 1, 1}, {"kl T=4", 1, 4}, {"nt_kl", 2, 1}, {"nkd T=1", 3, 1}, {"nkd T=2", 3, 2}};
    for (size_t l = 0; l < sizeof L / sizeof *L; l++) {
        float loss = 0.25f, *dz = hcopy(d0, n);
        float *gloss = up(&loss, 4), *gdz = up(d0, n * 4);
        float w = 0.7f;
        switch (L[l].which) {
        case 0:
            cpu->ops->ce(cpu, B, C, z, y, w, &loss, dz);
            gpu->ops->ce(gpu, B, C, gz, gy, w, gloss, gdz);
            break;
        case 1:
            cpu->ops->kl(cpu, B, C, t, z, L[l].temp, w, &loss, dz);
            gpu->ops->kl(gpu, B, C, gt, gz, L[l].temp, w, gloss, gdz);
            break;
        case 2:
            cpu->ops->nt_kl(cpu, B, C, t, z, y, keep, w, &loss, dz);
            gpu->ops->nt_kl(gpu, B, C, gt, gz, gy, gk, w, gloss, gdz);
            break;
        default:
            cpu->ops->nkd(cpu, B, C, t, z, y, L[l].temp, 1.5f, w, &loss, dz);
            gpu->ops->nkd(gpu, B, C, gt, gz, gy, L[l].temp, 1.5f, w, gloss, gdz);
        }
        check_status(L[l].name);
        check(L[l].name, "loss", &loss, gloss, 1, TOL_EW);
        check(L[l].name, "grad", dz, gdz, n, TOL_EW);
        free(dz);
        gpu->ops->free(gpu, gloss);
        gpu->ops->free(gpu, gdz);
    }
    /* argmax, with ties (first maximum) */
    for (size_t i = 0; i < n; i++) z[i] = roundf(z[i]);
    int32_t *pred = malloc(B * 4);
    cpu->ops->argmax(cpu, B, C, z, pred);
    float *gz2 = up(z, n * 4);
    int32_t *gpred = up(pred, B * 4);
    gpu->ops->zero(gpu, gpred, B * 4);
    gpu->ops->argmax(gpu, B, C, gz2, gpred);
    check_status("argmax");
    check_i32("argmax (ties)", pred, gpred, B);
    free(pred);
    free(z); free(t); free(d0); free(y); free(keep);
    void *ds[] = {gy, gz, gt, gk, gz2, gpred};
    for (size_t i = 0; i < 6; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_kendall(int B, int C)
{
    size_t n = (size_t)B * C;
    float *a = hrand(n, 1), *c = hrand(n, 1);
    for (int i = 0; i < B; i++) {
        float *ra = a + (size_t)i * C, *rc = c + (size_t)i * C;
        switch (i % 5) {
        case 0: break;                                                               /* distinct */
        case 1: for (int k = 0; k < C; k++) { ra[k] = roundf(ra[k] * 2); rc[k] = roundf(rc[k] * 2); } break; /* ties */
        case 2: for (int k = 0; k < C; k++) rc[k] = ra[k] * 2.f + 0.1f * rc[k]; break; /* correlated */
        case 3: for (int k = 0; k < C; k++) ra[k] = 1.f; break;                      /* constant: NaN */
        case 4: for (int k = 0; k < C; k++) rc[k] = -ra[k]; break;                   /* tau = -1 */
        }
    }
    float *tau = malloc(B * 4), *keep = malloc(B * 4);
    cpu->ops->kendall_select(cpu, B, C, a, c, 0.f, tau, keep);
    float *ga = up(a, n * 4), *gc = up(c, n * 4), *gtau = poisoned(B), *gkeep = poisoned(B);
    gpu->ops->kendall_select(gpu, B, C, ga, gc, 0.f, gtau, gkeep);
    check_status("kendall");
    check("kendall tau-b", "tau", tau, gtau, B, 1e-6);
    check("kendall tau-b", "keep", keep, gkeep, B, 0);
    free(a); free(c); free(tau); free(keep);
    void *ds[] = {ga, gc, gtau, gkeep};
    for (size_t i = 0; i < 4; i++) gpu->ops->free(gpu, ds[i]);
}

static void t_prep(int n, size_t len)
{
    size_t m = (size_t)n * len;
    uint16_t *h = malloc(m * 2);
    for (size_t i = 0; i < m; i++) /* finite halves in [2^-5, 2^5), both signs */
        h[i] = (uint16_t)(((next_u64() & 1) << 15) | ((10 + next_u64() % 10) << 10) | (next_u64() & 0x3ff));
    float *o1 = malloc(m * 4), *o0 = malloc(m * 4);
    cpu->ops->prep_spec(cpu, n, len, h, 1, o1);
    cpu->ops->prep_spec(cpu, n, len, h, 0, o0);
    uint16_t *gh = up(h, m * 2);
    float *g1 = poisoned(m), *g0 = poisoned(m);
    gpu->ops->prep_spec(gpu, n, len, gh, 1, g1);
    gpu->ops->prep_spec(gpu, n, len, gh, 0, g0);
    check_status("prep_spec");
    check("prep_spec standardise", "out", o1, g1, m, TOL_EW);
    check("prep_spec raw", "out", o0, g0, m, 0);
    free(h); free(o1); free(o0);
    gpu->ops->free(gpu, gh); gpu->ops->free(gpu, g1); gpu->ops->free(gpu, g0);

    /* frames: two source images, crops that shrink, enlarge, flip, touch the edges */
    int W0 = 160, H0 = 90, W1 = 97, H1 = 131;
    size_t b0 = (size_t)W0 * H0 * 3, b1 = (size_t)W1 * H1 * 3;
    uint8_t *img = malloc(b0 + b1);
    for (size_t i = 0; i < b0 + b1; i++) img[i] = (uint8_t)(next_u64() & 255);
    be_crop cr[] = {
        {0, W0, H0, 0, 0, W0, H0, 0},    {0, W0, H0, 10, 5, 50, 40, 1},   {0, W0, H0, W0 - 17, H0 - 9, 17, 9, 0},
        {b0, W1, H1, 3, 7, 90, 120, 1},  {b0, W1, H1, 0, 0, 1, 1, 0},     {b0, W1, H1, 20, 30, 64, 64, 0},
    };
    int nf = (int)(sizeof cr / sizeof *cr), oh = 56, ow = 48;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    size_t no = (size_t)nf * 3 * oh * ow;
    float *fo = malloc(no * 4);
    cpu->ops->prep_frames(cpu, nf, cr, img, oh, ow, mean, std, fo);
    uint8_t *gimg = up(img, b0 + b1);
    float *gfo = poisoned(no);
    gpu->ops->prep_frames(gpu, nf, cr, gimg, oh, ow, mean, std, gfo);
    check_status("prep_frames");
    check("prep_frames", "out", fo, gfo, no, TOL_EW);
    free(img); free(fo);
    gpu->ops->free(gpu, gimg); gpu->ops->free(gpu, gfo);
}

/* Staged copies (the double-buffered inputs): two slots filled while the
 * other slot's data is read, released and refilled; exact. */
static void t_stage(size_t n)
{
    int32_t *h[3], *ref = malloc(n * sizeof *ref);
    for (int k = 0; k < 3; k++) {
        h[k] = gpu->ops->host_alloc(gpu, n * sizeof(int32_t));
        for (size_t i = 0; i < n; i++) h[k][i] = (int32_t)(k * 1000003 + i);
    }
    int32_t *d[2] = {gpu->ops->alloc(gpu, n * sizeof(int32_t)), gpu->ops->alloc(gpu, n * sizeof(int32_t))};
    int32_t *out = gpu->ops->alloc(gpu, n * sizeof(int32_t));
    gpu->ops->stage_copy(gpu, 0, d[0], h[0], n * sizeof(int32_t));
    gpu->ops->stage_copy(gpu, 1, d[1], h[1], n * sizeof(int32_t)); /* overlaps what follows */
    gpu->ops->stage_wait(gpu, 0);
    gpu->ops->copy(gpu, out, d[0], n * sizeof(int32_t));
    gpu->ops->stage_release(gpu, 0);
    gpu->ops->stage_copy(gpu, 0, d[0], h[2], n * sizeof(int32_t)); /* waits for the copy above */
    memcpy(ref, h[0], n * sizeof *ref);
    check_i32("stage_copy slot 0", ref, out, n);
    gpu->ops->stage_wait(gpu, 1);
    gpu->ops->stage_wait(gpu, 0);
    memcpy(ref, h[1], n * sizeof *ref);
    check_i32("stage_copy slot 1", ref, d[1], n);
    memcpy(ref, h[2], n * sizeof *ref);
    check_i32("stage_copy slot 0 again", ref, d[0], n);
    check_status("stage_copy");
    gpu->ops->sync(gpu);
    for (int k = 0; k < 3; k++) gpu->ops->host_free(gpu, h[k]);
    gpu->ops->free(gpu, d[0]); gpu->ops->free(gpu, d[1]); gpu->ops->free(gpu, out);
    free(ref);
}

/* Sticky errors: a crop outside its image fails the context with a message. */
static void t_sticky(void)
{
    cm_err e = {{0}};
    be_ctx *g2 = getenv("C2KD_GPUTEST_ON_CPU") ? be_cpu_create(0, &e) : be_cuda_create(&bopt, &e);
    if (!g2) { printf("FAIL sticky: cannot create a second context: %s\n", e.msg); failures++; return; }
    be_crop bad = {0, 10, 10, 5, 5, 10, 10, 0};
    const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    void *src = g2->ops->alloc(g2, 300), *out = g2->ops->alloc(g2, 3 * 4 * 4 * 4);
    g2->ops->prep_frames(g2, 1, &bad, src, 4, 4, mean, std, out);
    int st = g2->ops->status(g2, &e);
    checks++;
    if (st == 0 || !strstr(e.msg, "outside")) { failures++; printf("FAIL sticky error: status %d '%s'\n", st, e.msg); }
    else printf("ok   sticky error: %s\n", e.msg);
    g2->ops->free(g2, src);
    g2->ops->free(g2, out);
    g2->ops->destroy(g2);
}

/* double outputs (the split batch norm's sums) */
static void check_f64(const char *op, const char *what, const double *ref, const void *dev_ptr, size_t n, double tol)
{
    double *g = malloc(n * sizeof *g + 1);
    gpu->ops->to_host(gpu, g, dev_ptr, n * sizeof *g);
    float *gf = malloc(n * sizeof *gf + 1), *rf = malloc(n * sizeof *rf + 1);
    for (size_t i = 0; i < n; i++) {
        gf[i] = (float)g[i];
        rf[i] = (float)ref[i];
    }
    float *d = up(gf, n * sizeof *gf);
    check(op, what, rf, d, n, tol);
    gpu->ops->free(gpu, d);
    free(g); free(gf); free(rf);
}

/* Batch norm in parts (--sync-bn): the five split ops, each from the same inputs on both. */
static void t_bn_split(int n, int c, int hw)
{
    size_t nx = (size_t)n * c * hw, c2 = 2 * (size_t)c;
    double count = (double)n * hw;
    float *x = hrand(nx, 2), *dy = hrand(nx, 1), *gamma = hrand(c, 1), *beta = hrand(c, 1);
    for (size_t i = 0; i < nx; i++) x[i] += 0.5f;
    float *rm = hrand(c, 0.1f), *rv = malloc(c * 4);
    for (int i = 0; i < c; i++) rv[i] = 0.5f + unif();
    float *rm0 = hcopy(rm, c), *rv0 = hcopy(rv, c);
    double *sums = calloc(c2, sizeof *sums), *bsums = calloc(c2, sizeof *bsums);
    float *sm = malloc(c * 4), *si = malloc(c * 4), *y = malloc(nx * 4), *dg = malloc(c * 4), *db = malloc(c * 4),
          *dx = malloc(nx * 4);
    cpu->ops->bn_stats_partial(cpu, n, c, hw, x, sums);
    cpu->ops->bn_stats_finalize(cpu, c, sums, count, rm, rv, 0.1f, 1e-5f, sm, si);
    cpu->ops->bn_fwd_apply(cpu, n, c, hw, x, gamma, beta, sm, si, y);
    cpu->ops->bn_bwd_partial(cpu, n, c, hw, x, dy, sm, si, bsums, dg, db);
    cpu->ops->bn_bwd_apply(cpu, n, c, hw, x, dy, gamma, sm, si, bsums, count, dx);
    float *gx = up(x, nx * 4), *gdy = up(dy, nx * 4), *gg = up(gamma, c * 4), *gb = up(beta, c * 4);
    float *grm = up(rm0, c * 4), *grv = up(rv0, c * 4), *gsm = up(sm, c * 4), *gsi = up(si, c * 4);
    double *gsums = gpu->ops->alloc(gpu, c2 * 8), *gbsums = gpu->ops->alloc(gpu, c2 * 8), *gsums_in = up(sums, c2 * 8),
           *gbsums_in = up(bsums, c2 * 8);
    float *gsm2 = poisoned(c), *gsi2 = poisoned(c), *gy = poisoned(nx), *gdg = poisoned(c), *gdb = poisoned(c),
          *gdx = poisoned(nx);
    gpu->ops->bn_stats_partial(gpu, n, c, hw, gx, gsums);
    gpu->ops->bn_stats_finalize(gpu, c, gsums_in, count, grm, grv, 0.1f, 1e-5f, gsm2, gsi2);
    gpu->ops->bn_fwd_apply(gpu, n, c, hw, gx, gg, gb, gsm, gsi, gy);
    gpu->ops->bn_bwd_partial(gpu, n, c, hw, gx, gdy, gsm, gsi, gbsums, gdg, gdb);
    gpu->ops->bn_bwd_apply(gpu, n, c, hw, gx, gdy, gg, gsm, gsi, gbsums_in, count, gdx);
    check_status("bn in parts");
    char name[64];
    snprintf(name, sizeof name, "bn parts n%d c%d hw%d", n, c, hw);
    check_f64(name, "stats sums", sums, gsums, c2, TOL_RED);
    check(name, "run_mean", rm, grm, c, TOL_RED);
    check(name, "run_var", rv, grv, c, TOL_RED);
    check(name, "mean", sm, gsm2, c, TOL_RED);
    check(name, "invstd", si, gsi2, c, TOL_RED);
    check(name, "y(apply)", y, gy, nx, TOL_RED);
    check_f64(name, "bwd sums", bsums, gbsums, c2, TOL_RED);
    check(name, "dgamma", dg, gdg, c, TOL_RED);
    check(name, "dbeta", db, gdb, c, TOL_RED);
    check(name, "dx(apply)", dx, gdx, nx, TOL_RED);
    free(x); free(dy); free(gamma); free(beta); free(rm); free(rv); free(rm0); free(rv0); free(sums); free(bsums);
    free(sm); free(si); free(y); free(dg); free(db); free(dx);
    void *ds[] = {gx, gdy, gg, gb, grm, grv, gsm, gsi, gsums, gbsums, gsums_in, gbsums_in, gsm2, gsi2, gy, gdg, gdb, gdx};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) gpu->ops->free(gpu, ds[i]);
}

/* ReviewKD's ops: bilinear resize (down and up), adaptive pooling, attention fusion, MSE. */
static void t_review(int n, int c, int h, int w)
{
    int nc = n * c, hw = h * w;
    size_t nx = (size_t)nc * hw;
    float *x = hrand(nx, 1);
    const int sizes[][2] = {{h / 2 + 1, w / 3 + 1}, {2 * h + 1, w + 3}};
    for (int s = 0; s < 2; s++) {
        int oh = sizes[s][0], ow = sizes[s][1];
        size_t ny = (size_t)nc * oh * ow;
        float *dy = hrand(ny, 1), *y = malloc(ny * 4), *dx = malloc(nx * 4);
        cpu->ops->resize_fwd(cpu, nc, h, w, oh, ow, x, y);
        cpu->ops->resize_bwd(cpu, nc, h, w, oh, ow, dy, dx);
        float *gx = up(x, nx * 4), *gdy = up(dy, ny * 4), *gy = poisoned(ny), *gdx = poisoned(nx);
        gpu->ops->resize_fwd(gpu, nc, h, w, oh, ow, gx, gy);
        gpu->ops->resize_bwd(gpu, nc, h, w, oh, ow, gdy, gdx);
        check_status("resize");
        char name[64];
        snprintf(name, sizeof name, "resize %dx%d>%dx%d", h, w, oh, ow);
        check(name, "y", y, gy, ny, TOL_EW);
        check(name, "dx", dx, gdx, nx, TOL_EW);
        free(dy); free(y); free(dx);
        void *ds[] = {gx, gdy, gy, gdx};
        for (size_t i = 0; i < 4; i++) gpu->ops->free(gpu, ds[i]);
    }
    for (int k = 1; k <= 4; k++) { /* k = 3: windows overlap */
        size_t ny = (size_t)nc * k * k;
        float *dy = hrand(ny, 1), *y = malloc(ny * 4), *dx = malloc(nx * 4);
        cpu->ops->adapool_fwd(cpu, nc, h, w, k, x, y);
        cpu->ops->adapool_bwd(cpu, nc, h, w, k, dy, dx);
        float *gx = up(x, nx * 4), *gdy = up(dy, ny * 4), *gy = poisoned(ny), *gdx = poisoned(nx);
        gpu->ops->adapool_fwd(gpu, nc, h, w, k, gx, gy);
        gpu->ops->adapool_bwd(gpu, nc, h, w, k, gdy, gdx);
        check_status("adaptive pool");
        char name[64];
        snprintf(name, sizeof name, "adapool %dx%d>%d", h, w, k);
        check(name, "y", y, gy, ny, TOL_EW);
        check(name, "dx", dx, gdx, nx, TOL_EW);
        free(dy); free(y); free(dx);
        void *ds[] = {gx, gdy, gy, gdx};
        for (size_t i = 0; i < 4; i++) gpu->ops->free(gpu, ds[i]);
    }
    /* attention fusion of u = x and v over [n, c, hw], logits z [n, 2, hw] */
    size_t nz = (size_t)n * 2 * hw;
    float *v = hrand(nx, 1), *z = hrand(nz, 2), *bias = hrand(2, 1), *dr = hrand(nx, 1);
    float *a = malloc(nz * 4), *r = malloc(nx * 4), *du = malloc(nx * 4), *dv = malloc(nx * 4), *dz = malloc(nz * 4),
          *dbias = malloc(2 * 4);
    cpu->ops->att_fwd(cpu, n, c, hw, x, v, z, bias, a, r);
    cpu->ops->att_bwd(cpu, n, c, hw, x, v, a, dr, du, dv, dz, dbias);
    float *gu = up(x, nx * 4), *gv = up(v, nx * 4), *gz = up(z, nz * 4), *gbias = up(bias, 8), *gdr = up(dr, nx * 4);
    float *ga = poisoned(nz), *gr = poisoned(nx), *gdu = poisoned(nx), *gdv = poisoned(nx), *gdz = poisoned(nz),
          *gdbias = poisoned(2), *ga_cpu = up(a, nz * 4);
    gpu->ops->att_fwd(gpu, n, c, hw, gu, gv, gz, gbias, ga, gr);
    gpu->ops->att_bwd(gpu, n, c, hw, gu, gv, ga_cpu, gdr, gdu, gdv, gdz, gdbias);
    check_status("attention fusion");
    check("attention fusion", "a", a, ga, nz, TOL_EW);
    check("attention fusion", "r", r, gr, nx, TOL_EW);
    check("attention fusion", "du", du, gdu, nx, TOL_EW);
    check("attention fusion", "dv", dv, gdv, nx, TOL_EW);
    check("attention fusion", "dz", dz, gdz, nz, TOL_EW);
    check("attention fusion", "dbias", dbias, gdbias, 2, TOL_RED);
    /* MSE (a loss: accumulates into loss[0] and dx) */
    double loss = 0.25; /* a double (the HCL terms of features near FLT_MAX stay finite) */
    float *t = hrand(nx, 1), *d0 = hrand(nx, 0.01f), *mdx = hcopy(d0, nx);
    double *gloss = up(&loss, sizeof loss);
    float *gt = up(t, nx * 4), *gmdx = up(d0, nx * 4);
    cpu->ops->mse(cpu, nx, x, t, 0.7f, &loss, mdx);
    gpu->ops->mse(gpu, nx, gu, gt, 0.7f, gloss, gmdx);
    check_status("mse");
    check_f64("mse", "loss", &loss, gloss, 1, TOL_EW);
    check("mse", "dx", mdx, gmdx, nx, TOL_EW);
    free(x); free(v); free(z); free(bias); free(dr); free(a); free(r); free(du); free(dv); free(dz); free(dbias);
    free(t); free(d0); free(mdx);
    void *ds[] = {gu, gv, gz, gbias, gdr, ga, gr, gdu, gdv, gdz, gdbias, ga_cpu, gloss, gt, gmdx};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) gpu->ops->free(gpu, ds[i]);
}

static void ok_if(int cond, const char *what)
{
    checks++;
    if (!cond) failures++;
    printf("%-4s %s\n", cond ? "ok" : "FAIL", what);
}

/* The context entries no other test needs: input_threads, native_stream and the
 * optional queries (device name, statistics, profile); absent on the CPU. */
static void t_context(void)
{
    int th = gpu->ops->input_threads(gpu, 16);
    ok_if(th >= 1 && th <= 16, "input_threads in [1, cores]");
    if (!gpu->ops->device_name) {
        ok_if(!gpu->ops->stats && !gpu->ops->reset_peak && !gpu->ops->profile_reset && !gpu->ops->profile_data &&
                  !gpu->ops->native_stream,
              "optional entries absent together (harness on the CPU)");
        return;
    }
    const char *nm = gpu->ops->device_name(gpu);
    ok_if(nm && nm[0], "device_name");
    ok_if(gpu->ops->native_stream(gpu) != NULL, "native_stream");
    be_stats st;
    void *p = gpu->ops->alloc(gpu, 1 << 20);
    gpu->ops->stats(gpu, &st);
    ok_if(st.current_bytes >= (1u << 20) && st.peak_bytes >= st.current_bytes, "stats: current and peak bytes");
    gpu->ops->free(gpu, p);
    gpu->ops->reset_peak(gpu);
    gpu->ops->stats(gpu, &st);
    ok_if(st.peak_bytes == st.current_bytes, "reset_peak");
    be_profile pr;
    ok_if(gpu->ops->profile_data(gpu, &pr) == -1 && pr.n_rows == 0, "profile_data without profiling: -1");
    cm_err e = {{0}};
    be_options po = bopt;
    po.profile = 1;
    be_ctx *g2 = be_cuda_create(&po, &e);
    if (!g2) { ok_if(0, "profiling context"); return; }
    float *d = g2->ops->alloc(g2, 1024 * 4);
    g2->ops->relu_fwd(g2, 1024, d, d);
    g2->ops->profile_reset(g2);
    g2->ops->relu_fwd(g2, 1024, d, d);
    g2->ops->scale(g2, 1024, 2.f, d);
    int rc = g2->ops->profile_data(g2, &pr);
    ok_if(rc == 0 && pr.n_rows == 2 && !strcmp(pr.rows[0].op, "relu") && pr.rows[0].calls == 1 && pr.n_ops == 2,
          "profile_reset, profile_data: two ops since the reset");
    g2->ops->free(g2, d);
    g2->ops->destroy(g2);
}

/* ---------------- the table: every op of be_ops and the test that runs it ---------------- */

enum { T_HARNESS, T_CONTEXT, T_STAGE, T_CONV, T_BN, T_BN_SPLIT, T_ACT, T_POOL, T_LINEAR, T_ELEMENTWISE, T_LOSSES,
       T_KENDALL, T_REVIEW, T_PREP, T_STICKY, T_COUNT };
static const char *const TEST_NAMES[T_COUNT] = {"harness (every test)", "context", "stage", "conv", "bn", "bn in parts",
                                                "activations", "pool", "linear", "element-wise and sgd", "losses and argmax",
                                                "kendall", "review", "input preparation", "sticky errors"};

typedef struct op_cover {
    const char *op;
    size_t off;
    int test;
} op_cover;
#define OP(f, t) {#f, offsetof(be_ops, f), t}
static const op_cover COVER[] = {
    /* context */
    OP(destroy, T_HARNESS), OP(status, T_HARNESS), OP(sync, T_HARNESS), OP(alloc, T_HARNESS), OP(free, T_HARNESS),
    OP(to_device, T_HARNESS), OP(to_host, T_HARNESS), OP(zero, T_LOSSES), OP(copy, T_STAGE), OP(host_alloc, T_STAGE),
    OP(host_free, T_STAGE), OP(stage_copy, T_STAGE), OP(stage_wait, T_STAGE), OP(stage_release, T_STAGE),
    OP(input_threads, T_CONTEXT), OP(native_stream, T_CONTEXT), OP(device_name, T_CONTEXT), OP(stats, T_CONTEXT),
    OP(reset_peak, T_CONTEXT), OP(profile_reset, T_CONTEXT), OP(profile_data, T_CONTEXT),
    /* conv */
    OP(conv_fwd, T_CONV), OP(conv_bwd_data, T_CONV), OP(conv_bwd_filter, T_CONV),
    /* batchnorm */
    OP(bn_fwd_train, T_BN), OP(bn_fwd_eval, T_BN), OP(bn_bwd, T_BN), OP(bn_stats_partial, T_BN_SPLIT),
    OP(bn_stats_finalize, T_BN_SPLIT), OP(bn_fwd_apply, T_BN_SPLIT), OP(bn_bwd_partial, T_BN_SPLIT),
    OP(bn_bwd_apply, T_BN_SPLIT),
    /* activation */
    OP(relu_fwd, T_ACT), OP(relu_bwd, T_ACT), OP(leaky_fwd, T_ACT), OP(leaky_bwd, T_ACT),
    /* pool */
    OP(maxpool_fwd, T_POOL), OP(maxpool_bwd, T_POOL), OP(avgpool_fwd, T_POOL), OP(avgpool_bwd, T_POOL),
    /* linear */
    OP(linear_fwd, T_LINEAR), OP(linear_bwd, T_LINEAR),
    /* elementwise */
    OP(add, T_ELEMENTWISE), OP(axpy, T_ELEMENTWISE), OP(scale, T_ELEMENTWISE),
    /* loss */
    OP(ce, T_LOSSES), OP(kl, T_LOSSES), OP(nt_kl, T_LOSSES), OP(nkd, T_LOSSES),
    /* selection */
    OP(kendall_select, T_KENDALL), OP(argmax, T_LOSSES),
    /* review */
    OP(resize_fwd, T_REVIEW), OP(resize_bwd, T_REVIEW), OP(adapool_fwd, T_REVIEW), OP(adapool_bwd, T_REVIEW),
    OP(att_fwd, T_REVIEW), OP(att_bwd, T_REVIEW), OP(mse, T_REVIEW),
    /* sgd */
    OP(sgd, T_ELEMENTWISE),
    /* input */
    OP(prep_spec, T_PREP), OP(prep_frames, T_PREP),
};

/* Every function slot of be_ops (all of it after `name`) has exactly one row. */
static int table_complete(void)
{
    int bad = 0;
    size_t ncov = sizeof COVER / sizeof *COVER;
    for (size_t off = offsetof(be_ops, name) + sizeof(const char *); off < sizeof(be_ops); off += sizeof(void (*)(void))) {
        int rows = 0;
        for (size_t i = 0; i < ncov; i++) rows += COVER[i].off == off;
        if (rows != 1) {
            fprintf(stderr, "opcompare: the entry of be_ops at byte %zu has %d rows in COVER (one expected)\n", off, rows);
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

static void run_test(int t, int small)
{
    switch (t) {
    case T_CONTEXT: t_context(); break;
    case T_STAGE: t_stage(small ? 1000 : 1 << 22); break;
    case T_CONV:
        if (small) {
            t_conv(2, 3, 12, 14, 8, 3, 2, 1);
            t_conv(2, 4, 8, 8, 8, 1, 1, 0);
            break;
        }
        t_conv(4, 3, 64, 72, 16, 7, 2, 3);   /* visual conv1-like */
        t_conv(2, 1, 129, 200, 16, 7, 2, 3); /* audio conv1-like */
        t_conv(4, 16, 32, 30, 16, 3, 1, 1);
        t_conv(4, 16, 32, 30, 32, 3, 2, 1);
        t_conv(4, 16, 32, 30, 32, 1, 2, 0);  /* downsample */
        t_conv(8, 64, 8, 8, 64, 3, 1, 1);
        t_conv(8, 256, 1, 1, 256, 1, 1, 0);  /* proxy 1x1 */
        break;
    case T_BN:
        if (small) {
            t_bn(4, 8, 10);
            break;
        }
        t_bn(8, 16, 300);
        t_bn(64, 256, 1);
        t_bn(3, 5, 1000);
        t_bn(16, 8, 4096);  /* own kernels: float4 path, 16 chunks per channel */
        t_bn(4, 3, 30001);  /* own kernels: scalar path, ~118 chunks per channel */
        t_bn(64, 512, 49);  /* ResNet-18 layer4 at 224x224 */
        break;
    case T_BN_SPLIT:
        t_bn_split(4, 8, 10);
        if (!small) {
            t_bn_split(16, 8, 4096);
            t_bn_split(4, 3, 30001);
        }
        break;
    case T_ACT: t_act(small ? 1000 : 100003); break;
    case T_POOL: small ? t_pool(2, 3, 9, 11) : t_pool(4, 16, 37, 50); break;
    case T_LINEAR:
        if (small) {
            t_linear(4, 16, 10);
            break;
        }
        t_linear(64, 512, 50);
        t_linear(7, 33, 5);
        break;
    case T_ELEMENTWISE: t_elementwise(small ? 1001 : 100003); break;
    case T_LOSSES:
        if (small) {
            t_losses(8, 10);
            break;
        }
        t_losses(64, 50);
        t_losses(5, 309);
        break;
    case T_KENDALL:
        if (small) {
            t_kendall(10, 12);
            break;
        }
        t_kendall(64, 50);
        t_kendall(7, 309);
        break;
    case T_REVIEW:
        t_review(2, 3, 7, 9);
        if (!small) t_review(4, 16, 28, 28);
        break;
    case T_PREP: small ? t_prep(2, 500) : t_prep(3, 257 * 301); break;
    case T_STICKY: t_sticky(); break;
    default: break; /* T_HARNESS: used by every test */
    }
}

int main(int argc, char **argv)
{
    int small = 0;
    uint64_t seed = 1;
    tf32 = 1;
    be_options_default(&bopt);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tf32") && i + 1 < argc) tf32 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bn") && i + 1 < argc) bopt.bn = !strcmp(argv[++i], "cudnn") ? BE_BN_CUDNN : BE_BN_OWN;
        else if (!strcmp(argv[i], "--cudnn-find") && i + 1 < argc) bopt.cudnn_find = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--small")) small = 1;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: opcompare [--tf32 0|1] [--bn own|cudnn] [--cudnn-find 0|1] [--small] [--seed N]\n");
            return 2;
        }
    }
    if (table_complete() != 0) return 2;
    bopt.tf32 = tf32;
    rng_s = seed;
    TOL_MM = tf32 ? 5e-3 : 1e-4;
    cm_err err = {{0}};
    cpu = be_cpu_create(0, &err);
    if (!cpu) { fprintf(stderr, "opcompare: cpu backend: %s\n", err.msg); return 2; }
    gpu = getenv("C2KD_GPUTEST_ON_CPU") ? be_cpu_create(0, &err) /* harness self-check */
                                               : be_cuda_create(&bopt, &err);
    if (!gpu) { fprintf(stderr, "opcompare: cuda backend: %s\n", err.msg); return 2; }
    printf("# opcompare: batch norm %s (--bn)\n", bopt.bn == BE_BN_CUDNN ? "cuDNN" : "own kernels");
    printf("# opcompare: device %s, tf32 %s, %s shapes, seed %llu\n", gpu->ops->device_name ? gpu->ops->device_name(gpu) : "",
           tf32 ? "on" : "off",
           small ? "small" : "full", (unsigned long long)seed);
    printf("# tolerances on rel = ||gpu-cpu||/||cpu||: element-wise/losses %.0e, reductions %.0e, conv/linear %.0e\n",
           TOL_EW, TOL_RED, TOL_MM);
    for (int k = 0; k < T_COUNT; k++) {
        printf("# %s\n", TEST_NAMES[k]);
        run_test(k, small);
    }
    be_stats bst = {0};
    if (gpu->ops->stats) gpu->ops->stats(gpu, &bst);
    size_t peak = bst.peak_bytes;
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    printf("# %d checks, %d failed; peak device bytes %zu\n", checks, failures, peak);
    return failures ? 1 : 0;
}
