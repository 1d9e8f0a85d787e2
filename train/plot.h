/* plot: the curves of a run as an SVG drawn by hand from RUN/metrics.jsonl:
 * left panel the training loss per step (and its mean per epoch), right panel
 * the top-1 accuracies per epoch (train, val, test; student and teacher),
 * and the confusion matrix of the best epoch's evaluation when given. */
#ifndef TRAIN_PLOT_H
#define TRAIN_PLOT_H

#include "common/cm_err.h"

#include <stdint.h>

/* A confusion matrix: counts [C * C], row = label, column = prediction. */
typedef struct pl_confusion {
    const int64_t *counts;
    int C;
    const char *const *classes;
    const char *caption;          /* e.g. "best epoch 7, test" */
} pl_confusion;

/* Reads metrics_path, writes svg_path atomically. `title` is printed on top.
 * cm (may be NULL): a third panel, right of the curves, with the confusion
 * matrix. Tick values are round: 1, 2 or 5 times a power of ten. */
int pl_write_svg(const char *metrics_path, const char *svg_path, const char *title, const pl_confusion *cm,
                 cm_err *err);

/* The confusion matrix alone: each row normalised to the label's samples
 * (shade), class names on both axes (up to 60 classes), counts in the cells
 * (up to 15 classes). */
int pl_write_confusion_svg(const char *svg_path, const char *title, const int64_t *counts, int C,
                           const char *const *classes, cm_err *err);

#endif
