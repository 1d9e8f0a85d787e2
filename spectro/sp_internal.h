/* Internals of the spectro library shared between its files and its unit tests. */
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#include <stddef.h>

#include "spectro/spectro.h"

/* The sample indices [*a, *b) of the segment [start, end) s at sample_rate
 * (round half up; *b = INFINITY: to the end of the signal), as
 * sp_fix_length takes them; the decoder keeps the same samples. */
void sp_segment_bounds(int sample_rate, double start, double end, double *a, double *b);
/* Periodic window of length n (scipy.signal.get_window(kind, n)), in double. */
void sp_make_window(sp_window kind, int n, double *w);
/* x[i] = log(x[i] + eps), vectorised (max error ~2 float ulps). */
void sp_log_inplace(float *x, size_t n, float eps);
/* x = (x - mean) / (std + 1e-9), population std, accumulated in double. */
void sp_standardize(float *x, size_t n);

#endif
