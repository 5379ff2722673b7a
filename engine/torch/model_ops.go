package torch

/*
#include "ares_torch.h"
*/
import "C"

// Fused model ops (kernels/shim/ares_model.cpp): a step of a transformer
// layer in one native call instead of many. Each is the composition of the
// same libtorch ops, in the same order, as the separate ops it replaces, so
// results are the same (forward to the bit; grouped attention's q gradient
// may round differently, see ares_model.cpp) and autograd differentiates it
// like them; what it
// saves is the cgo round trips, the handles and the shape queries in between.

// AttentionSpec is the head layout of a GQAttention call, from the config.
type AttentionSpec struct {
	Heads, KVHeads, HeadDim int64
	RotaryDim               int64   // rotated leading dims of each head (with cos and sin); 0 means HeadDim
	Scale                   float64 // <= 0: 1/sqrt(HeadDim)
}

// GQAttention is grouped-query attention from the projections to the merged
// heads, in one native call:
//
//	q [B, L, Heads*D], k, v [B, L, KVHeads*D] (or [B, L, n, D])
//	→ heads [B, n, L, D]
//	→ q, k rotated over their first RotaryDim dims, x·cos + rotate_half(x)·sin
//	  (cos, sin [B, 1, L, RotaryDim], as RopeGather makes them; nil: no rotation)
//	→ with kCache, vCache [B, KVHeads, capacity, D] (nil: none): k, v written at
//	  [start, start+L) in place and outside autograd, and attention covering the
//	  cached [0, start+L)
//	→ each KV head repeated for its Heads/KVHeads query heads
//	→ softmax(q kᵀ·Scale + mask) v, as Attention (mask bool, true = may attend; may be nil)
//	→ merged heads [B, L, Heads*D].
func GQAttention(q, k, v, cos, sin, kCache, vCache *Tensor, start int64, mask *Tensor, s AttentionSpec) *Tensor {
	const op = "GQAttention"
	rd := s.RotaryDim
	if rd <= 0 {
		rd = s.HeadDim
	}
	var out C.ares_tensor
	check(op, C.ares_gqa_attention(q.handle(op), k.handle(op), v.handle(op), cos.optHandle(op), sin.optHandle(op),
		C.int64_t(rd), kCache.optHandle(op), vCache.optHandle(op), C.int64_t(start), mask.optHandle(op),
		C.double(s.Scale), C.int64_t(s.Heads), C.int64_t(s.KVHeads), C.int64_t(s.HeadDim), &out))
	return wrap(out, q, k, v, cos, sin, mask)
}

// Activation is the gate activation of GatedMLP.
type Activation int32

const (
	ActSilu     Activation = C.ARES_ACT_SILU      // SwiGLU
	ActGelu     Activation = C.ARES_ACT_GELU      // GeGLU with the exact (erf) GELU
	ActGeluTanh Activation = C.ARES_ACT_GELU_TANH // GeGLU with the tanh approximation
)

// GatedMLP is down(act(x gateᵀ) ⊙ (x upᵀ)) in one native call: gate, up
// [I, H], down [H, I], x [.., H] → [.., H].
func GatedMLP(x, gate, up, down *Tensor, act Activation) *Tensor {
	const op = "GatedMLP"
	var out C.ares_tensor
	check(op, C.ares_gated_mlp(x.handle(op), gate.handle(op), up.handle(op), down.handle(op), C.int32_t(act), &out))
	return wrap(out, x, gate, up, down)
}

// RopeGather looks up rotary tables [P, rd] at positions pos [B, L] (int64)
// in one native call: cos = cosTable[pos], sin = sinTable[pos], each
// unsqueezed to [B, 1, L, rd] to broadcast over heads.
func RopeGather(cosTable, sinTable, pos *Tensor) (cos, sin *Tensor) {
	const op = "RopeGather"
	var c, s C.ares_tensor
	check(op, C.ares_rope_gather(cosTable.handle(op), sinTable.handle(op), pos.handle(op), &c, &s))
	return wrap(c, pos, cosTable, sinTable), wrap(s, pos, cosTable, sinTable)
}
