# bench/train-gpu: our C2KD step on the CUDA backend (step_bench) against
# PyTorch (torch_step.py); run.sh drives both. Built with everything else.
ifneq ($(wildcard train/system.c),)
BINS += $(BUILD)/gpu/step_bench
$(BUILD)/gpu/step_bench: $(OBJ)/bench/train-gpu/step_bench.o $(LIB)/libtrain.a $(LIB)/libdist.a $(kernels_LIB) $(store_LIB) $(frames_LIB) $(spectro_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
endif
