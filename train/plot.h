/* plot: the curves of a run as an SVG drawn by hand from RUN/metrics.jsonl:
 * left panel the training loss per step (and its mean per epoch), right panel
 * the top-1 accuracies per epoch (train, val, test; student and teacher). */
#ifndef TRAIN_PLOT_H
#define TRAIN_PLOT_H

#include "common/cm_err.h"

/* Reads metrics_path, writes svg_path atomically. `title` is printed on top. */
int pl_write_svg(const char *metrics_path, const char *svg_path, const char *title, cm_err *err);

#endif
