package torch

/*
#include "ares_fused.h"
*/
import "C"

import "os"

// Fused ops (kernels/include/ares_fused.h). Each has a composed libtorch
// path, used on the CPU, for float64, and on CUDA when the kernels are
// disabled, and a CUDA kernel path for float32/float16/bfloat16 CUDA tensors.
// Both are differentiable: gradients reach the hidden states and parameters.
//
// ARES_FUSED_KERNELS=0 in the environment disables the kernels at start.

func init() {
	if os.Getenv("ARES_FUSED_KERNELS") == "0" {
		SetFusedKernels(false)
	}
}

// FusedKernelsBuilt reports whether the shim holds the fused ops' CUDA kernels
// (for CUDA tensors, or emulated on the host; see FusedKernelDevice).
func FusedKernelsBuilt() bool { return C.ares_fused_built_with_kernels() != C.ARES_KERNELS_NONE }

// FusedKernelDevice is the device whose tensors the fused ops' kernels take:
// CUDA in a CUDA build, the CPU in the test build of `make shim-emu`, where
// the same kernels run under the host emulation of kernels/cuda/emu. ok is
// false when the shim has no kernels.
func FusedKernelDevice() (dev Device, ok bool) {
	switch C.ares_fused_built_with_kernels() {
	case C.ARES_KERNELS_CUDA:
		return CUDA(0), true
	case C.ARES_KERNELS_HOST_EMU:
		return CPU, true
	}
	return CPU, false
}

// SetFusedKernels enables or disables the CUDA kernels of the fused ops for
// every later call (disabled, CUDA tensors take the composed path) and
// returns the previous setting.
func SetFusedKernels(on bool) (previous bool) {
	var prev C.int32_t
	check("SetFusedKernels", C.ares_fused_set_kernels(bool32(on), &prev))
	return prev != 0
}

// NormKind is the final normalisation of a reward model's backbone.
type NormKind int32

const (
	NormLayer NormKind = C.ARES_NORM_LAYER // LayerNorm with weight and bias (GPT-2)
	NormRMS   NormKind = C.ARES_NORM_RMS   // RMSNorm with weight (Llama, Qwen)
)

func (k NormKind) String() string {
	switch k {
	case NormLayer:
		return "layer"
	case NormRMS:
		return "rms"
	}
	return "norm(?)"
}

// RewardScore is the fused reward head: for each sequence b it takes the
// hidden state hidden[b, last[b], :] (hidden [B, L, H], last [B] int64),
// applies the final norm (normWeight [H], normBias [H] or nil; nil for
// NormRMS) and the bias-free value head [1, H], and returns the scores [B].
// Scores are float32 (float64 for float64 input) whatever the input dtype.
func RewardScore(hidden, last, normWeight, normBias *Tensor, kind NormKind, eps float64,
	head *Tensor) *Tensor {
	const op = "RewardScore"
	var s C.ares_tensor
	check(op, C.ares_reward_score(hidden.handle(op), last.handle(op), normWeight.handle(op),
		normBias.optHandle(op), C.int32_t(kind), C.double(eps), head.handle(op), 0, &s, nil))
	return wrap(s, hidden, last, normWeight, normBias, head)
}

// RewardBTLoss scores 2P sequences as RewardScore does, rows [0, P) being the
// chosen and rows [P, 2P) the rejected responses of P pairs, and returns the
// Bradley-Terry loss mean(-log sigmoid(score[i] - score[P+i])) (0-d) with the
// scores [2P]. Both are differentiable.
func RewardBTLoss(hidden, last, normWeight, normBias *Tensor, kind NormKind, eps float64,
	head *Tensor) (loss, scores *Tensor) {
	const op = "RewardBTLoss"
	b := hidden.Size(0)
	if b == 0 || b%2 != 0 {
		fail(op, CodeInvalid, "needs an even, non-zero number of rows (chosen then rejected), got %d", b)
	}
	var s, l C.ares_tensor
	check(op, C.ares_reward_score(hidden.handle(op), last.handle(op), normWeight.handle(op),
		normBias.optHandle(op), C.int32_t(kind), C.double(eps), head.handle(op), C.int64_t(b/2),
		&s, &l))
	return wrap(l, hidden, last, normWeight, normBias, head), wrap(s, hidden, last, normWeight, normBias, head)
}

// TokenLogProbs returns log softmax(hidden @ weight^T)[n, targets[n]] for
// hidden [N, H], weight [V, H] (the LM head, same dtype) and targets [N]
// int64, computed over vocabulary chunks of chunk rows (<= 0: 8192) with an
// online log-sum-exp, so the [N, V] logits are never materialised, forward
// or backward. A negative target (e.g. -100) marks an ignored position: its
// result is 0 and it sends no gradient. The result is float32 (float64 for
// float64 input).
func TokenLogProbs(hidden, weight, targets *Tensor, chunk int64) *Tensor {
	return tokenLogProbs("TokenLogProbs", hidden, weight, targets, chunk, C.ARES_TLP_LOGPROB, 0)
}

// UnlikelihoodLoss returns the per-token unlikelihood -log(max(1 - p, clampMin))
// with p = exp(TokenLogProbs(...)), computed the same chunked way; ignored
// positions (negative targets) give 0. clampMin <= 0 means 1e-6. Reduce it
// (mean over the kept positions) in the caller.
func UnlikelihoodLoss(hidden, weight, targets *Tensor, chunk int64, clampMin float64) *Tensor {
	return tokenLogProbs("UnlikelihoodLoss", hidden, weight, targets, chunk, C.ARES_TLP_UNLIKELIHOOD, clampMin)
}

func tokenLogProbs(op string, hidden, weight, targets *Tensor, chunk int64, mode C.int32_t, clamp float64) *Tensor {
	var out C.ares_tensor
	check(op, C.ares_token_logprobs(hidden.handle(op), weight.handle(op), targets.handle(op),
		C.int64_t(chunk), mode, C.double(clamp), &out))
	return wrap(out, hidden, weight, targets)
}
