/* cm_rand: splitmix64, the one seed expander of the project (Steele, Lea and
 * Flood's SplitMix64 with Vigna's constants): the trainer seeds its
 * xoshiro256** state with it (train/rng.c), ingest shuffles CREMA-D's clips
 * with it when the split lists are absent (manifests/cremad.conf). */
#ifndef CM_RAND_H
#define CM_RAND_H

#include <stdint.h>

/* Advances *state by the golden-ratio increment and returns the mixed value. */
uint64_t cm_splitmix64(uint64_t *state);

#endif
