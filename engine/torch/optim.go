package torch

/*
#include "ares_torch.h"
*/
import "C"

import "fmt"

// AdamW is Adam with decoupled weight decay (Loshchilov and Hutter), the
// update torch.optim.AdamW makes. Its state tensors (first and second moment
// per parameter) are plain tensors it owns, so checkpoints can save them.
//
// Mixed precision: a bf16 or f16 parameter gets a float32 master copy and
// float32 moments. The forward and backward passes run on the low-precision
// weight; each step updates the master in float32 and rounds it into the
// weight. Without the master, updates smaller than half a bf16 ulp (about
// 0.4% of the weight) would be lost.
type AdamW struct {
	Params      []*Tensor
	LR          float64
	Beta1       float64
	Beta2       float64
	Eps         float64
	WeightDecay float64
	// StepCount is the number of updates made so far (bias correction uses it).
	StepCount int64

	expAvg, expAvgSq []*Tensor
	master           []*Tensor // nil where the parameter is float32 or float64
}

// NewAdamW returns an optimizer over params with PyTorch's defaults for the
// betas and eps (0.9, 0.999, 1e-8).
func NewAdamW(params []*Tensor, lr, weightDecay float64) *AdamW {
	o := newAdamW(params, lr, weightDecay)
	o.allocState()
	return o
}

// newAdamW is the optimizer over params with its state slices made but no
// state tensor allocated yet (allocState does that).
func newAdamW(params []*Tensor, lr, weightDecay float64) *AdamW {
	o := &AdamW{Params: params, LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
	o.expAvg = make([]*Tensor, len(params))
	o.expAvgSq = make([]*Tensor, len(params))
	o.master = make([]*Tensor, len(params))
	return o
}

// allocState allocates, in parameter order, each parameter's float32 master
// copy (bf16 and f16 parameters only) and its zero moments; a failed
// allocation panics with the tensors made before it left in place.
func (o *AdamW) allocState() {
	for i, p := range o.Params {
		dt := p.DType()
		if dt == BFloat16 || dt == Float16 {
			dt = Float32
			NoGrad(func() { o.master[i] = p.To(Float32) })
		}
		o.expAvg[i] = Zeros(p.Shape(), dt, p.Device())
		o.expAvgSq[i] = Zeros(p.Shape(), dt, p.Device())
	}
}

// Step applies one update from the parameters' current gradients.
func (o *AdamW) Step() {
	if len(o.Params) == 0 {
		return
	}
	o.StepCount++
	ps := handles("AdamW.Step", o.Params)
	ms := handles("AdamW.Step", o.expAvg)
	vs := handles("AdamW.Step", o.expAvgSq)
	ws := make([]C.ares_tensor, len(ps))
	for i, w := range o.master {
		if w != nil {
			ws[i] = w.handle("AdamW.Step")
		}
	}
	st := C.ares_adamw_step(&ps[0], &ws[0], &ms[0], &vs[0], C.int64_t(len(ps)), C.double(o.LR),
		C.double(o.Beta1), C.double(o.Beta2), C.double(o.Eps), C.double(o.WeightDecay), C.int64_t(o.StepCount))
	if st != nil {
		o.StepCount--
	}
	check("AdamW.Step", st)
}

// ZeroGrad drops the gradients of the parameters.
func (o *AdamW) ZeroGrad() { ZeroGrad(o.Params) }

// State returns the moment tensors and master weights, named by parameter
// index, for checkpointing. The tensors stay owned by the optimizer.
func (o *AdamW) State() map[string]*Tensor {
	m := make(map[string]*Tensor, 3*len(o.Params))
	for i := range o.Params {
		m[fmt.Sprintf("%d.exp_avg", i)] = o.expAvg[i]
		m[fmt.Sprintf("%d.exp_avg_sq", i)] = o.expAvgSq[i]
		if o.master[i] != nil {
			m[fmt.Sprintf("%d.master", i)] = o.master[i]
		}
	}
	return m
}

// Master returns the float32 master copy of parameter i, or nil when the
// parameter is updated in its own dtype.
func (o *AdamW) Master(i int) *Tensor { return o.master[i] }

// Close frees the optimizer's state (not the parameters).
func (o *AdamW) Close() {
	for i := range o.expAvg {
		o.expAvg[i].Close()
		o.expAvgSq[i].Close()
		if o.master[i] != nil {
			o.master[i].Close()
		}
	}
}

// ClipGradNorm returns the global L2 norm of the parameters' gradients and,
// when maxNorm > 0 and the norm is finite and larger, scales the gradients so
// that their norm is maxNorm. A non-finite norm is returned unchanged so
// that the caller can skip the step.
func ClipGradNorm(params []*Tensor, maxNorm float64) float64 {
	if len(params) == 0 {
		return 0
	}
	hs := handles("ClipGradNorm", params)
	var total C.double
	check("ClipGradNorm", C.ares_clip_grad_norm(&hs[0], C.int64_t(len(hs)), C.double(maxNorm), &total))
	return float64(total)
}
