#include "train/rng.h"

#include <math.h>

#include "common/cm_rand.h"

void tr_rng_seed(tr_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = cm_splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
        r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tr_rng_next(tr_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tr_rng_uniform(tr_rng *r)
{
    return (double)(tr_rng_next(r) >> 11) * 0x1.0p-53;
}

double tr_rng_normal(tr_rng *r)
{
    double u1 = tr_rng_uniform(r), u2 = tr_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

double tr_rng_range(tr_rng *r, double a, double b)
{
    return a + (b - a) * tr_rng_uniform(r);
}

uint64_t tr_rng_below(tr_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    /* Rejection sampling on the top of the range: unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = tr_rng_next(r);
    while (x >= limit);
    return x % n;
}
