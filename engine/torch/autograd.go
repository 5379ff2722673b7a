package torch

/*
#include "ares_torch.h"
*/
import "C"

import "runtime"

// SetRequiresGrad marks t as a leaf whose gradient autograd accumulates.
// It returns t.
func (t *Tensor) SetRequiresGrad(on bool) *Tensor {
	check("SetRequiresGrad", C.ares_set_requires_grad(t.handle("SetRequiresGrad"), bool32(on)))
	return t
}

// RequiresGrad reports whether autograd tracks t.
func (t *Tensor) RequiresGrad() bool {
	var r C.int32_t
	check("RequiresGrad", C.ares_requires_grad(t.handle("RequiresGrad"), &r))
	return r != 0
}

// Backward computes the gradients of the scalar t with respect to the leaves
// that require them, accumulating into their .grad and freeing the graph.
func (t *Tensor) Backward() {
	check("Backward", C.ares_backward(t.handle("Backward"), nil, 0))
}

// BackwardWith is Backward for a non-scalar t with the incoming gradient
// grad (same shape); retain keeps the graph for another backward pass.
func (t *Tensor) BackwardWith(grad *Tensor, retain bool) {
	check("Backward", C.ares_backward(t.handle("Backward"), grad.optHandle("Backward"), bool32(retain)))
}

// Grad returns t's accumulated gradient, or nil if it has none. The result
// shares the gradient's storage; it joins t's scope, or is owned by the
// caller when t is unscoped (a parameter).
func (t *Tensor) Grad() *Tensor {
	var out C.ares_tensor
	check("Grad", C.ares_grad(t.handle("Grad"), &out))
	if out == nil {
		return nil
	}
	return wrap(out, t)
}

// ZeroGrad drops the gradients of params (PyTorch's set_to_none).
func ZeroGrad(params []*Tensor) {
	if len(params) == 0 {
		return
	}
	hs := handles("ZeroGrad", params)
	check("ZeroGrad", C.ares_zero_grad(&hs[0], C.int64_t(len(hs))))
}

func handles(op string, ts []*Tensor) []C.ares_tensor {
	hs := make([]C.ares_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.handle(op)
	}
	return hs
}

// NoGrad runs f with autograd recording off. libtorch keeps that mode per OS
// thread, so the goroutine is locked to its thread for the duration;
// goroutines that f starts do not inherit the mode.
func NoGrad(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := C.int32_t(1)
	st := C.ares_set_grad_enabled(0, &prev)
	// The restore is deferred before the status is checked: a failure
	// reported after the mode changed must not leave the thread without
	// autograd.
	defer func() {
		// Restoring a mode cannot fail; free the status if it ever does.
		if st := C.ares_set_grad_enabled(prev, nil); st != nil {
			C.ares_status_free(st)
		}
	}()
	check("NoGrad", st)
	f()
}

// GradEnabled reports whether autograd records on the calling OS thread
// (false inside NoGrad).
func GradEnabled() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cur C.int32_t
	check("GradEnabled", C.ares_set_grad_enabled(-1, &cur))
	return cur != 0
}
