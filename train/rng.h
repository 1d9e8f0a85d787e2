/* rng: the trainer's one random generator (xoshiro256**, seeded by
 * splitmix64): weight initialisation, the loader's shuffle and augmentation
 * draws. Deterministic on every machine; the state (4 x uint64) is what
 * checkpoints save (tr_position.rng_state). */
#ifndef TRAIN_RNG_H
#define TRAIN_RNG_H

#include <stdint.h>

typedef struct tr_rng {
    uint64_t s[4];
} tr_rng;

/* Seeds the state from one 64-bit value with splitmix64 (never all zero). */
void tr_rng_seed(tr_rng *r, uint64_t seed);
uint64_t tr_rng_next(tr_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double tr_rng_uniform(tr_rng *r);
/* Standard normal (Box-Muller; one value per call). */
double tr_rng_normal(tr_rng *r);
/* Uniform double in [a, b). */
double tr_rng_range(tr_rng *r, double a, double b);
/* Uniform integer in [0, n), unbiased (n >= 1). */
uint64_t tr_rng_below(tr_rng *r, uint64_t n);

#endif
