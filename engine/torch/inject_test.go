package torch

import (
	"errors"
	"testing"
)

// TestInjectFailure: an armed fault fails exactly the n-th native call, as
// an out-of-memory *Error, once; orphaned results are counted.
func TestInjectFailure(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := s.Own(Ones([]int64{2, 3}, Float32, CPU))
	InjectFailure(2)
	err := Try(func() {
		y := x.MulScalar(2) // call 1
		y.Add(x)            // call 2: fails
		t.Error("the fault did not stop the code")
	})
	fired, op := DisarmFailure()
	var te *Error
	if !fired || op != "Add" || !errors.As(err, &te) || !IsOOM(err) {
		t.Fatalf("fired %v in %q, error %v", fired, op, err)
	}
	if InjectedOrphans() != 1 {
		t.Fatalf("orphans %d, want 1 (the result of Add)", InjectedOrphans())
	}
	// Disarmed: nothing fails any more.
	if err := Try(func() { x.Add(x).Sum().Item() }); err != nil {
		t.Fatal(err)
	}
	// statusErr returns the injected error instead of panicking.
	n := NumThreads()
	InjectFailure(1)
	err = SetNumThreads(n)
	if fired, _ := DisarmFailure(); !fired || !IsOOM(err) {
		t.Fatalf("statusErr: fired %v, error %v", fired, err)
	}
}

// TestTryNewAdamWFaults: a failure at any allocation of the optimizer state
// is an error and frees the state made before it.
func TestTryNewAdamWFaults(t *testing.T) {
	ps := []*Tensor{Ones([]int64{3, 2}, BFloat16, CPU), Zeros([]int64{4}, Float32, CPU), Ones([]int64{2}, Float16, CPU)}
	defer func() {
		for _, p := range ps {
			p.Close()
		}
	}()
	for _, p := range ps {
		p.DType() // the shapes and dtypes are read once; not counted below
	}
	c0 := NativeCalls()
	o, err := TryNewAdamW(ps, 1e-3, 0)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	calls := NativeCalls() - c0
	for k := int64(1); k <= calls; k++ {
		base := LiveTensors()
		InjectFailure(k)
		o, err := TryNewAdamW(ps, 1e-3, 0)
		fired, op := DisarmFailure()
		if !fired || o != nil || !IsOOM(err) {
			t.Fatalf("call %d (%s): fired %v, optimizer %v, error %v", k, op, fired, o != nil, err)
		}
		if leak := LiveTensors() - base - InjectedOrphans(); leak != 0 {
			t.Fatalf("call %d (%s): %d tensors leaked", k, op, leak)
		}
	}
}
