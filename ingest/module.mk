# ingest: dataset readers, normalized manifest, parallel pipeline (workers + one HDF5 writer), the command.
ingest_SRCS := $(filter-out ingest/main.c,$(wildcard ingest/*.c))
ingest_LIB  := $(LIB)/libingest.a
$(ingest_LIB): $(call objs,$(ingest_SRCS))

INGEST_DEPS := $(ingest_LIB) $(store_LIB) $(frames_LIB) $(spectro_LIB) $(h5_LIB) $(common_LIB)

BINS += $(BIN)/ingest
$(BIN)/ingest: $(OBJ)/ingest/main.o $(INGEST_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

ingest_TESTS := $(patsubst tests/unit/%.c,$(TESTBIN)/%,$(wildcard tests/unit/test_ingest*.c))
UNIT_TESTS += $(ingest_TESTS)
$(ingest_TESTS): $(TESTBIN)/%: $(OBJ)/tests/unit/%.o $(INGEST_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)

# make ingest DATASET=ave ROOT=/path/to/AVE_Dataset [OUT=data/ave] [JOBS=N]
ingest: $(BIN)/ingest
	@test -n "$(DATASET)" || { echo "make ingest: give DATASET=NAME (one of: $(DATASETS)) and ROOT=DIR"; exit 2; }
	@test -n "$(ROOT)" || { echo "make ingest: give ROOT=DIR (the dataset folder)"; exit 2; }
	$(BIN)/ingest --dataset $(DATASET) --root $(ROOT) --out $(if $(OUT),$(OUT),data/$(DATASET)) $(if $(JOBS),--jobs $(JOBS))

# Shard random-read benchmark (bench/ingest/run.sh builds it on demand).
$(BIN)/bench_store_read: $(OBJ)/bench/ingest/bench_read.o $(store_LIB) $(h5_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# Per-stage CPU time of a clip next to the exact-decoding floor (bench/ingest/run.py --vggsound).
$(BIN)/bench_ingest_floor: $(OBJ)/bench/ingest/floor.o $(frames_LIB) $(spectro_LIB) $(store_LIB) $(h5_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
