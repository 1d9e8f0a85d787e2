# train: model, losses, optimiser, loader, checkpoints, and the command (over backend/).
# Every train/*.c except main.c goes into libtrain.a, so adding a file needs no edit here.
train_SRCS := $(filter-out train/main.c,$(wildcard train/*.c))
train_LIB  := $(LIB)/libtrain.a
$(train_LIB): $(call objs,$(train_SRCS))

TRAIN_DEPS := $(train_LIB) $(collective_LIB) $(kernels_LIB) $(store_LIB) $(frames_LIB) $(spectro_LIB) $(h5_LIB) $(common_LIB)

ifneq ($(wildcard train/main.c),)
BINS += $(BIN)/train
$(BIN)/train: $(OBJ)/train/main.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
endif

# One Criterion binary per tests/unit/test_train_*.c.
train_TESTS := $(patsubst tests/unit/%.c,$(TESTBIN)/%,$(wildcard tests/unit/test_train_*.c))
UNIT_TESTS += $(train_TESTS)
$(train_TESTS): $(TESTBIN)/%: $(OBJ)/tests/unit/%.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(CUDA_LDLIBS) $(LDLIBS)
