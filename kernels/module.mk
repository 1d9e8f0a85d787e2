# kernels: the CUDA backend (cuDNN, cuBLAS, the project's own kernels).
# Built whenever nvcc and cuDNN are present; otherwise kernels/cuda_absent.c
# provides be_cuda_create() that reports the backend as unavailable.
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

$(OBJ)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
