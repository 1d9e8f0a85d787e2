# backend: the table of operations (backend/backend.h) and its two
# implementations, in one library (libbackend.a) that train consumes:
#   backend/cpu/   OpenBLAS + the project's loops (always built)
#   backend/cuda/  cuDNN, cuBLAS and the project's kernels, built whenever nvcc
#                  and cuDNN are present; otherwise backend/cuda/cuda_absent.c
#                  provides be_cuda_create() and the extras of
#                  backend/cuda/cuda_backend.h, which report CUDA as unavailable.
# Every backend/cpu/*.c goes into the library, so adding a file needs no edit here.
CUDA_HOME  ?= /usr/local/cuda
HAVE_CUDA  := $(shell test -x $(NVCC) && { test -f $(CUDA_HOME)/include/cudnn.h || test -f /usr/include/cudnn.h || test -f /usr/local/include/cudnn.h; } && echo 1)
CUDA_ARCH  ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS  := -O2 -std=c++17 $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra,-Werror,-fPIC --expt-relaxed-constexpr

backend_cpu_SRCS := $(wildcard backend/*.c backend/cpu/*.c)
ifeq ($(HAVE_CUDA)$(if $(wildcard backend/cuda/*.cu),y),1y)
backend_cuda_SRCS := $(wildcard backend/cuda/*.cu) $(filter-out backend/cuda/cuda_absent.c,$(wildcard backend/cuda/*.c))
CUDA_LDLIBS       := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart -lstdc++
else
backend_cuda_SRCS := backend/cuda/cuda_absent.c
CUDA_LDLIBS       :=
endif
backend_SRCS := $(backend_cpu_SRCS) $(backend_cuda_SRCS)
backend_LIB  := $(LIB)/libbackend.a
$(backend_LIB): $(call objs,$(backend_SRCS))

$(OBJ)/%.cu.o: %.cu $(wildcard backend/cuda/*.h) backend/backend.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# One Criterion binary per tests/unit/test_kernels*.c (the CUDA backend's
# constructor and table; no GPU needed).
backend_TESTS := $(patsubst tests/unit/%.c,$(TESTBIN)/%,$(wildcard tests/unit/test_kernels*.c))
UNIT_TESTS += $(backend_TESTS)
$(backend_TESTS): $(TESTBIN)/%: $(OBJ)/tests/unit/%.o $(backend_LIB) $(common_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(CUDA_LDLIBS) $(LDLIBS)
