// ares_cuda_emu.h: just enough of the CUDA programming model, on the host, to
// run the engine's kernels (kernels/cuda/*.cu) unchanged on a machine without
// a GPU, so that CI executes them, not only compiles them.
//
// A launch runs its blocks one after another. Inside a block every CUDA
// thread is a fiber with its own stack (ares_cuda_emu.cpp), scheduled on the
// calling thread: __syncthreads and the warp shuffles are real barriers that
// suspend a thread until the others arrive, threads that leave the kernel stop
// counting at __syncthreads (as on a GPU), and a barrier some threads can never
// reach (a __syncthreads inside a branch, a shuffle missing lanes) stops the
// program with a message instead of hanging. __shared__ variables become
// static storage, shared by the threads of the running block (blocks never
// overlap), and refilled with garbage before each block. Every access goes through ordinary host memory, so the sanitizers
// see it. What this cannot show: timing, the GPU memory model (fences are host
// fences), anything that needs blocks to run concurrently, and the accuracy of
// the fast-math intrinsics (__expf is expf here).
//
// The launch limits of real devices are enforced (at most 1024 threads per
// block, grid.y and grid.z at most 65535): a launch outside them fails with
// cudaErrorInvalidConfiguration, as on a GPU.
//
// Included through the cuda_runtime.h, cuda_fp16.h and cuda_bf16.h beside it,
// which shadow the toolkit's headers when this folder is first on the include
// path; the kernels are compiled as C++ with -DARES_CUDA_EMU.
#ifndef ARES_CUDA_EMU_H
#define ARES_CUDA_EMU_H

#ifndef ARES_CUDA_EMU
#error "the CUDA host emulation is for builds with -DARES_CUDA_EMU"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Shared memory: static storage, which the link gathers in one section
// (shared.ld) and the launcher fills with 0xff bytes (NaN floats, invalid
// bools) before every block, as uninitialised shared memory holds garbage on
// a GPU.
#define __shared__ static

// ---- types --------------------------------------------------------------

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) int4 {
  int x, y, z, w;
};

typedef struct CUstream_st *cudaStream_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
};

struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};

// ---- the running thread's coordinates -----------------------------------

// Plain globals: launches are serialised (the scheduler runs all of a
// block's CUDA threads on the launching host thread).
inline uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace ares_emu {

inline float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

// The launch machinery (ares_cuda_emu.cpp).
extern cudaError_t last_error;
// Runs body once for every thread of every block of grid x block; records
// cudaErrorInvalidConfiguration, running nothing, outside the device limits.
void run_grid(dim3 grid, dim3 block, const std::function<void()> &body);
void sync_block();                      // __syncthreads
float shfl_xor(float v, int lane_mask);  // __shfl_xor_sync over the full warp

// A launch: ARES_LAUNCH(grid, block, stream, kernel)(args...) in the kernel
// sources becomes launch(grid, block, kernel)(args...) here.
template <typename... Params>
auto launch(dim3 grid, dim3 block, void (*kernel)(Params...)) {
  return [=](auto &&...args) { run_grid(grid, block, [&] { kernel(args...); }); };
}

}  // namespace ares_emu

// ---- runtime ------------------------------------------------------------

inline cudaError_t cudaGetLastError() {
  cudaError_t e = ares_emu::last_error;
  ares_emu::last_error = cudaSuccess;
  return e;
}

inline const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}

// ---- synchronisation and warp intrinsics --------------------------------

inline void __syncthreads() { ares_emu::sync_block(); }

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Every lane of the warp must take part (the kernels pass a full mask).
inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask) {
  return ares_emu::shfl_xor(v, lane_mask);
}

inline unsigned atomicAdd(unsigned *p, unsigned v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

template <typename T>
inline T __ldcs(const T *p) {
  return *p;
}

// ---- maths --------------------------------------------------------------

inline float __expf(float x) { return expf(x); }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }

// ---- half and bfloat16 (round to nearest even) --------------------------

inline float __half2float(__half h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu,
                 m = h.bits & 0x3ffu;
  if (e == 0) {
    const float f = ldexpf(static_cast<float>(m), -24);  // zero or subnormal
    return sign ? -f : f;
  }
  if (e == 31) return ares_emu::bits_to_float(sign | 0x7f800000u | (m << 13));
  return ares_emu::bits_to_float(sign | ((e - 15 + 127) << 23) | (m << 13));
}

inline __half __float2half_rn(float f) {
  uint32_t x = ares_emu::float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return __half{static_cast<uint16_t>(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u))};
  if (x >= 0x477ff000u) return __half{static_cast<uint16_t>(sign | 0x7c00u)};  // >= 65520: inf
  if (x < 0x38800000u) {  // below 2^-14: a subnormal half, in units of 2^-24
    const float units = nearbyintf(ldexpf(ares_emu::bits_to_float(x), 24));
    return __half{static_cast<uint16_t>(sign | static_cast<uint16_t>(units))};
  }
  const uint32_t mant = x & 0x7fffffu;
  uint32_t h = ((((x >> 23) - 127 + 15) << 10) | (mant >> 13));
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // a carry moves into the exponent
  return __half{static_cast<uint16_t>(sign | h)};
}

inline float __bfloat162float(__nv_bfloat16 b) {
  return ares_emu::bits_to_float(uint32_t(b.bits) << 16);
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  const uint32_t x = ares_emu::float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{static_cast<uint16_t>((x >> 16) | 0x40u)};
  return __nv_bfloat16{static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16)};
}

#endif
