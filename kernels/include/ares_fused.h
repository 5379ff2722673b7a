/*
 * ares_fused.h: the engine's fused operations (C ABI, same rules as
 * ares_torch.h: every entry returns an ares_status*, NULL on success; every
 * C++ exception is caught; result handles are owned by the caller and counted
 * by ares_live_tensors).
 *
 * Each fused op has two implementations with the same numerics:
 *  - a composed path built from libtorch ops, used on the CPU, for dtypes the
 *    kernels do not cover (f64), and on CUDA when the kernels are disabled;
 *  - a CUDA kernel path (kernels/cuda/), used for f32/f16/bf16 CUDA tensors
 *    when the shim was built with CUDA and the kernels are enabled.
 * Both are registered with autograd (a custom autograd Function), so
 * gradients flow into the hidden states and the parameters.
 */
#ifndef ARES_FUSED_H
#define ARES_FUSED_H

#include "ares_torch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which kernels the fused ops' kernel path runs: none (the composed path
 * only), the CUDA kernels on CUDA tensors, or, in the test build of
 * `make shim-emu`, the same kernels under the host emulation on CPU tensors. */
enum { ARES_KERNELS_NONE = 0, ARES_KERNELS_CUDA = 1, ARES_KERNELS_HOST_EMU = 2 };
int32_t ares_fused_built_with_kernels(void);
/* Enables (non-zero) or disables the CUDA kernels for all later calls, in all
 * threads; disabled, CUDA tensors take the composed path. *previous (may be
 * NULL) receives the former setting. Enabled by default. */
ares_status *ares_fused_set_kernels(int32_t enabled, int32_t *previous);

/* ---- reward scoring ---------------------------------------------------- */

enum { ARES_NORM_LAYER = 0, ARES_NORM_RMS = 1 };

/* Scalar reward of each sequence from the backbone's hidden states:
 *   x = hidden[b, last[b], :]
 *   LAYER: y = (x - mean x) / sqrt(var x + eps) * norm_weight + norm_bias
 *   RMS:   y = x / sqrt(mean x^2 + eps) * norm_weight          (no bias)
 *   scores[b] = sum_h y[h] * head[h]
 * hidden [B, L, H] f32/f16/bf16/f64; last [B] i64, each in [0, L);
 * norm_weight [H]; norm_bias [H] or NULL (must be NULL for RMS); head [1, H]
 * or [H] (a value head without bias). Computed in f32 (f64 for f64 input);
 * scores is [B] in that type.
 * n_pairs > 0 adds the Bradley-Terry loss: B == 2 * n_pairs, rows [0, P) are
 * the chosen and rows [P, 2P) the rejected responses of the same P prompts,
 * and *loss = mean_i -log sigmoid(scores[i] - scores[P + i]) (a 0-d tensor).
 * loss may be NULL when n_pairs == 0.
 * On CUDA the kernels do not synchronise to check last: an index outside
 * [0, L) yields a NaN score for that row. */
ares_status *ares_reward_score(ares_tensor hidden, ares_tensor last, ares_tensor norm_weight,
                               ares_tensor norm_bias, int32_t norm_kind, double eps,
                               ares_tensor head, int64_t n_pairs, ares_tensor *scores,
                               ares_tensor *loss);

/* ---- token log-probabilities ------------------------------------------- */

enum { ARES_TLP_LOGPROB = 0, ARES_TLP_UNLIKELIHOOD = 1 };

/* Per-token log-probabilities under the language-model head, computed over
 * vocabulary chunks with an online log-sum-exp, so that the [N, V] logits are
 * never held whole (forward or backward; the backward recomputes each chunk):
 *   logits = hidden @ weight^T            (hidden [N, H], weight [V, H])
 *   LOGPROB:       out[n] = log_softmax(logits[n])[targets[n]]
 *   UNLIKELIHOOD:  out[n] = -log(max(1 - p, clamp_min)), p = exp(LOGPROB)
 * targets [N] i64; a negative target marks a position to ignore: out is 0
 * there and no gradient flows from it. A target >= V is an error on the CPU;
 * on CUDA (no synchronisation) it yields NaN. chunk is the number of
 * vocabulary rows per step (<= 0: 8192). hidden and weight share one dtype
 * (f32/f16/bf16/f64); logits are produced in that dtype (as a matmul would),
 * the log-sum-exp and out are in f32 (f64 for f64). On the CPU, f16 matmuls
 * run in f32 (libtorch 1.13 has no CPU f16 matmul). clamp_min <= 0 means 1e-6. */
ares_status *ares_token_logprobs(ares_tensor hidden, ares_tensor weight, ares_tensor targets,
                                 int64_t chunk, int32_t mode, double clamp_min,
                                 ares_tensor *out);

#ifdef __cplusplus
}
#endif
#endif /* ARES_FUSED_H */
