// cuda_runtime.h: the host emulation of the CUDA runtime (ares_cuda_emu.h) for
// the kernels compiled with -DARES_CUDA_EMU; shadows the toolkit header.
#include "ares_cuda_emu.h"
