/* method_pretrain: the teacher network alone, cross-entropy (--pretrain) (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_PRETRAIN_H
#define TRAIN_METHOD_PRETRAIN_H

#include "train/method.h"

extern const tr_method_def tr_method_pretrain;

#endif
