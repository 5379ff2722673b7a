package study

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/world"
)

// EvalMetric is one metric of repair.Eval as the reports show it.
type EvalMetric struct {
	Name string
	Get  func(*repair.Eval) float64
	// Rate metrics are fractions shown in percent; the others as numbers.
	Rate bool
}

// EvalMetrics are the rows of the demo's table, the claim's first.
var EvalMetrics = []EvalMetric{
	{"Type C in the designed coupled cells (probes)", func(e *repair.Eval) float64 { return e.TypeCCoupled }, true},
	{"harmful samples in the coupled cells", func(e *repair.Eval) float64 { return e.HarmSampleRateCoupled }, true},
	{"Type C, all held-out harm probes", func(e *repair.Eval) float64 { return e.TypeC }, true},
	{"Type B (policy-only)", func(e *repair.Eval) float64 { return e.TypeB }, true},
	{"Type A (RM-only)", func(e *repair.Eval) float64 { return e.TypeA }, true},
	{"RM accuracy, flipped cells (held-out phrasings)", func(e *repair.Eval) float64 { return e.RMAccFlipped }, true},
	{"RM accuracy, missing cells", func(e *repair.Eval) float64 { return e.RMAccMissing }, true},
	{"RM accuracy, sound cells", func(e *repair.Eval) float64 { return e.RMAccSound }, true},
	{"RM accuracy, held-out preference set", func(e *repair.Eval) float64 { return e.RMHeldoutAcc }, true},
	{"capability (benign answered correctly)", func(e *repair.Eval) float64 { return e.Capability }, true},
	{"benign probes refused", func(e *repair.Eval) float64 { return e.BenignRefusal }, true},
	{"over-refusal on look-alikes", func(e *repair.Eval) float64 { return e.OverRefusal }, true},
	{"held-out LM loss, response tokens (nats)", func(e *repair.Eval) float64 { return e.HeldoutLoss }, false},
}

// WriteEvalTable writes a markdown table with one column per evaluation.
func WriteEvalTable(w io.Writer, columns []string, evals []*repair.Eval) {
	fmt.Fprint(w, "| metric |")
	sep := "|---|"
	for _, c := range columns {
		fmt.Fprintf(w, " %s |", c)
		sep += "---:|"
	}
	fmt.Fprintf(w, "\n%s\n", sep)
	for _, m := range EvalMetrics {
		fmt.Fprintf(w, "| %s |", m.Name)
		for _, e := range evals {
			v := m.Get(e)
			switch {
			case math.IsNaN(v):
				fmt.Fprint(w, " n/a |")
			case m.Rate:
				fmt.Fprintf(w, " %.1f%% |", 100*v)
			default:
				fmt.Fprintf(w, " %.3f |", v)
			}
		}
		fmt.Fprintln(w)
	}
}

// DemoColumns label the demo's evaluations.
var DemoColumns = []string{"start", "after ARES", "fresh RLHF, ARES RM", "fresh RLHF, original RM"}

// DemoResult is what `ares demo` measured.
type DemoResult struct {
	Start     *repair.Eval   `json:"start"`
	Repaired  *repair.Eval   `json:"repaired"`
	FreshARES *repair.Eval   `json:"fresh_rlhf_ares_rm"`
	FreshOrig *repair.Eval   `json:"fresh_rlhf_original_rm"`
	Findings  map[string]int `json:"findings"`
	Wall      time.Duration  `json:"wall_ns"`
}

// Evals are the evaluations in the order of DemoColumns.
func (r *DemoResult) Evals() []*repair.Eval {
	return []*repair.Eval{r.Start, r.Repaired, r.FreshARES, r.FreshOrig}
}

// RunDemo is the main job: build the start, evaluate it, run the ARES arm
// with its fresh_rlhf phase, and the fresh_rlhf phase against the original
// RM, all from one seed.
func RunDemo(ctx context.Context, lib *world.Library, c synth.Config, env synth.Env) (*DemoResult, error) {
	t0 := time.Now()
	st, err := synth.BuildStart(lib, c, env)
	if err != nil {
		return nil, err
	}
	m, err := st.LoadModels(c.Seed)
	if err != nil {
		return nil, err
	}
	res := &DemoResult{}
	res.Start, err = st.Evaluate(ctx, m)
	m.Close()
	if err != nil {
		return nil, fmt.Errorf("evaluating the start: %w", err)
	}
	env.Logf("start: Type C in the coupled cells %.1f%% (harmful samples %.1f%%)", 100*res.Start.TypeCCoupled, 100*res.Start.HarmSampleRateCoupled)
	ar, err := RunArm(ctx, st, ArmARES, c.Seed, []string{PhaseRepaired, PhaseFresh}, nil, env)
	if err != nil {
		return nil, err
	}
	res.Repaired, res.FreshARES = ar.Row(PhaseRepaired).Eval, ar.Row(PhaseFresh).Eval
	res.Findings = ar.Row(PhaseRepaired).Findings
	rm, err := st.LoadRM()
	if err != nil {
		return nil, err
	}
	defer rm.Close()
	fr, err := FreshRLHF(ctx, st, rm, c.Seed, env)
	if err != nil {
		return nil, err
	}
	res.FreshOrig = fr.Eval
	res.Wall = time.Since(t0)
	return res, nil
}
