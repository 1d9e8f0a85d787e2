frames_SRCS := frames/fr_extract.c frames/fr_convert.c frames/fr_rotate.c frames/fr_jpeg.c
frames_LIB  := $(LIB)/libframes.a
$(frames_LIB): $(call objs,$(frames_SRCS))

BINS += $(BIN)/frames
# --as-needed: only the libraries frames uses are loaded at start (shorter start-up per call).
$(BIN)/frames: $(OBJ)/frames/main.o $(frames_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -Wl,--as-needed $(LDLIBS)

UNIT_TESTS += $(TESTBIN)/test_frames
$(TESTBIN)/test_frames: $(OBJ)/tests/unit/test_frames.o $(frames_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)
