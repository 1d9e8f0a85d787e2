/* Internals of the spectro library shared between its files and its unit tests. */
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#include <stddef.h>

#include "spectro/spectro.h"

/* Periodic window of length n (scipy.signal.get_window(kind, n)), in double. */
void sp_make_window(sp_window kind, int n, double *w);
/* x[i] = log(x[i] + eps), vectorised (max error ~2 float ulps). */
void sp_log_inplace(float *x, size_t n, float eps);
/* x = (x - mean) / (std + 1e-9), population std, accumulated in double. */
void sp_standardize(float *x, size_t n);

#endif
