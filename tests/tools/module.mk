# opcheck: runs one CPU-backend op on .npy files, for tests/oracle/test_backend_ops.py.
BINS += $(BIN)/opcheck
$(BIN)/opcheck: $(OBJ)/tests/tools/opcheck.o $(kernels_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
