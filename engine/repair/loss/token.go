package loss

import (
	"fmt"
	"math"
	"strings"

	"github.com/ares-rlhf/ares/engine/torch"
)

// ULMinComplement is the smallest 1 − p_t the unlikelihood loss evaluates
// exactly (Welleck et al.'s reference code clamps 1 − p at 1e-5 as well).
// Above p_t = 1 − ULMinComplement the loss continues linearly in logp with
// the slope it has there, so that the most confident harmful tokens still
// get a (large, finite) gradient instead of none.
const ULMinComplement = 1e-5

// Unlikelihood is the token-level unlikelihood loss (Welleck et al. 2019,
// "Neural Text Generation with Unlikelihood Training") on the tokens of
// harmful responses: with p_t = exp(logp_t),
//
//	L = −Σ_{i,t} mask_it · log(1 − p_it) / (N · normConst)
//
// computed as −log(1 − exp(logp)) without cancellation near p = 1 (see
// log1mExp) with logp clamped at c = log(1 − ULMinComplement) and extended
// linearly above c (value and slope continuous), so it stays finite at p = 1. normConst is a constant
// token normaliser as in PolicyGradient (e.g. the maximum length); it must be
// > 0. Minimising it lowers the probability of every masked token.
func Unlikelihood(logp, mask *torch.Tensor, normConst float64) *torch.Tensor {
	f := newFrame("loss.Unlikelihood", logp, mask)
	defer f.close()
	n, _ := f.perToken(logp, map[string]*torch.Tensor{"mask": mask})
	f.positive("normConst", normConst)
	m := f.const_(mask)
	// Padding gets logp = −1 (finite, far from the clamp) and mask 0.
	lp := f.in(logp).MaskedFill(m.EqScalar(0), -1)
	c := math.Log1p(-ULMinComplement)
	slope := (1 - ULMinComplement) / ULMinComplement // d/dx −log(1−eˣ) at x = c
	lpc := lp.Clamp(math.Inf(-1), c)
	perTok := log1mExp(lpc, c).Neg().Add(lp.Sub(lpc).MulScalar(slope))
	return f.done(perTok.Mul(m).Sum().DivScalar(float64(n) * normConst))
}

// Estimator names a per-token estimator of KL(π ‖ π_ref) on samples from π
// (Schulman 2020, "Approximating KL Divergence"), with
// δ = logp − refLogp = log π/π_ref:
//
//	k1 = δ                    unbiased, can be negative, high variance
//	k2 = ½ δ²                 biased (low for close policies), ≥ 0
//	k3 = exp(−δ) − (−δ) − 1   unbiased, ≥ 0, low variance (GRPO's choice)
//
// As a loss, differentiated only through logp (the samples held fixed), they
// differ in what their gradient estimates: k1's expected gradient is 0 (its
// pathwise part E_π[∇log π] vanishes), k2's is ∇KL(π ‖ π_ref) exactly, and
// k3's is ∇KL(π_ref ‖ π), the reverse KL. Use k1 as a reward penalty or a
// metric, and k2 (or k3, for the reverse direction) as a loss.
type Estimator string

const (
	K1 Estimator = "k1"
	K2 Estimator = "k2"
	K3 Estimator = "k3"
)

// ParseEstimator accepts "k1", "k2" or "k3" (case and surrounding space ignored).
func ParseEstimator(s string) (Estimator, error) {
	switch e := Estimator(strings.ToLower(strings.TrimSpace(s))); e {
	case K1, K2, K3:
		return e, nil
	}
	return "", fmt.Errorf("loss: unknown KL estimator %q (want k1, k2 or k3)", s)
}

// KL is the KL penalty to the reference policy:
//
//	L = Σ_{i,t} mask_it · k(logp_it − refLogp_it) / (N · normConst)
//
// with k the estimator est (see Estimator). refLogp is the frozen reference
// policy's log-probability of the same tokens (detached); normConst > 0 is the
// constant token normaliser of PolicyGradient, so that the two terms weigh
// tokens alike.
func KL(logp, refLogp, mask *torch.Tensor, est Estimator, normConst float64) *torch.Tensor {
	f := newFrame("loss.KL", logp, refLogp, mask)
	defer f.close()
	n, _ := f.perToken(logp, map[string]*torch.Tensor{"refLogp": refLogp, "mask": mask})
	f.positive("normConst", normConst)
	m := f.const_(mask)
	d := f.in(logp).Sub(f.const_(refLogp)).MaskedFill(m.EqScalar(0), 0)
	var k *torch.Tensor
	switch est {
	case K1:
		k = d
	case K2:
		k = d.Square().MulScalar(0.5)
	case K3:
		k = k3(d)
	default:
		f.fail("unknown estimator %q", est)
	}
	return f.done(k.Mul(m).Sum().DivScalar(float64(n) * normConst))
}

// LMNorm is how LanguageModel normalises the summed negative log-likelihood
// S = −Σ_{i,t} mask_it · logp_it. It is a named choice because the callers
// ask different questions: the mean of this batch (PerToken), a share of a
// global batch's mean that the ranks average exactly (GlobalTokens), or a sum
// that the caller accumulates over batches and divides itself (Summed).
type LMNorm struct {
	kind                 lmNormKind
	tokens, batch, share int
}

type lmNormKind int

const (
	lmPerToken lmNormKind = iota + 1
	lmSummed
	lmGlobal
)

var (
	// PerToken divides S by Σ mask of this batch (clamped at 1e-8, so that
	// an all-zero mask gives 0): the mean NLL per counted token.
	PerToken = LMNorm{kind: lmPerToken}
	// Summed leaves S as it is, for a caller that adds the sums of several
	// batches and divides by their total token count (a held-out NLL).
	Summed = LMNorm{kind: lmSummed}
)

// GlobalTokens multiplies S by (batch / share) / tokens: the call sees share
// of the global batch's batch sequences, whose counted tokens number tokens
// (> 0). Averaging the ranks' losses, and so their gradients, gives exactly
// the global batch's mean per token whatever the lengths on each rank (a
// per-rank PerToken mean would weigh tokens differently).
func GlobalTokens(tokens, batch, share int) LMNorm {
	return LMNorm{kind: lmGlobal, tokens: tokens, batch: batch, share: share}
}

// LanguageModel is the language-model loss of the response tokens: the
// negative log-likelihood S = −Σ_{i,t} mask_it · logp_it, normalised as norm
// says (see LMNorm). It is the SFT loss, the replay term of policy repair and
// the held-out NLL of the evaluation, so that the three are one computation.
// The result is float32 for half-precision inputs (see the package doc).
func LanguageModel(logp, mask *torch.Tensor, norm LMNorm) *torch.Tensor {
	f := newFrame("loss.LanguageModel", logp, mask)
	defer f.close()
	f.perToken(logp, map[string]*torch.Tensor{"mask": mask})
	m := f.const_(mask)
	nll := f.in(logp).MaskedFill(m.EqScalar(0), 0).Mul(m).Sum().Neg()
	switch norm.kind {
	case lmPerToken:
		return f.done(nll.Div(m.Sum().Clamp(1e-8, math.Inf(1))))
	case lmSummed:
		return f.done(nll)
	case lmGlobal:
		f.positive("tokens", float64(norm.tokens))
		f.positive("share", float64(norm.share))
		f.positive("batch", float64(norm.batch))
		world := float64(norm.batch) / float64(norm.share)
		return f.done(nll.MulScalar(world / float64(norm.tokens)))
	}
	f.fail("no normalisation given (PerToken, Summed or GlobalTokens)")
	return nil
}

// k3 is exp(−δ) + δ − 1, computed without the cancellation of the direct
// formula near δ = 0 (in float32 it returns small negative values for
// |δ| ≲ 1e-3, and is off by 1e-5 relative at |δ| = 0.1): for |δ| < 0.5 it
// uses the Taylor series δ²·Σ_{n=0}^{10} uⁿ/(n+2)!, u = −δ, whose truncation
// error is below 1e-12 relative and which is ≥ 0 by construction.
func k3(d *torch.Tensor) *torch.Tensor {
	const r = 0.5
	direct := d.Neg().Exp().Add(d).SubScalar(1)
	// The series is evaluated on a clamped copy, so that its (unselected)
	// branch stays finite, and its gradient zero, for any δ.
	dc := d.Clamp(-r, r)
	series := dc.Square().Mul(horner(dc.Neg(), expTail(2, 10)))
	return torch.Where(d.Abs().LtScalar(r), series, direct)
}

// expTail returns the coefficients 1/(from+n)! for n = 0..terms, the Taylor
// coefficients of (eˣ − Σ_{k<from} xᵏ/k!)/x^from.
func expTail(from, terms int) []float64 {
	c := make([]float64, terms+1)
	f := 1.0
	for k := 2; k <= from; k++ {
		f *= float64(k)
	}
	for n := range c {
		if n > 0 {
			f *= float64(from + n)
		}
		c[n] = 1 / f
	}
	return c
}

// horner evaluates Σ_n c[n]·xⁿ.
func horner(x *torch.Tensor, c []float64) *torch.Tensor {
	p := x.MulScalar(c[len(c)-1]).AddScalar(c[len(c)-2])
	for n := len(c) - 3; n >= 0; n-- {
		p = p.Mul(x).AddScalar(c[n])
	}
	return p
}

// log1mExp is log(1 − eˣ) for x ≤ c < 0 (x is already clamped), accurate
// in float32 near x = 0 where log1p(−eˣ) cancels: for x > −0.5 it is
// log(−x) + log(S(x)) with S(x) = (eˣ − 1)/x = Σ_{n=0}^{12} xⁿ/(n+1)!
// (truncation error < 1e-13 relative), and log1p(−eˣ) below. This is the
// cancellation Mächler (2012, "Accurately Computing log(1 − exp(−|a|))")
// avoids with log(−expm1(x)); the op layer has no expm1, hence the series.
func log1mExp(x *torch.Tensor, c float64) *torch.Tensor {
	const r = 0.5
	direct := x.Exp().Neg().Log1p()
	xs := x.Clamp(-r, c) // finite and negative in the unselected branch too
	series := xs.Neg().Log().Add(horner(xs, expTail(1, 12)).Log())
	return torch.Where(x.GtScalar(-r), series, direct)
}
