/* ig_strmap: string -> int hash map (open addressing, keys copied), so every
 * reader is linear in rows (repeat counts, class lookup, media listings). */
#ifndef IG_STRMAP_H
#define IG_STRMAP_H

#include <stddef.h>

typedef struct ig_strmap {
    char **keys;
    int *vals;
    size_t cap, n;
} ig_strmap;

void ig_strmap_init(ig_strmap *h);
void ig_strmap_free(ig_strmap *h);
/* The value of key, or -1 when absent. */
int ig_strmap_get(const ig_strmap *h, const char *key);
/* The value slot of key, inserted with value `init` when absent; NULL when out of memory. */
int *ig_strmap_put(ig_strmap *h, const char *key, int init);

#endif
