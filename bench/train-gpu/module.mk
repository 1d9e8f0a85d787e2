# bench/train-gpu: our C2KD step on the CUDA backend (step_bench) against
# PyTorch (torch_step.py); run.sh drives both. Built with everything else.
ifneq ($(wildcard train/system.c),)
BINS += $(BUILD)/gpu/step_bench
$(BUILD)/gpu/step_bench: $(OBJ)/bench/train-gpu/step_bench.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
endif
