package torch

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestInvalidCallsReturnErrors makes invalid calls of every kind and checks
// that each one comes back as a *Error naming the op and the problem, and
// that the process keeps running.
func TestInvalidCallsReturnErrors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	f := func(shape ...int64) *Tensor { return s.Own(Zeros(shape, Float32, CPU)) }
	i64 := func(v ...int64) *Tensor { return s.Own(FromSlice(v)) }
	closed := Zeros([]int64{2}, Float32, CPU)
	closed.Close()
	closedGen := NewGenerator(1, CPU)
	closedGen.Close()
	var nilT *Tensor

	cases := []struct {
		name, op, problem string // problem: a substring the message must contain
		call              func()
	}{
		// shape mismatches
		{"matmul inner dims", "MatMul", "cannot be multiplied", func() { f(2, 3).MatMul(f(4, 5)) }},
		{"matmul 0-d", "MatMul", "", func() { s.Own(Scalar(float32(1))).MatMul(f(2)) }},
		{"add broadcast", "Add", "must match", func() { f(2, 3).Add(f(4)) }},
		{"sub broadcast", "Sub", "must match", func() { f(3, 2).Sub(f(3, 3)) }},
		{"mul broadcast", "Mul", "must match", func() { f(5).Mul(f(6)) }},
		{"div broadcast", "Div", "must match", func() { f(2, 2).Div(f(3, 1, 3)) }},
		{"maximum broadcast", "Maximum", "must match", func() { f(2).Maximum(f(3)) }},
		{"where broadcast", "Where", "", func() { Where(f(2).GtScalar(0), f(3), f(2)) }},
		{"linear in features", "Linear", "", func() { Linear(f(2, 3), f(4, 5), nil) }},
		{"linear bias", "Linear", "", func() { Linear(f(2, 3), f(4, 3), f(7)) }},
		{"reshape numel", "Reshape", "invalid for input of size", func() { f(2, 3).Reshape(4, 2) }},
		{"reshape two -1", "Reshape", "only one dimension can be inferred", func() { f(6).Reshape(-1, -1) }},
		{"expand", "Expand", "", func() { f(2, 3).Expand(4, 3) }},
		{"permute length", "Permute", "", func() { f(2, 3).Permute(0) }},
		{"permute repeat", "Permute", "duplicate dims", func() { f(2, 3).Permute(0, 0) }},
		{"cat shapes", "Cat", "", func() { Cat([]*Tensor{f(2, 3), f(2, 4)}, 0) }},
		{"stack shapes", "Stack", "", func() { Stack([]*Tensor{f(2), f(3)}, 0) }},
		{"cat empty", "Cat", "at least one", func() { Cat(nil, 0) }},
		{"layer norm weight", "LayerNorm", "", func() { LayerNorm(f(2, 4), f(3), nil, 1e-5) }},
		{"rms norm weight", "RMSNorm", "", func() { RMSNorm(f(2, 4), f(3), 1e-6) }},
		{"attention dims", "Attention", "", func() { Attention(f(1, 2, 3), f(1, 4, 5), f(1, 4, 5), nil, false, 0) }},
		{"cross entropy batch", "CrossEntropy", "", func() { CrossEntropy(f(3, 5), i64(1, 2)) }},
		{"masked fill mask shape", "MaskedFill", "", func() { f(2, 3).MaskedFill(f(4).GtScalar(0), 1) }},
		{"copy into shape", "CopyInto", "", func() { f(2, 3).CopyInto(1, 0, f(3, 1)) }},
		{"copy into range", "CopyInto", "", func() { f(2, 3).CopyInto(1, 2, f(2, 2)) }},
		{"backward non-scalar", "Backward", "scalar outputs", func() { f(3).SetRequiresGrad(true).MulScalar(2).Backward() }},
		{"backward no grad", "Backward", "does not require grad", func() { f(1).Sum().Backward() }},
		// wrong dtypes
		{"embedding float ids", "Embedding", "", func() { Embedding(f(4, 3), f(2)) }},
		{"gather float index", "Gather", "", func() { f(2, 3).Gather(1, f(2, 3)) }},
		{"index select float", "IndexSelect", "", func() { f(3).IndexSelect(0, f(2)) }},
		{"masked fill float mask", "MaskedFill", "", func() { f(2).MaskedFill(f(2), 1) }},
		{"where float cond", "Where", "", func() { Where(f(2), f(2), f(2)) }},
		{"cross entropy float targets", "CrossEntropy", "", func() { CrossEntropy(f(3, 5), f(3)) }},
		{"requires grad on int", "SetRequiresGrad", "floating point", func() { i64(1, 2).SetRequiresGrad(true) }},
		{"multinomial int", "Multinomial", "", func() { i64(1, 2).Multinomial(1, true, nil) }},
		{"data dtype", "Data", "asked for", func() { Data[int64](f(2)) }},
		{"softmax on bool", "Softmax", "", func() { f(2).GtScalar(0).Softmax(0) }},
		{"from bytes size", "FromBytes", "bytes", func() { FromBytes(make([]byte, 7), Float32, []int64{2}, CPU) }},
		{"from bytes negative", "FromBytes", "negative", func() { FromBytes(nil, Float32, []int64{-1}, CPU) }},
		{"bad dtype code", "Full", "unknown dtype", func() { Full([]int64{1}, 0, DType(42), CPU) }},
		{"copy to size", "CopyTo", "bytes", func() { f(2).CopyTo(make([]byte, 3)) }},
		// bad devices
		{"bad device kind", "Full", "unknown device kind", func() { Full([]int64{1}, 0, Float32, Device{Kind: 9}) }},
		{"negative device index", "Full", "negative", func() { Full([]int64{1}, 0, Float32, Device{Kind: KindCPU, Index: -5}) }},
		{"device name", "CUDADeviceName", "", func() { CUDADeviceName(99) }},
		// out-of-range indices and dims
		{"embedding id range", "Embedding", "index out of range", func() { Embedding(f(4, 3), i64(9)) }},
		{"index select range", "IndexSelect", "out of range", func() { f(3).IndexSelect(0, i64(5)) }},
		{"gather range", "Gather", "out of bounds", func() { f(2, 3).Gather(1, s.Own(FromSlice([]int64{0, 7}, 2, 1))) }},
		{"narrow range", "Narrow", "exceeds dimension size", func() { f(4).Narrow(0, 2, 5) }},
		{"transpose dim", "Transpose", "out of range", func() { f(2, 3).Transpose(0, 5) }},
		{"sum dim", "Sum", "out of range", func() { f(2, 3).Sum(3) }},
		{"softmax dim", "Softmax", "out of range", func() { f(2).Softmax(4) }},
		{"squeeze dim", "Squeeze", "out of range", func() { f(2).Squeeze(3) }},
		{"unsqueeze dim", "Unsqueeze", "out of range", func() { f(2).Unsqueeze(5) }},
		{"topk k", "TopK", "out of range", func() { f(3).TopK(5, 0, true) }},
		{"argmax dim", "ArgMax", "out of range", func() { f(2).ArgMax(2) }},
		{"cross entropy target", "CrossEntropy", "out of bounds", func() { CrossEntropy(f(2, 3), i64(0, 3)) }},
		{"size dim", "Size", "out of range", func() { f(2).Size(3) }},
		{"logsumexp no dims", "LogSumExp", "at least one dimension", func() { f(2).LogSumExp() }},
		{"clamp neither bound", "Clamp", "minimum or a maximum", func() { f(2).Clamp(math.Inf(-1), math.Inf(1)) }},
		{"item of many", "Item", "", func() { f(2).Item() }},
		{"threads", "SetNumThreads", "positive", func() {
			if err := SetNumThreads(0); err != nil {
				panic(err)
			}
		}},
		// use after close, nil handles
		{"closed add", "Add", "closed", func() { closed.Add(f(2)) }},
		{"closed operand", "Add", "closed", func() { f(2).Add(closed) }},
		{"closed shape", "Shape", "closed", func() { closed.Shape() }},
		{"closed bytes", "CopyTo", "closed", func() { closed.CopyTo(nil) }},
		{"closed backward", "Backward", "closed", func() { closed.Backward() }},
		{"closed grad", "Grad", "closed", func() { closed.Grad() }},
		{"closed in cat", "Cat", "closed", func() { Cat([]*Tensor{f(2), closed}, 0) }},
		{"closed generator", "Randn", "closed generator", func() { Randn([]int64{2}, Float32, CPU, closedGen) }},
		{"nil tensor", "Exp", "nil tensor", func() { nilT.Exp() }},
		{"nil operand", "MatMul", "nil tensor", func() { f(2, 2).MatMul(nil) }},
		{"adamw state shape", "AdamW.Step", "does not match", func() {
			p := s.Own(Zeros([]int64{3}, Float32, CPU)).SetRequiresGrad(true)
			p.MulScalar(2).Sum().Backward()
			o := NewAdamW([]*Tensor{p}, 0.1, 0)
			defer o.Close()
			o.expAvg[0].Close()
			o.expAvg[0] = Zeros([]int64{4}, Float32, CPU)
			o.Step()
		}},
	}
	// Asking for CUDA is only invalid where there is none; with a GPU these
	// two calls succeed, so they are not in the table there.
	if !CUDAAvailable() {
		cases = append(cases, []struct {
			name, op, problem string
			call              func()
		}{
			{"cuda without cuda", "Zeros", "CUDA", func() { Zeros([]int64{1}, Float32, CUDA(0)) }},
			{"generator on cuda", "NewGenerator", "CUDA", func() { NewGenerator(1, CUDA(0)) }},
		}...)
	}
	if len(cases) < 50 {
		t.Fatalf("only %d invalid calls", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Try(c.call)
			if err == nil {
				t.Fatalf("%s: no error", c.name)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("%s: error %T %v is not a *torch.Error", c.name, err, err)
			}
			if te.Op != c.op {
				t.Errorf("%s: op %q, want %q (%v)", c.name, te.Op, c.op, err)
			}
			if !strings.HasPrefix(err.Error(), "torch."+c.op+": ") || len(te.Msg) < 8 {
				t.Errorf("%s: message does not name the op and a problem: %q", c.name, err)
			}
			if c.problem != "" && !strings.Contains(err.Error(), c.problem) {
				t.Errorf("%s: message %q does not mention %q", c.name, err, c.problem)
			}
			if strings.Contains(te.Msg, "Exception raised from") {
				t.Errorf("%s: message carries a C++ backtrace: %q", c.name, te.Msg)
			}
		})
	}
	t.Logf("%d invalid calls, each a torch.Error", len(cases))
}

func TestTryPassesOtherPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "not a torch error" {
			t.Fatalf("recovered %v", r)
		}
	}()
	_ = Try(func() { panic("not a torch error") })
}

func TestIsOOM(t *testing.T) {
	if !IsOOM(&Error{Op: "x", Code: CodeOOM, Msg: "out of memory"}) || IsOOM(errors.New("x")) {
		t.Fatal("IsOOM")
	}
	// A 2^50-element allocation fails with an error, not an abort.
	err := Try(func() { Zeros([]int64{1 << 25, 1 << 25}, Float32, CPU) })
	if err == nil {
		t.Fatal("expected allocation failure")
	}
	// libtorch's CPU allocator reports it as c10::Error "DefaultCPUAllocator:
	// can't allocate memory", which the shim maps to the OOM code: a caller
	// must be able to tell memory from a bug.
	if !IsOOM(err) {
		t.Fatalf("huge allocation failed as %v, not as out-of-memory", err)
	}
}
