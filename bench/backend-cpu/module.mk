# conv_bench: per-shape timing of the CPU backend's convolutions (bench/backend-cpu/run.py).
BINS += $(BIN)/conv_bench
$(BIN)/conv_bench: $(OBJ)/bench/backend-cpu/conv_bench.o $(kernels_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
