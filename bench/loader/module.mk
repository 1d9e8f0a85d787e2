# bench/loader: samples/s of train's loader alone against python/c2kd_shards.py (run.py).
# Built by `make all` (BINS) so that a change of the loader API cannot leave it broken unseen.
BINS += $(BUILD)/bench/loader_bench
$(BUILD)/bench/loader_bench: $(OBJ)/bench/loader/loader_bench.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
