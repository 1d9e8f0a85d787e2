/* ig_strmap: string -> int hash map (FNV-1a, linear probing, load <= 1/2). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ig_strmap.h"

void ig_strmap_init(ig_strmap *h)
{
    memset(h, 0, sizeof *h);
}

void ig_strmap_free(ig_strmap *h)
{
    for (size_t i = 0; i < h->cap; i++)
        free(h->keys[i]);
    free(h->keys);
    free(h->vals);
    memset(h, 0, sizeof *h);
}

static size_t hash(const char *s)
{
    uint64_t x = 1469598103934665603ull;
    for (; *s; s++)
        x = (x ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)(x ^ (x >> 29));
}

static size_t find(const ig_strmap *h, const char *key)
{
    size_t i = hash(key) & (h->cap - 1);
    while (h->keys[i] && strcmp(h->keys[i], key))
        i = (i + 1) & (h->cap - 1);
    return i;
}

int ig_strmap_get(const ig_strmap *h, const char *key)
{
    if (!h->cap)
        return -1;
    size_t i = find(h, key);
    return h->keys[i] ? h->vals[i] : -1;
}

static int grow(ig_strmap *h)
{
    ig_strmap g = {.cap = h->cap ? h->cap * 2 : 64, .n = h->n};
    g.keys = calloc(g.cap, sizeof *g.keys);
    g.vals = calloc(g.cap, sizeof *g.vals);
    if (!g.keys || !g.vals) {
        free(g.keys);
        free(g.vals);
        return -1;
    }
    for (size_t i = 0; i < h->cap; i++)
        if (h->keys[i]) {
            size_t j = find(&g, h->keys[i]);
            g.keys[j] = h->keys[i];
            g.vals[j] = h->vals[i];
        }
    free(h->keys);
    free(h->vals);
    *h = g;
    return 0;
}

int *ig_strmap_put(ig_strmap *h, const char *key, int init)
{
    if (2 * (h->n + 1) > h->cap && grow(h) != 0)
        return NULL;
    size_t i = find(h, key);
    if (!h->keys[i]) {
        if (!(h->keys[i] = strdup(key)))
            return NULL;
        h->vals[i] = init;
        h->n++;
    }
    return &h->vals[i];
}
