# h5: the HDF5 helpers (error silencing, numeric and string attributes, the OS
# cause of a failed call) that store/, spectro's command and train/ share.
h5_SRCS := h5/h5.c
h5_LIB  := $(LIB)/libh5.a
$(h5_LIB): $(call objs,$(h5_SRCS))

UNIT_TESTS += $(TESTBIN)/test_h5
$(TESTBIN)/test_h5: $(OBJ)/tests/unit/test_h5.o $(h5_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS)
