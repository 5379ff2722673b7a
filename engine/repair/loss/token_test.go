package loss

import (
	"math"
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

func TestUnlikelihood(t *testing.T) {
	// [2, 3]: p = 0.1, 0.5, (padding, logp NaN) | 0.9, 1 (logp = 0), 0.3.
	lp := []float64{math.Log(0.1), math.Log(0.5), math.NaN(), math.Log(0.9), 0, math.Log(0.3)}
	mask := []float64{1, 1, 0, 1, 1, 1}
	const C = 3.0
	// At p = 1 the loss is continued linearly from p = 1 − ε, ε = 1e-5:
	// −log ε + (1−ε)/ε · (0 − log(1−ε)) = 11.512925 + 1.000000 (to 1e-6).
	eps := ULMinComplement
	atOne := -math.Log(eps) + (1-eps)/eps*(-math.Log1p(-eps))
	near(t, "value at p = 1 by hand", atOne, 12.512930, 1e-6)
	want := -(math.Log(0.9)+math.Log(0.5)+math.Log(0.1)+math.Log(0.7))/(2*C) + atOne/(2*C)
	s := torch.NewScope()
	defer s.Close()
	ul := func(x, m *torch.Tensor) *torch.Tensor { return Unlikelihood(x, m, C) }
	must(t, func() {
		got := checkLoss(t, s, ul, lp, mask, want, 1e-5)
		// d/dlogp −log(1 − p) = p/(1 − p); at p = 1 the slope at 1 − ε.
		g := []float64{0.1 / 0.9, 1, 0, 9, (1 - eps) / eps, 0.3 / 0.7}
		for i := range g {
			g[i] *= mask[i] / (2 * C)
		}
		nearAll(t, "grad", got, g, 1e-9)
	})
	// Finite differences, including the linear region (logp > log(1 − ε)).
	lp2 := []float64{-2.3, -0.7, -0.01, -3e-6, 1e-6, -5}
	gradCheck(t, "fd", lp2, []int64{2, 3}, func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return ul(x, f64(s, mask, 2, 3))
	})
	if err := torch.Try(func() { Unlikelihood(f32(s, lp, 2, 3), f32(s, mask, 2, 3), 0) }); err == nil {
		t.Fatal("normConst 0 accepted")
	}
}

func kRef(est Estimator, d float64) float64 {
	switch est {
	case K1:
		return d
	case K2:
		return d * d / 2
	}
	return math.Exp(-d) + d - 1
}

func TestKLValues(t *testing.T) {
	lp := []float64{-1.0, -2.5, -0.2, -0.7, math.Inf(-1), -3.0}
	ref := []float64{-1.5, -2.0, -0.2, -2.0, -1.0, -1.0}
	mask := []float64{1, 1, 1, 1, 0, 0.5}
	const C = 4.0
	s := torch.NewScope()
	defer s.Close()
	for _, est := range []Estimator{K1, K2, K3} {
		want := 0.0
		for i := range lp {
			if mask[i] != 0 {
				want += mask[i] * kRef(est, lp[i]-ref[i])
			}
		}
		want /= 2 * C
		must(t, func() {
			near(t, string(est)+" f32", KL(f32(s, lp, 2, 3), f32(s, ref, 2, 3), f32(s, mask, 2, 3), est, C).Item(), want, 1e-6)
			x := f64(s, lp, 2, 3).SetRequiresGrad(true)
			rt := f64(s, ref, 2, 3).SetRequiresGrad(true)
			l := KL(x, rt, f64(s, mask, 2, 3), est, C)
			near(t, string(est)+" f64", l.Item(), want, 1e-12)
			l.Backward()
			if rt.Grad() != nil {
				t.Fatalf("%s: gradient reached the reference log-probs", est)
			}
			g := torch.Data[float64](x.Grad())
			if g[4] != 0 {
				t.Fatalf("%s: padding token got gradient %v", est, g[4])
			}
		})
		fin := []float64{-1.0, -2.5, -0.23, -0.7, -4, -3.0} // includes |δ| < 0.1 (series branch)
		gradCheck(t, "fd "+string(est), fin, []int64{2, 3}, func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
			return KL(x, f64(s, ref, 2, 3), f64(s, mask, 2, 3), est, C)
		})
	}
}

// k3Exact is exp(−δ) + δ − 1 in float64 without cancellation: the Taylor
// series to high order for small δ, the direct formula elsewhere.
func k3Exact(d float64) float64 {
	if math.Abs(d) >= 0.5 {
		return math.Exp(-d) + d - 1
	}
	sum, term := 0.0, 1.0
	for n := 1; n < 40; n++ {
		term *= -d / float64(n)
		if n >= 2 {
			sum += term
		}
	}
	return sum
}

func TestK3NonNegativeAndAccurate(t *testing.T) {
	// Per token, in float32, from tiny δ (where exp(−δ) + δ − 1 cancels: the
	// direct formula gives negative values or 0 there) to large.
	deltas := []float64{0, 1e-7, -1e-7, 1e-5, -1e-5, 3e-4, -3e-4, 1e-3, -2e-3, 0.1, -0.1, 0.4999, -0.4999, 0.5, -0.5, 3, -3, 20, -20, 60}
	s := torch.NewScope()
	defer s.Close()
	must(t, func() {
		for _, d := range deltas {
			d32 := float64(float32(d))
			got := KL(f32(s, []float64{d}, 1, 1), f32(s, []float64{0}, 1, 1), f32(s, []float64{1}, 1, 1), K3, 1).Item()
			want := k3Exact(d32)
			if got < 0 || math.Abs(got-want) > 2e-6*want {
				t.Fatalf("k3(%g) = %.9g, want %.9g", d, got, want)
			}
		}
	})
}

func TestKLEstimatorsExpectation(t *testing.T) {
	// Exact expectations over a discrete π: with the mask set to the
	// probabilities π_k (N = 1, normConst = 1) the loss is E_π[k].
	theta := []float64{0.3, -1.0, 1.2, 0.0, -0.4}
	ref := []float64{0.25, 0.05, 0.3, 0.3, 0.1}
	K := len(theta)
	z := 0.0
	for _, v := range theta {
		z += math.Exp(v)
	}
	pi := make([]float64, K)
	logPi, logRef := make([]float64, K), make([]float64, K)
	kl := 0.0
	for k := range theta {
		pi[k] = math.Exp(theta[k]) / z
		logPi[k], logRef[k] = math.Log(pi[k]), math.Log(ref[k])
	}
	for k := range pi {
		kl += pi[k] * (logPi[k] - logRef[k])
	}
	s := torch.NewScope()
	defer s.Close()
	must(t, func() {
		ev := func(est Estimator) float64 {
			return KL(f64(s, logPi, 1, int64(K)), f64(s, logRef, 1, int64(K)), f64(s, pi, 1, int64(K)), est, 1).Item()
		}
		near(t, "E[k1] = KL", ev(K1), kl, 1e-12)
		near(t, "E[k3] = KL", ev(K3), kl, 1e-12)
		if b := ev(K2) - kl; math.Abs(b) < 1e-3 {
			t.Fatalf("k2 should be biased here: E[k2] − KL = %g", b)
		}

		// Expected gradients in the logits θ (samples held fixed): k1 → 0,
		// k2 → ∇KL(π‖ref) = π_j(log π_j/ref_j − KL), k3 → ∇KL(ref‖π) = π_j − ref_j.
		wantK2, wantK3 := make([]float64, K), make([]float64, K)
		for j := range pi {
			wantK2[j] = pi[j] * (logPi[j] - logRef[j] - kl)
			wantK3[j] = pi[j] - ref[j]
		}
		for _, c := range []struct {
			est  Estimator
			want []float64
		}{{K1, make([]float64, K)}, {K2, wantK2}, {K3, wantK3}} {
			th := f64(s, theta, 1, int64(K)).SetRequiresGrad(true)
			KL(th.LogSoftmax(1), f64(s, logRef, 1, int64(K)), f64(s, pi, 1, int64(K)), c.est, 1).Backward()
			nearAll(t, "E[∇"+string(c.est)+"]", torch.Data[float64](th.Grad()), c.want, 1e-12)
		}
	})
}

func TestParseEstimator(t *testing.T) {
	for in, want := range map[string]Estimator{"k1": K1, " K2 ": K2, "k3": K3} {
		got, err := ParseEstimator(in)
		if err != nil || got != want {
			t.Fatalf("ParseEstimator(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "k4", "kl"} {
		if _, err := ParseEstimator(bad); err == nil {
			t.Fatalf("ParseEstimator(%q) accepted", bad)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	x := f32(s, []float64{-1}, 1, 1)
	if err := torch.Try(func() { KL(x, x, x, Estimator("k4"), 1) }); err == nil {
		t.Fatal("unknown estimator accepted by KL")
	}
}

func TestLanguageModel(t *testing.T) {
	lp := []float64{-1, -2, -3, math.Inf(-1), -0.5, -4}
	mask := []float64{1, 1, 1, 0, 0.5, 1}
	want := (1 + 2 + 3 + 0.25 + 4) / 4.5
	s := torch.NewScope()
	defer s.Close()
	lm := func(x, m *torch.Tensor) *torch.Tensor { return LanguageModel(x, m, PerToken) }
	must(t, func() {
		got := checkLoss(t, s, lm, lp, mask, want, 1e-6)
		g := make([]float64, len(mask))
		for i := range g {
			g[i] = -mask[i] / 4.5
		}
		nearAll(t, "grad", got, g, 1e-12)

		y := f64(s, lp, 2, 3).SetRequiresGrad(true)
		z := lm(y, f64(s, make([]float64, 6), 2, 3))
		near(t, "all padding", z.Item(), 0, 0)
		z.Backward()
		nearAll(t, "all padding grad", torch.Data[float64](y.Grad()), make([]float64, 6), 0)
	})
	fin := []float64{-1, -2, -3, -7, -0.5, -4}
	gradCheck(t, "fd", fin, []int64{2, 3}, func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return lm(x, f64(s, mask, 2, 3))
	})
}

// TestLanguageModelNorms: Summed is the bare sum; GlobalTokens equals, bit
// for bit in value and gradient, the expression the SFT loss used before
// it went through LanguageModel (−Σ logp·mask · (batch/share)/tokens); a
// missing or non-positive normaliser is an error.
func TestLanguageModelNorms(t *testing.T) {
	lp := []float64{-1.25, -2.5, -0.125, -7.75, -0.5, -4}
	mask := []float64{1, 1, 0, 0, 1, 1}
	s := torch.NewScope()
	defer s.Close()
	must(t, func() {
		near(t, "summed", LanguageModel(f32(s, lp, 2, 3), f32(s, mask, 2, 3), Summed).Item(), 1.25+2.5+0.5+4, 0)
		x := f32(s, lp, 2, 3).SetRequiresGrad(true)
		y := f32(s, lp, 2, 3).SetRequiresGrad(true)
		m := f32(s, mask, 2, 3)
		got := LanguageModel(x, m, GlobalTokens(13, 8, 3))
		world := float64(8) / float64(3)
		want := y.Mul(m).Sum().Neg().MulScalar(world / float64(13))
		if got.Item() != want.Item() {
			t.Fatalf("GlobalTokens %v, the old expression %v", got.Item(), want.Item())
		}
		got.Backward()
		want.Backward()
		gx, gy := torch.Data[float32](x.Grad()), torch.Data[float32](y.Grad())
		for i := range gx {
			if gx[i] != gy[i] {
				t.Fatalf("GlobalTokens gradient %v, the old expression's %v", gx, gy)
			}
		}
	})
	for name, n := range map[string]LMNorm{"none": {}, "tokens 0": GlobalTokens(0, 4, 2), "share 0": GlobalTokens(3, 4, 0)} {
		if err := torch.Try(func() { LanguageModel(f32(s, lp, 2, 3), f32(s, mask, 2, 3), n) }); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestHalfPrecisionInputsAreComputedInFloat32(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	must(t, func() {
		// δ = 2^-10 (exact in bf16): direct k3 in bf16 would be 0 or worse.
		lp := s.Own(f32(s, []float64{-1 + 1.0/1024}, 1, 1).To(torch.BFloat16))
		ref := s.Own(f32(s, []float64{-1}, 1, 1).To(torch.BFloat16))
		m := f32(s, []float64{1}, 1, 1)
		l := KL(lp, ref, m, K3, 1)
		if l.DType() != torch.Float32 {
			t.Fatalf("KL of bf16 inputs is %v, want float32", l.DType())
		}
		d := 1.0 / 1024
		near(t, "k3 bf16", l.Item(), math.Exp(-d)+d-1, 1e-3)
	})
}
