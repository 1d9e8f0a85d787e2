# spectro: audio -> 16 kHz mono -> fixed length -> log spectrogram (library + command).
spectro_SRCS := spectro/sp_decode.c spectro/sp_stft.c spectro/sp_process.c spectro/sp_recipe.c
spectro_LIB  := $(LIB)/libspectro.a
$(spectro_LIB): $(call objs,$(spectro_SRCS))

# The spectrogram loops are written to be vectorised (no branches, no libm calls).
$(OBJ)/spectro/sp_stft.o: CFLAGS += -ftree-vectorize -fno-math-errno

# Only the libraries spectro uses: every extra shared library costs start-up time.
spectro_LDLIBS := $(shell pkg-config --libs libavformat libavcodec libswresample libavutil fftw3f hdf5 2>/dev/null) -lm

BINS += $(BIN)/spectro
# The command writes its .h5 attributes with the HDF5 helpers (h5/h5.h).
$(BIN)/spectro: $(OBJ)/spectro/main.o $(spectro_LIB) $(h5_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(spectro_LDLIBS)

UNIT_TESTS += $(TESTBIN)/test_spectro
$(TESTBIN)/test_spectro: $(OBJ)/tests/unit/test_spectro.o $(spectro_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)

# The maths-alone benchmark (bench/spectro/run.sh builds it on demand).
$(BIN)/bench_stft: $(OBJ)/bench/spectro/bench_stft.o $(spectro_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
