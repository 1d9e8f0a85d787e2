# bench/train-cpu: seconds per training step, C trainer vs PyTorch (run.sh).
$(BUILD)/bench/stepbench: $(OBJ)/bench/train-cpu/stepbench.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
