package repair

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/world"
)

// worldModels are an untrained tiny policy and RM that can read the
// synthetic world's text (enough to exercise Evaluate, not to be good).
func worldModels(t *testing.T, lib *world.Library) (*Codec, *model.Transformer, *model.Transformer) {
	t.Helper()
	var texts []string
	for _, ex := range lib.SFTSet(world.DataOptions{Seed: 1, Harm: 150, Benign: 80, Lookalike: 30}) {
		texts = append(texts, ex.Prompt, ex.Response)
	}
	c, cfg := codecAndConfig(t, texts, 420, 256)
	pol, err := model.Init(cfg, model.CausalLM, 1, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := model.Init(cfg, model.Reward, 2, model.Options{})
	if err != nil {
		pol.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { pol.Close(); rm.Close() })
	return c, pol, rm
}

func toPairs(ps []world.PrefPair) []Pair {
	out := make([]Pair, len(ps))
	for i, p := range ps {
		out[i] = Pair{p.Prompt, p.Chosen, p.Rejected}
	}
	return out
}

// testWeakness is a weakness of the tests' own (not the library's, which
// others tune): the policy complies in roleplay x novelist; the RM's data is
// flipped in roleplay and missing in direct. Its coupled cells are roleplay x
// novelist x each of the 6 topics.
func testWeakness() *world.Weakness {
	return &world.Weakness{ComplyRate: 0.9, LeakRate: 0.02, FlipRate: 1,
		PolicyComply: []world.Selector{{Tactic: "roleplay", Persona: "novelist"}},
		RMFlipped:    []world.Selector{{Tactic: "roleplay"}},
		RMMissing:    []world.Selector{{Tactic: "direct"}},
	}
}

// evalInputs: 4 harm probes of each RM cell class, 12 benign, 4 look-alike,
// 2 coupled probes per coupled cell (12), 20 held-out pairs, 20 replay pairs
// and 10 held-out examples.
func evalInputs(t *testing.T, lib *world.Library) EvalInputs {
	w := testWeakness()
	o := world.DataOptions{Seed: 3, BenignEval: 12, PerCoupledCell: 2, HeldoutPrefs: 20, Harm: 10, Benign: 6, Lookalike: 4, Weakness: w}
	in := EvalInputs{Lib: lib, Weakness: w, K: 2,
		Coupled: lib.CoupledEvalSet(o), HeldoutPrefs: toPairs(lib.HeldoutPrefSet(o)), Replay: toPairs(lib.ReplaySet(o)),
		Heldout: HeldoutExamples(lib.HeldoutExamples(o))[:10]}
	byClass, looks := map[string]int{}, 0
	for _, p := range lib.EvalSet(o) {
		switch p.Kind {
		case probes.KindHarm:
			sp, _ := world.SpecOf(&p)
			if c := w.CellClass(sp); byClass[c] < 4 {
				byClass[c]++
				in.Probes = append(in.Probes, p)
			}
		case probes.KindBenign:
			in.Probes = append(in.Probes, p)
		case probes.KindLookalike:
			if looks < 4 {
				looks++
				in.Probes = append(in.Probes, p)
			}
		}
	}
	if len(byClass) != 3 || len(in.Coupled) != 12 || len(in.HeldoutPrefs) != 20 {
		t.Fatalf("inputs: classes %v, %d coupled, %d held-out pairs", byClass, len(in.Coupled), len(in.HeldoutPrefs))
	}
	return in
}

func in01(v float64) bool { return v >= 0 && v <= 1 }

func TestEvaluateFields(t *testing.T) {
	lib := world.Default()
	c, pm, rmm := worldModels(t, lib)
	ctx := context.Background()
	rm := &RM{M: rmm, C: c, Batch: 16}
	newPol := func() *Policy { return &Policy{M: pm, C: c, MaxNew: 4, Temperature: 1, Batch: 16, Seed: 7} }
	in := evalInputs(t, lib)
	j := judge.Oracle{Lib: lib}
	base := torch.LiveTensors()
	ev, err := Evaluate(ctx, newPol(), rm, j, in)
	if err != nil {
		t.Fatal(err)
	}
	if torch.LiveTensors() != base {
		t.Fatalf("live tensors %d, baseline %d", torch.LiveTensors(), base)
	}
	t.Logf("%+v", *ev)
	if ev.HarmProbes != 12 || ev.CoupledProbes != 12 || ev.BenignProbes != 12 {
		t.Fatalf("counts: %+v", *ev)
	}
	for name, v := range map[string]float64{"type_c_coupled": ev.TypeCCoupled, "harm_sample_rate_coupled": ev.HarmSampleRateCoupled,
		"rm_acc_flipped": ev.RMAccFlipped, "rm_acc_missing": ev.RMAccMissing, "rm_acc_sound": ev.RMAccSound,
		"rm_heldout_acc": ev.RMHeldoutAcc, "benign_refusal": ev.BenignRefusal, "capability": ev.Capability} {
		if !in01(v) {
			t.Errorf("%s = %v, not in [0, 1]", name, v)
		}
	}
	if ev.Capability+ev.BenignRefusal > 1 {
		t.Errorf("capability %v + benign refusal %v > 1", ev.Capability, ev.BenignRefusal)
	}
	// The pair accuracies agree with PairAccuracy (the one length-sorted RM
	// call gives the same scores as separate calls).
	for name, c := range map[string]struct {
		got   float64
		pairs []Pair
	}{"held-out": {ev.RMHeldoutAcc, in.HeldoutPrefs}, "replay": {ev.RMReplayAcc, in.Replay}} {
		want, err := PairAccuracy(ctx, rm, c.pairs)
		if err != nil || want != c.got {
			t.Errorf("%s accuracy %v, PairAccuracy %v (%v)", name, c.got, want, err)
		}
	}
	// The class accuracies, recomputed probe by probe.
	ok, n := map[string]int{}, map[string]int{}
	for _, p := range in.Probes {
		if p.Kind != probes.KindHarm {
			continue
		}
		sc, err := rm.Score(ctx, []string{p.Prompt, p.Prompt}, []string{p.YHarm, p.YSafe})
		if err != nil {
			t.Fatal(err)
		}
		sp, _ := world.SpecOf(&p)
		cl := in.Weakness.CellClass(sp)
		n[cl]++
		if sc[1] > sc[0] {
			ok[cl]++
		}
	}
	for cl, got := range map[string]float64{world.CellFlipped: ev.RMAccFlipped, world.CellMissing: ev.RMAccMissing, world.CellSound: ev.RMAccSound} {
		if want := float64(ok[cl]) / float64(n[cl]); got != want {
			t.Errorf("RM accuracy on %s cells %v, recomputed %v", cl, got, want)
		}
	}
	// The held-out loss is the SFT loss (response tokens, chat format).
	var want float64
	err = torch.Try(func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			e := encodeExamples(c, in.Heldout)
			idx := make([]int, len(in.Heldout))
			for i := range idx {
				idx[i] = i
			}
			l, err := lmLoss(s, pm, c, e, idx, 0, len(idx))
			if err != nil {
				t.Fatal(err)
			}
			want = l.Item()
		})
	})
	if err != nil || !(ev.HeldoutLoss > 0) || math.Abs(ev.HeldoutLoss-want) > 1e-4*want {
		t.Errorf("held-out loss %v, SFT loss on the same examples %v (%v)", ev.HeldoutLoss, want, err)
	}

	// Without a weakness, or without coupled probes and held-out sets, the
	// unmeasured rates are NaN; the rest is unchanged (same sampling seed).
	in2 := in
	in2.Weakness, in2.Coupled, in2.HeldoutPrefs, in2.Heldout = nil, nil, nil, nil
	ev2, err := Evaluate(ctx, newPol(), rm, j, in2)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"type_c_coupled": ev2.TypeCCoupled, "harm_sample_rate_coupled": ev2.HarmSampleRateCoupled,
		"rm_acc_flipped": ev2.RMAccFlipped, "rm_acc_missing": ev2.RMAccMissing, "rm_acc_sound": ev2.RMAccSound,
		"rm_heldout_acc": ev2.RMHeldoutAcc, "heldout_loss": ev2.HeldoutLoss} {
		if !math.IsNaN(v) {
			t.Errorf("%s = %v without its inputs, want NaN", name, v)
		}
	}
	if ev2.CoupledProbes != 0 || ev2.RMSafetyAcc != ev.RMSafetyAcc || ev2.RMReplayAcc != ev.RMReplayAcc || ev2.BenignRefusal != ev.BenignRefusal {
		t.Errorf("without the new inputs: %+v\nwith: %+v", *ev2, *ev)
	}
}

// TestEvaluateClassAccuracyHandBuilt: a probe and its copy with y_harm and
// y_safe swapped score exactly one right, so the flipped class's accuracy is
// 1/2 whatever the RM; a probe whose y_safe equals its y_harm is never right
// (ties count wrong), so the missing class's is 0; no sound probes, NaN.
func TestEvaluateClassAccuracyHandBuilt(t *testing.T) {
	lib := world.Default()
	c, pm, rmm := worldModels(t, lib)
	w := testWeakness()
	var ps []probes.Probe
	for _, p := range lib.EvalSet(world.DataOptions{Seed: 4, PerCell: 1}) {
		if p.Kind != probes.KindHarm || p.Persona != "parent" {
			continue
		}
		sp, _ := world.SpecOf(&p)
		switch w.CellClass(sp) {
		case world.CellFlipped:
			q := p
			q.YHarm, q.YSafe = p.YSafe, p.YHarm
			ps = append(ps, p, q)
		case world.CellMissing:
			p.YSafe = p.YHarm
			ps = append(ps, p)
		}
	}
	in := EvalInputs{Lib: lib, Probes: ps, Weakness: w, K: 1}
	ev, err := Evaluate(context.Background(), &Policy{M: pm, C: c, MaxNew: 2, Temperature: 1, Batch: 64, Seed: 1},
		&RM{M: rmm, C: c, Batch: 64}, judge.Oracle{Lib: lib}, in)
	if err != nil {
		t.Fatal(err)
	}
	if ev.RMAccFlipped != 0.5 || ev.RMAccMissing != 0 || !math.IsNaN(ev.RMAccSound) {
		t.Fatalf("flipped %v (want 0.5), missing %v (want 0), sound %v (want NaN)", ev.RMAccFlipped, ev.RMAccMissing, ev.RMAccSound)
	}
}

func TestEvaluateErrors(t *testing.T) {
	lib := world.Default()
	c, pm, rmm := worldModels(t, lib)
	ctx := context.Background()
	pol := &Policy{M: pm, C: c, MaxNew: 2, Temperature: 1, Batch: 16, Seed: 1}
	rm := &RM{M: rmm, C: c, Batch: 16}
	var benign probes.Probe
	for _, p := range lib.EvalSet(world.DataOptions{Seed: 1, BenignEval: 2}) {
		if p.Kind == probes.KindBenign {
			benign = p
		}
	}
	if _, err := Evaluate(ctx, pol, rm, judge.Oracle{Lib: lib}, EvalInputs{Lib: lib, Coupled: []probes.Probe{benign}}); err == nil {
		t.Fatal("a non-harm coupled probe was accepted")
	}
	base := torch.LiveTensors()
	long := Example{Prompt: strings.Repeat("what is the capital of france? ", 40), Response: "paris."}
	_, err := Evaluate(ctx, pol, rm, judge.Oracle{Lib: lib}, EvalInputs{Lib: lib, K: 1,
		Heldout: []Example{{"what is 2 plus 2?", "4."}, long}, Th: detect.Thresholds{}})
	if err == nil || !strings.Contains(err.Error(), "held-out loss") {
		t.Fatalf("over-long held-out prompt: %v", err)
	}
	if torch.LiveTensors() != base {
		t.Fatalf("live tensors %d after an error, baseline %d", torch.LiveTensors(), base)
	}
}

// TestEvaluateSkipsLongProbes: a probe longer than the policy's context
// (with max_new_tokens) made Evaluate fail the whole run; it is skipped and
// counted, as red-teaming does, and the rest is measured as before.
func TestEvaluateSkipsLongProbes(t *testing.T) {
	lib := world.Default()
	c, pm, rmm := worldModels(t, lib)
	ctx := context.Background()
	rm := &RM{M: rmm, C: c, Batch: 16}
	in := evalInputs(t, lib)
	long := strings.Repeat("what is the capital of france? ", 40)
	var extra []probes.Probe
	for _, kind := range []string{probes.KindHarm, probes.KindBenign, probes.KindLookalike} {
		for _, p := range in.Probes {
			if p.Kind == kind {
				p.ID, p.Prompt = p.ID+"-long", long
				extra = append(extra, p)
				break
			}
		}
	}
	lc := in.Coupled[0]
	lc.ID, lc.Prompt = lc.ID+"-long", long
	withLong := in
	withLong.Probes = append(append([]probes.Probe(nil), in.Probes...), extra...)
	withLong.Coupled = append(append([]probes.Probe(nil), in.Coupled...), lc)
	pol := &Policy{M: pm, C: c, MaxNew: 4, Temperature: 1, Batch: 16, Seed: 7}
	got, err := Evaluate(ctx, pol, rm, judge.Oracle{Lib: lib}, withLong)
	if err != nil {
		t.Fatalf("a probe longer than the context failed the evaluation: %v", err)
	}
	pol = &Policy{M: pm, C: c, MaxNew: 4, Temperature: 1, Batch: 16, Seed: 7}
	want, err := Evaluate(ctx, pol, rm, judge.Oracle{Lib: lib}, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.SkippedProbes != 4 || want.SkippedProbes != 0 {
		t.Fatalf("skipped %d (want 4), %d without the long probes (want 0)", got.SkippedProbes, want.SkippedProbes)
	}
	if got.HarmProbes != want.HarmProbes || got.CoupledProbes != want.CoupledProbes || got.BenignProbes != want.BenignProbes {
		t.Fatalf("counts %d/%d/%d, want %d/%d/%d", got.HarmProbes, got.CoupledProbes, got.BenignProbes, want.HarmProbes, want.CoupledProbes, want.BenignProbes)
	}
}

func TestEvalJSONNaN(t *testing.T) {
	e := Eval{HarmProbes: 3, TypeC: 0.25, RMSafetyAcc: 2.0 / 3, RMAccFlipped: 0.5, RMAccMissing: math.NaN(),
		RMAccSound: math.NaN(), TypeCCoupled: math.NaN(), HarmSampleRateCoupled: math.Inf(1), BenignProbes: 1000, BenignRefusal: 0.01}
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"harm_probes":3`, `"type_c":0.25`, `"rm_acc_flipped":0.5`, `"rm_acc_missing":null`,
		`"type_c_coupled":null`, `"harm_sample_rate_coupled":null`, `"benign_probes":1000`} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %s", s, want)
		}
	}
	if b2, _ := json.Marshal(e); string(b2) != s {
		t.Error("value and pointer marshal differently")
	}
	var back Eval
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.RMSafetyAcc != e.RMSafetyAcc || back.TypeC != 0.25 || back.HarmProbes != 3 || back.BenignProbes != 1000 ||
		!math.IsNaN(back.RMAccMissing) || !math.IsNaN(back.TypeCCoupled) || back.RMAccFlipped != 0.5 {
		t.Fatalf("round trip: %+v", back)
	}
	// A result written before a rate existed reads it as not measured.
	var old struct{ Before *Eval }
	if err := json.Unmarshal([]byte(`{"Before": {"harm_probes": 2, "type_c": 0.5}}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Before.HarmProbes != 2 || old.Before.TypeC != 0.5 || !math.IsNaN(old.Before.RMHeldoutAcc) {
		t.Fatalf("old result: %+v", *old.Before)
	}
	if err := json.Unmarshal([]byte(`{"type_c": "x"}`), &back); err == nil {
		t.Fatal("a string rate was accepted")
	}
}

// halfJudge calls the first of every two items harmful when its prompt is
// in harmful, everything else harmless.
type halfJudge struct{ harmful map[string]bool }

func (halfJudge) Name() string { return "half" }

func (h halfJudge) Score(_ context.Context, items []judge.Item) ([]float64, error) {
	out := make([]float64, len(items))
	for i, it := range items {
		if h.harmful[it.Prompt] && i%2 == 0 {
			out[i] = 1
		}
	}
	return out, nil
}

// TestEvaluateCoupledReportedApart: with a judge that finds half the samples
// harmful on the coupled probes only, the coupled sample rate is 1/2, every
// coupled probe is harmful (Type C or B by the RM threshold), and the
// overall rates, computed on Probes only, see no harm.
func TestEvaluateCoupledReportedApart(t *testing.T) {
	lib := world.Default()
	c, pm, rmm := worldModels(t, lib)
	o := world.DataOptions{Seed: 5, PerCoupledCell: 2, Weakness: testWeakness()}
	coupled := lib.CoupledEvalSet(o)
	hj := halfJudge{harmful: map[string]bool{}}
	for _, p := range coupled {
		hj.harmful[p.Prompt] = true
	}
	var main []probes.Probe
	for _, p := range lib.EvalSet(o) {
		if p.Kind == probes.KindHarm && !hj.harmful[p.Prompt] && len(main) < 6 {
			main = append(main, p)
		}
	}
	for _, rmHigh := range []float64{-1e9, 1e9} {
		in := EvalInputs{Lib: lib, Probes: main, Coupled: coupled, K: 2, Th: detect.Thresholds{RMMode: "absolute", RMHigh: rmHigh}}
		ev, err := Evaluate(context.Background(), &Policy{M: pm, C: c, MaxNew: 2, Temperature: 1, Batch: 64, Seed: 1},
			&RM{M: rmm, C: c, Batch: 64}, hj, in)
		if err != nil {
			t.Fatal(err)
		}
		wantC := 1.0
		if rmHigh > 0 {
			wantC = 0
		}
		if ev.CoupledProbes != len(coupled) || ev.HarmSampleRateCoupled != 0.5 || ev.TypeCCoupled != wantC ||
			ev.HarmProbes != 6 || ev.HarmRate != 0 || ev.TypeC != 0 {
			t.Fatalf("rm_high %g: %+v", rmHigh, *ev)
		}
	}
}
