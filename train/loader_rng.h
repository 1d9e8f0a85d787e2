/* loader_rng: the trainer's own random generator (xoshiro256**), so that the
 * shuffle and the augmentation draws are the same on every machine and the
 * state (4 x uint64) can be saved in checkpoints (tr_position.rng_state). */
#ifndef TRAIN_LOADER_RNG_H
#define TRAIN_LOADER_RNG_H

#include <stdint.h>

typedef struct ld_rng {
    uint64_t s[4];
} ld_rng;

/* Seeds the state from one 64-bit value with splitmix64 (never all zero). */
void ld_rng_seed(ld_rng *r, uint64_t seed);
uint64_t ld_rng_next(ld_rng *r);
/* Uniform double in [0, 1) (53 bits). */
double ld_rng_uniform(ld_rng *r);
/* Uniform double in [a, b). */
double ld_rng_range(ld_rng *r, double a, double b);
/* Uniform integer in [0, n), unbiased (n >= 1). */
uint64_t ld_rng_below(ld_rng *r, uint64_t n);

#endif
