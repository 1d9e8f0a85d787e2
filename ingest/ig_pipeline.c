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
#include "common/cm_version.h"
#include "common/cm_progress.h"
#include "frames/frames.h"
#include "ingest/ingest.h"
#include "store/st_index.h"
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
    size_t bins, T;          /* one spectrogram: bins x T */
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
    double audio_end = 0;
    sp_read_opts ro = {.start = whole ? 0 : it->start, .end = whole ? -1 : it->end,
                       .allow_truncated = c->allow_truncated, .end_s = &audio_end};
    s->spec = malloc(c->bins * c->T * sizeof *s->spec);
    if (!s->spec) {
        snprintf(s->reason, sizeof s->reason, "out of memory");
        return;
    }
    if (sp_file_spectrogram(c->stft, it->audio, &ro, NULL, s->spec, NULL, &err) != 0) {
        snprintf(s->reason, sizeof s->reason, "audio: %s", err.msg);
        return;
    }
    s->seg[0] = whole ? 0.0f : (float)it->start;
    s->seg[1] = whole ? (float)audio_end : (float)it->end; /* the whole clip: where its audio ends */

    fr_request req = {.count = p->frames, .start = whole ? 0 : it->start, .end = whole ? -1 : it->end,
                      .short_side = p->short_side, .allow_truncated = c->allow_truncated};
    fr_image img[FR_MAX_FRAMES];
    int nout = 0;
    memset(img, 0, sizeof img);
    if (fr_extract(it->video, &req, img, &nout, &err) != 0) {
        snprintf(s->reason, sizeof s->reason, "video: %s", err.msg);
        return;
    }
    int rc = 0;
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

/* ---- the run: plan -> lock -> keep -> workers + writer -> index ---- */

typedef struct run {
    const ig_preset *p;
    const ig_manifest *m;
    const ig_options *o;
    ig_summary *sum;
    int part_k, part_n;      /* part_n <= 1: the whole set */
    size_t target, bins, T, M;
    char *recipe;
    size_t **order, *nord;   /* per split: item indices in manifest order */
    size_t *first;           /* per split: the global plan index of its shard 0 */
    plan *plans;
    size_t np;
    size_t *tasks, *task_plan, ntasks; /* items to do (in write order) and their plan */
    st_lock *lock;
} run;

static int mine(const run *r, size_t i)
{
    return r->part_n <= 1 || i % (size_t)r->part_n == (size_t)r->part_k;
}

/* "split-NNNNN.h5" of one of the manifest's splits: its split and shard number. */
static int shard_name(const ig_manifest *m, const char *n, size_t len, int *split, size_t *k)
{
    for (int s = 0; s < m->n_splits; s++) {
        size_t l = strlen(m->splits[s]);
        unsigned v;
        char tail[8];
        if (len == l + 9 && !strncmp(n, m->splits[s], l) && n[l] == '-' && sscanf(n + l, "-%5u.h%2s", &v, tail) == 2 &&
            !strncmp(tail, "5", 1) && n[len - 1] == '5' && n[len - 2] == 'h') {
            *split = s;
            *k = v;
            return 1;
        }
    }
    return 0;
}

/* Removes what an interrupted or different earlier run may have left: this
 * run's temporary shard files (any when it writes the whole set) and shards
 * beyond the planned ones. Other parts' temporaries are theirs. */
static void clean_out(const run *r)
{
    DIR *d = opendir(r->o->out);
    if (!d)
        return;
    struct dirent *e;
    char path[CM_PATH_MAX];
    while ((e = readdir(d))) {
        const char *n = e->d_name, *tmp = strstr(n, ".h5.tmp.");
        int rm = 0, s;
        size_t k;
        if (n[0] == '.' && tmp)
            rm = r->part_n <= 1 ||
                 (shard_name(r->m, n + 1, (size_t)(tmp + 3 - n - 1), &s, &k) && k < r->nord[s] &&
                  mine(r, r->first[s] + k));
        else if (shard_name(r->m, n, strlen(n), &s, &k))
            rm = k * r->M >= r->nord[s];
        if (rm) {
            snprintf(path, sizeof path, "%s/%s", r->o->out, n);
            unlink(path);
        }
    }
    closedir(d);
}

/* Phase 1: shard sizes, split orders, the plan of shards and their covers. */
static int run_plan(run *r, cm_err *err)
{
    const ig_preset *p = r->p;
    const ig_manifest *m = r->m;
    r->target = sp_target_samples(&p->sp);
    r->bins = sp_num_bins(&p->sp);
    r->T = sp_num_frames(&p->sp, r->target);
    if (r->T == 0)
        return cm_err_set(err, "duration %g s is shorter than one window", p->sp.duration);
    r->M = r->o->shard_items;
    if (r->M == 0) {
        size_t est = r->bins * r->T * (p->spec_float32 ? 4 : 2) + (size_t)p->frames * 65536 + 512;
        r->M = r->o->shard_bytes / est > 0 ? r->o->shard_bytes / est : 1;
    }
    r->recipe = ig_preset_recipe_json(p);
    r->order = calloc((size_t)m->n_splits + 1, sizeof *r->order);
    r->nord = calloc((size_t)m->n_splits + 1, sizeof *r->nord);
    r->first = calloc((size_t)m->n_splits + 1, sizeof *r->first);
    if (!r->recipe || !r->order || !r->nord || !r->first)
        return cm_err_set(err, "out of memory");
    size_t np = 0;
    for (int s = 0; s < m->n_splits; s++) {
        if (!(r->order[s] = malloc((m->n + 1) * sizeof **r->order)))
            return cm_err_set(err, "out of memory");
        for (size_t i = 0; i < m->n; i++)
            if (m->items[i].split == s)
                r->order[s][r->nord[s]++] = i;
        r->first[s] = np;
        np += (r->nord[s] + r->M - 1) / r->M;
    }
    if (!(r->plans = calloc(np + 1, sizeof *r->plans)))
        return cm_err_set(err, "out of memory");
    for (int s = 0; s < m->n_splits; s++)
        for (size_t k = 0; k * r->M < r->nord[s]; k++) {
            plan *pl = &r->plans[r->np++];
            pl->split = s;
            pl->k = k;
            pl->lo = k * r->M;
            pl->hi = pl->lo + r->M < r->nord[s] ? pl->lo + r->M : r->nord[s];
            snprintf(pl->file, sizeof pl->file, "%s-%05zu.h5", m->splits[s], k);
            plan_cover(pl, m, r->order[s], r->recipe, r->M);
        }
    return 0;
}

/* plan.json (store/st_index.h): what index.json will say, every shard's cover, the reader's failures. */
static char *plan_json(const run *r)
{
    const ig_preset *p = r->p;
    const ig_manifest *m = r->m;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", ST_PLAN_FORMAT);
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON *ix = cJSON_AddObjectToObject(root, "index");
    cJSON_AddStringToObject(ix, "format", ST_FORMAT);
    cJSON_AddNumberToObject(ix, "version", ST_VERSION);
    cJSON_AddStringToObject(ix, "dataset", p->dataset);
    cJSON_AddStringToObject(ix, "tool_version", cm_tool_version());
    cJSON *cl = cJSON_AddArrayToObject(ix, "classes");
    for (int i = 0; i < m->n_classes; i++)
        cJSON_AddItemToArray(cl, cJSON_CreateString(m->classes[i]));
    cJSON_AddNumberToObject(ix, "frames_per_sample", p->frames);
    cJSON *shape = cJSON_AddArrayToObject(ix, "spec_shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)r->bins));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)r->T));
    cJSON_AddStringToObject(ix, "spec_dtype", p->spec_float32 ? "float32" : "float16");
    cJSON *rj = cJSON_Parse(r->recipe);
    cJSON_AddItemToObject(ix, "recipe", rj ? rj : cJSON_CreateObject());
    cJSON_AddNumberToObject(ix, "shard_items", (double)r->M);
    cJSON *al = cJSON_AddObjectToObject(ix, "aliases");
    if (m->alias_from[0])
        cJSON_AddStringToObject(al, m->alias_from, m->alias_to);
    cJSON_AddNumberToObject(ix, "reader_failures", (double)m->nfail);
    cJSON_AddNumberToObject(ix, "renamed_duplicates", (double)m->renamed);
    cJSON *sps = cJSON_AddArrayToObject(root, "splits");
    for (int s = 0; s < m->n_splits; s++) {
        cJSON *o = cJSON_CreateObject(), *cv;
        cJSON_AddStringToObject(o, "name", m->splits[s]);
        cJSON_AddNumberToObject(o, "items", (double)r->nord[s]);
        cv = cJSON_AddArrayToObject(o, "covers");
        for (size_t i = 0; i < r->np; i++)
            if (r->plans[i].split == s)
                cJSON_AddItemToArray(cv, cJSON_CreateString(r->plans[i].cover));
        cJSON_AddItemToArray(sps, o);
    }
    cJSON *rf = cJSON_AddArrayToObject(root, "reader_failures");
    for (size_t i = 0; i < m->nfail; i++) {
        cJSON *e = cJSON_CreateArray();
        cJSON_AddItemToArray(e, cJSON_CreateString(m->fails[i].id));
        cJSON_AddItemToArray(e, cJSON_CreateString(m->fails[i].split));
        cJSON_AddItemToArray(e, cJSON_CreateString(m->fails[i].reason));
        cJSON_AddItemToArray(rf, e);
    }
    if (m->nnotes) { /* only when there are some: the plan of a set without notes is as before */
        cJSON *rn = cJSON_AddArrayToObject(root, "reader_notes");
        for (size_t i = 0; i < m->nnotes; i++)
            cJSON_AddItemToArray(rn, cJSON_CreateString(m->notes[i]));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* Phase 2 (under the lock): this run's shards that an earlier run completed are kept; the rest is to do. */
static int run_keep(run *r, cm_err *err)
{
    char path[CM_PATH_MAX];
    clean_out(r);
    r->tasks = malloc((r->m->n + 1) * sizeof *r->tasks);
    r->task_plan = malloc((r->m->n + 1) * sizeof *r->task_plan);
    if (!r->tasks || !r->task_plan)
        return cm_err_set(err, "out of memory");
    for (size_t i = 0; i < r->np; i++) {
        plan *pl = &r->plans[i];
        if (!mine(r, i))
            continue;
        r->sum->shards++;
        snprintf(path, sizeof path, "%s/%s", r->o->out, pl->file);
        pl->keep = try_keep(pl, r->m, r->order[pl->split], path);
        if (pl->keep) {
            r->sum->kept_shards++;
            continue;
        }
        if (unlink(path) != 0 && errno != ENOENT)
            return cm_err_set(err, "%s: cannot remove: %s", path, strerror(errno));
        for (size_t q = pl->lo; q < pl->hi; q++) {
            r->tasks[r->ntasks] = r->order[pl->split][q];
            r->task_plan[r->ntasks++] = i;
        }
    }
    if (r->o->log && r->sum->kept_shards)
        fprintf(r->o->log, "ingest: keeping %zu complete shard(s) of an earlier run; %zu item(s) to do\n",
                r->sum->kept_shards, r->ntasks);
    return 0;
}

/* Closes plan pl's shard with its bookkeeping notes. */
static int close_shard(run *r, plan *pl, st_writer *w, cm_err *err)
{
    char *fn = fail_note(pl, r->m);
    pl->count = st_writer_count(w);
    if (!fn || st_writer_set_note(w, "ingest_cover", pl->cover, err) != 0 ||
        st_writer_set_note(w, "ingest_failures", fn, err) != 0) {
        if (!fn)
            cm_err_set(err, "out of memory");
        st_writer_abort(w);
        free(fn);
        return -1;
    }
    free(fn);
    return st_writer_close(w, err) == 0 ? 0 : -1;
}

/* One finished item into its shard (opened on its first item, closed after its last). */
static int write_one(run *r, size_t t, slot *s, st_writer **w, cm_err *err)
{
    const ig_preset *p = r->p;
    const ig_manifest *m = r->m;
    plan *pl = &r->plans[r->task_plan[t]];
    const ig_item *it = &m->items[r->tasks[t]];
    char path[CM_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->o->out, pl->file);
    if (!*w) {
        st_meta meta = {.dataset = p->dataset, .split = m->splits[pl->split], .n_classes = m->n_classes,
                        .classes = (const char *const *)m->classes, .frames_per_sample = p->frames,
                        .bins = (int)r->bins, .frames = (int)r->T, .spec_float32 = p->spec_float32,
                        .recipe_json = r->recipe};
        if (!(*w = st_writer_create(path, &meta, err)))
            return -1;
    }
    if (s->ok) {
        const uint8_t *jp[FR_MAX_FRAMES];
        for (int k = 0; k < p->frames; k++)
            jp[k] = s->jpeg[k];
        st_sample smp = {.id = it->id, .label = it->label_idx, .spec = s->spec, .jpeg = jp, .jpeg_len = s->jl,
                         .seg_start = s->seg[0], .seg_end = s->seg[1], .frame_time = s->ft};
        if (st_writer_add(*w, &smp, err) != 0)
            return -1; /* the disk, not the row: fatal */
    } else {
        if (add_fail(pl, r->tasks[t], s->reason) != 0)
            return cm_err_set(err, "out of memory");
        r->sum->failed_now++;
    }
    if (t + 1 == r->ntasks || r->task_plan[t + 1] != r->task_plan[t]) {
        st_writer *cw = *w;
        *w = NULL;
        return close_shard(r, pl, cw, err);
    }
    return 0;
}

/* Phase 4, on the calling thread: results in task order into the shards. */
static int run_writer(run *r, ctx *c, cm_err *err)
{
    cm_progress *bar = r->o->log ? cm_progress_create(r->o->log, "ingest", r->ntasks, 10.0) : NULL;
    st_writer *w = NULL;
    int rc = 0;
    for (size_t t = 0; t < r->ntasks && rc == 0; t++) {
        pthread_mutex_lock(&c->mu);
        slot *s = &c->ring[t % c->W];
        while (!s->ready)
            pthread_cond_wait(&c->cv_ready, &c->mu);
        pthread_mutex_unlock(&c->mu);
        rc = write_one(r, t, s, &w, err);
        if (rc != 0) {
            char path[CM_PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", r->o->out, r->plans[r->task_plan[t]].file);
            if (!strstr(err->msg, r->plans[r->task_plan[t]].file))
                cm_err_prefix(err, "%s", path);
        }
        pthread_mutex_lock(&c->mu);
        slot_clear(s);
        c->next_write++;
        pthread_cond_broadcast(&c->cv_space);
        pthread_mutex_unlock(&c->mu);
        r->sum->done_now++;
        cm_progress_update(bar, t + 1, r->sum->failed_now, NULL);
    }
    if (w)
        st_writer_abort(w);
    if (bar) {
        cm_progress_finish(bar, r->sum->done_now, r->sum->failed_now, NULL);
        cm_progress_destroy(bar);
    }
    return rc;
}

/* Phase 3: the worker threads around the writer. */
static int run_workers(run *r, cm_err *err)
{
    int jobs = r->o->jobs > 0 ? r->o->jobs : 1, nth = 0, rc = -1;
    ctx c = {.p = r->p, .m = r->m, .tasks = r->tasks, .ntasks = r->ntasks, .W = (size_t)jobs * 2 + 2,
             .bins = r->bins, .T = r->T};
    sp_stft *stft = sp_stft_create(&r->p->sp, r->o->wisdom, err);
    fr_jpeg **jpegs = calloc((size_t)jobs, sizeof *jpegs);
    pthread_t *th = calloc((size_t)jobs, sizeof *th);
    worker_arg *wa = calloc((size_t)jobs, sizeof *wa);
    c.ring = calloc(c.W, sizeof *c.ring);
    if (stft && !(jpegs && th && wa && c.ring))
        cm_err_set(err, "out of memory");
    for (int j = 0; stft && jpegs && th && wa && c.ring && j < jobs; j++)
        if (!(jpegs[j] = fr_jpeg_create(err)))
            goto done;
    if (!stft || !jpegs || !th || !wa || !c.ring)
        goto done;
    c.stft = stft;
    c.allow_truncated = r->o->allow_truncated;
    c.jpegs = jpegs;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv_ready, NULL);
    pthread_cond_init(&c.cv_space, NULL);
    for (; nth < jobs; nth++) {
        wa[nth] = (worker_arg){&c, nth};
        if (pthread_create(&th[nth], NULL, worker_main, &wa[nth]) != 0)
            break;
    }
    rc = nth == 0 ? cm_err_set(err, "cannot start worker threads") : run_writer(r, &c, err);
    pthread_mutex_lock(&c.mu);
    c.stop = 1;
    pthread_cond_broadcast(&c.cv_space);
    pthread_mutex_unlock(&c.mu);
    for (int j = 0; j < nth; j++)
        pthread_join(th[j], NULL);
    for (size_t i = 0; i < c.W; i++)
        slot_clear(&c.ring[i]);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv_ready);
    pthread_cond_destroy(&c.cv_space);
done:
    for (int j = 0; jpegs && j < jobs; j++)
        fr_jpeg_destroy(jpegs[j]);
    free(jpegs);
    sp_stft_destroy(stft);
    free(c.ring);
    free(th);
    free(wa);
    return rc;
}

/* Phase 5: the summary; index.json + failures.tsv when every shard of the set is there. */
static int run_index(run *r, cm_err *err)
{
    ig_summary *s = r->sum;
    s->items = r->m->n + r->m->nfail;
    s->total_shards = r->np;
    s->failed = r->m->nfail;
    for (size_t i = 0; i < r->np; i++)
        if (mine(r, i)) {
            s->written += r->plans[i].count;
            s->failed += r->plans[i].nfailed;
        }
    cm_err e2;
    int rc = st_lock_index(r->lock, r->part_n > 1 ? &e2 : err);
    if (rc < 0 && r->part_n > 1)
        snprintf(err->msg, sizeof err->msg, "%s", e2.msg);
    if (rc == 0)
        s->indexed = 1;
    else if (rc == 1 && r->part_n > 1) /* other parts not done yet: theirs to index */
        return 0;
    return rc == 0 ? 0 : -1;
}

static void run_free(run *r)
{
    st_lock_release(r->lock);
    for (size_t i = 0; r->plans && i < r->np; i++) {
        for (size_t j = 0; j < r->plans[i].nfailed; j++)
            free(r->plans[i].reasons[j]);
        free(r->plans[i].reasons);
        free(r->plans[i].failed);
    }
    free(r->plans);
    for (int s = 0; r->order && s < r->m->n_splits; s++)
        free(r->order[s]);
    free(r->order);
    free(r->nord);
    free(r->first);
    free(r->tasks);
    free(r->task_plan);
    free(r->recipe);
}

int ig_run(const ig_preset *p, const ig_manifest *mc, const ig_options *o, ig_summary *sum, cm_err *err)
{
    ig_manifest *m = (ig_manifest *)mc; /* alias fields only */
    memset(sum, 0, sizeof *sum);
    if (o->part_n > 1 && (o->part_k < 0 || o->part_k >= o->part_n))
        return cm_err_set(err, "part %d/%d: expected 0 <= K < N", o->part_k, o->part_n);
    if (p->val_alias[0]) {
        snprintf(m->alias_from, sizeof m->alias_from, "val");
        snprintf(m->alias_to, sizeof m->alias_to, "%s", p->val_alias);
    }
    if (cm_mkdirs(o->out, err) != 0)
        return -1;
    run r = {.p = p, .m = m, .o = o, .sum = sum, .part_k = o->part_k, .part_n = o->part_n};
    int rc = run_plan(&r, err);
    if (rc == 0) {
        char *pj = plan_json(&r);
        r.lock = pj ? st_lock_take(o->out, r.part_k, r.part_n, pj, err) : NULL;
        if (!pj)
            cm_err_set(err, "out of memory");
        free(pj);
        rc = r.lock ? 0 : -1;
    }
    if (rc == 0)
        rc = run_keep(&r, err);
    if (rc == 0 && r.ntasks > 0)
        rc = run_workers(&r, err);
    if (rc == 0)
        rc = run_index(&r, err);
    run_free(&r);
    return rc;
}
