# kernels: the table of operations (kernels/kernels.h) and its two
# implementations, mirrored file by file (one file per op family, the same
# families in the same order: context, conv, batchnorm, activation, pool,
# linear, elementwise, loss, selection, review, sgd, input, reduce, table), in one
# library (libkernels.a) that train consumes:
#   kernels/cpu/   OpenBLAS + the project's loops (always built)
#   kernels/cuda/  cuDNN, cuBLAS and the project's kernels, built whenever nvcc
#                  and cuDNN are present; otherwise kernels/cuda/absent.c
#                  provides be_cuda_create(), which reports CUDA as unavailable.
# Every kernels/cpu/*.c (and kernels/cuda/*.cu, *.c) goes into the library, so
# adding a file needs no edit here.
CUDA_HOME  ?= /usr/local/cuda
HAVE_CUDA  := $(shell test -x $(NVCC) && { test -f $(CUDA_HOME)/include/cudnn.h || test -f /usr/include/cudnn.h || test -f /usr/local/include/cudnn.h; } && echo 1)
CUDA_ARCH  ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS  := -O2 -std=c++17 $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra,-Werror,-fPIC --expt-relaxed-constexpr

kernels_cpu_SRCS := $(wildcard kernels/*.c kernels/cpu/*.c)
ifeq ($(HAVE_CUDA)$(if $(wildcard kernels/cuda/*.cu),y),1y)
kernels_cuda_SRCS := $(wildcard kernels/cuda/*.cu) $(filter-out kernels/cuda/absent.c,$(wildcard kernels/cuda/*.c))
CUDA_LDLIBS       := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart -lstdc++
else
kernels_cuda_SRCS := kernels/cuda/absent.c
CUDA_LDLIBS       :=
endif
kernels_SRCS := $(kernels_cpu_SRCS) $(kernels_cuda_SRCS)
kernels_LIB  := $(LIB)/libkernels.a
$(kernels_LIB): $(call objs,$(kernels_SRCS))

$(OBJ)/%.cu.o: %.cu $(wildcard kernels/cuda/*.h kernels/cuda/*.cuh) kernels/kernels.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# One Criterion binary per tests/unit/test_kernels*.c (the CUDA backend's
# constructor and table; no GPU needed).
kernels_TESTS := $(patsubst tests/unit/%.c,$(TESTBIN)/%,$(wildcard tests/unit/test_kernels*.c))
UNIT_TESTS += $(kernels_TESTS)
$(kernels_TESTS): $(TESTBIN)/%: $(OBJ)/tests/unit/%.o $(kernels_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(CUDA_LDLIBS) $(LDLIBS)
