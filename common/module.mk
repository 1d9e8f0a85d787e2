common_SRCS := common/cm_err.c common/cm_opts.c common/cm_media.c common/cm_parse.c common/cm_file.c common/cm_npy.c common/cm_pool.c common/cm_progress.c common/cm_version.c common/cm_rand.c
common_LIB  := $(LIB)/libcommon.a
$(common_LIB): $(call objs,$(common_SRCS))

UNIT_TESTS += $(TESTBIN)/test_common
$(TESTBIN)/test_common: $(OBJ)/tests/unit/test_common.o $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)

# The git revision goes into cm_version.o only; $(BUILD)/revision changes
# (and so rebuilds that one object) only when the revision does.
GIT_REV := $(shell git -C $(CURDIR) describe --always --dirty 2>/dev/null || echo unknown)
REV_STAMP := $(BUILD)/revision
$(shell mkdir -p $(BUILD) && (echo '$(GIT_REV)' | cmp -s - $(REV_STAMP) 2>/dev/null || echo '$(GIT_REV)' > $(REV_STAMP)))
$(OBJ)/common/cm_version.o: CFLAGS += -DC2KD_GIT_REV='"$(GIT_REV)"'
$(OBJ)/common/cm_version.o: $(REV_STAMP)
