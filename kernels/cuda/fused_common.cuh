// fused_common.cuh: device helpers shared by the fused kernels (element
// conversion, vector loads, block reductions). Device code only; included by
// the .cu files after the CUDA headers.
#ifndef ARES_FUSED_COMMON_CUH
#define ARES_FUSED_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>

// A kernel launch, kernel<<<grid, block, 0, stream>>>(args...), written
// ARES_LAUNCH(grid, block, stream, kernel)(args...) so that the same source
// also runs under the host emulation of kernels/cuda/emu (the tests' CUDA
// without a GPU).
#ifdef ARES_CUDA_EMU
#define ARES_LAUNCH(grid, block, stream, ...) \
  ((void)(stream), ::ares_emu::launch(grid, block, __VA_ARGS__))
#else
#define ARES_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<grid, block, 0, stream>>>
#endif

namespace ares_cuda {

template <typename T>
__device__ __forceinline__ float to_f(T x);
template <>
__device__ __forceinline__ float to_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Elements per 16-byte vector.
template <typename T>
struct Vec {
  static constexpr int n = 16 / sizeof(T);
};

// True when p can be read in 16-byte vectors over len elements.
template <typename T>
__device__ __forceinline__ bool vec_ok(const T *p, int64_t len) {
  return len % Vec<T>::n == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sums K values over the block (blockDim.x a multiple of 32, at most 1024);
// every thread gets the totals. Safe to call repeatedly.
template <int K>
__device__ __forceinline__ void block_sum(float (&v)[K]) {
  __shared__ float sh[K][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < K; k++) v[k] = warp_sum(v[k]);
  __syncthreads();  // the previous call's readers are done with sh
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; k++) sh[k][warp] = v[k];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < K; k++) v[k] = warp_sum(lane < nw ? sh[k][lane] : 0.f);
}

// A running log-sum-exp as (max m, sum s of exp(x - m)).
__device__ __forceinline__ void lse_push(float &m, float &s, float x) {
  if (x > m) {
    s = s * __expf(m - x) + 1.f;
    m = x;
  } else if (x != -INFINITY) {
    s += __expf(x - m);  // a NaN x makes s NaN, as the composed path would
  }
}

__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
  float mx = fmaxf(m, m2);
  if (mx == -INFINITY) {
    s = s + s2;  // both empty (0) or NaN carried in s
    return;
  }
  s = s * __expf(m - mx) + s2 * __expf(m2 - mx);  // exp(-inf) = 0 for an empty side
  m = mx;
}

__device__ __forceinline__ void warp_lse(float &m, float &s) {
  for (int o = 16; o > 0; o >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
}

// Merges (m, s) over the block; every thread gets the result.
__device__ __forceinline__ void block_lse(float &m, float &s) {
  __shared__ float shm[32], shs[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  warp_lse(m, s);
  __syncthreads();
  if (lane == 0) {
    shm[warp] = m;
    shs[warp] = s;
  }
  __syncthreads();
  m = lane < nw ? shm[lane] : -INFINITY;
  s = lane < nw ? shs[lane] : 0.f;
  warp_lse(m, s);
}

}  // namespace ares_cuda

#endif
