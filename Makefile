# c2kd: data pipeline and trainer for cross-modal knowledge distillation.
#
#   make            build every binary into build/bin/
#   make test       install missing Debian packages, build, run C unit tests + oracle tests, then
#                   the numeric oracles' representative subset under 2 other OpenBLAS kernel sets
#   make test-cpus  the numeric oracle tests under every OpenBLAS kernel set this CPU can run
#                   (Prescott Sandybridge Haswell SkylakeX Cooperlake Zen; docs/TESTING.md)
#   make demo       the main job, end to end, on a small generated dataset
#   make asan       the same tests on an ASan+UBSan build (build-asan/)
#   make bench      the CPU benchmarks in bench/ (BENCHES=spectro frames ingest backend-cpu train-cpu)
#   make ingest DATASET=NAME ROOT=DIR [OUT=data/NAME] [JOBS=N]
#                   NAME: a preset manifests/NAME.conf (make datasets lists them)
#   make fuzz       a bounded fuzz campaign (FUZZ_SECONDS per target, default 120)
#   make deps       install missing Debian packages (prints the command when not root)
#   make reproduce DATASET=NAME DATA=DIR [OUT=runs/reproduce-NAME] [ARGS="--seeds 1 ..."]
#                   the seed's tables from ingested shards (tools/reproduce; resumable)
#
# Each module has a module.mk that adds its library, binaries and unit tests.

BUILD    ?= build
SANITIZE ?= 0
OPT      ?= -O2
CC       ?= cc
NVCC     ?= /usr/local/cuda/bin/nvcc
PYTHON   ?= /usr/bin/python3
JOBS     ?=

PKGS     := libavformat libavcodec libswresample libswscale libavutil fftw3f libturbojpeg hdf5 libcjson openblas zlib
# Headers only: opened with dlopen when a picture needs it (frames/fr_rotate.c).
DLPKGS   := libavfilter
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(DLPKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -pthread -I. $(PKG_CFLAGS)
LDFLAGS  := -pthread
LDLIBS   := $(PKG_LIBS) -lm -ldl
ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

BIN      := $(BUILD)/bin
OBJ      := $(BUILD)/obj
LIB      := $(BUILD)/lib
TESTBIN  := $(BUILD)/tests

# Filled by module.mk files.
BINS       :=
UNIT_TESTS :=

objs = $(patsubst %.c,$(OBJ)/%.o,$(filter %.c,$(1))) $(patsubst %.cu,$(OBJ)/%.cu.o,$(filter %.cu,$(1)))

.PHONY: all test test-unit test-oracle test-coretypes test-cpus demo asan bench deps clean ingest reproduce fuzz fuzz-targets datasets
all:

# The datasets are the presets manifests/NAME.conf (ingest finds and lists the
# same files: ingest --help, ingest/ig_datasets.c; tools/reproduce too).
DATASETS := $(sort $(basename $(notdir $(wildcard manifests/*.conf))))
datasets:
	@for d in $(DATASETS); do echo $$d; done

include common/module.mk
include h5/module.mk
-include kernels/module.mk
-include collective/module.mk
-include spectro/module.mk
-include frames/module.mk
-include store/module.mk
-include ingest/module.mk
-include train/module.mk
-include tests/module.mk
-include $(wildcard tests/tools/*.mk)
-include $(wildcard bench/*/module.mk)
-include tests/fuzz/module.mk

all: $(BINS)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)

deps:
	@sh tools/deps.sh

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_TESTS)
	@$(MAKE) --no-print-directory -k test-unit test-oracle test-coretypes

test-unit: $(UNIT_TESTS)
	@rc=0; for t in $(UNIT_TESTS); do echo "== $$t"; $$t --jobs=1 || rc=1; done; exit $$rc

test-oracle: all
	C2KD_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/oracle

# Other machines on this one: OpenBLAS's kernel set (chosen at run time from the CPU) is what
# differs between x86-64 machines, so the numeric oracles run again under OPENBLAS_CORETYPE=...
# (tools/coretypes.py keeps the sets this CPU can run and OpenBLAS really takes).
# test-coretypes (part of make test): 2 sets other than the machine's own, on the representative
# subset (--coretype-subset, tests/oracle/conftest.py); test-cpus: every set, every numeric test.
CORETYPES      := Prescott Sandybridge Haswell SkylakeX Cooperlake Zen
NUMERIC_TESTS  := tests/oracle/test_train_step.py tests/oracle/test_backend_ops.py \
                  tests/oracle/test_train_dist.py tests/oracle/test_reproduce.py
coretype_runs = rc=0; for c in $$($(PYTHON) tools/coretypes.py $(1)); do \
	    echo "== OPENBLAS_CORETYPE=$$c"; \
	    OPENBLAS_CORETYPE=$$c C2KD_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider \
	        $(2) $(NUMERIC_TESTS) || rc=1; \
	done; exit $$rc

test-coretypes: all
	@$(call coretype_runs,--pick 2 Prescott Haswell Sandybridge Zen,--coretype-subset)

test-cpus: deps
	@$(MAKE) --no-print-directory all
	@$(call coretype_runs,$(CORETYPES),)

# Sanitizer reports make a command exit 86, so an oracle test that expects 0 or 1
# fails; Criterion runs each test in a child whose exit report it ignores, so
# the log is also searched for reports.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 OPT=-O1 all
	@rc=0; \
	OMPI_MCA_mca_base_component_disable_dlclose=1 \
	ASAN_OPTIONS=detect_leaks=1:protect_shadow_gap=0:exitcode=86 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86 \
	LSAN_OPTIONS=suppressions=$(abspath tools/lsan.supp):exitcode=86 \
	$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 OPT=-O1 test-unit test-oracle \
	    > build-asan/test.log 2>&1 || rc=1; \
	cat build-asan/test.log; \
	if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" build-asan/test.log; then \
	    echo "asan: sanitizer reports above"; rc=1; fi; \
	exit $$rc

reproduce: all
	@test -n "$(DATA)" || { echo "make reproduce: DATA=DIR (ingested shards) is required"; exit 2; }
	$(PYTHON) tools/reproduce --dataset $(or $(DATASET),ave) --data $(DATA) \
	    --out $(or $(OUT),runs/reproduce-$(or $(DATASET),ave)) --train $(BIN)/train $(ARGS)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tools/demo.sh $(BIN)

# The CPU benchmarks, each against the reference a user would otherwise run,
# side by side, printing ratios (bench/<name>/RESULTS.md, docs/BENCHMARKS.md).
# One at a time: make bench BENCHES=spectro. The GPU one: bench/train-gpu/run.sh.
BENCHES ?= spectro frames ingest backend-cpu train-cpu
bench: all
	@for b in $(BENCHES); do \
	    echo "== bench/$$b"; \
	    if [ -x bench/$$b/run.sh ]; then sh bench/$$b/run.sh || exit 1; \
	    else $(PYTHON) bench/$$b/run.py || exit 1; fi; \
	done

# A bounded fuzz campaign (libFuzzer + ASan/UBSan, clang) over the annotation
# readers, the manifest reader, the shard reader and the media paths of spectro
# and frames: FUZZ_SECONDS per target. docs/RELIABILITY.md records the results.
FUZZ_SECONDS ?= 120
fuzz: deps
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz
