/*
 * ares_torch.h: the C ABI between the Go engine (engine/torch) and libtorch.
 *
 * Rules of the native boundary:
 *  - Every entry point that can fail returns an ares_status*: NULL on success,
 *    otherwise a status holding a code and a message, freed by the caller with
 *    ares_status_free. There is no thread-local "last error": a goroutine may
 *    move to another OS thread between two cgo calls.
 *  - Every entry point catches every C++ exception, including the void ones.
 *  - Handles are opaque, but for one thing: a tensor handle points at its
 *    tensor's metadata (ares_tensor_meta: dtype, device, shape), filled when
 *    the handle is made, so every op returns the result's shape and dtype with
 *    its handle and reading them is not a call. A tensor handle returned
 *    through an out-parameter is owned by the caller and released with
 *    ares_tensor_free. A live-handle counter (ares_live_tensors) makes leaks
 *    testable.
 *  - Only sized integer types and double cross the boundary.
 */
#ifndef ARES_TORCH_H
#define ARES_TORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ares_status ares_status;
typedef struct ares_tensor_s *ares_tensor;
typedef struct ares_generator_s *ares_generator;

/* Status codes. */
enum {
  ARES_OK = 0,
  ARES_ERR_TORCH = 1,    /* libtorch rejected the call (shape, dtype, index...) */
  ARES_ERR_INVALID = 2,  /* the shim rejected an argument (null handle, bad enum) */
  ARES_ERR_OOM = 3,      /* out of memory, host or device */
  ARES_ERR_INTERNAL = 4  /* any other C++ exception */
};

int32_t ares_status_code(const ares_status *s);
const char *ares_status_message(const ares_status *s);
void ares_status_free(ares_status *s);

/* Element types. The numbering is part of the ABI. */
enum {
  ARES_F32 = 0, ARES_F64 = 1, ARES_F16 = 2, ARES_BF16 = 3,
  ARES_I64 = 4, ARES_I32 = 5, ARES_I16 = 6, ARES_I8 = 7,
  ARES_U8 = 8, ARES_BOOL = 9
};

/* Device kinds. A device is (kind, index); index -1 means "current". */
enum { ARES_CPU = 0, ARES_CUDA = 1 };

/* ---- library ---------------------------------------------------------- */

/* Versions: the libtorch headers the shim was compiled against, and the
 * libtorch that is loaded at run time (from its build configuration). */
ares_status *ares_version_compiled(char *buf, int64_t len);
ares_status *ares_version_runtime(char *buf, int64_t len);
/* Sets libtorch's intra-op thread count (applied lazily to each OS thread
 * that calls into the shim, as OpenMP keeps it per thread) and, when the
 * loaded BLAS is OpenBLAS, OpenBLAS's own process-wide thread count to the
 * same n: libtorch does not set the latter, and OpenBLAS otherwise starts one
 * worker per CPU that yields in a loop between calls. */
ares_status *ares_set_num_threads(int32_t n);
// The number of OS threads that have called into the shim so far.
int32_t ares_calling_threads(void);
// Sets OpenBLAS's own thread count alone (process-wide; no-op for other BLAS).
ares_status *ares_set_blas_threads(int32_t n);
ares_status *ares_get_num_threads(int32_t *n);
/* Thread facts of the calling OS thread and the process: libtorch's intra-op
 * count, OpenMP's omp_get_max_threads (-1 without OpenMP), OpenBLAS's thread
 * count (-1 when the loaded BLAS is not OpenBLAS) and how OpenBLAS was built
 * (0 sequential, 1 pthreads, 2 OpenMP; -1 unknown). */
ares_status *ares_thread_info(int32_t *intra_op, int32_t *openmp, int32_t *openblas,
                              int32_t *openblas_parallel);
ares_status *ares_manual_seed(uint64_t seed);
int64_t ares_live_tensors(void);
/* 1 when the shim was compiled with CUDA support. */
int32_t ares_built_with_cuda(void);
ares_status *ares_cuda_device_count(int32_t *n);
ares_status *ares_cuda_device_name(int32_t index, char *buf, int64_t len);
ares_status *ares_synchronize(int32_t kind, int32_t index);
/* CUDA caching-allocator statistics in bytes. */
ares_status *ares_cuda_memory(int32_t index, int64_t *allocated, int64_t *reserved,
                              int64_t *peak_allocated);
ares_status *ares_cuda_reset_peak(int32_t index);
ares_status *ares_cuda_empty_cache(void);
/* Autograd mode of the calling OS thread (the Go side locks the thread).
   previous (if not NULL) receives the mode before the call; enabled < 0
   only queries it. */
ares_status *ares_set_grad_enabled(int32_t enabled, int32_t *previous);

/* ---- tensors: lifetime and inspection --------------------------------- */

/* The metadata at the start of every tensor handle, written once when the
 * handle is made (no entry point changes a handle's dtype, device or shape in
 * place). dtype is -1 for an element type the engine does not support; shape
 * holds the sizes when ndim <= ARES_META_DIMS, otherwise ares_tensor_shape
 * gives them. */
#define ARES_META_DIMS 8
typedef struct ares_tensor_meta {
  int32_t dtype, device_kind, device_index, ndim;
  int64_t shape[ARES_META_DIMS];
} ares_tensor_meta;
static inline const ares_tensor_meta *ares_tensor_meta_of(ares_tensor t) {
  return (const ares_tensor_meta *)(const void *)t;
}

void ares_tensor_free(ares_tensor t);
void ares_tensor_free_many(ares_tensor *ts, int64_t n);
/* The same facts as the metadata, asked of libtorch (and the error for an
 * unsupported dtype). */
ares_status *ares_tensor_info(ares_tensor t, int32_t *dtype, int32_t *device_kind,
                              int32_t *device_index, int32_t *ndim);
/* shape must hold ndim entries. */
ares_status *ares_tensor_shape(ares_tensor t, int64_t *shape, int32_t ndim);
ares_status *ares_tensor_item(ares_tensor t, double *value);

/* ---- creation --------------------------------------------------------- */

/* Copies nbytes from data (host memory, C order) into a new tensor. */
ares_status *ares_from_data(const void *data, int64_t nbytes, int32_t dtype,
                            const int64_t *shape, int32_t ndim, int32_t device_kind,
                            int32_t device_index, ares_tensor *out);
/* Copies the tensor's elements (C order, host) into data; nbytes must match. */
ares_status *ares_to_data(ares_tensor t, void *data, int64_t nbytes);
ares_status *ares_full(const int64_t *shape, int32_t ndim, double value, int32_t dtype,
                       int32_t device_kind, int32_t device_index, ares_tensor *out);
ares_status *ares_arange(double start, double end, double step, int32_t dtype,
                         int32_t device_kind, int32_t device_index, ares_tensor *out);
/* normal != 0: standard normal, else uniform [0, 1). gen may be NULL. */
ares_status *ares_random(const int64_t *shape, int32_t ndim, int32_t normal, int32_t dtype,
                         int32_t device_kind, int32_t device_index, ares_generator gen,
                         ares_tensor *out);

/* ---- generators ------------------------------------------------------- */

ares_status *ares_generator_new(uint64_t seed, int32_t device_kind, int32_t device_index,
                                ares_generator *out);
void ares_generator_free(ares_generator g);
/* The state as a u8 tensor (for checkpoints), and back. */
ares_status *ares_generator_get_state(ares_generator g, ares_tensor *out);
ares_status *ares_generator_set_state(ares_generator g, ares_tensor state);

/* ---- element-wise and matrix ops -------------------------------------- */

enum {
  ARES_U_NEG = 0, ARES_U_EXP, ARES_U_LOG, ARES_U_SQRT, ARES_U_RSQRT, ARES_U_ABS,
  ARES_U_SIGMOID, ARES_U_LOGSIGMOID, ARES_U_TANH, ARES_U_RELU, ARES_U_SILU,
  ARES_U_GELU, ARES_U_GELU_TANH, ARES_U_SIN, ARES_U_COS, ARES_U_CONTIGUOUS,
  ARES_U_DETACH, ARES_U_CLONE, ARES_U_ISFINITE, ARES_U_LOGICAL_NOT, ARES_U_LOG1P,
  ARES_U_SQUARE, ARES_U_COUNT
};
ares_status *ares_unary(int32_t op, ares_tensor a, ares_tensor *out);

enum {
  ARES_B_ADD = 0, ARES_B_SUB, ARES_B_MUL, ARES_B_DIV, ARES_B_POW, ARES_B_MAXIMUM,
  ARES_B_MINIMUM, ARES_B_EQ, ARES_B_NE, ARES_B_LT, ARES_B_LE, ARES_B_GT, ARES_B_GE,
  ARES_B_LOGICAL_AND, ARES_B_LOGICAL_OR, ARES_B_MATMUL, ARES_B_COUNT
};
ares_status *ares_binary(int32_t op, ares_tensor a, ares_tensor b, ares_tensor *out);
/* Same op codes, b a scalar (MATMUL and the logical ops excluded). */
ares_status *ares_binary_scalar(int32_t op, ares_tensor a, double b, ares_tensor *out);
/* scalar - a */
ares_status *ares_rsub_scalar(double a, ares_tensor b, ares_tensor *out);

/* ---- reductions ------------------------------------------------------- */

enum {
  ARES_R_SUM = 0, ARES_R_MEAN, ARES_R_AMAX, ARES_R_AMIN, ARES_R_LOGSUMEXP,
  ARES_R_ALL, ARES_R_ANY, ARES_R_COUNT
};
/* ndims == 0 reduces over every dimension (LOGSUMEXP needs at least one). */
ares_status *ares_reduce(int32_t op, ares_tensor a, const int64_t *dims, int32_t ndims,
                         int32_t keepdim, ares_tensor *out);
ares_status *ares_max(ares_tensor a, int64_t dim, int32_t keepdim, ares_tensor *values,
                      ares_tensor *indices);
ares_status *ares_argmax(ares_tensor a, int64_t dim, int32_t keepdim, ares_tensor *out);
ares_status *ares_softmax(ares_tensor a, int64_t dim, ares_tensor *out);
ares_status *ares_log_softmax(ares_tensor a, int64_t dim, ares_tensor *out);
ares_status *ares_cumsum(ares_tensor a, int64_t dim, ares_tensor *out);
ares_status *ares_topk(ares_tensor a, int64_t k, int64_t dim, int32_t largest,
                       ares_tensor *values, ares_tensor *indices);
ares_status *ares_sort(ares_tensor a, int64_t dim, int32_t descending, ares_tensor *values,
                       ares_tensor *indices);
ares_status *ares_multinomial(ares_tensor probs, int64_t n, int32_t replacement,
                              ares_generator gen, ares_tensor *out);

/* ---- shape and indexing ----------------------------------------------- */

ares_status *ares_reshape(ares_tensor a, const int64_t *shape, int32_t ndim, ares_tensor *out);
ares_status *ares_expand(ares_tensor a, const int64_t *shape, int32_t ndim, ares_tensor *out);
ares_status *ares_permute(ares_tensor a, const int64_t *dims, int32_t ndim, ares_tensor *out);
ares_status *ares_transpose(ares_tensor a, int64_t d0, int64_t d1, ares_tensor *out);
ares_status *ares_narrow(ares_tensor a, int64_t dim, int64_t start, int64_t length,
                         ares_tensor *out);
ares_status *ares_unsqueeze(ares_tensor a, int64_t dim, ares_tensor *out);
ares_status *ares_squeeze(ares_tensor a, int64_t dim, ares_tensor *out);
/* cat joins along an existing dim, stack along a new one. */
ares_status *ares_cat(const ares_tensor *ts, int32_t n, int64_t dim, ares_tensor *out);
ares_status *ares_stack(const ares_tensor *ts, int32_t n, int64_t dim, ares_tensor *out);
ares_status *ares_index_select(ares_tensor a, int64_t dim, ares_tensor index, ares_tensor *out);
ares_status *ares_gather(ares_tensor a, int64_t dim, ares_tensor index, ares_tensor *out);
ares_status *ares_masked_fill(ares_tensor a, ares_tensor mask, double value, ares_tensor *out);
ares_status *ares_where(ares_tensor cond, ares_tensor a, ares_tensor b, ares_tensor *out);
/* The elements on and below (tril) or on and above (triu) the diagonal-th diagonal. */
ares_status *ares_tril(ares_tensor a, int64_t diagonal, ares_tensor *out);
ares_status *ares_triu(ares_tensor a, int64_t diagonal, ares_tensor *out);
ares_status *ares_clamp(ares_tensor a, int32_t has_min, double min, int32_t has_max,
                        double max, ares_tensor *out);
ares_status *ares_to(ares_tensor a, int32_t dtype, int32_t device_kind, int32_t device_index,
                     ares_tensor *out);
/* dst.narrow(dim, start, src.size(dim)).copy_(src), in place, no autograd. */
ares_status *ares_copy_into(ares_tensor dst, int64_t dim, int64_t start, ares_tensor src);

/* ---- neural-network ops ----------------------------------------------- */

/* bias may be NULL. */
ares_status *ares_linear(ares_tensor x, ares_tensor w, ares_tensor bias, ares_tensor *out);
/* LoRA projection in one call: x w^T + bias + scale * (xa a^T) b^T, with
   a [r, in] and b [out, r]; xa is the adapters' input (x after dropout), NULL
   for x itself; bias may be NULL. Differentiable in every tensor. */
ares_status *ares_lora_linear(ares_tensor x, ares_tensor xa, ares_tensor w, ares_tensor bias, ares_tensor a,
                              ares_tensor b, double scale, ares_tensor *out);
ares_status *ares_embedding(ares_tensor weight, ares_tensor ids, ares_tensor *out);
/* Normalises over the last dimension; weight and bias may be NULL. */
ares_status *ares_layer_norm(ares_tensor x, ares_tensor weight, ares_tensor bias, double eps,
                             ares_tensor *out);
/* x * rsqrt(mean(x^2) + eps) * weight over the last dimension, computed in f32. */
ares_status *ares_rms_norm(ares_tensor x, ares_tensor weight, double eps, ares_tensor *out);
enum { ARES_REDUCE_NONE = 0, ARES_REDUCE_MEAN = 1, ARES_REDUCE_SUM = 2 };
/* logits [N, C], targets [N] (i64). */
ares_status *ares_cross_entropy(ares_tensor logits, ares_tensor targets, int64_t ignore_index,
                                int32_t reduction, double label_smoothing, ares_tensor *out);
/* q [.., Lq, D], k and v [.., Lk, D]; mask (bool, true = attend) may be NULL;
 * scale <= 0 means 1/sqrt(D). Uses libtorch's fused kernel where it has one. */
ares_status *ares_attention(ares_tensor q, ares_tensor k, ares_tensor v, ares_tensor mask,
                            int32_t is_causal, double scale, ares_tensor *out);

/* ---- autograd --------------------------------------------------------- */

ares_status *ares_set_requires_grad(ares_tensor t, int32_t requires);
ares_status *ares_requires_grad(ares_tensor t, int32_t *requires);
/* grad may be NULL for a scalar. */
ares_status *ares_backward(ares_tensor t, ares_tensor grad, int32_t retain_graph);
/* *out is NULL when the tensor has no gradient. */
ares_status *ares_grad(ares_tensor t, ares_tensor *out);
ares_status *ares_zero_grad(const ares_tensor *params, int64_t n);

/* ---- optimisation ----------------------------------------------------- */

/* One decoupled-weight-decay Adam step over n parameters, in place, using each
 * parameter's .grad (parameters without one are skipped). step is 1-based.
 * exp_avg and exp_avg_sq are the caller's state tensors (same shapes).
 * master may be NULL; where master[i] is not NULL it is a float32 copy of
 * parameter i (a bf16/f16 weight): the update is made to the master in
 * float32, from the gradient cast to float32, and the parameter becomes the
 * master rounded to its dtype, so updates below the weight's resolution
 * still accumulate. */
ares_status *ares_adamw_step(const ares_tensor *params, const ares_tensor *master,
                             const ares_tensor *exp_avg, const ares_tensor *exp_avg_sq, int64_t n,
                             double lr, double beta1, double beta2, double eps, double weight_decay,
                             int64_t step);
/* Global L2 norm of the gradients; when max_norm > 0 and the norm is finite and
 * larger, scales the gradients in place so that the norm becomes max_norm. */
ares_status *ares_clip_grad_norm(const ares_tensor *params, int64_t n, double max_norm,
                                 double *total_norm);

/* ---- fused model ops (ares_model.cpp) ---------------------------------- */
/* Each is the composition of the libtorch ops the model would otherwise call
 * one by one, in the same order (same results, differentiable), in one call. */

/* Grouped-query attention of a transformer layer, from the projections to
 * the merged heads:
 *   q [B, L, nH*D] (or [B, L, nH, D]); k, v [B, L, nKV*D] (or [B, L, nKV, D])
 *   -> heads [B, n, L, D]
 *   -> rotary embedding of q and k over the first rotary_dim of D
 *      (x*cos + rotate_half(x)*sin; cos, sin broadcast to [B, 1, L, rotary_dim];
 *      both NULL: none)
 *   -> with k_cache and v_cache ([B, nKV, capacity, D]; both NULL: none): k, v
 *      written at [start, start+L) in place (no autograd), then attention
 *      covers the cached [0, start+L)
 *   -> each KV head repeated for its nH/nKV query heads
 *   -> softmax(q k^T * scale + mask) v as ares_attention (mask bool, true = attend,
 *      may be NULL; scale <= 0 means 1/sqrt(D))
 *   -> merged heads, *out [B, L, nH*D]. */
ares_status *ares_gqa_attention(ares_tensor q, ares_tensor k, ares_tensor v, ares_tensor cos, ares_tensor sin,
                                int64_t rotary_dim, ares_tensor k_cache, ares_tensor v_cache, int64_t start,
                                ares_tensor mask, double scale, int64_t n_heads, int64_t n_kv_heads,
                                int64_t head_dim, ares_tensor *out);
enum { ARES_ACT_SILU = 0, ARES_ACT_GELU = 1, ARES_ACT_GELU_TANH = 2 };
/* Gated MLP down(act(x gate^T) * (x up^T)): gate_w, up_w [I, H], down_w [H, I],
 * x [.., H] -> [.., H]; act one of ARES_ACT_* (SwiGLU for SILU, GeGLU for the GELUs). */
ares_status *ares_gated_mlp(ares_tensor x, ares_tensor gate_w, ares_tensor up_w, ares_tensor down_w, int32_t act,
                            ares_tensor *out);
/* Rotary tables for positions pos [B, L] (i64) from [P, rd] tables:
 * *cos = cos_table[pos] and *sin = sin_table[pos], each [B, 1, L, rd]. */
ares_status *ares_rope_gather(ares_tensor cos_table, ares_tensor sin_table, ares_tensor pos, ares_tensor *cos,
                              ares_tensor *sin);

#ifdef __cplusplus
}
#endif
#endif /* ARES_TORCH_H */
