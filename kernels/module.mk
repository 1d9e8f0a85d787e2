# kernels: the CUDA backend (cuDNN, cuBLAS, the project's own kernels).
# Built whenever nvcc and cuDNN are present; otherwise kernels/cuda_absent.c
# provides be_cuda_create() and the extras of kernels/cuda_backend.h, which
# report the backend as unavailable.
CUDA_HOME  ?= /usr/local/cuda
HAVE_CUDA  := $(shell test -x $(NVCC) && { test -f $(CUDA_HOME)/include/cudnn.h || test -f /usr/include/cudnn.h || test -f /usr/local/include/cudnn.h; } && echo 1)
CUDA_ARCH  ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS  := -O2 -std=c++17 $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra,-Werror,-fPIC --expt-relaxed-constexpr

ifeq ($(HAVE_CUDA)$(if $(wildcard kernels/*.cu),y),1y)
kernels_SRCS := $(wildcard kernels/*.cu) $(filter-out kernels/cuda_absent.c,$(wildcard kernels/*.c))
CUDA_LDLIBS  := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart -lstdc++
else
kernels_SRCS := kernels/cuda_absent.c
CUDA_LDLIBS  :=
endif
kernels_LIB := $(LIB)/libkernels.a
$(kernels_LIB): $(call objs,$(kernels_SRCS))

$(OBJ)/%.cu.o: %.cu $(wildcard kernels/*.h) train/backend.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# One Criterion binary per tests/unit/test_kernels*.c (no GPU needed).
kernels_TESTS := $(patsubst tests/unit/%.c,$(TESTBIN)/%,$(wildcard tests/unit/test_kernels*.c))
UNIT_TESTS += $(kernels_TESTS)
$(kernels_TESTS): $(TESTBIN)/%: $(OBJ)/tests/unit/%.o $(kernels_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(CUDA_LDLIBS) $(LDLIBS)

# GPU test programs (tests/gpu/, run by tests/gpu/run.sh on a machine with a
# GPU). Built with everything else so that CI keeps them compiling; without a
# GPU they exit 2 with a message. steps needs train/system.c.
GPU_TEST_DEPS := $(LIB)/libtrain.a $(LIB)/libdist.a $(kernels_LIB) $(store_LIB) $(frames_LIB) $(spectro_LIB) $(common_LIB)
GPU_PROGS := $(BUILD)/gpu/opcompare
ifneq ($(wildcard train/system.c),)
GPU_PROGS += $(BUILD)/gpu/steps
endif
BINS += $(GPU_PROGS)
$(GPU_PROGS): $(BUILD)/gpu/%: $(OBJ)/tests/gpu/%.o $(GPU_TEST_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUDA_LDLIBS) $(LDLIBS)
