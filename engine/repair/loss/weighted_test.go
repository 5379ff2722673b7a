package loss

import (
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

// TestJointLoss composes L = L_policy + a·L_UL + b·L_BT + c·L_replay over a
// "policy" leaf (log-probs) and an "RM" leaf (scores) and checks the value,
// the per-term values and that each leaf gets the weighted sum of its terms'
// gradients.
func TestJointLoss(t *testing.T) {
	const a, b, c = 0.5, 2.0, 0.25
	logp := []float64{-1.2, -0.4, -2.0, -0.9}
	old := []float64{-1.0, -0.5, -2.0, -1.0}
	mask := []float64{1, 1, 1, 0}
	scores := []float64{0.3, -0.8} // r(y_safe), r(y_harm)
	s := torch.NewScope()
	defer s.Close()
	must(t, func() {
		m := f64(s, mask, 2, 2)
		terms := func(lp, sc *torch.Tensor) (pg, ul, bt, lm *torch.Tensor) {
			pg, _ = PolicyGradient(lp, f64(s, old, 2, 2), f64(s, []float64{1, -1}), m, PGOptions{ClipEps: 0.2, NormConst: 2})
			ul = Unlikelihood(lp, m, 2)
			bt = BradleyTerry(sc.Narrow(0, 0, 1), sc.Narrow(0, 1, 1), BTOptions{})
			lm = LanguageModel(lp, m, PerToken)
			return
		}
		// Reference: each term alone, its gradient, then the weighted sums.
		grads := func(w [4]float64) (lpG, scG []float64) {
			lp := f64(s, logp, 2, 2).SetRequiresGrad(true)
			sc := f64(s, scores).SetRequiresGrad(true)
			pg, ul, bt, lm := terms(lp, sc)
			pg.MulScalar(w[0]).Add(ul.MulScalar(w[1])).Add(bt.MulScalar(w[2])).Add(lm.MulScalar(w[3])).Backward()
			return torch.Data[float64](lp.Grad()), torch.Data[float64](sc.Grad())
		}
		wantLp, wantSc := grads([4]float64{1, a, b, c})

		lp := f64(s, logp, 2, 2).SetRequiresGrad(true)
		sc := f64(s, scores).SetRequiresGrad(true)
		pg, ul, bt, lm := terms(lp, sc)
		vals := map[string]float64{"policy": pg.Item(), "unlikelihood": ul.Item(), "bt": bt.Item(), "replay": lm.Item()}
		total, got := Weighted(
			Term{Name: "policy", Weight: 1, Loss: pg},
			Term{Name: "unlikelihood", Weight: a, Loss: ul},
			Term{Name: "bt", Weight: b, Loss: bt},
			Term{Name: "replay", Weight: c, Loss: lm},
			Term{Name: "kl", Weight: 0}, // off: skipped, no loss needed
		)
		want := vals["policy"] + a*vals["unlikelihood"] + b*vals["bt"] + c*vals["replay"]
		near(t, "total", total.Item(), want, 1e-12)
		near(t, "values[total]", got["total"], want, 1e-12)
		for k, v := range vals {
			near(t, "values["+k+"]", got[k], v, 1e-12)
		}
		if _, ok := got["kl"]; ok || len(got) != 5 {
			t.Fatalf("values = %v, want the 4 included terms and total", got)
		}
		total.Backward()
		nearAll(t, "policy grad", torch.Data[float64](lp.Grad()), wantLp, 1e-12)
		nearAll(t, "RM grad", torch.Data[float64](sc.Grad()), wantSc, 1e-12)
	})
	x := f32(s, []float64{1})
	for name, f := range map[string]func(){
		"duplicate":   func() { Weighted(Term{"a", 1, x}, Term{"a", 1, x}) },
		"reserved":    func() { Weighted(Term{"total", 1, x}) },
		"nil loss":    func() { Weighted(Term{"a", 1, nil}) },
		"no terms":    func() { Weighted(Term{"a", 0, nil}) },
		"not scalar":  func() { Weighted(Term{"a", 1, f32(s, []float64{1, 2})}) },
		"bad options": func() { BradleyTerry(x, x, BTOptions{CenterCoef: -1}) },
	} {
		if err := torch.Try(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestScopesAndLeaks: a loss leaves only its result alive (its intermediates
// are freed on return), in the caller's scope; unscoped inputs give an
// unscoped result; nothing is left alive afterwards, also after an error.
// (Scope.Len also counts the aliases a loss moved out of the caller's
// scope, so live native handles are what is counted.)
func TestScopesAndLeaks(t *testing.T) {
	base := torch.LiveTensors()
	s := torch.NewScope()
	var nIn int64
	must(t, func() {
		lp := f32(s, []float64{-1, -2, -0.5, -3}, 2, 2)
		old := f32(s, []float64{-1.1, -2, -0.4, -3}, 2, 2)
		m := f32(s, []float64{1, 1, 1, 0}, 2, 2)
		adv := f32(s, []float64{1, -1})
		nIn = torch.LiveTensors()
		pg, _ := PolicyGradient(lp, old, adv, m, PGOptions{ClipEps: 0.2, NormConst: 2})
		if pg.Scope() != s || torch.LiveTensors() != nIn+1 {
			t.Fatalf("after PolicyGradient %d live tensors, want %d", torch.LiveTensors(), nIn+1)
		}
		ul := Unlikelihood(lp, m, 2)
		kl := KL(lp, old, m, K3, 2)
		lm := LanguageModel(lp, m, PerToken)
		bt := BradleyTerry(adv, adv, BTOptions{Margin: 1, CenterCoef: 0.1})
		an := ScoreAnchor(adv, adv)
		pk := PreferenceKL(adv, adv)
		tot, _ := Weighted(Term{"pg", 1, pg}, Term{"ul", 1, ul}, Term{"kl", 1, kl}, Term{"lm", 1, lm}, Term{"bt", 1, bt}, Term{"an", 1, an}, Term{"pk", 1, pk})
		if got := torch.LiveTensors(); got != nIn+8 || tot.Scope() != s {
			t.Fatalf("%d live tensors, want %d (inputs + 8 results in the scope)", got, nIn+8)
		}
		// A failing call leaves nothing behind either.
		if err := torch.Try(func() { PolicyGradient(lp, old, f32(s, []float64{1, 2, 3}), m, PGOptions{ClipEps: 0.2, NormConst: 2}) }); err == nil {
			t.Fatal("bad adv accepted")
		}
		if got := torch.LiveTensors(); got != nIn+9 { // + the bad adv
			t.Fatalf("%d live tensors after a failed call, want %d", got, nIn+9)
		}
	})
	s.Close()
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after closing the scope, want %d", got, base)
	}

	// Unscoped inputs: the result is the caller's to close.
	lp := torch.FromSlice([]float32{-1, -2}, 1, 2)
	m := torch.FromSlice([]float32{1, 1}, 1, 2)
	var l *torch.Tensor
	must(t, func() { l = LanguageModel(lp, m, PerToken) })
	if l.Scope() != nil {
		t.Fatal("result of unscoped inputs is scoped")
	}
	near(t, "unscoped value", l.Item(), 1.5, 1e-6)
	l.Close()
	lp.Close()
	m.Close()
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after closing unscoped tensors, want %d", got, base)
	}
}
