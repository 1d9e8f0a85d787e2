/* rng: a small seeded generator (xoshiro256**, seeded by splitmix64) for
 * weight initialisation. Deterministic across platforms. */
#ifndef TRAIN_RNG_H
#define TRAIN_RNG_H

#include <stdint.h>

typedef struct tr_rng {
    uint64_t s[4];
} tr_rng;

void tr_rng_seed(tr_rng *r, uint64_t seed);
uint64_t tr_rng_next(tr_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double tr_rng_uniform(tr_rng *r);
/* Standard normal (Box-Muller; one value per call). */
double tr_rng_normal(tr_rng *r);

#endif
