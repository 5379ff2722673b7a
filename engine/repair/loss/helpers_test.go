package loss

import (
	"math"
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

// must runs f and fails the test with the torch error it panicked with.
func must(t *testing.T, f func()) {
	t.Helper()
	if err := torch.Try(f); err != nil {
		t.Fatal(err)
	}
}

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol*(1+math.Abs(want)) {
		t.Fatalf("%s = %.12g, want %.12g (tol %g)", name, got, want, tol)
	}
}

func nearAll(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if math.IsNaN(got[i]) || math.Abs(got[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %.12g, want %.12g (all %v, want %v)", name, i, got[i], want[i], got, want)
		}
	}
}

func logSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// f32 makes a scoped float32 tensor.
func f32(s *torch.Scope, data []float64, shape ...int64) *torch.Tensor {
	v := make([]float32, len(data))
	for i, x := range data {
		v[i] = float32(x)
	}
	return s.Own(torch.FromSlice(v, shape...))
}

// f64 makes a scoped float64 tensor.
func f64(s *torch.Scope, data []float64, shape ...int64) *torch.Tensor {
	return s.Own(torch.FromSlice(append([]float64(nil), data...), shape...))
}

// checkLoss checks the loss f(logp, mask) of lp and mask, both [2, 3],
// against want: within tol32 in float32, within 1e-12 in float64. It returns
// the float64 loss's gradient in logp.
func checkLoss(t *testing.T, s *torch.Scope, f func(logp, mask *torch.Tensor) *torch.Tensor, lp, mask []float64, want, tol32 float64) []float64 {
	t.Helper()
	near(t, "f32", f(f32(s, lp, 2, 3), f32(s, mask, 2, 3)).Item(), want, tol32)
	x := f64(s, lp, 2, 3).SetRequiresGrad(true)
	l := f(x, f64(s, mask, 2, 3))
	near(t, "f64", l.Item(), want, 1e-12)
	l.Backward()
	return torch.Data[float64](x.Grad())
}

// gradCheck compares the autograd gradient of the scalar fn(x) in x with
// central finite differences, both in float64.
func gradCheck(t *testing.T, name string, x []float64, shape []int64, fn func(s *torch.Scope, x *torch.Tensor) *torch.Tensor) {
	t.Helper()
	eval := func(v []float64) float64 {
		s := torch.NewScope()
		defer s.Close()
		var out float64
		must(t, func() { out = fn(s, f64(s, v, shape...)).Item() })
		return out
	}
	s := torch.NewScope()
	defer s.Close()
	var got []float64
	must(t, func() {
		xt := f64(s, x, shape...).SetRequiresGrad(true)
		fn(s, xt).Backward()
		g := xt.Grad()
		if g == nil {
			t.Fatalf("%s: no gradient", name)
		}
		got = torch.Data[float64](g)
	})
	const h = 1e-6
	want := make([]float64, len(x))
	for i := range x {
		p := append([]float64(nil), x...)
		p[i] += h
		up := eval(p)
		p[i] -= 2 * h
		want[i] = (up - eval(p)) / (2 * h)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-6+1e-5*math.Abs(want[i]) {
			t.Fatalf("%s: d/dx[%d] = %.10g, finite difference %.10g (all %v vs %v)", name, i, got[i], want[i], got, want)
		}
	}
}
