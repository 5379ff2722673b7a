package torch

/*
#include "ares_torch.h"
*/
import "C"

import (
	"math"
	"unsafe"
)

// ---- element-wise ----------------------------------------------------------

func (t *Tensor) unary(op C.int32_t, name string) *Tensor {
	var out C.ares_tensor
	check(name, C.ares_unary(op, t.handle(name), &out))
	return wrap(out, t)
}

func (t *Tensor) Neg() *Tensor        { return t.unary(C.ARES_U_NEG, "Neg") }
func (t *Tensor) Exp() *Tensor        { return t.unary(C.ARES_U_EXP, "Exp") }
func (t *Tensor) Log() *Tensor        { return t.unary(C.ARES_U_LOG, "Log") }
func (t *Tensor) Log1p() *Tensor      { return t.unary(C.ARES_U_LOG1P, "Log1p") }
func (t *Tensor) Sqrt() *Tensor       { return t.unary(C.ARES_U_SQRT, "Sqrt") }
func (t *Tensor) Rsqrt() *Tensor      { return t.unary(C.ARES_U_RSQRT, "Rsqrt") }
func (t *Tensor) Square() *Tensor     { return t.unary(C.ARES_U_SQUARE, "Square") }
func (t *Tensor) Abs() *Tensor        { return t.unary(C.ARES_U_ABS, "Abs") }
func (t *Tensor) Sigmoid() *Tensor    { return t.unary(C.ARES_U_SIGMOID, "Sigmoid") }
func (t *Tensor) LogSigmoid() *Tensor { return t.unary(C.ARES_U_LOGSIGMOID, "LogSigmoid") }
func (t *Tensor) Tanh() *Tensor       { return t.unary(C.ARES_U_TANH, "Tanh") }
func (t *Tensor) Relu() *Tensor       { return t.unary(C.ARES_U_RELU, "Relu") }
func (t *Tensor) Silu() *Tensor       { return t.unary(C.ARES_U_SILU, "Silu") }
func (t *Tensor) Sin() *Tensor        { return t.unary(C.ARES_U_SIN, "Sin") }
func (t *Tensor) Cos() *Tensor        { return t.unary(C.ARES_U_COS, "Cos") }
func (t *Tensor) IsFinite() *Tensor   { return t.unary(C.ARES_U_ISFINITE, "IsFinite") }
func (t *Tensor) LogicalNot() *Tensor { return t.unary(C.ARES_U_LOGICAL_NOT, "LogicalNot") }

// Gelu is the exact (erf) GELU.
func (t *Tensor) Gelu() *Tensor { return t.unary(C.ARES_U_GELU, "Gelu") }

// GeluTanh is the tanh approximation of GELU (GPT-2's "gelu_new").
func (t *Tensor) GeluTanh() *Tensor { return t.unary(C.ARES_U_GELU_TANH, "GeluTanh") }

// Contiguous returns t laid out in C order (t itself is unchanged).
func (t *Tensor) Contiguous() *Tensor { return t.unary(C.ARES_U_CONTIGUOUS, "Contiguous") }

// Detach returns a tensor sharing t's data, cut from the autograd graph.
func (t *Tensor) Detach() *Tensor { return t.unary(C.ARES_U_DETACH, "Detach") }

// Clone copies t's data (and stays in the autograd graph).
func (t *Tensor) Clone() *Tensor { return t.unary(C.ARES_U_CLONE, "Clone") }

func (t *Tensor) binary(op C.int32_t, name string, o *Tensor) *Tensor {
	var out C.ares_tensor
	check(name, C.ares_binary(op, t.handle(name), o.handle(name), &out))
	return wrap(out, t, o)
}

func (t *Tensor) scalar(op C.int32_t, name string, v float64) *Tensor {
	var out C.ares_tensor
	check(name, C.ares_binary_scalar(op, t.handle(name), C.double(v), &out))
	return wrap(out, t)
}

// Broadcasting arithmetic and comparisons.
func (t *Tensor) Add(o *Tensor) *Tensor     { return t.binary(C.ARES_B_ADD, "Add", o) }
func (t *Tensor) Sub(o *Tensor) *Tensor     { return t.binary(C.ARES_B_SUB, "Sub", o) }
func (t *Tensor) Mul(o *Tensor) *Tensor     { return t.binary(C.ARES_B_MUL, "Mul", o) }
func (t *Tensor) Div(o *Tensor) *Tensor     { return t.binary(C.ARES_B_DIV, "Div", o) }
func (t *Tensor) Pow(o *Tensor) *Tensor     { return t.binary(C.ARES_B_POW, "Pow", o) }
func (t *Tensor) Maximum(o *Tensor) *Tensor { return t.binary(C.ARES_B_MAXIMUM, "Maximum", o) }
func (t *Tensor) Minimum(o *Tensor) *Tensor { return t.binary(C.ARES_B_MINIMUM, "Minimum", o) }
func (t *Tensor) Eq(o *Tensor) *Tensor      { return t.binary(C.ARES_B_EQ, "Eq", o) }
func (t *Tensor) Ne(o *Tensor) *Tensor      { return t.binary(C.ARES_B_NE, "Ne", o) }
func (t *Tensor) Lt(o *Tensor) *Tensor      { return t.binary(C.ARES_B_LT, "Lt", o) }
func (t *Tensor) Le(o *Tensor) *Tensor      { return t.binary(C.ARES_B_LE, "Le", o) }
func (t *Tensor) Gt(o *Tensor) *Tensor      { return t.binary(C.ARES_B_GT, "Gt", o) }
func (t *Tensor) Ge(o *Tensor) *Tensor      { return t.binary(C.ARES_B_GE, "Ge", o) }
func (t *Tensor) LogicalAnd(o *Tensor) *Tensor {
	return t.binary(C.ARES_B_LOGICAL_AND, "LogicalAnd", o)
}
func (t *Tensor) LogicalOr(o *Tensor) *Tensor { return t.binary(C.ARES_B_LOGICAL_OR, "LogicalOr", o) }

// MatMul is torch.matmul (batched and broadcasting).
func (t *Tensor) MatMul(o *Tensor) *Tensor { return t.binary(C.ARES_B_MATMUL, "MatMul", o) }

// Arithmetic and comparisons with a scalar.
func (t *Tensor) AddScalar(v float64) *Tensor { return t.scalar(C.ARES_B_ADD, "AddScalar", v) }
func (t *Tensor) SubScalar(v float64) *Tensor { return t.scalar(C.ARES_B_SUB, "SubScalar", v) }
func (t *Tensor) MulScalar(v float64) *Tensor { return t.scalar(C.ARES_B_MUL, "MulScalar", v) }
func (t *Tensor) DivScalar(v float64) *Tensor { return t.scalar(C.ARES_B_DIV, "DivScalar", v) }
func (t *Tensor) PowScalar(v float64) *Tensor { return t.scalar(C.ARES_B_POW, "PowScalar", v) }
func (t *Tensor) EqScalar(v float64) *Tensor  { return t.scalar(C.ARES_B_EQ, "EqScalar", v) }
func (t *Tensor) NeScalar(v float64) *Tensor  { return t.scalar(C.ARES_B_NE, "NeScalar", v) }
func (t *Tensor) LtScalar(v float64) *Tensor  { return t.scalar(C.ARES_B_LT, "LtScalar", v) }
func (t *Tensor) LeScalar(v float64) *Tensor  { return t.scalar(C.ARES_B_LE, "LeScalar", v) }
func (t *Tensor) GtScalar(v float64) *Tensor  { return t.scalar(C.ARES_B_GT, "GtScalar", v) }
func (t *Tensor) GeScalar(v float64) *Tensor  { return t.scalar(C.ARES_B_GE, "GeScalar", v) }

// RSubScalar is v - t.
func (t *Tensor) RSubScalar(v float64) *Tensor {
	var out C.ares_tensor
	check("RSubScalar", C.ares_rsub_scalar(C.double(v), t.handle("RSubScalar"), &out))
	return wrap(out, t)
}

// Clamp limits t to [lo, hi]; use math.Inf for a one-sided clamp.
func (t *Tensor) Clamp(lo, hi float64) *Tensor {
	hasLo, hasHi := C.int32_t(0), C.int32_t(0)
	if !math.IsInf(lo, -1) {
		hasLo = 1
	}
	if !math.IsInf(hi, 1) {
		hasHi = 1
	}
	var out C.ares_tensor
	check("Clamp", C.ares_clamp(t.handle("Clamp"), hasLo, C.double(lo), hasHi, C.double(hi), &out))
	return wrap(out, t)
}

// ---- reductions ------------------------------------------------------------
//
// Every reduction drops the reduced dims; its Keep form (SumKeep, MaxKeep,
// ...) keeps them with size 1, as PyTorch's keepdim=True does.

func (t *Tensor) reduce(op C.int32_t, name string, keepdim bool, dims []int64) *Tensor {
	dp, nd := shapePtr(dims)
	var out C.ares_tensor
	check(name, C.ares_reduce(op, t.handle(name), dp, nd, bool32(keepdim), &out))
	return wrap(out, t)
}

// Sum over dims (all of them when none are given), dropping them.
func (t *Tensor) Sum(dims ...int64) *Tensor { return t.reduce(C.ARES_R_SUM, "Sum", false, dims) }

// SumKeep is Sum keeping the reduced dims with size 1.
func (t *Tensor) SumKeep(dims ...int64) *Tensor { return t.reduce(C.ARES_R_SUM, "Sum", true, dims) }

// Mean over dims (all of them when none are given).
func (t *Tensor) Mean(dims ...int64) *Tensor { return t.reduce(C.ARES_R_MEAN, "Mean", false, dims) }

// MeanKeep is Mean keeping the reduced dims with size 1.
func (t *Tensor) MeanKeep(dims ...int64) *Tensor {
	return t.reduce(C.ARES_R_MEAN, "Mean", true, dims)
}

// AMax is the maximum over dims (all when none are given).
func (t *Tensor) AMax(dims ...int64) *Tensor { return t.reduce(C.ARES_R_AMAX, "AMax", false, dims) }

// AMaxKeep is AMax keeping the reduced dims.
func (t *Tensor) AMaxKeep(dims ...int64) *Tensor {
	return t.reduce(C.ARES_R_AMAX, "AMax", true, dims)
}

// AMin is the minimum over dims (all when none are given).
func (t *Tensor) AMin(dims ...int64) *Tensor { return t.reduce(C.ARES_R_AMIN, "AMin", false, dims) }

// LogSumExp over one or more dims.
func (t *Tensor) LogSumExp(dims ...int64) *Tensor {
	return t.reduce(C.ARES_R_LOGSUMEXP, "LogSumExp", false, dims)
}

// LogSumExpKeep is LogSumExp keeping the reduced dims.
func (t *Tensor) LogSumExpKeep(dims ...int64) *Tensor {
	return t.reduce(C.ARES_R_LOGSUMEXP, "LogSumExp", true, dims)
}

// All is true where every element (along dim, if given) is true.
func (t *Tensor) All(dims ...int64) *Tensor { return t.reduce(C.ARES_R_ALL, "All", false, dims) }

// Any is true where some element (along dim, if given) is true.
func (t *Tensor) Any(dims ...int64) *Tensor { return t.reduce(C.ARES_R_ANY, "Any", false, dims) }

func bool32(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

// Max returns the maxima along dim and their indices.
func (t *Tensor) Max(dim int64) (values, indices *Tensor) { return t.max(dim, false) }

// MaxKeep is Max keeping dim.
func (t *Tensor) MaxKeep(dim int64) (values, indices *Tensor) { return t.max(dim, true) }

func (t *Tensor) max(dim int64, keepdim bool) (values, indices *Tensor) {
	var v, i C.ares_tensor
	check("Max", C.ares_max(t.handle("Max"), C.int64_t(dim), bool32(keepdim), &v, &i))
	return wrap(v, t), wrap(i, t)
}

// ArgMax returns the indices of the maxima along dim.
func (t *Tensor) ArgMax(dim int64) *Tensor { return t.argmax(dim, false) }

// ArgMaxKeep is ArgMax keeping dim.
func (t *Tensor) ArgMaxKeep(dim int64) *Tensor { return t.argmax(dim, true) }

func (t *Tensor) argmax(dim int64, keepdim bool) *Tensor {
	var out C.ares_tensor
	check("ArgMax", C.ares_argmax(t.handle("ArgMax"), C.int64_t(dim), bool32(keepdim), &out))
	return wrap(out, t)
}

// Softmax along dim.
func (t *Tensor) Softmax(dim int64) *Tensor {
	var out C.ares_tensor
	check("Softmax", C.ares_softmax(t.handle("Softmax"), C.int64_t(dim), &out))
	return wrap(out, t)
}

// LogSoftmax along dim.
func (t *Tensor) LogSoftmax(dim int64) *Tensor {
	var out C.ares_tensor
	check("LogSoftmax", C.ares_log_softmax(t.handle("LogSoftmax"), C.int64_t(dim), &out))
	return wrap(out, t)
}

// CumSum along dim.
func (t *Tensor) CumSum(dim int64) *Tensor {
	var out C.ares_tensor
	check("CumSum", C.ares_cumsum(t.handle("CumSum"), C.int64_t(dim), &out))
	return wrap(out, t)
}

// TopK returns the k largest (or smallest) values along dim, sorted, and their indices.
func (t *Tensor) TopK(k, dim int64, largest bool) (values, indices *Tensor) {
	var v, i C.ares_tensor
	check("TopK", C.ares_topk(t.handle("TopK"), C.int64_t(k), C.int64_t(dim), bool32(largest), &v, &i))
	return wrap(v, t), wrap(i, t)
}

// Sort sorts along dim and returns the values and their original indices.
func (t *Tensor) Sort(dim int64, descending bool) (values, indices *Tensor) {
	var v, i C.ares_tensor
	check("Sort", C.ares_sort(t.handle("Sort"), C.int64_t(dim), bool32(descending), &v, &i))
	return wrap(v, t), wrap(i, t)
}

// Multinomial draws n category indices per row of the (unnormalised,
// non-negative) weights t, using g (the default generator when nil).
func (t *Tensor) Multinomial(n int64, replacement bool, g *Generator) *Tensor {
	var out C.ares_tensor
	check("Multinomial", C.ares_multinomial(t.handle("Multinomial"), C.int64_t(n), bool32(replacement), g.handle("Multinomial"), &out))
	return wrap(out, t)
}

// ---- shape and indexing ----------------------------------------------------

// Reshape returns t with a new shape (one size may be -1).
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	sp, nd := shapePtr(shape)
	var out C.ares_tensor
	check("Reshape", C.ares_reshape(t.handle("Reshape"), sp, nd, &out))
	return wrap(out, t)
}

// Expand broadcasts size-1 dims to shape without copying (-1 keeps a size).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	sp, nd := shapePtr(shape)
	var out C.ares_tensor
	check("Expand", C.ares_expand(t.handle("Expand"), sp, nd, &out))
	return wrap(out, t)
}

// Permute reorders the dims.
func (t *Tensor) Permute(dims ...int64) *Tensor {
	sp, nd := shapePtr(dims)
	var out C.ares_tensor
	check("Permute", C.ares_permute(t.handle("Permute"), sp, nd, &out))
	return wrap(out, t)
}

// Transpose swaps two dims.
func (t *Tensor) Transpose(d0, d1 int64) *Tensor {
	var out C.ares_tensor
	check("Transpose", C.ares_transpose(t.handle("Transpose"), C.int64_t(d0), C.int64_t(d1), &out))
	return wrap(out, t)
}

// Narrow returns the slice [start, start+length) of dim (a view).
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	var out C.ares_tensor
	check("Narrow", C.ares_narrow(t.handle("Narrow"), C.int64_t(dim), C.int64_t(start), C.int64_t(length), &out))
	return wrap(out, t)
}

// Unsqueeze inserts a size-1 dim at dim.
func (t *Tensor) Unsqueeze(dim int64) *Tensor {
	var out C.ares_tensor
	check("Unsqueeze", C.ares_unsqueeze(t.handle("Unsqueeze"), C.int64_t(dim), &out))
	return wrap(out, t)
}

// Squeeze removes dim if its size is 1.
func (t *Tensor) Squeeze(dim int64) *Tensor {
	var out C.ares_tensor
	check("Squeeze", C.ares_squeeze(t.handle("Squeeze"), C.int64_t(dim), &out))
	return wrap(out, t)
}

// nonEmpty is handles(op, ts) for an op that needs at least one tensor.
func nonEmpty(op string, ts []*Tensor) []C.ares_tensor {
	if len(ts) == 0 {
		fail(op, CodeInvalid, "needs at least one tensor")
	}
	return handles(op, ts)
}

// Cat concatenates tensors along an existing dim.
func Cat(ts []*Tensor, dim int64) *Tensor {
	hs := nonEmpty("Cat", ts)
	var out C.ares_tensor
	check("Cat", C.ares_cat(&hs[0], C.int32_t(len(hs)), C.int64_t(dim), &out))
	return wrap(out, ts...)
}

// Stack joins tensors of equal shape along a new dim.
func Stack(ts []*Tensor, dim int64) *Tensor {
	hs := nonEmpty("Stack", ts)
	var out C.ares_tensor
	check("Stack", C.ares_stack(&hs[0], C.int32_t(len(hs)), C.int64_t(dim), &out))
	return wrap(out, ts...)
}

// IndexSelect picks the entries of dim listed in the 1-d int64 tensor index.
func (t *Tensor) IndexSelect(dim int64, index *Tensor) *Tensor {
	var out C.ares_tensor
	check("IndexSelect", C.ares_index_select(t.handle("IndexSelect"), C.int64_t(dim), index.handle("IndexSelect"), &out))
	return wrap(out, t, index)
}

// Gather is torch.gather: out[i][j] = t[i][index[i][j]] for dim 1, and so on.
func (t *Tensor) Gather(dim int64, index *Tensor) *Tensor {
	var out C.ares_tensor
	check("Gather", C.ares_gather(t.handle("Gather"), C.int64_t(dim), index.handle("Gather"), &out))
	return wrap(out, t, index)
}

// MaskedFill sets v where the bool mask (broadcast to t) is true.
func (t *Tensor) MaskedFill(mask *Tensor, v float64) *Tensor {
	// libtorch 1.13 silently accepts non-bool masks; 2.x rejects them.
	if mask.handle("MaskedFill") != nil && mask.DType() != Bool {
		fail("MaskedFill", CodeInvalid, "mask must be bool, got %v", mask.DType())
	}
	var out C.ares_tensor
	check("MaskedFill", C.ares_masked_fill(t.handle("MaskedFill"), mask.handle("MaskedFill"), C.double(v), &out))
	return wrap(out, t, mask)
}

// Where picks a where cond is true and b elsewhere (broadcasting).
func Where(cond, a, b *Tensor) *Tensor {
	var out C.ares_tensor
	check("Where", C.ares_where(cond.handle("Where"), a.handle("Where"), b.handle("Where"), &out))
	return wrap(out, cond, a, b)
}

// Tril keeps the elements on and below the diagonal-th diagonal.
func (t *Tensor) Tril(diagonal int64) *Tensor {
	var out C.ares_tensor
	check("Tril", C.ares_tril(t.handle("Tril"), C.int64_t(diagonal), &out))
	return wrap(out, t)
}

// Triu keeps the elements on and above the diagonal-th diagonal.
func (t *Tensor) Triu(diagonal int64) *Tensor {
	var out C.ares_tensor
	check("Triu", C.ares_triu(t.handle("Triu"), C.int64_t(diagonal), &out))
	return wrap(out, t)
}

// To converts t to dtype (on the same device).
func (t *Tensor) To(dtype DType) *Tensor { return t.to("To", dtype, t.Device()) }

// Convert converts t to dtype on dev in one op (no intermediate tensor).
func (t *Tensor) Convert(dtype DType, dev Device) *Tensor { return t.to("Convert", dtype, dev) }

// ToDevice moves t to dev (keeping its dtype).
func (t *Tensor) ToDevice(dev Device) *Tensor { return t.to("ToDevice", t.DType(), dev) }

func (t *Tensor) to(name string, dtype DType, dev Device) *Tensor {
	var out C.ares_tensor
	check(name, C.ares_to(t.handle(name), C.int32_t(dtype), C.int32_t(dev.Kind), C.int32_t(dev.Index), &out))
	return wrap(out, t)
}

// CopyInto writes src into t's slice starting at start along dim, in place
// and outside autograd (for KV caches and buffers).
func (t *Tensor) CopyInto(dim, start int64, src *Tensor) {
	check("CopyInto", C.ares_copy_into(t.handle("CopyInto"), C.int64_t(dim), C.int64_t(start), src.handle("CopyInto")))
}

// ---- neural-network ops ----------------------------------------------------

// Linear is x @ w^T + b, with w [out, in] as in PyTorch; b may be nil.
func Linear(x, w, b *Tensor) *Tensor {
	var out C.ares_tensor
	check("Linear", C.ares_linear(x.handle("Linear"), w.handle("Linear"), b.optHandle("Linear"), &out))
	return wrap(out, x, w, b)
}

// LoRALinear is a projection with a low-rank adapter in one native call:
// x wᵀ + b + scale · (xa aᵀ) bBᵀ, with a [r, in] (lora_A) and bB [out, r]
// (lora_B); xa is the adapter's input (x after dropout), nil for x itself;
// b may be nil.
func LoRALinear(x, xa, w, b, a, bB *Tensor, scale float64) *Tensor {
	var out C.ares_tensor
	check("LoRALinear", C.ares_lora_linear(x.handle("LoRALinear"), xa.optHandle("LoRALinear"), w.handle("LoRALinear"),
		b.optHandle("LoRALinear"), a.handle("LoRALinear"), bB.handle("LoRALinear"), C.double(scale), &out))
	return wrap(out, x, xa, w, b, a, bB)
}

// Embedding looks up rows of weight for the int64 ids.
func Embedding(weight, ids *Tensor) *Tensor {
	var out C.ares_tensor
	check("Embedding", C.ares_embedding(weight.handle("Embedding"), ids.handle("Embedding"), &out))
	return wrap(out, ids, weight)
}

// LayerNorm normalises over the last dim; weight and bias may be nil.
func LayerNorm(x, weight, bias *Tensor, eps float64) *Tensor {
	var out C.ares_tensor
	check("LayerNorm", C.ares_layer_norm(x.handle("LayerNorm"), weight.optHandle("LayerNorm"), bias.optHandle("LayerNorm"), C.double(eps), &out))
	return wrap(out, x, weight, bias)
}

// RMSNorm is x / sqrt(mean(x^2) + eps) * weight over the last dim, computed
// in float32 as Llama and Qwen do; weight may be nil.
func RMSNorm(x, weight *Tensor, eps float64) *Tensor {
	var out C.ares_tensor
	check("RMSNorm", C.ares_rms_norm(x.handle("RMSNorm"), weight.optHandle("RMSNorm"), C.double(eps), &out))
	return wrap(out, x, weight)
}

// Reduction says how a loss combines its per-element values.
type Reduction int32

const (
	ReduceNone Reduction = C.ARES_REDUCE_NONE
	ReduceMean Reduction = C.ARES_REDUCE_MEAN
	ReduceSum  Reduction = C.ARES_REDUCE_SUM
)

// CrossEntropyOptions are the less common knobs of CrossEntropy.
type CrossEntropyOptions struct {
	IgnoreIndex    int64 // targets equal to this are skipped; PyTorch's default is -100
	Reduction      Reduction
	LabelSmoothing float64
}

// CrossEntropy is the softmax cross-entropy of logits [N, C] against int64
// targets [N], averaged over the targets that are not -100.
func CrossEntropy(logits, targets *Tensor) *Tensor {
	return CrossEntropyWith(logits, targets, CrossEntropyOptions{IgnoreIndex: -100, Reduction: ReduceMean})
}

// CrossEntropyWith is CrossEntropy with explicit options.
func CrossEntropyWith(logits, targets *Tensor, o CrossEntropyOptions) *Tensor {
	var out C.ares_tensor
	check("CrossEntropy", C.ares_cross_entropy(logits.handle("CrossEntropy"), targets.handle("CrossEntropy"),
		C.int64_t(o.IgnoreIndex), C.int32_t(o.Reduction), C.double(o.LabelSmoothing), &out))
	return wrap(out, logits, targets)
}

// Attention is scaled dot-product attention softmax(q k^T * scale + mask) v
// for q [..., Lq, D] and k, v [..., Lk, D]. mask (bool, true = may attend) may
// be nil; causal aligns the causal mask to the bottom-right corner, so that
// it is right for a query block at the end of a KV cache; scale <= 0 means
// 1/sqrt(D). libtorch's fused kernel is used where it exists (2.1 and later).
func Attention(q, k, v, mask *Tensor, causal bool, scale float64) *Tensor {
	var out C.ares_tensor
	check("Attention", C.ares_attention(q.handle("Attention"), k.handle("Attention"), v.handle("Attention"),
		mask.optHandle("Attention"), bool32(causal), C.double(scale), &out))
	return wrap(out, q, k, v, mask)
}

var _ = unsafe.Pointer(nil)
