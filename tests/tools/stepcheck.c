/* stepcheck: runs a few training steps of train/system.c on random data and
 * dumps everything the PyTorch reference (tests/torch_ref/) compares:
 *
 *   OUT/init.h5          checkpoint of the initial weights
 *   OUT/batch.h5         audio [S, B, 1, bins, T], visual [S, B(*F), C, S, S], labels [S, B] (one batch per step)
 *   OUT/step_K.h5        after step K (1-based): attributes loss, kept, term names/values;
 *                        datasets z_student, z_teacher, p_student, p_teacher, h_shadow, tau, keep (this
 *                        step's forward), grad/<group>/<name>, value/<group>/<name> (after SGD)
 *                        kink/<group>/<activation>: the discrete decisions of this step's forward
 *                        pass near a kink (see "Kink decisions" below)
 *   OUT/ckpt_K.h5        checkpoint after step K (weights, running statistics, momenta)
 *   OUT/eval.h5          z_student, z_teacher of an evaluation-mode forward of batch 0 after the steps
 *
 * Under mpirun -np N (N > 1; collective/collective.h) every rank runs the step on its
 * share of each batch, the samples i with i mod N = rank (DistributedSampler),
 * with the data-parallel step of train/ddp.c (DDP: gradients and loss
 * terms averaged, batch norm per rank). --batch is then the global batch
 * (a multiple of N). Rank 0 writes OUT/init.h5 and OUT/batch.h5 (the global
 * batches); each rank r writes its step_K.h5 (its forward outputs and kink
 * records, the averaged terms and gradients), ckpt_K.h5 (its running
 * statistics), eval.h5 (its share of batch 0) and final.h5 into OUT/rank<r>/.
 *
 * Usage: stepcheck --out DIR [--method pretrain|none|kd|nkd|c2kd|shake|review] [--student audio|visual]
 *   [--depth 18|50] [--student-depth 18|50] [--teacher-depth 18|50] [--width W] [--classes C] [--batch B] [--bins H] [--time T] [--image S]
 *   [--frames F] [--fold] [--proxy fa|none|cfa] [--teacher-update full|top|frozen]
 *   [--omega X] [--steps N] [--lr X] [--seed N] [--threads N] [--init CKPT] [--kink-band X]
 *
 * Kink decisions. A ReLU (LeakyReLU) passes its gradient or not depending on
 * the sign of its float32 input; a max-pool routes its gradient to one
 * window element. Where the float32 input is within rounding of the kink
 * (|x| or the gap between the two largest window values within X times the
 * largest |x| of the tensor, X = --kink-band, default 1e-4; 0: nothing is
 * recorded), the float64 reference could decide otherwise and then differs
 * by a whole gradient entry. So stepcheck wraps the backend's relu_fwd,
 * leaky_fwd and maxpool_fwd (a copy of the ops table with three entries
 * replaced; the model code is untouched), recognises each call by its
 * output tensor (the model's activation pointers, train/model.h) and writes,
 * for the first call of each activation in a step's forward pass:
 *   kink/G/NAME (ReLU, LeakyReLU): attributes kind ("relu"|"leaky"), count
 *     (elements), scale (max |x|), band; datasets index (int64, flat NCHW
 *     index) and value (float32 input x) of the elements with |x| <= band * scale;
 *   kink/G/maxpool: attributes kind "maxpool", count (outputs), scale, band;
 *     datasets out (int64, flat output index), arg (int64, index inside the
 *     input plane of the element C's backward pass routes to: the first one,
 *     row by row, equal to the maximum), gap (float32, maximum minus the
 *     largest other window element) of the windows with gap <= band * scale.
 * NAME: relu (stem), maxpool, layerL.J.reluI (inside a block, I = 1, 2),
 * layerL.J.relu (block output), act (proxy), fuseK.relu (shake's shadow head).
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "collective/collective.h"
#include "train/rng.h"
#include "train/model.h"
#include "train/system.h"
#include "train/method_c2kd.h"
#include "train/method_shake.h"
#include "train/methods.h"
#include "train/system_internal.h"
#include "train/system_test.h"

static int write_arr(hid_t loc, const char *name, hid_t mtype, hid_t ftype, int nd, const size_t *shape,
                     const void *data)
{
    hsize_t d[8];
    for (int i = 0; i < nd; i++)
        d[i] = shape[i];
    hid_t sp = H5Screate_simple(nd, d, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(loc, name, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
    return rc;
}

static int write_f(hid_t loc, const char *name, int nd, const size_t *shape, const float *data)
{
    return write_arr(loc, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, nd, shape, data);
}

static void attr_d(hid_t loc, const char *name, double v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void dev_dump(be_ctx *be, hid_t f, const char *name, const float *dev, size_t rows, size_t cols)
{
    if (!dev)
        return;
    size_t n = rows * (cols ? cols : 1);
    float *h = malloc(n * sizeof(float));
    be->ops->to_host(be, h, dev, n * sizeof(float));
    size_t shape[2] = {rows, cols};
    write_f(f, name, cols ? 2 : 1, shape, h);
    free(h);
}

/* ---------------------------------------------------------------- kink decisions */

enum { K_RELU, K_LEAKY, K_MAXPOOL };

typedef struct kink_site {
    const float *y;   /* output tensor that identifies the call */
    char name[128];   /* "student/layer1.0.relu1" */
    int kind;
    int seen;         /* recorded in this step */
    /* what was recorded */
    size_t count, n;
    float scale;
    int64_t *idx, *arg; /* idx: element (relu) or output (maxpool) index; arg: maxpool choice */
    float *val;         /* relu: input value; maxpool: gap */
} kink_site;

typedef struct kink_rec {
    be_ops ops;             /* the backend's table with the three wrappers */
    const be_ops *inner;
    float band;
    int active;
    int unknown;            /* calls on tensors not in the table */
    kink_site *site;
    size_t nsite;
} kink_rec;

/* The wrappers only receive the backend context: the recorder is reached
 * through this file-level pointer (stepcheck is a single-run test tool). */
static kink_rec *g_kink;

static void kink_add(kink_rec *k, const float *y, const char *group, const char *name, int kind)
{
    kink_site *st = &k->site[k->nsite++];
    memset(st, 0, sizeof *st);
    st->y = y;
    st->kind = kind;
    snprintf(st->name, sizeof st->name, "%s/%s", group, name);
}

static void kink_sites_resnet(kink_rec *k, const tr_resnet *n)
{
    const char *g = n->reg.group;
    kink_add(k, n->stem_y, g, "relu", K_RELU);
    kink_add(k, n->stem_p, g, "maxpool", K_MAXPOOL);
    for (int i = 0, l = 0; i < n->nblk; i++) {
        while (l < 3 && i >= n->layer_first[l + 1])
            l++;
        const tr_block *b = &n->blk[i];
        char nm[64];
        for (int st = 0; st < b->nst; st++) {
            if (st < b->nst - 1)
                snprintf(nm, sizeof nm, "layer%d.%d.relu%d", l + 1, i - n->layer_first[l], st + 1);
            else
                snprintf(nm, sizeof nm, "layer%d.%d.relu", l + 1, i - n->layer_first[l]);
            kink_add(k, b->y[st], g, nm, K_RELU);
        }
    }
}

static kink_site *kink_find(kink_rec *k, const float *y, int kind)
{
    for (size_t i = 0; i < k->nsite; i++)
        if (k->site[i].y == y && k->site[i].kind == kind)
            return &k->site[i];
    k->unknown++;
    return NULL;
}

static void kink_reset(kink_rec *k)
{
    for (size_t i = 0; i < k->nsite; i++) {
        kink_site *st = &k->site[i];
        free(st->idx);
        free(st->arg);
        free(st->val);
        st->idx = st->arg = NULL;
        st->val = NULL;
        st->seen = 0;
        st->n = st->count = 0;
        st->scale = 0;
    }
}

/* Records the elements of x [n] within the band of zero (before the op, which may run in place). */
static void kink_act(be_ctx *b, kink_site *st, size_t n, const float *x)
{
    kink_rec *k = g_kink;
    float *h = malloc((n ? n : 1) * sizeof(float));
    st->idx = malloc((n ? n : 1) * sizeof(int64_t));
    st->val = malloc((n ? n : 1) * sizeof(float));
    if (!h || !st->idx || !st->val) {
        free(h);
        k->unknown++;
        return;
    }
    k->inner->to_host(b, h, x, n * sizeof(float));
    float m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(h[i]) > m)
            m = fabsf(h[i]);
    for (size_t i = 0; i < n; i++)
        if (fabsf(h[i]) <= k->band * m) {
            st->idx[st->n] = (int64_t)i;
            st->val[st->n++] = h[i];
        }
    st->seen = 1;
    st->count = n;
    st->scale = m;
    free(h);
}

static void kink_relu_fwd(be_ctx *b, size_t n, const float *x, float *y)
{
    kink_rec *k = g_kink;
    kink_site *st = k->active ? kink_find(k, y, K_RELU) : NULL;
    if (st && !st->seen)
        kink_act(b, st, n, x);
    k->inner->relu_fwd(b, n, x, y);
}

static void kink_leaky_fwd(be_ctx *b, size_t n, float slope, const float *x, float *y)
{
    kink_rec *k = g_kink;
    kink_site *st = k->active ? kink_find(k, y, K_LEAKY) : NULL;
    if (st && !st->seen)
        kink_act(b, st, n, x);
    k->inner->leaky_fwd(b, n, slope, x, y);
}

static void kink_maxpool_fwd(be_ctx *b, const be_pool_shape *s, const float *x, float *y)
{
    kink_rec *k = g_kink;
    k->inner->maxpool_fwd(b, s, x, y);
    kink_site *st = k->active ? kink_find(k, y, K_MAXPOOL) : NULL;
    if (!st || st->seen)
        return;
    int oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1, ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
    size_t nx = (size_t)s->n * s->c * s->h * s->w, ny = (size_t)s->n * s->c * oh * ow;
    float *hx = malloc(nx * sizeof(float)), *hy = malloc(ny * sizeof(float));
    st->idx = malloc(ny * sizeof(int64_t));
    st->arg = malloc(ny * sizeof(int64_t));
    st->val = malloc(ny * sizeof(float));
    if (!hx || !hy || !st->idx || !st->arg || !st->val) {
        free(hx);
        free(hy);
        k->unknown++;
        return;
    }
    k->inner->to_host(b, hx, x, nx * sizeof(float));
    k->inner->to_host(b, hy, y, ny * sizeof(float));
    float m = 0;
    for (size_t i = 0; i < nx; i++)
        if (fabsf(hx[i]) > m)
            m = fabsf(hx[i]);
    for (size_t p = 0; p < (size_t)s->n * s->c; p++) {
        const float *plane = hx + p * s->h * s->w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                size_t o = (p * oh + oy) * ow + ox;
                float top = hy[o], second = -INFINITY;
                int64_t arg = -1;
                for (int ky = 0; ky < s->kh; ky++)
                    for (int kx = 0; kx < s->kw; kx++) {
                        int iy = oy * s->stride - s->pad + ky, ix = ox * s->stride - s->pad + kx;
                        if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                            continue;
                        float v = plane[(size_t)iy * s->w + ix];
                        if (arg < 0 && v == top)
                            arg = (int64_t)iy * s->w + ix; /* first maximum, as the backward pass */
                        else if (v > second)
                            second = v;
                    }
                if (arg >= 0 && second > -INFINITY && top - second <= k->band * m) {
                    st->idx[st->n] = (int64_t)o;
                    st->arg[st->n] = arg;
                    st->val[st->n++] = top - second;
                }
            }
    }
    st->seen = 1;
    st->count = ny;
    st->scale = m;
    free(hx);
    free(hy);
}

/* Table of every activation of the system and the ops swap. */
static int kink_create(kink_rec *k, be_ctx *be, tr_system *s, float band)
{
    memset(k, 0, sizeof *k);
    k->band = band;
    size_t cap = 8 + TR_SHADOW_N;
    if (s->has_student)
        cap += 2 + 3 * (size_t)s->student.nblk;
    if (s->has_teacher)
        cap += 2 + 3 * (size_t)s->teacher.nblk;
    k->site = calloc(cap, sizeof *k->site);
    if (!k->site)
        return -1;
    if (s->has_student)
        kink_sites_resnet(k, &s->student);
    if (s->has_teacher)
        kink_sites_resnet(k, &s->teacher);
    if (tr_c2kd_proxy(s, 0)) {
        const tr_proxy *p[2] = {tr_c2kd_proxy(s, 0), tr_c2kd_proxy(s, 1)};
        for (int i = 0; i < 2; i++) {
            if (p[i]->kind == TR_PROXY_FA)
                kink_add(k, p[i]->a1, p[i]->reg.group, "act", K_LEAKY);
            else if (p[i]->kind == TR_PROXY_CFA)
                kink_add(k, p[i]->y2, p[i]->reg.group, "act", K_RELU);
        }
    }
    const tr_shadow *sh = tr_shake_shadow(s);
    if (sh)
        for (int i = 0; i < TR_SHADOW_N; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "fuse%d.relu", i + 1);
            kink_add(k, sh->y[i], sh->reg.group, nm, K_RELU);
        }
    k->inner = be->ops;
    k->ops = *be->ops;
    k->ops.relu_fwd = kink_relu_fwd;
    k->ops.leaky_fwd = kink_leaky_fwd;
    k->ops.maxpool_fwd = kink_maxpool_fwd;
    g_kink = k;
    be->ops = &k->ops;
    return 0;
}

static void kink_destroy(kink_rec *k, be_ctx *be)
{
    if (!k->site)
        return;
    kink_reset(k);
    free(k->site);
    k->site = NULL;
    be->ops = k->inner;
    g_kink = NULL;
}

static void attr_s(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static int kink_write(const kink_rec *k, hid_t f)
{
    int rc = 0;
    for (size_t i = 0; i < k->nsite; i++) {
        const kink_site *st = &k->site[i];
        if (!st->seen)
            continue;
        char nm[160];
        snprintf(nm, sizeof nm, "kink/%s", st->name);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t g = H5Gcreate2(f, nm, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
        if (g < 0)
            return -1;
        attr_s(g, "kind", st->kind == K_RELU ? "relu" : st->kind == K_LEAKY ? "leaky" : "maxpool");
        attr_d(g, "count", (double)st->count);
        attr_d(g, "scale", st->scale);
        attr_d(g, "band", k->band);
        size_t n = st->n;
        rc |= write_arr(g, st->kind == K_MAXPOOL ? "out" : "index", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, &n, st->idx);
        rc |= write_f(g, st->kind == K_MAXPOOL ? "gap" : "value", 1, &n, st->val);
        if (st->kind == K_MAXPOOL)
            rc |= write_arr(g, "arg", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, &n, st->arg);
        H5Gclose(g);
    }
    return rc;
}

/* Copies the rows i with i mod N == rank of src [rows, row] into dst. */
static void take_rows(void *dst, const void *src, size_t rows, size_t row_bytes, int rank, int N)
{
    char *d = dst;
    const char *sp = src;
    for (size_t i = (size_t)rank; i < rows; i += (size_t)N, d += row_bytes)
        memcpy(d, sp + i * row_bytes, row_bytes);
}

static int usage(void)
{
    fprintf(stderr, "usage: stepcheck --out DIR [options] (see the source header)\n");
    return 2;
}

int main(int argc, char **argv)
{
    tr_config c;
    tr_config_default(&c);
    c.width = 8;
    c.n_classes = 5;
    c.spec_bins = 64;
    c.spec_frames = 100;
    c.image_size = 64;
    c.max_batch = 8;
    const char *out = NULL, *init = NULL;
    int steps = 5, threads = 1, B = 8;
    float lr = 0.05f, band = 1e-4f;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--out")) out = v;
        else if (OPT("--init")) init = v;
        else if (OPT("--method")) {
            int m = 0; /* train/methods.c's table */
            while (m < tr_methods_options() && strcmp(v, tr_methods_name((tr_method)m)) != 0)
                m++;
            if (!strcmp(v, "pretrain")) c.pretrain = 1;
            else if (m < tr_methods_options()) c.method = (tr_method)m;
            else return usage();
        } else if (OPT("--student")) {
            c.student = strcmp(v, "audio") == 0 ? TR_AUDIO : TR_VISUAL;
            c.teacher = c.student == TR_AUDIO ? TR_VISUAL : TR_AUDIO;
        } else if (OPT("--depth")) c.student_depth = c.teacher_depth = atoi(v);
        else if (OPT("--student-depth")) c.student_depth = atoi(v);
        else if (OPT("--teacher-depth")) c.teacher_depth = atoi(v);
        else if (OPT("--width")) c.width = atoi(v);
        else if (OPT("--classes")) c.n_classes = atoi(v);
        else if (OPT("--batch")) B = atoi(v);
        else if (OPT("--bins")) c.spec_bins = atoi(v);
        else if (OPT("--time")) c.spec_frames = atoi(v);
        else if (OPT("--image")) c.image_size = atoi(v);
        else if (OPT("--frames")) c.frames = atoi(v);
        else if (strcmp(a, "--fold") == 0) c.visual_mode = TR_VISUAL_FOLD;
        else if (OPT("--proxy")) c.proxy = !strcmp(v, "none") ? TR_PROXY_NONE : !strcmp(v, "cfa") ? TR_PROXY_CFA : TR_PROXY_FA;
        else if (OPT("--teacher-update")) c.teacher_update = !strcmp(v, "top") ? TR_TEACHER_TOP : !strcmp(v, "frozen") ? TR_TEACHER_FROZEN : TR_TEACHER_FULL;
        else if (OPT("--omega")) c.omega = (float)atof(v);
        else if (OPT("--steps")) steps = atoi(v);
        else if (OPT("--lr")) lr = (float)atof(v);
        else if (OPT("--seed")) seed = strtoull(v, NULL, 10);
        else if (OPT("--threads")) threads = atoi(v);
        else if (OPT("--kink-band")) band = (float)atof(v);
        else return usage();
#undef OPT
    }
    if (!out || B < 1 || steps < 0 || !(band >= 0 && band < 1))
        return usage();
    cm_err err = {{0}};
    cl_comm *comm = cl_create(0, NULL, NULL, &err);
    if (!comm) {
        fprintf(stderr, "stepcheck: MPI: %s\n", err.msg);
        return 1;
    }
    const int rank = cl_rank(comm), N = cl_size(comm);
    if (B % N != 0) {
        cl_destroy(comm);
        return usage();
    }
    const int Bl = B / N; /* this rank's samples of each batch */
    c.max_batch = Bl;
    char rdir[CM_PATH_MAX]; /* this rank's files */
    if (N > 1)
        snprintf(rdir, sizeof rdir, "%s/rank%d", out, rank);
    else
        snprintf(rdir, sizeof rdir, "%s", out);
    if (cm_mkdirs(rdir, &err) < 0) {
        fprintf(stderr, "stepcheck: %s: %s\n", rdir, err.msg);
        cl_destroy(comm);
        return 1;
    }
    be_ctx *be = be_cpu_create(threads, &err);
    if (!be) {
        fprintf(stderr, "stepcheck: backend: %s\n", err.msg);
        cl_destroy(comm);
        return 1;
    }
    tr_system *s = tr_system_create(be, &c, seed, &err);
    if (!s) {
        fprintf(stderr, "stepcheck: %s\n", err.msg);
        be->ops->destroy(be);
        cl_destroy(comm);
        return 1;
    }
    kink_rec kink = {0};
    if (band > 0 && kink_create(&kink, be, s, band) < 0) {
        fprintf(stderr, "stepcheck: out of memory\n");
        tr_system_destroy(s);
        be->ops->destroy(be);
        cl_destroy(comm);
        return 1;
    }
    char path[CM_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/init.h5", out);
    tr_position pos = {.seed = seed, .best_val = -1, .best_epoch = -1, .best_test = -1};
    const char *bad = NULL;
    tr_system_set_comm(s, comm);
    if (init && tr_checkpoint_load(s, init, NULL, 0, NULL, &err) < 0)
        bad = init;
    else if (tr_system_broadcast(s, &err) < 0)
        bad = "broadcast";
    else if (rank == 0 && tr_checkpoint_save(s, path, &pos, "{\"test\":1}", &err) < 0)
        bad = path;
    if (bad) {
        fprintf(stderr, "stepcheck: %s: %s\n", bad, err.msg);
        tr_system_destroy(s);
        kink_destroy(&kink, be);
        be->ops->destroy(be);
        cl_abort(comm, 1);
        cl_destroy(comm);
        return 1;
    }
    /* Random batches (the same global ones on every rank). */
    int Fi = c.visual_mode == TR_VISUAL_FOLD ? c.frames : 1;
    int vc = c.visual_mode == TR_VISUAL_FOLD ? 3 : 3 * c.frames;
    size_t na = (size_t)B * c.spec_bins * c.spec_frames;
    size_t nv = (size_t)B * Fi * vc * c.image_size * c.image_size;
    int S = steps > 0 ? steps : 1;
    float *ha = malloc(na * S * sizeof(float)), *hv = malloc(nv * S * sizeof(float));
    int32_t *hy = malloc((size_t)B * S * sizeof(int32_t));
    tr_rng rng;
    tr_rng_seed(&rng, seed * 7919 + 13);
    for (size_t i = 0; i < na * S; i++)
        ha[i] = (float)tr_rng_normal(&rng);
    for (size_t i = 0; i < nv * S; i++)
        hv[i] = (float)tr_rng_normal(&rng);
    for (int i = 0; i < B * S; i++)
        hy[i] = (int32_t)(tr_rng_next(&rng) % (uint64_t)c.n_classes);
    hid_t f;
    if (rank == 0) {
        snprintf(path, sizeof path, "%s/batch.h5", out);
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        size_t sa[5] = {(size_t)S, (size_t)B, 1, (size_t)c.spec_bins, (size_t)c.spec_frames};
        size_t sv[5] = {(size_t)S, (size_t)B * Fi, (size_t)vc, (size_t)c.image_size, (size_t)c.image_size};
        size_t sy[2] = {(size_t)S, (size_t)B};
        write_f(f, "audio", 5, sa, ha);
        write_f(f, "visual", 5, sv, hv);
        write_arr(f, "labels", H5T_NATIVE_INT32, H5T_STD_I32LE, 2, sy, hy);
        H5Fclose(f);
    }
    /* this rank's rows of one batch */
    const size_t nal = na / (size_t)N, nvl = nv / (size_t)N;
    float *la = malloc(nal * sizeof(float)), *lv = malloc(nvl * sizeof(float));
    int32_t *ly = malloc((size_t)Bl * sizeof(int32_t));
    float *da = be->ops->alloc(be, nal * sizeof(float)), *dv = be->ops->alloc(be, nvl * sizeof(float));
    int32_t *dy = be->ops->alloc(be, (size_t)Bl * sizeof(int32_t));
    int rc = 0;
    for (int k = 0; k < steps && rc == 0; k++) {
        take_rows(la, ha + na * k, (size_t)B, na / (size_t)B * sizeof(float), rank, N);
        take_rows(lv, hv + nv * k, (size_t)B, nv / (size_t)B * sizeof(float), rank, N);
        take_rows(ly, hy + (size_t)B * k, (size_t)B, sizeof(int32_t), rank, N);
        be->ops->to_device(be, da, la, nal * sizeof(float));
        be->ops->to_device(be, dv, lv, nvl * sizeof(float));
        be->ops->to_device(be, dy, ly, (size_t)Bl * sizeof(int32_t));
        be->ops->sync(be);
        tr_batch b = {.B = Bl, .audio = da, .visual = dv, .labels = dy};
        tr_stats st;
        kink_reset(&kink);
        kink.active = 1;
        int srt = tr_system_step(s, &b, lr, &st, &err);
        kink.active = 0;
        if (srt < 0) {
            fprintf(stderr, "stepcheck: %s\n", err.msg);
            rc = 1;
            break;
        }
        snprintf(path, sizeof path, "%s/step_%d.h5", rdir, k + 1);
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        attr_d(f, "loss", st.loss);
        attr_d(f, "kept", st.kept);
        attr_d(f, "correct_student", st.correct_student);
        attr_d(f, "correct_teacher", st.correct_teacher);
        hid_t tg = H5Gcreate2(f, "terms", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        for (int i = 0; i < st.n_terms; i++)
            attr_d(tg, st.term_name[i], st.term[i]);
        H5Gclose(tg);
        tr_outputs o;
        tr_system_outputs(s, &o);
        dev_dump(be, f, "z_student", o.z_student, (size_t)Bl, (size_t)c.n_classes);
        dev_dump(be, f, "z_teacher", o.z_teacher, (size_t)Bl, (size_t)c.n_classes);
        dev_dump(be, f, "p_student", o.p_student, (size_t)Bl, (size_t)c.n_classes);
        dev_dump(be, f, "p_teacher", o.p_teacher, (size_t)Bl, (size_t)c.n_classes);
        dev_dump(be, f, "h_shadow", o.h_shadow, (size_t)Bl, (size_t)c.n_classes);
        dev_dump(be, f, "tau", o.tau, (size_t)Bl, 0);
        dev_dump(be, f, "keep", o.keep, (size_t)Bl, 0);
        if (kink.unknown || kink_write(&kink, f) < 0) {
            fprintf(stderr, "stepcheck: step %d: kink decisions not recorded (%d calls on unknown tensors)\n",
                    k + 1, kink.unknown);
            rc = 1;
        }
        for (size_t i = 0; i < tr_system_num_tensors(s); i++) {
            const char *name;
            size_t cnt;
            float *val, *grad;
            tr_system_tensor(s, i, &name, &cnt, &val, &grad);
            char nm[256];
            snprintf(nm, sizeof nm, "value/%s", name);
            dev_dump(be, f, nm, val, cnt, 0);
            if (grad) {
                snprintf(nm, sizeof nm, "grad/%s", name);
                dev_dump(be, f, nm, grad, cnt, 0);
            }
        }
        H5Fclose(f);
        snprintf(path, sizeof path, "%s/ckpt_%d.h5", rdir, k + 1);
        pos.step = tr_system_steps(s);
        if (tr_checkpoint_save(s, path, &pos, NULL, &err) < 0) {
            fprintf(stderr, "stepcheck: %s: %s\n", path, err.msg);
            rc = 1;
        }
    }
    if (rc == 0) {
        take_rows(la, ha, (size_t)B, na / (size_t)B * sizeof(float), rank, N);
        take_rows(lv, hv, (size_t)B, nv / (size_t)B * sizeof(float), rank, N);
        be->ops->to_device(be, da, la, nal * sizeof(float));
        be->ops->to_device(be, dv, lv, nvl * sizeof(float));
        be->ops->sync(be);
        tr_batch b = {.B = Bl, .audio = da, .visual = dv, .labels = dy};
        float *zs = malloc((size_t)Bl * c.n_classes * sizeof(float));
        float *zt = malloc((size_t)Bl * c.n_classes * sizeof(float));
        if (tr_system_eval(s, &b, NULL, NULL, zs, zt, &err) < 0) {
            fprintf(stderr, "stepcheck: eval: %s\n", err.msg);
            rc = 1;
        } else {
            snprintf(path, sizeof path, "%s/eval.h5", rdir);
            f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
            size_t sz[2] = {(size_t)Bl, (size_t)c.n_classes};
            if (c.pretrain || c.method != TR_NONE)
                write_f(f, "z_teacher", 2, sz, zt);
            if (!c.pretrain)
                write_f(f, "z_student", 2, sz, zs);
            H5Fclose(f);
        }
        free(zs);
        free(zt);
        snprintf(path, sizeof path, "%s/final.h5", rdir);
        pos.step = tr_system_steps(s);
        if (rc == 0 && tr_checkpoint_save(s, path, &pos, NULL, &err) < 0) {
            fprintf(stderr, "stepcheck: %s: %s\n", path, err.msg);
            rc = 1;
        }
    }
    be->ops->free(be, da);
    be->ops->free(be, dv);
    be->ops->free(be, dy);
    tr_system_destroy(s);
    kink_destroy(&kink, be);
    be->ops->destroy(be);
    free(ha);
    free(hv);
    free(hy);
    free(la);
    free(lv);
    free(ly);
    if (rc != 0)
        cl_abort(comm, rc); /* the other ranks may wait in a collective */
    cl_destroy(comm);
    return rc;
}
