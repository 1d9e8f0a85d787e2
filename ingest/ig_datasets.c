/* ingest: the datasets are the presets manifests/NAME.conf; where they are
 * found and which there are (ingest.h). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_file.h"
#include "ingest/ingest.h"

#define NDIRS 3

/* The folders searched for presets, in order; returns how many. */
static int preset_dirs(char dirs[NDIRS][CM_PATH_MAX])
{
    int nd = 0;
    const char *env = getenv("C2KD_MANIFESTS");
    if (env && *env)
        snprintf(dirs[nd++], CM_PATH_MAX, "%.4000s", env);
    char exe[CM_PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        exe[l] = '\0';
        char *s = strrchr(exe, '/'); /* .../build/bin/ingest -> .../manifests */
        for (int up = 0; s && up < 2; up++) {
            *s = '\0';
            s = strrchr(exe, '/');
        }
        if (s) {
            *s = '\0';
            snprintf(dirs[nd++], CM_PATH_MAX, "%.3000s/manifests", exe);
        }
    }
    snprintf(dirs[nd++], CM_PATH_MAX, "manifests");
    return nd;
}

int ig_preset_find(const char *name, char *out, size_t n)
{
    char dirs[NDIRS][CM_PATH_MAX], cand[CM_PATH_MAX];
    int nd = preset_dirs(dirs);
    for (int i = 0; i < nd; i++) {
        snprintf(cand, sizeof cand, "%.3000s/%.200s.conf", dirs[i], name);
        if (cm_is_file(cand)) {
            snprintf(out, n, "%s", cand);
            return 0;
        }
    }
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the NAME of every NAME.conf of dir to names (unique; at most max). */
static void add_names(const char *dir, char **names, int *k, int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".conf") != 0)
            continue;
        char path[CM_PATH_MAX];
        snprintf(path, sizeof path, "%.3000s/%.255s", dir, e->d_name);
        int seen = !cm_is_file(path);
        for (int i = 0; !seen && i < *k; i++)
            seen = strlen(names[i]) == len - 5 && !strncmp(names[i], e->d_name, len - 5);
        if (!seen && *k < max && (names[*k] = strndup(e->d_name, len - 5)) != NULL)
            (*k)++;
    }
    if (d)
        closedir(d);
}

void ig_preset_names(char *out, size_t n, const char *sep)
{
    char dirs[NDIRS][CM_PATH_MAX], *names[256];
    int nd = preset_dirs(dirs), k = 0;
    for (int i = 0; i < nd; i++)
        add_names(dirs[i], names, &k, 256);
    qsort(names, (size_t)k, sizeof names[0], cmp_str);
    size_t w = 0;
    if (n)
        out[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (w < n)
            w += (size_t)snprintf(out + w, n - w, "%s%s", i ? sep : "", names[i]);
        free(names[i]);
    }
}
