// Package loss holds the losses of ARES's repair stage,
// written in Go over engine/torch so that they run, and differentiate, on any
// device libtorch drives.
//
// Stage 1 (reward model): BradleyTerry on y_safe over y_harm, with an
// optional margin and reward centering, plus an anchor against drift:
// ScoreAnchor (squared score change on a frozen reference set) or
// PreferenceKL (Bernoulli KL to the starting RM's preference probabilities).
//
// Stage 2 (policy): Dr. GRPO (GroupAdvantages + PolicyGradient, with
// PPO-style ratio clipping and a constant token normaliser), Unlikelihood on
// the tokens of harmful responses, KL to the reference policy with a
// selectable estimator (k1, k2, k3), and LanguageModel replay on benign data.
// LanguageModel is also the SFT loss and the evaluation's held-out NLL; its
// normalisation is an explicit choice (PerToken, GlobalTokens, Summed).
//
// Joint mode composes the terms with Weighted:
//
//	L = L_policy + a·L_unlikelihood + b·L_BT + c·L_replay
//
//	total, parts := loss.Weighted(
//		loss.Term{Name: "policy", Weight: 1, Loss: pg},
//		loss.Term{Name: "unlikelihood", Weight: a, Loss: ul},
//		loss.Term{Name: "bt", Weight: b, Loss: bt},
//		loss.Term{Name: "replay", Weight: c, Loss: lm},
//	)
//	total.Backward() // gradients reach both the policy and the RM
//
// Each optimizer then steps its own model's parameters.
//
// Conventions. Per-token tensors are [N, T] (logp: the log-probability of the
// sampled token under the model, any float dtype) with a mask [N, T] that is 1
// on the response tokens that count and 0 on padding and prompt; fractional
// mask values act as per-token weights. Per-sequence tensors are [N].
// Reference quantities (old log-probs, reference log-probs, reference scores,
// advantages, masks) are detached inside each loss: gradients only ever flow
// into the current model's outputs. Values at mask = 0 never reach the loss or
// its gradient, even when they are not finite. Half-precision (bf16, f16)
// inputs are computed in float32, and the loss is float32; the gradient flows
// back in the input's dtype.
//
// Errors. Like the torch ops, a loss panics with a *torch.Error on bad input
// (mismatched shapes, a non-positive normaliser); torch.Try turns that into
// an error at the step boundary.
//
// Memory. A loss keeps its intermediates in a private scope freed on return;
// its result joins the scope of the first scoped input (like an op's result)
// or, when no input is scoped, is owned by the caller. The autograd graph
// holds what backward needs, so freeing the intermediate handles is safe.
//
// Vocabulary. The losses take per-token log-probabilities [N, T], never
// logits: the callers get them from model.TokenLogProbs, which at a large
// vocabulary (a 152k Qwen2 head) computes them with the fused, vocabulary-
// chunked torch.TokenLogProbs, so that no [N, T, V] logits exist in a repair
// step, forward or backward. Unlikelihood stays a function of logp rather
// than the fused torch.UnlikelihoodLoss: that op clamps 1 − p at 1e-6 and
// sends no gradient past the clamp, where Unlikelihood clamps at
// ULMinComplement and continues linearly, so the two differ near p = 1.
package loss
