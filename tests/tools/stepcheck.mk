# stepcheck: the C side of the step-by-step comparison with PyTorch
# (tests/oracle/test_train_step.py). Built with every binary (it is small).
BINS += $(TESTBIN)/stepcheck
$(TESTBIN)/stepcheck: $(OBJ)/tests/tools/stepcheck.o $(TRAIN_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
