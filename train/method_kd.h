/* method_kd: Hinton's knowledge distillation from a frozen teacher (train/method.h; one row of train/methods.c). */
#ifndef TRAIN_METHOD_KD_H
#define TRAIN_METHOD_KD_H

#include "train/method.h"

extern const tr_method_def tr_method_kd;

#endif
