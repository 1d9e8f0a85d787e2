# collective: ranks and collectives of a data-parallel run (collective/collective.h).
# libcollective.a (collective.c) goes into the programs; it loads the plugin
# build/lib/c2kd_collective.so (MPI, and NCCL when nccl.h ships with CUDA) with
# dlopen only under a launcher, so the programs do not link MPI.
MPI_PC      := $(shell pkg-config --exists ompi-c 2>/dev/null && echo ompi-c || { pkg-config --exists mpich 2>/dev/null && echo mpich; })
MPI_CFLAGS  := $(if $(MPI_PC),$(shell pkg-config --cflags $(MPI_PC)))
MPI_LIBS    := $(if $(MPI_PC),$(shell pkg-config --libs $(MPI_PC)))
HAVE_NCCL   := $(shell test -f $(CUDA_HOME)/include/nccl.h && test -f $(CUDA_HOME)/include/cuda_runtime.h && { test -e $(CUDA_HOME)/lib64/libnccl.so || test -e /usr/lib/x86_64-linux-gnu/libnccl.so; } && echo 1)
NCCL_CFLAGS := $(if $(HAVE_NCCL),-DCL_HAVE_NCCL -I$(CUDA_HOME)/include)
ifeq ($(HAVE_NCCL),1)
NCCL_LIBS   := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcudart
endif

collective_LIB := $(LIB)/libcollective.a
$(collective_LIB): $(OBJ)/collective/collective.o
LDLIBS += -ldl

ifneq ($(MPI_PC),)
COLLECTIVE_PLUGIN := $(LIB)/c2kd_collective.so
BINS += $(COLLECTIVE_PLUGIN)
$(OBJ)/collective/cl_mpi.o $(OBJ)/collective/cl_nccl.o: CFLAGS += -fPIC $(MPI_CFLAGS) $(NCCL_CFLAGS)
$(COLLECTIVE_PLUGIN): $(OBJ)/collective/cl_mpi.o $(OBJ)/collective/cl_nccl.o
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) $^ -o $@ $(MPI_LIBS) $(NCCL_LIBS)
endif
