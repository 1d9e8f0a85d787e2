/* profile: the Markdown report of a backend's raw profile (be_ops.profile_data,
 * be_options.profile): GPU time per op kind, the top (op, shape) rows, how much
 * of the staged input copies ran under the ops, the backend's memory. Written
 * by `train --profile` (RUN/profile.md) and bench/train-gpu/step_bench. */
#ifndef TRAIN_PROFILE_H
#define TRAIN_PROFILE_H

#include <stdio.h>

#include "kernels/kernels.h"

/* Writes the report of p to f, times divided by `steps` (per step; 1: totals,
 * < 1 counts as 1), the `top` slowest (op, shape) rows; returns the device time
 * of the profiled ops per step in ms. */
double tr_profile_report(FILE *f, const be_profile *p, int steps, int top);

/* The same for backend b: -1 (nothing written) when b has no profile (no
 * profile_data entry, or made without be_options.profile). */
double tr_profile_write(be_ctx *b, FILE *f, int steps, int top);

#endif
