common_SRCS := common/cm_err.c common/cm_media.c common/cm_parse.c common/cm_file.c common/cm_npy.c common/cm_pool.c common/cm_progress.c
common_LIB  := $(LIB)/libcommon.a
$(common_LIB): $(call objs,$(common_SRCS))

UNIT_TESTS += $(TESTBIN)/test_common
$(TESTBIN)/test_common: $(OBJ)/tests/unit/test_common.o $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)
