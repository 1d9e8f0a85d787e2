/* ingest: the parallel pipeline.
 *
 * Items of each split are cut into shards of a fixed number of consecutive
 * manifest rows (shard_items), so shard boundaries depend on the manifest and
 * the options only, never on timing or on which items fail. A shard records
 * the rows it covers (a hash) and the failures among them, so a re-run keeps
 * every complete shard that still matches and redoes the rest.
 *
 * Workers (jobs threads) take items in order and run spectro + frames; the
 * calling thread is the only one that touches HDF5 and consumes results in
 * item order through a ring of slots (reorder buffer with back-pressure).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "common/cm_progress.h"
#include "frames/frames.h"
#include "ingest/ingest.h"
#include "store/store.h"

typedef struct plan {
    int split;
    size_t k, lo, hi;        /* covers positions [lo, hi) of the split's items */
    char file[96];
    char cover[256];         /* expected "ingest_cover" note */
    int keep;
    size_t count;            /* samples written */
    size_t *failed;          /* item indices that failed (for a kept shard: from its note) */
    char **reasons;
    size_t nfailed;
} plan;

typedef struct slot {
    int ready, ok;
    char reason[CM_ERR_MAX + 16];
    float *spec;
    uint8_t *jpeg[FR_MAX_FRAMES];
    size_t jl[FR_MAX_FRAMES];
    float ft[FR_MAX_FRAMES];
    float seg[2];
} slot;

typedef struct ctx {
    const ig_preset *p;
    const ig_manifest *m;
    const sp_stft *stft;
    fr_jpeg **jpegs;
    const size_t *tasks;     /* item indices, in write order */
    size_t ntasks;
    slot *ring;
    size_t W;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_space;
    size_t next_task, next_write;
    int stop;
    size_t target, bins, T;
    int allow_truncated;     /* ig_options.allow_truncated */
} ctx;

typedef struct worker_arg {
    ctx *c;
    int id;
} worker_arg;

static void slot_clear(slot *s)
{
    free(s->spec);
    for (int k = 0; k < FR_MAX_FRAMES; k++)
        free(s->jpeg[k]);
    memset(s, 0, sizeof *s);
}

static void process(ctx *c, int wid, const ig_item *it, slot *s)
{
    const ig_preset *p = c->p;
    cm_err err = {{0}};
    int whole = it->end < 0;
    if (!whole && it->end <= it->start) {
        snprintf(s->reason, sizeof s->reason, "empty segment [%g, %g)", it->start, it->end);
        return;
    }
    float *x = NULL, *fixed = NULL;
    size_t n = 0;
    sp_read_opts ro = {.start = whole ? 0 : it->start, .end = whole ? -1 : it->end,
                       .allow_truncated = c->allow_truncated};
    if (sp_decode_audio(it->audio, p->sp.sample_rate, &ro, &x, &n, &err) != 0) {
        snprintf(s->reason, sizeof s->reason, "audio: %s", err.msg);
        return;
    }
    fixed = malloc(c->target * sizeof *fixed);
    s->spec = malloc(c->bins * c->T * sizeof *s->spec);
    if (!fixed || !s->spec) {
        free(x);
        free(fixed);
        snprintf(s->reason, sizeof s->reason, "out of memory");
        return;
    }
    int rc = sp_fix_length(x, n, p->sp.sample_rate, whole ? 0 : it->start, whole ? -1 : it->end, fixed, c->target,
                           &err);
    if (rc == 0)
        rc = sp_stft_compute(c->stft, fixed, c->target, s->spec, &err);
    free(x);
    free(fixed);
    if (rc != 0) {
        snprintf(s->reason, sizeof s->reason, "audio: %s", err.msg);
        return;
    }
    s->seg[0] = whole ? 0.0f : (float)it->start;
    s->seg[1] = whole ? (float)((double)n / p->sp.sample_rate) : (float)it->end;

    fr_request req = {.count = p->frames, .start = whole ? 0 : it->start, .end = whole ? -1 : it->end,
                      .short_side = p->short_side, .allow_truncated = c->allow_truncated};
    fr_image img[FR_MAX_FRAMES];
    int nout = 0;
    memset(img, 0, sizeof img);
    if (fr_extract(it->video, &req, img, &nout, &err) != 0) {
        snprintf(s->reason, sizeof s->reason, "video: %s", err.msg);
        return;
    }
    rc = 0;
    if (nout != p->frames) {
        snprintf(s->reason, sizeof s->reason, "video: %d of %d frames decoded", nout, p->frames);
        rc = -1;
    }
    for (int k = 0; k < nout; k++) {
        if (rc == 0 && fr_jpeg_encode(c->jpegs[wid], &img[k], p->jpeg_quality, &s->jpeg[k], &s->jl[k], &err) != 0) {
            snprintf(s->reason, sizeof s->reason, "video: %s", err.msg);
            rc = -1;
        }
        s->ft[k] = (float)img[k].pts;
        fr_image_free(&img[k]);
    }
    if (rc == 0)
        s->ok = 1;
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    ctx *c = wa->c;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->stop || c->next_task >= c->ntasks)
            break;
        size_t t = c->next_task++;
        while (!c->stop && t >= c->next_write + c->W)
            pthread_cond_wait(&c->cv_space, &c->mu);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        slot *s = &c->ring[t % c->W];
        process(c, wa->id, &c->m->items[c->tasks[t]], s);
        pthread_mutex_lock(&c->mu);
        s->ready = 1;
        pthread_cond_broadcast(&c->cv_ready);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- bookkeeping ---- */

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* field separator */
}

static void plan_cover(plan *pl, const ig_manifest *m, const size_t *order, const char *recipe, size_t M)
{
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, recipe);
    for (int i = 0; i < m->n_classes; i++)
        h = fnv(h, m->classes[i]);
    for (size_t q = pl->lo; q < pl->hi; q++) {
        const ig_item *it = &m->items[order[q]];
        char seg[80];
        snprintf(seg, sizeof seg, "%.17g %.17g", it->start, it->end);
        h = fnv(fnv(fnv(fnv(fnv(h, it->id), it->audio), it->video), it->label), seg);
    }
    snprintf(pl->cover, sizeof pl->cover,
             "{\"split\":\"%s\",\"shard\":%zu,\"items\":[%zu,%zu],\"shard_items\":%zu,\"hash\":\"%016llx\"}",
             m->splits[pl->split], pl->k, pl->lo, pl->hi, M, (unsigned long long)h);
}

static int add_fail(plan *pl, size_t item, const char *reason)
{
    size_t *f = realloc(pl->failed, (pl->nfailed + 1) * sizeof *f);
    if (!f)
        return -1;
    pl->failed = f;
    char **r = realloc(pl->reasons, (pl->nfailed + 1) * sizeof *r);
    if (!r)
        return -1;
    pl->reasons = r;
    if (!(r[pl->nfailed] = strdup(reason)))
        return -1;
    f[pl->nfailed++] = item;
    return 0;
}

/* Keeps an existing shard when it opens, covers exactly these rows and holds
 * exactly the rows that did not fail, in order. */
static int try_keep(plan *pl, const ig_manifest *m, const size_t *order, const char *path)
{
    if (!cm_is_file(path))
        return 0;
    cm_err err;
    st_shard *s = st_shard_open(path, &err);
    if (!s)
        return 0;
    int ok = 0;
    char *cover = st_shard_note(s, "ingest_cover");
    char *fails = st_shard_note(s, "ingest_failures");
    cJSON *fj = fails ? cJSON_Parse(fails) : NULL;
    if (cover && !strcmp(cover, pl->cover) && cJSON_IsArray(fj) &&
        st_shard_count(s) + (size_t)cJSON_GetArraySize(fj) == pl->hi - pl->lo) {
        ok = 1;
        size_t j = 0; /* next sample of the shard */
        cJSON *f = fj->child;
        for (size_t q = pl->lo; ok && q < pl->hi; q++) {
            const ig_item *it = &m->items[order[q]];
            const char *sid = st_shard_id(s, j);
            cJSON *fid = f ? cJSON_GetArrayItem(f, 0) : NULL, *frs = f ? cJSON_GetArrayItem(f, 1) : NULL;
            if (sid && !strcmp(sid, it->id) && st_shard_label(s, j) == it->label_idx) {
                j++;
            } else if (cJSON_IsString(fid) && cJSON_IsString(frs) && !strcmp(fid->valuestring, it->id)) {
                ok = add_fail(pl, order[q], frs->valuestring) == 0;
                f = f->next;
            } else {
                ok = 0;
            }
        }
        ok = ok && j == st_shard_count(s) && f == NULL;
    }
    if (ok) {
        pl->count = st_shard_count(s);
    } else {
        for (size_t i = 0; i < pl->nfailed; i++)
            free(pl->reasons[i]);
        pl->nfailed = 0;
    }
    cJSON_Delete(fj);
    free(cover);
    free(fails);
    st_shard_close(s);
    return ok;
}

static char *fail_note(const plan *pl, const ig_manifest *m)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < pl->nfailed; i++) {
        cJSON *e = cJSON_CreateArray();
        cJSON_AddItemToArray(e, cJSON_CreateString(m->items[pl->failed[i]].id));
        cJSON_AddItemToArray(e, cJSON_CreateString(pl->reasons[i]));
        cJSON_AddItemToArray(a, e);
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

/* Removes what an interrupted or different earlier run may have left:
 * temporary shard files and shards beyond the planned ones. */
static void clean_out(const char *out, const ig_manifest *m, const size_t *nshards)
{
    DIR *d = opendir(out);
    if (!d)
        return;
    struct dirent *e;
    char path[CM_PATH_MAX];
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        int rm = 0;
        if (n[0] == '.' && strstr(n, ".h5.tmp."))
            rm = 1;
        for (int s = 0; !rm && s < m->n_splits; s++) {
            size_t l = strlen(m->splits[s]);
            unsigned k;
            char tail[8];
            if (!strncmp(n, m->splits[s], l) && n[l] == '-' && strlen(n + l) == 9 &&
                sscanf(n + l, "-%5u.h%2s", &k, tail) == 2 && !strcmp(tail, "5") && k >= nshards[s])
                rm = 1;
        }
        if (rm) {
            snprintf(path, sizeof path, "%s/%s", out, n);
            unlink(path);
        }
    }
    closedir(d);
}

static int write_outputs(const char *out, const ig_preset *p, const ig_manifest *m, plan *plans, size_t np,
                         const char *recipe, size_t M, size_t bins, size_t T, cm_err *err)
{
    char path[CM_PATH_MAX];
    /* failures.tsv: reader failures, then item failures in manifest order of each split */
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    for (size_t pass = 0; rc == 0 && pass < 2; pass++) {
        size_t cnt = pass == 0 ? m->nfail : np;
        for (size_t i = 0; rc == 0 && i < cnt; i++) {
            size_t nl = pass == 0 ? 1 : plans[i].nfailed;
            for (size_t j = 0; rc == 0 && j < nl; j++) {
                const char *id = pass == 0 ? m->fails[i].id : m->items[plans[i].failed[j]].id;
                const char *sp = pass == 0 ? m->fails[i].split : m->splits[plans[i].split];
                const char *rs = pass == 0 ? m->fails[i].reason : plans[i].reasons[j];
                size_t need = strlen(id) + strlen(sp) + strlen(rs) + 4;
                if (len + need >= cap) {
                    while (len + need >= cap)
                        cap *= 2;
                    char *nb = realloc(buf, cap);
                    if (!nb) {
                        rc = -1;
                        break;
                    }
                    buf = nb;
                }
                len += (size_t)snprintf(buf + len, cap - len, "%s\t%s\t", id, sp);
                for (const char *c = rs; *c; c++) /* no tab or newline inside a field */
                    buf[len++] = (*c == '\t' || *c == '\n' || *c == '\r') ? ' ' : *c;
                buf[len++] = '\n';
            }
        }
    }
    if (rc != 0) {
        free(buf);
        return cm_err_set(err, "out of memory");
    }
    snprintf(path, sizeof path, "%s/failures.tsv", out);
    rc = cm_write_file_atomic(path, buf, len, err);
    free(buf);
    if (rc != 0)
        return -1;

    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "format", ST_FORMAT);
    cJSON_AddNumberToObject(r, "version", ST_VERSION);
    cJSON_AddStringToObject(r, "dataset", p->dataset);
    cJSON_AddStringToObject(r, "tool_version", "c2kd ingest 0.1");
    cJSON *cl = cJSON_AddArrayToObject(r, "classes");
    for (int i = 0; i < m->n_classes; i++)
        cJSON_AddItemToArray(cl, cJSON_CreateString(m->classes[i]));
    cJSON_AddNumberToObject(r, "frames_per_sample", p->frames);
    cJSON *shape = cJSON_AddArrayToObject(r, "spec_shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)bins));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)T));
    cJSON_AddStringToObject(r, "spec_dtype", p->spec_float32 ? "float32" : "float16");
    cJSON *rj = cJSON_Parse(recipe);
    cJSON_AddItemToObject(r, "recipe", rj ? rj : cJSON_CreateObject());
    cJSON_AddNumberToObject(r, "shard_items", (double)M);
    cJSON *sps = cJSON_AddObjectToObject(r, "splits");
    size_t total = 0, failed = m->nfail;
    for (int s = 0; s < m->n_splits; s++) {
        cJSON *o = cJSON_AddObjectToObject(sps, m->splits[s]);
        cJSON *sh = cJSON_AddArrayToObject(o, "shards");
        size_t cnt = 0, nf = 0, rows = 0;
        for (size_t i = 0; i < np; i++) {
            if (plans[i].split != s)
                continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", plans[i].file);
            cJSON_AddNumberToObject(e, "count", (double)plans[i].count);
            cJSON_AddNumberToObject(e, "failed", (double)plans[i].nfailed);
            cJSON *it = cJSON_AddArrayToObject(e, "items");
            cJSON_AddItemToArray(it, cJSON_CreateNumber((double)plans[i].lo));
            cJSON_AddItemToArray(it, cJSON_CreateNumber((double)plans[i].hi));
            cJSON_AddItemToArray(sh, e);
            cnt += plans[i].count;
            nf += plans[i].nfailed;
            rows += plans[i].hi - plans[i].lo;
        }
        cJSON_AddNumberToObject(o, "count", (double)cnt);
        cJSON_AddNumberToObject(o, "failed", (double)nf);
        cJSON_AddNumberToObject(o, "items", (double)rows);
        total += cnt;
        failed += nf;
    }
    cJSON *al = cJSON_AddObjectToObject(r, "aliases");
    if (m->alias_from[0])
        cJSON_AddStringToObject(al, m->alias_from, m->alias_to);
    cJSON_AddNumberToObject(r, "count", (double)total);
    cJSON_AddNumberToObject(r, "failed", (double)failed);
    cJSON_AddNumberToObject(r, "reader_failures", (double)m->nfail);
    cJSON_AddNumberToObject(r, "renamed_duplicates", (double)m->renamed);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    if (!text)
        return cm_err_set(err, "out of memory");
    snprintf(path, sizeof path, "%s/index.json", out);
    size_t tl = strlen(text);
    text[tl] = '\n';
    rc = cm_write_file_atomic(path, text, tl + 1, err);
    free(text);
    return rc;
}

int ig_run(const ig_preset *p, const ig_manifest *mc, const ig_options *o, ig_summary *sum, cm_err *err)
{
    ig_manifest *m = (ig_manifest *)mc; /* alias fields only */
    memset(sum, 0, sizeof *sum);
    if (p->val_alias[0]) {
        snprintf(m->alias_from, sizeof m->alias_from, "val");
        snprintf(m->alias_to, sizeof m->alias_to, "%s", p->val_alias);
    }
    if (cm_mkdirs(o->out, err) != 0)
        return -1;
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/index.json", o->out);
    unlink(path); /* a folder without index.json is an unfinished run */

    size_t target = sp_target_samples(&p->sp);
    size_t bins = sp_num_bins(&p->sp), T = sp_num_frames(&p->sp, target);
    if (T == 0)
        return cm_err_set(err, "duration %g s is shorter than one window", p->sp.duration);
    size_t M = o->shard_items;
    if (M == 0) {
        size_t est = bins * T * (p->spec_float32 ? 4 : 2) + (size_t)p->frames * 65536 + 512;
        M = o->shard_bytes / est;
        if (M < 1)
            M = 1;
    }
    char *recipe = ig_preset_recipe_json(p);
    if (!recipe)
        return cm_err_set(err, "out of memory");

    /* split order lists and the plan of shards */
    int rc = -1;
    size_t **order = calloc((size_t)m->n_splits + 1, sizeof *order);
    size_t *nord = calloc((size_t)m->n_splits + 1, sizeof *nord);
    size_t *nsh = calloc((size_t)m->n_splits + 1, sizeof *nsh);
    plan *plans = NULL;
    size_t np = 0, *tasks = NULL, *task_plan = NULL, ntasks = 0;
    sp_stft *stft = NULL;
    fr_jpeg **jpegs = NULL;
    slot *ring = NULL;
    pthread_t *th = NULL;
    worker_arg *wa = NULL;
    int nth = 0, jobs = o->jobs > 0 ? o->jobs : 1;
    ctx c;
    memset(&c, 0, sizeof c);
    if (!order || !nord || !nsh) {
        cm_err_set(err, "out of memory");
        goto done;
    }
    for (int s = 0; s < m->n_splits; s++) {
        order[s] = malloc((m->n + 1) * sizeof **order);
        if (!order[s]) {
            cm_err_set(err, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < m->n; i++)
            if (m->items[i].split == s)
                order[s][nord[s]++] = i;
        nsh[s] = (nord[s] + M - 1) / M;
        np += nsh[s];
    }
    plans = calloc(np + 1, sizeof *plans);
    if (!plans) {
        cm_err_set(err, "out of memory");
        goto done;
    }
    np = 0;
    for (int s = 0; s < m->n_splits; s++)
        for (size_t k = 0; k < nsh[s]; k++) {
            plan *pl = &plans[np++];
            pl->split = s;
            pl->k = k;
            pl->lo = k * M;
            pl->hi = pl->lo + M < nord[s] ? pl->lo + M : nord[s];
            snprintf(pl->file, sizeof pl->file, "%s-%05zu.h5", m->splits[s], k);
            plan_cover(pl, m, order[s], recipe, M);
        }
    clean_out(o->out, m, nsh);
    for (size_t i = 0; i < np; i++) {
        snprintf(path, sizeof path, "%s/%s", o->out, plans[i].file);
        plans[i].keep = try_keep(&plans[i], m, order[plans[i].split], path);
        if (plans[i].keep)
            sum->kept_shards++;
        else
            unlink(path);
    }
    tasks = malloc((m->n + 1) * sizeof *tasks);
    task_plan = malloc((m->n + 1) * sizeof *task_plan);
    if (!tasks || !task_plan) {
        cm_err_set(err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < np; i++)
        if (!plans[i].keep)
            for (size_t q = plans[i].lo; q < plans[i].hi; q++) {
                tasks[ntasks] = order[plans[i].split][q];
                task_plan[ntasks++] = i;
            }
    if (o->log && sum->kept_shards)
        fprintf(o->log, "ingest: keeping %zu complete shard(s) of an earlier run; %zu item(s) to do\n",
                sum->kept_shards, ntasks);

    if (ntasks > 0) {
        stft = sp_stft_create(&p->sp, o->wisdom, err);
        if (!stft)
            goto done;
        jpegs = calloc((size_t)jobs, sizeof *jpegs);
        if (!jpegs) {
            cm_err_set(err, "out of memory");
            goto done;
        }
        for (int j = 0; j < jobs; j++)
            if (!(jpegs[j] = fr_jpeg_create(err)))
                goto done;
        c.p = p;
        c.m = m;
        c.stft = stft;
        c.allow_truncated = o->allow_truncated;
        c.jpegs = jpegs;
        c.tasks = tasks;
        c.ntasks = ntasks;
        c.W = (size_t)jobs * 2 + 2;
        c.target = target;
        c.bins = bins;
        c.T = T;
        ring = calloc(c.W, sizeof *ring);
        th = calloc((size_t)jobs, sizeof *th);
        wa = calloc((size_t)jobs, sizeof *wa);
        if (!ring || !th || !wa) {
            cm_err_set(err, "out of memory");
            goto done;
        }
        c.ring = ring;
        pthread_mutex_init(&c.mu, NULL);
        pthread_cond_init(&c.cv_ready, NULL);
        pthread_cond_init(&c.cv_space, NULL);
        for (; nth < jobs; nth++) {
            wa[nth] = (worker_arg){&c, nth};
            if (pthread_create(&th[nth], NULL, worker_main, &wa[nth]) != 0)
                break;
        }
        if (nth == 0) {
            cm_err_set(err, "cannot start worker threads");
            goto joined;
        }
        cm_progress *bar = o->log ? cm_progress_create(o->log, "ingest", ntasks, 10.0) : NULL;
        st_writer *w = NULL;
        size_t failed_now = 0;
        int fatal = 0;
        char **cls = m->classes;
        for (size_t t = 0; t < ntasks && !fatal; t++) {
            pthread_mutex_lock(&c.mu);
            slot *s = &ring[t % c.W];
            while (!s->ready)
                pthread_cond_wait(&c.cv_ready, &c.mu);
            pthread_mutex_unlock(&c.mu);
            plan *pl = &plans[task_plan[t]];
            const ig_item *it = &m->items[tasks[t]];
            if (!w) {
                snprintf(path, sizeof path, "%s/%s", o->out, pl->file);
                st_meta meta = {.dataset = p->dataset, .split = m->splits[pl->split], .n_classes = m->n_classes,
                                .classes = (const char *const *)cls, .frames_per_sample = p->frames,
                                .bins = (int)bins, .frames = (int)T, .spec_float32 = p->spec_float32,
                                .recipe_json = recipe};
                if (!(w = st_writer_create(path, &meta, err))) {
                    cm_err_prefix(err, "%s", path);
                    fatal = 1;
                }
            }
            if (!fatal) {
                int ok = s->ok;
                if (ok) {
                    const uint8_t *jp[FR_MAX_FRAMES];
                    for (int k = 0; k < p->frames; k++)
                        jp[k] = s->jpeg[k];
                    st_sample smp = {.id = it->id, .label = it->label_idx, .spec = s->spec, .jpeg = jp,
                                     .jpeg_len = s->jl, .seg_start = s->seg[0], .seg_end = s->seg[1],
                                     .frame_time = s->ft};
                    cm_err e2;
                    if (st_writer_add(w, &smp, &e2) != 0) {
                        snprintf(s->reason, sizeof s->reason, "store: %s", e2.msg);
                        ok = 0;
                    }
                }
                if (!ok) {
                    if (add_fail(pl, tasks[t], s->reason) != 0) {
                        cm_err_set(err, "out of memory");
                        fatal = 1;
                    }
                    failed_now++;
                }
                if (!fatal && (t + 1 == ntasks || task_plan[t + 1] != task_plan[t])) {
                    char *fn = fail_note(pl, m);
                    pl->count = st_writer_count(w);
                    if (!fn || st_writer_set_note(w, "ingest_cover", pl->cover, err) != 0 ||
                        st_writer_set_note(w, "ingest_failures", fn, err) != 0) {
                        st_writer_abort(w);
                        fatal = 1;
                    } else if (st_writer_close(w, err) != 0) {
                        fatal = 1;
                    }
                    w = NULL;
                    free(fn);
                }
            }
            pthread_mutex_lock(&c.mu);
            slot_clear(s);
            c.next_write++;
            pthread_cond_broadcast(&c.cv_space);
            pthread_mutex_unlock(&c.mu);
            sum->done_now++;
            cm_progress_update(bar, t + 1, failed_now, NULL);
        }
        if (w)
            st_writer_abort(w);
        if (bar) {
            cm_progress_finish(bar, sum->done_now, failed_now, NULL);
            cm_progress_destroy(bar);
        }
        if (fatal)
            goto joined;
        rc = 0;
    joined:
        pthread_mutex_lock(&c.mu);
        c.stop = 1;
        pthread_cond_broadcast(&c.cv_space);
        pthread_mutex_unlock(&c.mu);
        for (int j = 0; j < nth; j++)
            pthread_join(th[j], NULL);
        for (size_t i = 0; i < c.W; i++)
            slot_clear(&ring[i]);
        pthread_mutex_destroy(&c.mu);
        pthread_cond_destroy(&c.cv_ready);
        pthread_cond_destroy(&c.cv_space);
        if (rc != 0)
            goto done;
        rc = -1;
    }
    if (write_outputs(o->out, p, m, plans, np, recipe, M, bins, T, err) != 0)
        goto done;
    sum->items = m->n + m->nfail;
    sum->shards = np;
    sum->failed = m->nfail;
    for (size_t i = 0; i < np; i++) {
        sum->written += plans[i].count;
        sum->failed += plans[i].nfailed;
    }
    rc = 0;
done:
    if (jpegs)
        for (int j = 0; j < jobs; j++)
            fr_jpeg_destroy(jpegs[j]);
    free(jpegs);
    sp_stft_destroy(stft);
    free(ring);
    free(th);
    free(wa);
    for (size_t i = 0; plans && i < np; i++) {
        for (size_t j = 0; j < plans[i].nfailed; j++)
            free(plans[i].reasons[j]);
        free(plans[i].reasons);
        free(plans[i].failed);
    }
    free(plans);
    for (int s = 0; order && s < m->n_splits; s++)
        free(order[s]);
    free(order);
    free(nord);
    free(nsh);
    free(tasks);
    free(task_plan);
    free(recipe);
    return rc;
}
