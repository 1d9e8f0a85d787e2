/* ingest: presets (manifests/<name>.conf): `key = value` lines, `#` comments. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_file.h"
#include "ingest/ig_text.h"
#include "ingest/ingest.h"

void ig_preset_init(ig_preset *p)
{
    memset(p, 0, sizeof *p);
    sp_params_default(&p->sp);
    snprintf(p->dataset, sizeof p->dataset, "custom");
    snprintf(p->reader, sizeof p->reader, "manifest");
    p->frames = 1;
    p->use_segment = 1;
    p->jpeg_quality = 90;
    snprintf(p->class_order, sizeof p->class_order, "sorted");
    snprintf(p->subset, sizeof p->subset, "tiny");
    p->test_fraction = 0.1;
}

void ig_preset_free(ig_preset *p)
{
    for (int i = 0; i < p->n_classes; i++)
        free(p->classes[i]);
    free(p->classes);
    p->classes = NULL;
    p->n_classes = 0;
}

static int parse_int(const char *key, const char *v, long lo, long hi, int *out, cm_err *err)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cm_err_set(err, "%s: expected an integer in [%ld, %ld], got \"%s\"", key, lo, hi, v);
    *out = (int)x;
    return 0;
}

static int parse_double(const char *key, const char *v, double lo, double hi, double *out, cm_err *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return cm_err_set(err, "%s: expected a number in [%g, %g], got \"%s\"", key, lo, hi, v);
    *out = x;
    return 0;
}

static int copy_str(const char *key, const char *v, char *dst, size_t n, cm_err *err)
{
    if (strlen(v) >= n)
        return cm_err_set(err, "%s: value too long", key);
    snprintf(dst, n, "%s", v);
    return 0;
}

static int one_of(const char *key, const char *v, const char *const *opts, int n, cm_err *err)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v, opts[i]))
            return i;
    return cm_err_set(err, "%s: unknown value \"%s\"", key, v);
}

static int set_classes(ig_preset *p, const char *v, cm_err *err)
{
    ig_preset_free(p);
    /* names separated by '|' (class names may contain commas) */
    const char *s = v;
    while (*s) {
        const char *e = strchr(s, '|');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && isspace((unsigned char)*s)) {
            s++;
            len--;
        }
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        if (len) {
            char **c = realloc(p->classes, (size_t)(p->n_classes + 1) * sizeof *c);
            if (!c)
                return cm_err_set(err, "out of memory");
            p->classes = c;
            if (!(c[p->n_classes] = strndup(s, len)))
                return cm_err_set(err, "out of memory");
            p->n_classes++;
        }
        if (!e)
            break;
        s = e + 1;
    }
    return 0;
}

int ig_preset_set(ig_preset *p, const char *key, const char *v, cm_err *err)
{
    int i = sp_params_set(&p->sp, key, v, err); /* the spectrogram settings: spectro's table */
    if (i <= 0)
        return i;
    if (!strcmp(key, "dataset"))
        return copy_str(key, v, p->dataset, sizeof p->dataset, err);
    if (!strcmp(key, "reader")) {
        if (!ig_reader_find(v)) {
            char names[256];
            ig_reader_names(names, sizeof names, ", ");
            return cm_err_set(err, "%s: unknown value \"%s\" (readers: %s)", key, v, names);
        }
        return copy_str(key, v, p->reader, sizeof p->reader, err);
    }
    if (!strcmp(key, "frames"))
        return parse_int(key, v, 1, 64, &p->frames, err);
    if (!strcmp(key, "use_segment"))
        return parse_int(key, v, 0, 1, &p->use_segment, err);
    if (!strcmp(key, "short_side"))
        return parse_int(key, v, 0, 8192, &p->short_side, err);
    if (!strcmp(key, "jpeg_quality"))
        return parse_int(key, v, 1, 100, &p->jpeg_quality, err);
    if (!strcmp(key, "spec_dtype")) {
        static const char *const o[] = {"float16", "float32"};
        if ((i = one_of(key, v, o, 2, err)) < 0)
            return -1;
        p->spec_float32 = i;
        return 0;
    }
    if (!strcmp(key, "class_order")) {
        static const char *const o[] = {"first-in-test", "sorted", "preset"};
        if (one_of(key, v, o, 3, err) < 0)
            return -1;
        return copy_str(key, v, p->class_order, sizeof p->class_order, err);
    }
    if (!strcmp(key, "classes"))
        return set_classes(p, v, err);
    if (!strcmp(key, "subset")) {
        static const char *const o[] = {"tiny", "full"};
        if (one_of(key, v, o, 2, err) < 0)
            return -1;
        return copy_str(key, v, p->subset, sizeof p->subset, err);
    }
    if (!strcmp(key, "seed")) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return cm_err_set(err, "seed: expected an unsigned integer, got \"%s\"", v);
        p->seed = x;
        return 0;
    }
    if (!strcmp(key, "test_fraction"))
        return parse_double(key, v, 0, 1, &p->test_fraction, err);
    if (!strcmp(key, "val_alias"))
        return copy_str(key, v, p->val_alias, sizeof p->val_alias, err);
    return cm_err_set(err, "unknown key \"%s\"", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

#define PRESET_MAX ((size_t)1 << 20) /* bytes of a preset file */

int ig_preset_load(ig_preset *p, const char *path, cm_err *err)
{
    ig_lines t;
    if (ig_lines_open(&t, path, PRESET_MAX, err) != 0)
        return -1;
    int rc = 0;
    char *line;
    while (rc == 0 && (line = ig_lines_next(&t))) {
        if (t.bad) { /* a NUL byte would otherwise end the file early, dropping the settings after it */
            rc = cm_err_set(err, "line %d: %s", t.lineno, t.bad);
            break;
        }
        char *h = strchr(line, '#');
        if (h)
            *h = '\0';
        char *l = trim(line);
        if (!*l)
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            rc = cm_err_set(err, "line %d: expected key = value", t.lineno);
            break;
        }
        *eq = '\0';
        if (ig_preset_set(p, trim(l), trim(eq + 1), err) != 0)
            rc = cm_err_prefix(err, "line %d", t.lineno);
    }
    ig_lines_close(&t);
    if (rc == 0)
        rc = sp_params_check(&p->sp, err);
    return rc;
}

/* One spectrogram setting into the recipe's "audio" object. */
static int add_setting(void *ctx, const char *key, const char *text, double num, int is_int)
{
    (void)is_int;
    cJSON *a = ctx;
    return (text ? cJSON_AddStringToObject(a, key, text) : cJSON_AddNumberToObject(a, key, num)) ? 0 : -1;
}

char *ig_preset_recipe_json(const ig_preset *p)
{
    cJSON *r = cJSON_CreateObject(), *a = cJSON_CreateObject(), *v = cJSON_CreateObject();
    sp_params_each(&p->sp, add_setting, a); /* spectro's table, in its order */
    cJSON_AddStringToObject(a, "fix_length", "tile then cut, clip to [-1, 1]");
    cJSON_AddNumberToObject(a, "bins", (double)sp_num_bins(&p->sp));
    cJSON_AddNumberToObject(a, "frames",
                            (double)sp_num_frames(&p->sp, sp_target_samples(&p->sp)));
    cJSON_AddStringToObject(a, "dtype", p->spec_float32 ? "float32" : "float16");
    cJSON_AddNumberToObject(v, "count", p->frames);
    cJSON_AddStringToObject(v, "times", "centres of count equal parts of the segment (or clip)");
    cJSON_AddNumberToObject(v, "short_side", p->short_side);
    cJSON_AddNumberToObject(v, "jpeg_quality", p->jpeg_quality);
    cJSON_AddStringToObject(v, "jpeg_subsampling", "4:2:0");
    cJSON_AddItemToObject(r, "audio", a);
    cJSON_AddItemToObject(r, "video", v);
    cJSON_AddNumberToObject(r, "use_segment", p->use_segment);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}
