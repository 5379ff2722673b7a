package study

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		"models/policy-start/tokenizer.json", "models/rm-start/model.safetensors", "metrics-sft.jsonl", "metrics-rm.jsonl"} {
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
		arms = []string{ArmARES}
	}
	for _, arm := range arms {
		res, err := RunArm(context.Background(), st, arm, 1, env)
		if err != nil {
			t.Fatalf("%s: %v", arm, err)
		}
		if res.After == nil {
			t.Fatalf("%s: no evaluation", arm)
		}
		var tbl strings.Builder
		WriteTable(&tbl, before, res.After)
		if !strings.Contains(tbl.String(), "Type C (coupled) rate") {
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
