// token_logprobs.cu: the element-wise halves of the chunked token
// log-probability op. The shim computes each vocabulary chunk's logits with a
// matmul (cuBLAS) and hands them here:
//  - lse_chunk: one block per row folds the chunk into the row's running
//    log-sum-exp (max, scaled sum) in a single read of the chunk, and picks
//    the target's logit; the last chunk writes log p(target).
//  - logprob_grad_chunk: rewrites the chunk in place as the gradient of
//    log p(target) with respect to the logits, g * (onehot - softmax), ready
//    for the two backward matmuls.
// So the [N, V] logits, softmax and their gradient never exist whole: the
// composed path's N x V intermediates become one N x chunk buffer.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <string.h>

#include "../include/ares_torch.h"
#include "ares_cuda.h"
#include "fused_common.cuh"

namespace {

using ares_cuda::block_lse;
using ares_cuda::from_f;
using ares_cuda::lse_merge;
using ares_cuda::lse_push;
using ares_cuda::to_f;
using ares_cuda::Vec;
using ares_cuda::vec_ok;

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    lse_chunk_kernel(const T *__restrict__ logits, int64_t C, int64_t v0, int64_t V,
                     const int64_t *__restrict__ targets, int flags, float *__restrict__ m,
                     float *__restrict__ s, float *__restrict__ tl, float *__restrict__ lse,
                     float *__restrict__ logp) {
  const int64_t n = blockIdx.x;
  const T *row = logits + n * C;
  float mt = -INFINITY, st = 0.f;
  if (vec_ok(row, C)) {
    constexpr int kv = Vec<T>::n;
    const int4 *r4 = reinterpret_cast<const int4 *>(row);
    for (int64_t i = threadIdx.x; i < C / kv; i += blockDim.x) {
      const int4 pack = __ldcs(r4 + i);  // streamed: each chunk is read once
      T e[kv];
      memcpy(e, &pack, sizeof pack);  // not a T* into pack: that breaks strict aliasing
#pragma unroll
      for (int j = 0; j < kv; j++) lse_push(mt, st, to_f(e[j]));
    }
  } else {
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) lse_push(mt, st, to_f(row[i]));
  }
  block_lse(mt, st);
  if (threadIdx.x != 0) return;
  const int64_t t = targets[n];
  float M = mt, S = st, T_ = 0.f;
  if (!(flags & ARES_LSE_FIRST)) {
    M = m[n];
    S = s[n];
    T_ = tl[n];
    lse_merge(M, S, mt, st);
  }
  if (t >= v0 && t < v0 + C) T_ = to_f(row[t - v0]);
  if (flags & ARES_LSE_LAST) {
    const float l = M + logf(S);
    lse[n] = l;
    logp[n] = t < 0 ? 0.f : (t >= V ? NAN : T_ - l);
  } else {
    m[n] = M;
    s[n] = S;
    tl[n] = T_;
  }
}

// grid: (column blocks, rows). Each thread rewrites kv consecutive elements.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    logprob_grad_kernel(T *__restrict__ logits, int64_t C, int64_t v0,
                        const int64_t *__restrict__ targets, const float *__restrict__ lse,
                        const float *__restrict__ g) {
  const int64_t n = blockIdx.y;
  const int64_t t = targets[n];
  const float gn = t < 0 ? 0.f : g[n], l = lse[n];
  const int64_t tc = t - v0;  // target column in this chunk (may be outside)
  T *row = logits + n * C;
  constexpr int kv = Vec<T>::n;
  const int64_t base = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kv;
  if (base >= C) return;
  if (vec_ok(row, C)) {
    int4 pack = *reinterpret_cast<const int4 *>(row + base);
    T e[kv];
    memcpy(e, &pack, sizeof pack);
#pragma unroll
    for (int j = 0; j < kv; j++) {
      float d = -gn * __expf(to_f(e[j]) - l);
      if (base + j == tc) d += gn;
      e[j] = from_f<T>(d);
    }
    memcpy(&pack, e, sizeof pack);
    *reinterpret_cast<int4 *>(row + base) = pack;
  } else {
    for (int64_t c = base; c < base + kv && c < C; c++) {
      float d = -gn * __expf(to_f(row[c]) - l);
      if (c == tc) d += gn;
      row[c] = from_f<T>(d);
    }
  }
}

template <typename T>
cudaError_t lse_launch(const void *logits, int64_t N, int64_t C, int64_t v0, int64_t V,
                       const int64_t *targets, int flags, float *m, float *s, float *tl,
                       float *lse, float *logp, cudaStream_t st) {
  ARES_LAUNCH(static_cast<unsigned>(N), kThreads, st, lse_chunk_kernel<T>)(
      static_cast<const T *>(logits), C, v0, V, targets, flags, m, s, tl, lse, logp);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grad_launch(void *logits, int64_t N, int64_t C, int64_t v0, const int64_t *targets,
                        const float *lse, const float *g, cudaStream_t st) {
  if (N > 65535) {
    // grid.y is limited: split the rows.
    for (int64_t n0 = 0; n0 < N; n0 += 65535) {
      int64_t n = N - n0 < 65535 ? N - n0 : 65535;
      cudaError_t e = grad_launch<T>(static_cast<T *>(logits) + n0 * C, n, C, v0, targets + n0,
                                     lse + n0, g + n0, st);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  constexpr int kv = Vec<T>::n;
  const int64_t per_block = static_cast<int64_t>(kThreads) * kv;
  dim3 grid(static_cast<unsigned>((C + per_block - 1) / per_block), static_cast<unsigned>(N));
  ARES_LAUNCH(grid, kThreads, st, logprob_grad_kernel<T>)(static_cast<T *>(logits), C, v0,
                                                           targets, lse, g);
  return cudaGetLastError();
}

}  // namespace

extern "C" int32_t ares_cuda_lse_chunk(const void *logits, int64_t N, int64_t C, int64_t v0,
                                       int64_t V, const int64_t *targets, int32_t dtype,
                                       int32_t flags, float *m, float *s, float *tl, float *lse,
                                       float *logp, void *stream) {
  if (N == 0 || C == 0) return 0;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case ARES_F32:
      return lse_launch<float>(logits, N, C, v0, V, targets, flags, m, s, tl, lse, logp, st);
    case ARES_F16:
      return lse_launch<__half>(logits, N, C, v0, V, targets, flags, m, s, tl, lse, logp, st);
    case ARES_BF16:
      return lse_launch<__nv_bfloat16>(logits, N, C, v0, V, targets, flags, m, s, tl, lse, logp,
                                       st);
  }
  return static_cast<int32_t>(cudaErrorInvalidValue);
}

extern "C" int32_t ares_cuda_logprob_grad_chunk(void *logits, int64_t N, int64_t C, int64_t v0,
                                                const int64_t *targets, const float *lse,
                                                const float *g, int32_t dtype, void *stream) {
  if (N == 0 || C == 0) return 0;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case ARES_F32: return grad_launch<float>(logits, N, C, v0, targets, lse, g, st);
    case ARES_F16: return grad_launch<__half>(logits, N, C, v0, targets, lse, g, st);
    case ARES_BF16: return grad_launch<__nv_bfloat16>(logits, N, C, v0, targets, lse, g, st);
  }
  return static_cast<int32_t>(cudaErrorInvalidValue);
}
