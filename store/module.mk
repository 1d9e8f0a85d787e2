# store: the HDF5 shard format (writer, reader, split reader over index.json) and the `store` command.
# libstore: store/st_*.c. The command: store/main.c and its subcommands store/cmd_*.c (not in the library).
store_CMD_SRCS := store/main.c $(wildcard store/cmd_*.c)
store_SRCS := $(filter-out $(store_CMD_SRCS),$(wildcard store/*.c))
store_LIB  := $(LIB)/libstore.a
$(store_LIB): $(call objs,$(store_SRCS))

ifneq ($(wildcard store/main.c),)
BINS += $(BIN)/store
$(BIN)/store: $(call objs,$(store_CMD_SRCS)) $(store_LIB) $(LIB)/libframes.a $(h5_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
endif

store_TESTS := $(patsubst tests/unit/%.c,$(TESTBIN)/%,$(wildcard tests/unit/test_store*.c))
UNIT_TESTS += $(store_TESTS)
$(store_TESTS): $(TESTBIN)/%: $(OBJ)/tests/unit/%.o $(store_LIB) $(h5_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)
