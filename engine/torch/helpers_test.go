package torch

import (
	"math"
	"testing"
)

// devices lists the devices the tests run on: the CPU always, and CUDA:0
// when libtorch has CUDA and a GPU is visible.
func devices(t *testing.T) []Device {
	devs := []Device{CPU}
	if CUDAAvailable() {
		devs = append(devs, CUDA(0))
	} else {
		t.Log("no CUDA device (shim built without CUDA or no GPU): CUDA variants skipped")
	}
	return devs
}

// must runs f and fails the test with the torch error it panicked with.
func must(t *testing.T, f func()) {
	t.Helper()
	if err := Try(f); err != nil {
		t.Fatal(err)
	}
}

// wantInvalid fails the test unless f panics with an invalid-argument *Error.
func wantInvalid(t *testing.T, name string, f func()) {
	t.Helper()
	err := Try(f)
	if te, ok := err.(*Error); !ok || te.Code != CodeInvalid {
		t.Errorf("%s: got %v, want an invalid-argument error", name, err)
	}
}

// closeTo compares got with want using |got-want| <= atol + rtol*|want|.
func closeTo(t *testing.T, name string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), want[i]
		if math.IsNaN(w) && math.IsNaN(g) {
			continue
		}
		if math.IsInf(w, 0) && g == w {
			continue
		}
		if math.Abs(g-w) > atol+rtol*math.Abs(w) {
			t.Fatalf("%s[%d] = %v, want %v (all: %v)", name, i, g, w, got)
		}
	}
}

func f64s(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

func mapf(xs []float32, f func(float64) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(float64(x))
	}
	return out
}

// lcg is a tiny deterministic generator for test inputs, independent of libtorch.
type lcg uint64

func (r *lcg) float() float32 {
	*r = *r*6364136223846793005 + 1442695040888963407
	return float32(int64(*r>>33)%20000-10000) / 5000 // in [-2, 2)
}

func (r *lcg) floats(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = r.float()
	}
	return out
}
