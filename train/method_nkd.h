/* method_nkd: normalized knowledge distillation from a frozen teacher (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_NKD_H
#define TRAIN_METHOD_NKD_H

#include "train/method.h"

extern const tr_method_def tr_method_nkd;

#endif
