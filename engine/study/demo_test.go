package study

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"

	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/world"
)

// tinyConfig exercises every phase of the main job at a size that runs in CI.
func tinyConfig() synth.Config {
	c := synth.DefaultConfig(true)
	c.Model = synth.ModelSize{Vocab: 400, Hidden: 32, Layers: 1, Heads: 2, KVHeads: 1, Inter: 64, MaxPos: 160}
	c.Data = world.DataOptions{Harm: 200, Benign: 80, Lookalike: 40, PerCell: 1, BenignEval: 10}
	c.SFT.Steps, c.RM.Steps = 12, 12
	c.SFT.Batch, c.RM.Batch = 8, 8
	c.RedTeam.Budget, c.RedTeam.Batch, c.RedTeam.K = 64, 16, 2
	c.RMRepair.Steps, c.RMRepair.AnchorSize = 3, 16
	c.PolicyRepair.Steps, c.PolicyRepair.Prompts, c.PolicyRepair.Group = 2, 2, 2
	c.EvalK, c.MaxNewTokens = 1, 12
	c.PolicyRepair.MaxNewTokens = 12
	c.StartRLHF = c.PolicyRepair
	c.StartRLHF.Unlikelihood, c.StartRLHF.LookalikeRatio = 0, 0
	c.RLHF2Steps = 2
	// Any finding at all, so that every repair path runs on an untrained model.
	c.Thresholds.Harm, c.Thresholds.PolicyHarmRate = 0.01, 0.01
	return c
}

func TestMainJobEndToEnd(t *testing.T) {
	out := t.TempDir()
	env := synth.Env{Out: out}
	c := tinyConfig()
	base := torch.LiveTensors()
	st, err := synth.BuildStart(world.Default(), c, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"models/policy-start/config.json", "models/policy-start/model.safetensors",
		"models/policy-start/tokenizer.json", "models/policy-sft/model.safetensors", "models/rm-start/model.safetensors",
		"metrics-sft.jsonl", "metrics-rm.jsonl", "metrics-start-rlhf.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatalf("missing %s: %v", f, err)
		}
	}
	m, err := st.LoadModels(1)
	if err != nil {
		t.Fatal(err)
	}
	before, err := st.Evaluate(context.Background(), m)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	if before.HarmProbes == 0 || before.HeldoutLoss <= 0 {
		t.Fatalf("evaluation: %+v", before)
	}
	arms := Arms
	if testing.Short() {
		arms = []string{ArmBaseline, ArmARES}
	}
	fresh := &FreshCache{}
	var freshOrig *repair.Eval
	for _, arm := range arms {
		res, err := RunArm(context.Background(), st, arm, 1, Phases, fresh, env)
		if err != nil {
			t.Fatalf("%s: %v", arm, err)
		}
		for _, ph := range []string{PhaseRepaired, PhaseRLHF2, PhaseFresh} {
			if r := res.Row(ph); r == nil || r.Eval == nil || r.Arm != arm {
				t.Fatalf("%s: no %s evaluation", arm, ph)
			}
		}
		// Arms that leave the RM alone share one fresh_rlhf run.
		if !res.RMChanged {
			if freshOrig != nil && res.Row(PhaseFresh).Eval != freshOrig {
				t.Fatalf("%s: fresh_rlhf against the original RM was run twice", arm)
			}
			freshOrig = res.Row(PhaseFresh).Eval
		}
		if (arm == ArmBaseline || arm == ArmPolicyOnly || arm == ArmPolicyOnlyRL) && res.RMChanged {
			t.Fatalf("%s changed the RM", arm)
		}
		var tbl strings.Builder
		WriteEvalTable(&tbl, []string{"start", arm}, []*repair.Eval{before, res.Row(PhaseRepaired).Eval})
		if !strings.Contains(tbl.String(), "Type C in the designed coupled cells") {
			t.Fatal("table")
		}
	}
	if _, err := os.Stat(filepath.Join(out, "arms", "ares-seed1", "findings.jsonl")); err != nil {
		t.Fatal(err)
	}
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after the job, %d before", got, base)
	}
	svg := BarChartSVG("rates", []string{"C", "B"}, []string{"before", "after"}, [][]float64{{0.1, 0.2}, {0.05, 0.1}}, 0.25)
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "</svg>") {
		t.Fatal("svg")
	}
}

// TestDemoShowsTheClaim runs `ares demo --quick` and checks the direction of
// the effect, not only that it ran: the start has coupled failures, ARES
// lowers them, and a fresh RLHF round learns less harm from the repaired RM
// than from the original one.
func TestDemoShowsTheClaim(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick demo takes about 2.5 minutes")
	}
	if _, err := synth.UseTinyModelThreads(); err != nil {
		t.Fatal(err)
	}
	c := synth.DefaultConfig(true)
	res, err := RunDemo(context.Background(), world.Default(), c, synth.Env{Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var tbl strings.Builder
	WriteEvalTable(&tbl, DemoColumns, res.Evals())
	t.Logf("quick demo, seed %d, %s:\n%s", c.Seed, res.Wall.Round(time.Second), tbl.String())
	start, after := res.Start.TypeCCoupled, res.Repaired.TypeCCoupled
	if start <= 0 {
		t.Fatalf("the start has no coupled failures (coupled-cell Type C %.3f)", start)
	}
	if after >= start {
		t.Errorf("ARES did not lower coupled-cell Type C: %.3f -> %.3f", start, after)
	}
	if a, o := res.FreshARES.HarmSampleRateCoupled, res.FreshOrig.HarmSampleRateCoupled; a >= o {
		t.Errorf("fresh RLHF learned as much harm from the repaired RM as from the original: %.3f vs %.3f", a, o)
	}
	if a, o := res.FreshARES.TypeCCoupled, res.FreshOrig.TypeCCoupled; a > o {
		t.Errorf("fresh RLHF against the repaired RM has more coupled Type C than against the original: %.3f vs %.3f", a, o)
	}
}
