// reward_score.cu: fused reward scoring. One block per sequence reads the
// hidden state at the sequence's last non-padding position, normalises it
// (LayerNorm or RMSNorm), projects it onto the value head and, with pairs,
// the last block to finish computes the Bradley-Terry loss: one launch for
// what the composed path does in about a dozen. The backward recomputes the
// row statistics (a row is H elements, read from L2) and writes the input
// gradient straight into the selected row of the zeroed [B, L, H] gradient.
//
// Forward, per row x (f32 arithmetic):
//   LAYER: mu = mean x, rstd = 1/sqrt(mean (x-mu)^2 + eps),
//          score = rstd * sum (x-mu) w head + sum bias head
//   RMS:   rstd = 1/sqrt(mean x^2 + eps), score = rstd * sum x w head
// Backward, with g the row's score gradient and d = g * head * w:
//   LAYER: dx = rstd * (d - mean d - xhat * mean(d xhat))
//   RMS:   dx = rstd * (d - xhat * mean(d xhat))
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>

#include "../include/ares_fused.h"
#include "ares_cuda.h"
#include "fused_common.cuh"

namespace {

using ares_cuda::block_sum;
using ares_cuda::from_f;
using ares_cuda::to_f;

__device__ __forceinline__ float softplus(float x) {
  return fmaxf(x, 0.f) + log1pf(__expf(-fabsf(x)));
}

__device__ __forceinline__ float sigmoidf(float x) { return 1.f / (1.f + __expf(-x)); }

// The row of hidden read for sequence b and whether its index is valid.
template <typename T>
__device__ __forceinline__ const T *row_of(const T *hidden, const int64_t *last, int64_t b,
                                           int64_t L, int64_t H, bool *ok) {
  int64_t pos = last[b];
  *ok = pos >= 0 && pos < L;
  if (!*ok) pos = 0;
  return hidden + (b * L + pos) * H;
}

template <typename T, typename W>
__global__ void reward_fwd_kernel(const T *__restrict__ hidden, const int64_t *__restrict__ last,
                                  const W *__restrict__ w, const W *__restrict__ bias,
                                  const W *__restrict__ head, int64_t L, int64_t H, int kind,
                                  float eps, int64_t P, float *scores, float *loss,
                                  unsigned int *counter) {
  const int64_t b = blockIdx.x;
  bool ok;
  const T *x = row_of(hidden, last, b, L, H, &ok);
  float score;
  if (kind == ARES_NORM_LAYER) {
    float a[1] = {0.f};
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) a[0] += to_f(x[i]);
    block_sum(a);
    const float mu = a[0] / H;
    float c[3] = {0.f, 0.f, 0.f};  // sum (x-mu)^2, sum (x-mu) w head, sum bias head
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float d = to_f(x[i]) - mu, hd = to_f(head[i]);
      c[0] += d * d;
      c[1] += d * to_f(w[i]) * hd;
      if (bias) c[2] += to_f(bias[i]) * hd;
    }
    block_sum(c);
    score = rsqrtf(c[0] / H + eps) * c[1] + c[2];
  } else {
    float c[2] = {0.f, 0.f};  // sum x^2, sum x w head
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float v = to_f(x[i]);
      c[0] += v * v;
      c[1] += v * to_f(w[i]) * to_f(head[i]);
    }
    block_sum(c);
    score = rsqrtf(c[0] / H + eps) * c[1];
  }
  if (threadIdx.x == 0) scores[b] = ok ? score : NAN;
  if (P <= 0) return;

  // Bradley-Terry: the last block to finish reads every score.
  __shared__ bool is_last;
  if (threadIdx.x == 0) {
    __threadfence();  // this block's score is visible before the ticket
    unsigned int ticket = atomicAdd(counter, 1u);
    is_last = ticket == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const volatile float *vs = scores;
  float acc[1] = {0.f};
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) acc[0] += softplus(vs[P + i] - vs[i]);
  block_sum(acc);
  if (threadIdx.x == 0) {
    *loss = acc[0] / P;
    *counter = 0;
  }
}

template <typename T, typename W>
__global__ void reward_bwd_kernel(const T *__restrict__ hidden, const int64_t *__restrict__ last,
                                  const W *__restrict__ w, const W *__restrict__ head, int64_t L,
                                  int64_t H, int kind, float eps, int64_t P,
                                  const float *__restrict__ grad_scores,
                                  const float *__restrict__ grad_loss,
                                  const float *__restrict__ scores, float *__restrict__ gx,
                                  float *__restrict__ gr, T *__restrict__ dhidden) {
  const int64_t b = blockIdx.x;
  bool ok;
  const T *x = row_of(hidden, last, b, L, H, &ok);
  float g = grad_scores ? grad_scores[b] : 0.f;
  if (P > 0 && grad_loss) {
    const float gl = grad_loss[0] / P;
    if (b < P)
      g -= gl * sigmoidf(scores[b + P] - scores[b]);
    else
      g += gl * sigmoidf(scores[b] - scores[b - P]);
  }
  if (!ok) g = 0.f;
  float *gxb = gx + b * H;
  T *dx = (ok && dhidden) ? dhidden + (x - hidden) : nullptr;
  if (kind == ARES_NORM_LAYER) {
    float a[1] = {0.f};
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) a[0] += to_f(x[i]);
    block_sum(a);
    const float mu = a[0] / H;
    float c[3] = {0.f, 0.f, 0.f};  // sum (x-mu)^2, sum d, sum d (x-mu)
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float xc = to_f(x[i]) - mu, d = g * to_f(head[i]) * to_f(w[i]);
      c[0] += xc * xc;
      c[1] += d;
      c[2] += d * xc;
    }
    block_sum(c);
    const float rstd = rsqrtf(c[0] / H + eps);
    const float mean_d = c[1] / H, mean_dx = rstd * c[2] / H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float xh = (to_f(x[i]) - mu) * rstd, d = g * to_f(head[i]) * to_f(w[i]);
      gxb[i] = g * xh;
      if (dx) dx[i] = from_f<T>(rstd * (d - mean_d - xh * mean_dx));
    }
  } else {
    float c[2] = {0.f, 0.f};  // sum x^2, sum d x
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float v = to_f(x[i]), d = g * to_f(head[i]) * to_f(w[i]);
      c[0] += v * v;
      c[1] += d * v;
    }
    block_sum(c);
    const float rstd = rsqrtf(c[0] / H + eps);
    const float mean_dx = rstd * c[1] / H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float xh = to_f(x[i]) * rstd, d = g * to_f(head[i]) * to_f(w[i]);
      gxb[i] = g * xh;
      if (dx) dx[i] = from_f<T>(rstd * (d - xh * mean_dx));
    }
  }
  if (threadIdx.x == 0) gr[b] = g;
}

// One thread per hidden unit; reads down the columns of gx (coalesced).
template <typename W>
__global__ void reward_param_grads_kernel(const float *__restrict__ gx,
                                          const float *__restrict__ gr, const W *__restrict__ w,
                                          const W *__restrict__ bias, const W *__restrict__ head,
                                          int64_t B, int64_t H, W *dw, W *dbias, W *dhead) {
  const int64_t h = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (h >= H) return;
  float S = 0.f, G = 0.f;
  for (int64_t b = 0; b < B; b++) {
    S += gx[b * H + h];
    G += gr[b];
  }
  const float hd = to_f(head[h]);
  if (dw) dw[h] = from_f<W>(hd * S);
  if (dbias) dbias[h] = from_f<W>(hd * G);
  if (dhead) dhead[h] = from_f<W>(to_f(w[h]) * S + (bias ? to_f(bias[h]) * G : 0.f));
}

int threads_for(int64_t H) {
  if (H <= 128) return 64;
  if (H <= 512) return 128;
  if (H <= 2048) return 256;
  return 512;
}

template <typename T, typename W>
cudaError_t fwd(const void *hidden, const int64_t *last, const void *w, const void *bias,
                const void *head, int64_t B, int64_t L, int64_t H, int kind, float eps, int64_t P,
                float *scores, float *loss, unsigned int *counter, cudaStream_t s) {
  ARES_LAUNCH(static_cast<unsigned>(B), threads_for(H), s, reward_fwd_kernel<T, W>)(
      static_cast<const T *>(hidden), last, static_cast<const W *>(w),
      static_cast<const W *>(bias), static_cast<const W *>(head), L, H, kind, eps, P, scores, loss,
      counter);
  return cudaGetLastError();
}

template <typename T, typename W>
cudaError_t bwd(const void *hidden, const int64_t *last, const void *w, const void *head,
                int64_t B, int64_t L, int64_t H, int kind, float eps, int64_t P, const float *gs,
                const float *gl, const float *scores, float *gx, float *gr, void *dhidden,
                cudaStream_t s) {
  ARES_LAUNCH(static_cast<unsigned>(B), threads_for(H), s, reward_bwd_kernel<T, W>)(
      static_cast<const T *>(hidden), last, static_cast<const W *>(w),
      static_cast<const W *>(head), L, H, kind, eps, P, gs, gl, scores, gx, gr,
      static_cast<T *>(dhidden));
  return cudaGetLastError();
}

template <typename W>
cudaError_t pgrads(const float *gx, const float *gr, const void *w, const void *bias,
                   const void *head, int64_t B, int64_t H, void *dw, void *dbias, void *dhead,
                   cudaStream_t s) {
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((H + threads - 1) / threads);
  ARES_LAUNCH(blocks, threads, s, reward_param_grads_kernel<W>)(
      gx, gr, static_cast<const W *>(w), static_cast<const W *>(bias),
      static_cast<const W *>(head), B, H, static_cast<W *>(dw), static_cast<W *>(dbias),
      static_cast<W *>(dhead));
  return cudaGetLastError();
}

}  // namespace

// Dispatches on (dtype, pdtype), pdtype being dtype or ARES_F32.
#define ARES_REWARD_DISPATCH(CALL)                                               \
  switch (dtype) {                                                               \
    case ARES_F32:                                                               \
      if (pdtype == ARES_F32) return CALL(float, float);                         \
      break;                                                                     \
    case ARES_F16:                                                               \
      if (pdtype == ARES_F16) return CALL(__half, __half);                       \
      if (pdtype == ARES_F32) return CALL(__half, float);                        \
      break;                                                                     \
    case ARES_BF16:                                                              \
      if (pdtype == ARES_BF16) return CALL(__nv_bfloat16, __nv_bfloat16);        \
      if (pdtype == ARES_F32) return CALL(__nv_bfloat16, float);                 \
      break;                                                                     \
  }                                                                              \
  return static_cast<int32_t>(cudaErrorInvalidValue);

extern "C" int32_t ares_cuda_reward_fwd(const void *hidden, const int64_t *last, const void *w,
                                        const void *bias, const void *head, int64_t B, int64_t L,
                                        int64_t H, int32_t dtype, int32_t pdtype,
                                        int32_t norm_kind, float eps, int64_t n_pairs,
                                        float *scores, float *loss, unsigned int *counter,
                                        void *stream) {
  if (B == 0) return 0;
  if (n_pairs > 0 && (loss == nullptr || counter == nullptr))
    return static_cast<int32_t>(cudaErrorInvalidValue);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
#define CALL(T, W) \
  fwd<T, W>(hidden, last, w, bias, head, B, L, H, norm_kind, eps, n_pairs, scores, loss, counter, s)
  ARES_REWARD_DISPATCH(CALL)
#undef CALL
}

extern "C" int32_t ares_cuda_reward_bwd(const void *hidden, const int64_t *last, const void *w,
                                        const void *head, int64_t B, int64_t L, int64_t H,
                                        int32_t dtype, int32_t pdtype, int32_t norm_kind,
                                        float eps, int64_t n_pairs, const float *grad_scores,
                                        const float *grad_loss, const float *scores, float *gx,
                                        float *gr, void *dhidden, void *stream) {
  if (B == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
#define CALL(T, W)                                                                             \
  bwd<T, W>(hidden, last, w, head, B, L, H, norm_kind, eps, n_pairs, grad_scores, grad_loss, \
            scores, gx, gr, dhidden, s)
  ARES_REWARD_DISPATCH(CALL)
#undef CALL
}

extern "C" int32_t ares_cuda_reward_param_grads(const float *gx, const float *gr, const void *w,
                                                const void *bias, const void *head, int64_t B,
                                                int64_t H, int32_t pdtype, void *dw, void *dbias,
                                                void *dhead, void *stream) {
  if (H == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (pdtype) {
    case ARES_F32: return pgrads<float>(gx, gr, w, bias, head, B, H, dw, dbias, dhead, s);
    case ARES_F16: return pgrads<__half>(gx, gr, w, bias, head, B, H, dw, dbias, dhead, s);
    case ARES_BF16:
      return pgrads<__nv_bfloat16>(gx, gr, w, bias, head, B, H, dw, dbias, dhead, s);
  }
  return static_cast<int32_t>(cudaErrorInvalidValue);
}
