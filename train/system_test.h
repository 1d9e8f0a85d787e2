/* system_test: inspection of a tr_system, for tests and benchmarks only
 * (tools/check_structure.py: no file outside tests/ and bench/ includes it,
 * but train/system.c, which implements it). */
#ifndef TRAIN_SYSTEM_TEST_H
#define TRAIN_SYSTEM_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "train/method.h"
#include "train/parts.h"
#include "train/system.h"

/* Parameters: number of named tensors and each one's PyTorch name
 * ("student/layer1.0.conv1.weight"), element count, device pointers to its
 * value and gradient (gradient NULL for buffers such as running_mean). */
size_t tr_system_num_tensors(const tr_system *s);
int tr_system_tensor(const tr_system *s, size_t i, const char **name, size_t *count, float **value,
                     float **grad);

/* Steps completed (tr_system_set_steps, tr_checkpoint_load with_optimizer). */
int64_t tr_system_steps(const tr_system *s);

/* The registries of the trained parts (train/parts.h), in their order; returns their number. */
int tr_system_regs(tr_system *s, tr_reg *regs[TR_MAX_PARTS]);

/* The outputs of the last step or eval (tr_outputs: train/method.h). */
void tr_system_outputs(const tr_system *s, tr_outputs *out);

#endif
