/* ares_cuda.h: launchers for the engine's CUDA kernels. Plain C so that the
 * shim (C++) and the kernels (nvcc) share one declaration. Each launcher
 * returns a cudaError_t value (0 on success) and never throws. */
#ifndef ARES_CUDA_H
#define ARES_CUDA_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* ---- fused reward scoring (reward_score.cu) ----------------------------
 * hidden [B, L, H] contiguous in dtype (ARES_F32/F16/BF16); last [B] int64;
 * w, head [H] and bias [H] (or NULL) contiguous in pdtype, which is dtype or
 * ARES_F32. norm_kind is ARES_NORM_LAYER or ARES_NORM_RMS (ares_fused.h).
 * A row whose last index is outside [0, L) gets a NaN score and no gradient.
 *
 * Forward: scores[b] (f32). n_pairs > 0: also *loss = mean over i < P of
 * softplus(scores[P + i] - scores[i]), computed by the last block to finish;
 * counter is one zeroed unsigned int on the device (reset to 0 on exit). */
int32_t ares_cuda_reward_fwd(const void *hidden, const int64_t *last, const void *w,
                             const void *bias, const void *head, int64_t B, int64_t L, int64_t H,
                             int32_t dtype, int32_t pdtype, int32_t norm_kind, float eps,
                             int64_t n_pairs, float *scores, float *loss, unsigned int *counter,
                             void *stream);
/* Backward, one block per row. The gradient of row b's score is
 * grad_scores[b] (NULL: 0) plus, when n_pairs > 0 and grad_loss is not NULL,
 * the Bradley-Terry term from the saved scores. Writes gr[b] (that gradient),
 * gx[b, :] = gr[b] * xhat_b (f32, for the parameter gradients), and, when
 * dhidden (dtype, [B, L, H], zeroed by the caller) is not NULL, the input
 * gradient into row last[b]. */
int32_t ares_cuda_reward_bwd(const void *hidden, const int64_t *last, const void *w,
                             const void *head, int64_t B, int64_t L, int64_t H, int32_t dtype,
                             int32_t pdtype, int32_t norm_kind, float eps, int64_t n_pairs,
                             const float *grad_scores, const float *grad_loss,
                             const float *scores, float *gx, float *gr, void *dhidden,
                             void *stream);
/* Parameter gradients from the backward's gx and gr: with S = sum_b gx[b, :]
 * and G = sum_b gr[b], dw = head * S, dbias = head * G, dhead = w * S + bias * G
 * (bias NULL: 0). Outputs [H] in pdtype; each may be NULL to skip it. */
int32_t ares_cuda_reward_param_grads(const float *gx, const float *gr, const void *w,
                                     const void *bias, const void *head, int64_t B, int64_t H,
                                     int32_t pdtype, void *dw, void *dbias, void *dhead,
                                     void *stream);

/* ---- chunked token log-probabilities (token_logprobs.cu) ----------------
 * logits [N, C] contiguous in dtype: columns v0 .. v0 + C - 1 of the
 * vocabulary (size V). Folds the chunk into the running log-sum-exp (m, s, all
 * f32 [N]) and picks the target's logit into tl. ARES_LSE_FIRST starts the
 * running values (m, s, tl are not read); ARES_LSE_LAST writes lse[n] and
 * logp[n] = tl - lse (0 for a negative target, NaN for one >= V) instead of
 * m, s, tl. */
enum { ARES_LSE_FIRST = 1, ARES_LSE_LAST = 2 };
int32_t ares_cuda_lse_chunk(const void *logits, int64_t N, int64_t C, int64_t v0, int64_t V,
                            const int64_t *targets, int32_t dtype, int32_t flags, float *m,
                            float *s, float *tl, float *lse, float *logp, void *stream);
/* In place: logits[n, c] <- g[n] * ([v0 + c == targets[n]] - exp(logits[n, c] - lse[n]))
 * (0 for a negative target): the gradient of logp with respect to the logits. */
int32_t ares_cuda_logprob_grad_chunk(void *logits, int64_t N, int64_t C, int64_t v0,
                                     const int64_t *targets, const float *lse, const float *g,
                                     int32_t dtype, void *stream);

#ifdef __cplusplus
}
#endif
#endif
