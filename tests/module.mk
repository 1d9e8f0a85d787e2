# Unit tests are declared by each module's module.mk (UNIT_TESTS += ...).
# Oracle tests: tests/oracle/test_*.py, run by `make test-oracle`.

# GPU test programs (tests/gpu/, run by tests/gpu/run.sh on a machine with a
# GPU). Built with everything else so that CI keeps them compiling; without a
# GPU they exit 2 with a message. steps needs train/system.c.
GPU_PROGS := $(BUILD)/gpu/opcompare
ifneq ($(wildcard train/system.c),)
GPU_PROGS += $(BUILD)/gpu/steps
endif
BINS += $(GPU_PROGS)
$(GPU_PROGS): $(BUILD)/gpu/%: $(OBJ)/tests/gpu/%.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
