/* method_none: the student alone, cross-entropy (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_NONE_H
#define TRAIN_METHOD_NONE_H

#include "train/method.h"

extern const tr_method_def tr_method_none;

#endif
