# Fuzz targets (libFuzzer, clang, ASan + UBSan): built only in the fuzz build,
#   make BUILD=build-fuzz CC=clang SANITIZE=1 FUZZ=1 OPT=-O1 fuzz-targets
# which the top-level `make fuzz` (bounded campaign) and tests/oracle/test_fuzz.py
# (a short seeded campaign in `make test`) run. See docs/RELIABILITY.md.
ifeq ($(FUZZ),1)
CFLAGS += -fsanitize=fuzzer-no-link
FUZZ_BIN := $(BUILD)/fuzz
FUZZ_UTIL := $(OBJ)/tests/fuzz/fz_util.o
FUZZ_TARGETS := $(FUZZ_BIN)/fuzz_annotations $(FUZZ_BIN)/fuzz_shard $(FUZZ_BIN)/fuzz_shard_data $(FUZZ_BIN)/fuzz_media \
                $(FUZZ_BIN)/fuzz_folder

$(FUZZ_BIN)/fuzz_annotations: $(OBJ)/tests/fuzz/fuzz_annotations.o $(FUZZ_UTIL) $(INGEST_DEPS)
$(FUZZ_BIN)/fuzz_shard: $(OBJ)/tests/fuzz/fuzz_shard.o $(FUZZ_UTIL) $(store_LIB) $(frames_LIB) $(h5_LIB) $(common_LIB)
$(FUZZ_BIN)/fuzz_shard_data: $(OBJ)/tests/fuzz/fuzz_shard_data.o $(FUZZ_UTIL) $(store_LIB) $(h5_LIB) $(common_LIB)
$(FUZZ_BIN)/fuzz_folder: $(OBJ)/tests/fuzz/fuzz_folder.o $(FUZZ_UTIL) $(store_LIB) $(h5_LIB) $(common_LIB)
$(FUZZ_BIN)/fuzz_media: $(OBJ)/tests/fuzz/fuzz_media.o $(FUZZ_UTIL) $(frames_LIB) $(spectro_LIB) $(common_LIB)
$(FUZZ_TARGETS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ -o $@ $(LDLIBS)

fuzz-targets: $(FUZZ_TARGETS)
endif
