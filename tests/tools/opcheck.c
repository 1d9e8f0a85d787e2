/* opcheck: runs one CPU-backend operation on .npy inputs and writes .npy outputs,
 * for the oracle tests (tests/oracle/test_backend_ops.py).
 *
 *   opcheck OP DIR [key=value ...]
 *
 * Inputs are read from DIR/<name>.npy, outputs written to DIR/<name>.npy.
 * Keys: threads (backend threads, default 2) and the op's scalars.
 *   conv     x w dy            stride pad            -> y dx dw
 *   bn       x gamma beta rm rv dy  momentum eps     -> y rm rv mean invstd dx dgamma dbeta
 *   bn_eval  x gamma beta rm rv     eps              -> y
 *   bn_split x gamma beta rm rv dy  momentum eps parts -> as bn, by the split ops of --sync-bn:
 *            the batch cut into `parts` pieces along n (as ranks), their sums added, each piece
 *            normalised and differentiated with the total sums; dgamma, dbeta: the pieces' summed
 *   relu     x dy                                    -> y dx
 *   leaky    x dy              slope                 -> y dx
 *   maxpool  x dy              k stride pad          -> y dx
 *   avgpool  x dy                                    -> y dx
 *   linear   x w [bias] dy                           -> y dx dw [db]
 *   ew       a c               alpha                 -> add axpy scale
 *   ce       z y [dz0]         weight                -> loss dz   (loss starts at loss0, default 0.5)
 *   kl       t s [dz0]         temp weight           -> loss dz
 *   nt_kl    t s y keep [dz0]  weight                -> loss dz
 *   nkd      t s y [dz0]       temp gamma weight     -> loss dz
 *   kendall  a c               omega                 -> tau keep
 *   argmax   z                                       -> pred
 *   sgd      p g m             lr momentum           -> p m
 *   spec     half (<f2 or <u2) standardize           -> out
 *   resize   x dy (dy: [n, c, oh, ow])                -> y dx
 *   adapool  x dy (dy: [n, c, k, k])                  -> y dx
 *   att      u v z bias dr                            -> a r du dv dz dbias
 *   mse      x t [dz0]         weight                -> loss dz   (loss starts at loss0, default 0.5)
 *   frames   src (u1) crops (<i8 [n,8]: offset src_w src_h x y w h flip) oh ow -> out
 * Exit status: 0 done, 1 op failure or bad input, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_npy_test.h"
#include "kernels/kernels.h"

/* Every buffer of this short run, freed at the end. */
static void *owned[64];
static int n_owned;

static void *own(void *p)
{
    if (p && n_owned < (int)(sizeof owned / sizeof *owned))
        owned[n_owned++] = p;
    return p;
}

static void free_owned(void)
{
    while (n_owned > 0)
        free(owned[--n_owned]);
}

typedef struct args {
    int n;
    char **kv;
    const char *dir;
} args;

static double arg_num(const args *a, const char *key, double def)
{
    size_t kl = strlen(key);
    for (int i = 0; i < a->n; i++)
        if (strncmp(a->kv[i], key, kl) == 0 && a->kv[i][kl] == '=')
            return atof(a->kv[i] + kl + 1);
    return def;
}

static void free_owned(void);

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "opcheck: %s: %s\n", what, msg);
    free_owned();
    exit(1);
}

static cm_npy load(const args *a, const char *name, int required)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", a->dir, name);
    cm_npy arr;
    memset(&arr, 0, sizeof arr);
    cm_err err;
    if (cm_npy_read(path, &arr, &err) < 0) {
        if (required)
            die(path, err.msg);
        memset(&arr, 0, sizeof arr);
    }
    own(arr.data);
    return arr;
}

static void save(const args *a, const char *name, const char *descr, const size_t *shape, int nd, const void *d)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", a->dir, name);
    cm_err err;
    if (cm_npy_write(path, descr, shape, nd, d, &err) < 0)
        die(path, err.msg);
}

static void savef(const args *a, const char *name, const float *d, size_t n0, size_t n1, size_t n2, size_t n3)
{
    size_t shape[4] = {n0, n1, n2, n3};
    int nd = n3 ? 4 : n2 ? 3 : n1 ? 2 : 1;
    save(a, name, "<f4", shape, nd, d);
}

static float *F(cm_npy *x, const char *name)
{
    if (strcmp(x->descr, "<f4") != 0)
        die(name, "expected float32");
    return x->data;
}

static float *zeros(size_t n)
{
    float *p = own(calloc(n ? n : 1, sizeof(float)));
    if (!p)
        die("alloc", "out of memory");
    return p;
}

/* bn_split: the batch cut into `parts` pieces along n, as ranks of a --sync-bn run. */
static void bn_split(const be_ops *o, be_ctx *b, const args *a)
{
    cm_npy x = load(a, "x", 1), g = load(a, "gamma", 1), be = load(a, "beta", 1);
    cm_npy rm = load(a, "rm", 1), rv = load(a, "rv", 1), dy = load(a, "dy", 1);
    int n = (int)x.shape[0], c = (int)x.shape[1], hw = 1, parts = (int)arg_num(a, "parts", 1);
    for (int d = 2; d < x.ndim; d++)
        hw *= (int)x.shape[d];
    if (parts < 1 || parts > n)
        die("parts", "must be in [1, n]");
    float eps = (float)arg_num(a, "eps", 1e-5), *X = F(&x, "x"), *DY = F(&dy, "dy");
    float *y = zeros(x.count), *dx = zeros(x.count), *sm = zeros(c), *si = zeros(c);
    float *dg = zeros(c), *db = zeros(c), *pg = zeros(c), *pb = zeros(c);
    double *part = own(calloc(2 * (size_t)c, sizeof(double))), *tot = own(calloc(2 * (size_t)c, sizeof(double)));
    if (!part || !tot)
        die("alloc", "out of memory");
    size_t per = (size_t)c * hw;
    for (int k = 0; k < parts; k++) { /* piece k: samples [k n / parts, (k+1) n / parts) */
        int n0 = k * n / parts, n1 = (k + 1) * n / parts;
        o->bn_stats_partial(b, n1 - n0, c, hw, X + n0 * per, part);
        for (int i = 0; i < 2 * c; i++)
            tot[i] += part[i];
    }
    o->bn_stats_finalize(b, c, tot, (double)n * hw, F(&rm, "rm"), F(&rv, "rv"), (float)arg_num(a, "momentum", 0.1),
                         eps, sm, si);
    memset(tot, 0, 2 * (size_t)c * sizeof(double));
    for (int k = 0; k < parts; k++) {
        int n0 = k * n / parts, n1 = (k + 1) * n / parts;
        o->bn_fwd_apply(b, n1 - n0, c, hw, X + n0 * per, F(&g, "gamma"), F(&be, "beta"), sm, si, y + n0 * per);
        o->bn_bwd_partial(b, n1 - n0, c, hw, X + n0 * per, DY + n0 * per, sm, si, part, pg, pb);
        for (int i = 0; i < 2 * c; i++)
            tot[i] += part[i];
        for (int i = 0; i < c; i++)
            dg[i] += pg[i], db[i] += pb[i];
    }
    for (int k = 0; k < parts; k++) {
        int n0 = k * n / parts, n1 = (k + 1) * n / parts;
        o->bn_bwd_apply(b, n1 - n0, c, hw, X + n0 * per, DY + n0 * per, g.data, sm, si, tot, (double)n * hw,
                        dx + n0 * per);
    }
    save(a, "y", "<f4", x.shape, x.ndim, y);
    save(a, "dx", "<f4", x.shape, x.ndim, dx);
    savef(a, "rm", rm.data, c, 0, 0, 0);
    savef(a, "rv", rv.data, c, 0, 0, 0);
    savef(a, "mean", sm, c, 0, 0, 0);
    savef(a, "invstd", si, c, 0, 0, 0);
    savef(a, "dgamma", dg, c, 0, 0, 0);
    savef(a, "dbeta", db, c, 0, 0, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: opcheck OP DIR [key=value ...] (see the source header)\n");
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    const char *op = argv[1];
    args a = {argc - 3, argv + 3, argv[2]};
    cm_err err;
    be_ctx *b = be_cpu_create((int)arg_num(&a, "threads", 2), &err);
    if (!b)
        die("backend", err.msg);
    const be_ops *o = b->ops;

    if (!strcmp(op, "conv")) {
        cm_npy x = load(&a, "x", 1), w = load(&a, "w", 1), dy = load(&a, "dy", 1);
        be_conv_shape s = {(int)x.shape[0], (int)x.shape[1], (int)x.shape[2], (int)x.shape[3],
                           (int)w.shape[0], (int)w.shape[2], (int)w.shape[3],
                           (int)arg_num(&a, "stride", 1), (int)arg_num(&a, "pad", 0)};
        int oh = (s.h + 2 * s.pad - s.kh) / s.stride + 1, ow = (s.w + 2 * s.pad - s.kw) / s.stride + 1;
        float *y = zeros(dy.count), *dx = zeros(x.count), *dw = zeros(w.count);
        o->conv_fwd(b, &s, F(&x, "x"), F(&w, "w"), y);
        o->conv_bwd_data(b, &s, F(&dy, "dy"), w.data, dx);
        o->conv_bwd_filter(b, &s, x.data, dy.data, dw);
        savef(&a, "y", y, s.n, s.k, oh, ow);
        savef(&a, "dx", dx, s.n, s.c, s.h, s.w);
        savef(&a, "dw", dw, s.k, s.c, s.kh, s.kw);
    } else if (!strcmp(op, "bn") || !strcmp(op, "bn_eval")) {
        cm_npy x = load(&a, "x", 1), g = load(&a, "gamma", 1), be = load(&a, "beta", 1);
        cm_npy rm = load(&a, "rm", 1), rv = load(&a, "rv", 1);
        int n = (int)x.shape[0], c = (int)x.shape[1], hw = 1;
        for (int d = 2; d < x.ndim; d++)
            hw *= (int)x.shape[d];
        float *y = zeros(x.count);
        float eps = (float)arg_num(&a, "eps", 1e-5);
        if (!strcmp(op, "bn_eval")) {
            o->bn_fwd_eval(b, n, c, hw, F(&x, "x"), F(&g, "gamma"), F(&be, "beta"), F(&rm, "rm"), F(&rv, "rv"),
                           eps, y);
            save(&a, "y", "<f4", x.shape, x.ndim, y);
        } else {
            cm_npy dy = load(&a, "dy", 1);
            float *sm = zeros(c), *si = zeros(c), *dx = zeros(x.count), *dg = zeros(c), *db = zeros(c);
            o->bn_fwd_train(b, n, c, hw, F(&x, "x"), F(&g, "gamma"), F(&be, "beta"), F(&rm, "rm"), F(&rv, "rv"),
                            (float)arg_num(&a, "momentum", 0.1), eps, y, sm, si);
            o->bn_bwd(b, n, c, hw, x.data, F(&dy, "dy"), g.data, sm, si, dx, dg, db);
            save(&a, "y", "<f4", x.shape, x.ndim, y);
            save(&a, "dx", "<f4", x.shape, x.ndim, dx);
            savef(&a, "rm", rm.data, c, 0, 0, 0);
            savef(&a, "rv", rv.data, c, 0, 0, 0);
            savef(&a, "mean", sm, c, 0, 0, 0);
            savef(&a, "invstd", si, c, 0, 0, 0);
            savef(&a, "dgamma", dg, c, 0, 0, 0);
            savef(&a, "dbeta", db, c, 0, 0, 0);
        }
    } else if (!strcmp(op, "bn_split")) {
        bn_split(o, b, &a);
    } else if (!strcmp(op, "relu") || !strcmp(op, "leaky")) {
        cm_npy x = load(&a, "x", 1), dy = load(&a, "dy", 1);
        float *y = zeros(x.count), *dx = zeros(x.count);
        if (!strcmp(op, "relu")) {
            o->relu_fwd(b, x.count, F(&x, "x"), y);
            o->relu_bwd(b, x.count, y, F(&dy, "dy"), dx);
        } else {
            float slope = (float)arg_num(&a, "slope", 0.1);
            o->leaky_fwd(b, x.count, slope, F(&x, "x"), y);
            o->leaky_bwd(b, x.count, slope, x.data, F(&dy, "dy"), dx);
        }
        save(&a, "y", "<f4", x.shape, x.ndim, y);
        save(&a, "dx", "<f4", x.shape, x.ndim, dx);
    } else if (!strcmp(op, "maxpool")) {
        cm_npy x = load(&a, "x", 1), dy = load(&a, "dy", 1);
        int k = (int)arg_num(&a, "k", 3);
        be_pool_shape s = {(int)x.shape[0], (int)x.shape[1], (int)x.shape[2], (int)x.shape[3],
                           k, k, (int)arg_num(&a, "stride", 2), (int)arg_num(&a, "pad", 1)};
        float *y = zeros(dy.count), *dx = zeros(x.count);
        o->maxpool_fwd(b, &s, F(&x, "x"), y);
        o->maxpool_bwd(b, &s, x.data, y, F(&dy, "dy"), dx);
        save(&a, "y", "<f4", dy.shape, dy.ndim, y);
        save(&a, "dx", "<f4", x.shape, x.ndim, dx);
    } else if (!strcmp(op, "avgpool")) {
        cm_npy x = load(&a, "x", 1), dy = load(&a, "dy", 1);
        int n = (int)x.shape[0], c = (int)x.shape[1], hw = (int)(x.count / ((size_t)n * c));
        float *y = zeros((size_t)n * c), *dx = zeros(x.count);
        o->avgpool_fwd(b, n, c, hw, F(&x, "x"), y);
        o->avgpool_bwd(b, n, c, hw, F(&dy, "dy"), dx);
        savef(&a, "y", y, n, c, 0, 0);
        save(&a, "dx", "<f4", x.shape, x.ndim, dx);
    } else if (!strcmp(op, "linear")) {
        cm_npy x = load(&a, "x", 1), w = load(&a, "w", 1), bias = load(&a, "bias", 0), dy = load(&a, "dy", 1);
        int n = (int)x.shape[0], in = (int)x.shape[1], out = (int)w.shape[0];
        float *y = zeros((size_t)n * out), *dx = zeros(x.count), *dw = zeros(w.count), *db = zeros(out);
        float *bp = bias.data ? F(&bias, "bias") : NULL;
        o->linear_fwd(b, n, in, out, F(&x, "x"), F(&w, "w"), bp, y);
        o->linear_bwd(b, n, in, out, x.data, w.data, F(&dy, "dy"), dx, dw, bp ? db : NULL);
        savef(&a, "y", y, n, out, 0, 0);
        savef(&a, "dx", dx, n, in, 0, 0);
        savef(&a, "dw", dw, out, in, 0, 0);
        if (bp)
            savef(&a, "db", db, out, 0, 0, 0);
    } else if (!strcmp(op, "ew")) {
        cm_npy x = load(&a, "a", 1), c = load(&a, "c", 1);
        float alpha = (float)arg_num(&a, "alpha", 0.5);
        float *y = zeros(x.count), *ax = zeros(x.count), *sc = zeros(x.count);
        o->add(b, x.count, F(&x, "a"), F(&c, "c"), y);
        memcpy(ax, c.data, x.count * sizeof(float));
        o->axpy(b, x.count, alpha, x.data, ax);
        memcpy(sc, x.data, x.count * sizeof(float));
        o->scale(b, x.count, alpha, sc);
        save(&a, "add", "<f4", x.shape, x.ndim, y);
        save(&a, "axpy", "<f4", x.shape, x.ndim, ax);
        save(&a, "scale", "<f4", x.shape, x.ndim, sc);
    } else if (!strcmp(op, "ce") || !strcmp(op, "kl") || !strcmp(op, "nt_kl") || !strcmp(op, "nkd")) {
        int is_ce = !strcmp(op, "ce");
        cm_npy t = load(&a, is_ce ? "z" : "t", 1), s = {0}, y = {0}, keep = {0}, dz0 = load(&a, "dz0", 0);
        if (!is_ce)
            s = load(&a, "s", 1);
        if (strcmp(op, "kl") != 0) {
            y = load(&a, "y", 1);
            if (strcmp(y.descr, "<i4") != 0)
                die("y", "expected int32");
        }
        if (!strcmp(op, "nt_kl"))
            keep = load(&a, "keep", 1);
        int B = (int)t.shape[0], C = (int)t.shape[1];
        float *dz = zeros(t.count);
        if (dz0.data)
            memcpy(dz, F(&dz0, "dz0"), t.count * sizeof(float));
        float loss = (float)arg_num(&a, "loss0", 0.5), w = (float)arg_num(&a, "weight", 1);
        float temp = (float)arg_num(&a, "temp", 1);
        if (is_ce)
            o->ce(b, B, C, F(&t, "z"), y.data, w, &loss, dz);
        else if (!strcmp(op, "kl"))
            o->kl(b, B, C, F(&t, "t"), F(&s, "s"), temp, w, &loss, dz);
        else if (!strcmp(op, "nt_kl"))
            o->nt_kl(b, B, C, F(&t, "t"), F(&s, "s"), y.data, F(&keep, "keep"), w, &loss, dz);
        else
            o->nkd(b, B, C, F(&t, "t"), F(&s, "s"), y.data, temp, (float)arg_num(&a, "gamma", 1.5), w, &loss,
                   dz);
        savef(&a, "loss", &loss, 1, 0, 0, 0);
        savef(&a, "dz", dz, B, C, 0, 0);
    } else if (!strcmp(op, "kendall")) {
        cm_npy x = load(&a, "a", 1), c = load(&a, "c", 1);
        int B = (int)x.shape[0], C = (int)x.shape[1];
        float *tau = zeros(B), *keep = zeros(B);
        o->kendall_select(b, B, C, F(&x, "a"), F(&c, "c"), (float)arg_num(&a, "omega", 0), tau, keep);
        savef(&a, "tau", tau, B, 0, 0, 0);
        savef(&a, "keep", keep, B, 0, 0, 0);
    } else if (!strcmp(op, "argmax")) {
        cm_npy z = load(&a, "z", 1);
        int B = (int)z.shape[0], C = (int)z.shape[1];
        int32_t *pred = own(calloc(B, sizeof *pred));
        o->argmax(b, B, C, F(&z, "z"), pred);
        size_t shape[1] = {(size_t)B};
        save(&a, "pred", "<i4", shape, 1, pred);
    } else if (!strcmp(op, "sgd")) {
        cm_npy p = load(&a, "p", 1), g = load(&a, "g", 1), m = load(&a, "m", 1);
        o->sgd(b, p.count, F(&p, "p"), F(&g, "g"), F(&m, "m"), (float)arg_num(&a, "lr", 0.1),
               (float)arg_num(&a, "momentum", 0.9));
        save(&a, "p", "<f4", p.shape, p.ndim, p.data);
        save(&a, "m", "<f4", m.shape, m.ndim, m.data);
    } else if (!strcmp(op, "spec")) {
        cm_npy h = load(&a, "half", 1);
        if (h.elem_size != 2)
            die("half", "expected 16-bit values");
        int n = (int)h.shape[0];
        size_t len = h.count / (n ? n : 1);
        float *out = zeros(h.count);
        o->prep_spec(b, n, len, h.data, (int)arg_num(&a, "standardize", 1), out);
        save(&a, "out", "<f4", h.shape, h.ndim, out);
    } else if (!strcmp(op, "resize") || !strcmp(op, "adapool")) {
        cm_npy x = load(&a, "x", 1), dy = load(&a, "dy", 1);
        if (x.ndim != 4 || dy.ndim != 4)
            die("x", "expected [n, c, h, w] inputs");
        int nc = (int)(x.shape[0] * x.shape[1]), h = (int)x.shape[2], w = (int)x.shape[3];
        int oh = (int)dy.shape[2], ow = (int)dy.shape[3];
        float *y = zeros(dy.count), *dx = zeros(x.count);
        if (!strcmp(op, "resize")) {
            o->resize_fwd(b, nc, h, w, oh, ow, F(&x, "x"), y);
            o->resize_bwd(b, nc, h, w, oh, ow, F(&dy, "dy"), dx);
        } else {
            o->adapool_fwd(b, nc, h, w, oh, F(&x, "x"), y);
            o->adapool_bwd(b, nc, h, w, oh, F(&dy, "dy"), dx);
        }
        save(&a, "y", "<f4", dy.shape, dy.ndim, y);
        save(&a, "dx", "<f4", x.shape, x.ndim, dx);
    } else if (!strcmp(op, "att")) {
        cm_npy u = load(&a, "u", 1), v = load(&a, "v", 1), z = load(&a, "z", 1), bias = load(&a, "bias", 1);
        cm_npy dr = load(&a, "dr", 1);
        int n = (int)u.shape[0], c = (int)u.shape[1], hw = (int)(u.count / ((size_t)n * c));
        float *at = zeros(z.count), *r = zeros(u.count), *du = zeros(u.count), *dv = zeros(u.count);
        float *dz = zeros(z.count), *db = zeros(2);
        o->att_fwd(b, n, c, hw, F(&u, "u"), F(&v, "v"), F(&z, "z"), F(&bias, "bias"), at, r);
        o->att_bwd(b, n, c, hw, u.data, v.data, at, F(&dr, "dr"), du, dv, dz, db);
        save(&a, "a", "<f4", z.shape, z.ndim, at);
        save(&a, "r", "<f4", u.shape, u.ndim, r);
        save(&a, "du", "<f4", u.shape, u.ndim, du);
        save(&a, "dv", "<f4", u.shape, u.ndim, dv);
        save(&a, "dz", "<f4", z.shape, z.ndim, dz);
        savef(&a, "dbias", db, 2, 0, 0, 0);
    } else if (!strcmp(op, "mse")) {
        cm_npy x = load(&a, "x", 1), t = load(&a, "t", 1), dz0 = load(&a, "dz0", 0);
        float *dz = zeros(x.count);
        if (dz0.data)
            memcpy(dz, F(&dz0, "dz0"), x.count * sizeof(float));
        double loss = arg_num(&a, "loss0", 0.5); /* a double: see backend.h */
        o->mse(b, x.count, F(&x, "x"), F(&t, "t"), (float)arg_num(&a, "weight", 1), &loss, dz);
        size_t one = 1;
        save(&a, "loss", "<f8", &one, 1, &loss);
        save(&a, "dz", "<f4", x.shape, x.ndim, dz);
    } else if (!strcmp(op, "frames")) {
        cm_npy src = load(&a, "src", 1), cr = load(&a, "crops", 1);
        if (strcmp(cr.descr, "<i8") != 0 || cr.ndim != 2 || cr.shape[1] != 8)
            die("crops", "expected int64 [n, 8]");
        int n = (int)cr.shape[0], oh = (int)arg_num(&a, "oh", 224), ow = (int)arg_num(&a, "ow", 224);
        be_crop *crops = own(calloc(n, sizeof *crops));
        const int64_t *c8 = cr.data;
        for (int i = 0; i < n; i++)
            crops[i] = (be_crop){(size_t)c8[i * 8], (int)c8[i * 8 + 1], (int)c8[i * 8 + 2], (int)c8[i * 8 + 3],
                                 (int)c8[i * 8 + 4], (int)c8[i * 8 + 5], (int)c8[i * 8 + 6], (int)c8[i * 8 + 7]};
        const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
        float *out = zeros((size_t)n * 3 * oh * ow);
        o->prep_frames(b, n, crops, src.data, oh, ow, mean, std, out);
        savef(&a, "out", out, n, 3, oh, ow);
    } else {
        fprintf(stderr, "opcheck: unknown op %s\n", op);
        o->destroy(b);
        return 2;
    }
    int rc = 0;
    if (o->status(b, &err) < 0) {
        fprintf(stderr, "opcheck: %s: %s\n", op, err.msg);
        rc = 1;
    }
    o->destroy(b);
    free_owned();
    return rc;
}
