package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/study"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/world"
)

func init() {
	register(command{name: "demo", summary: "run the main job on the embedded synthetic world", run: runDemo})
}

// runDemo builds the synthetic world, trains the weakened starting models,
// red-teams, repairs (RM first, then policy) and evaluates on held-out probes.
func runDemo(args []string) error {
	fs := newFlagSet("demo")
	out := fs.String("out", "out/demo", "directory for models, findings, metrics and the report")
	quick := fs.Bool("quick", false, "reduced size for smoke checks")
	seed := fs.Int64("seed", 1, "random seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	info, err := torch.Describe()
	if err != nil {
		return err
	}
	cfg := synth.DefaultConfig(*quick)
	cfg.Seed = *seed
	fmt.Printf("ares demo: synthetic safety world, libtorch %s, %d threads, output in %s\n", info.RuntimeVersion, info.Threads, *out)
	env := synth.Env{Out: *out, Progress: os.Stdout, Log: os.Stdout}
	t0 := time.Now()
	st, err := synth.BuildStart(world.Default(), cfg, env)
	if err != nil {
		return err
	}
	ctx := context.Background()
	m, err := st.LoadModels(cfg.Seed)
	if err != nil {
		return err
	}
	before, err := st.Evaluate(ctx, m)
	m.Close()
	if err != nil {
		return err
	}
	res, err := study.RunArm(ctx, st, study.ArmARES, cfg.Seed, env)
	if err != nil {
		return err
	}
	var tbl strings.Builder
	study.WriteTable(&tbl, before, res.After)
	fmt.Printf("\nheld-out evaluation (%d harm probes, %d samples each), before and after ARES repair:\n\n%s\n", before.HarmProbes, cfg.EvalK, tbl.String())
	fmt.Printf("findings: A %d, B %d, C %d; total time %s\n", res.Findings["A"], res.Findings["B"], res.Findings["C"], time.Since(t0).Round(time.Second))
	return writeDemoReport(*out, cfg, *quick, before, res, tbl.String(), time.Since(t0))
}

func writeDemoReport(out string, cfg synth.Config, quick bool, before *repair.Eval, res *study.ArmResult, table string, wall time.Duration) error {
	b, _ := json.MarshalIndent(map[string]any{"before": before, "after": res.After, "findings": res.Findings}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "results.json"), b, 0o644); err != nil {
		return err
	}
	labels := []string{"Type C", "Type B", "Type A", "harmful", "RM safety acc", "capability", "over-refusal"}
	row := func(e *repair.Eval) []float64 {
		return []float64{e.TypeC, e.TypeB, e.TypeA, e.HarmRate, e.RMSafetyAcc, e.Capability, e.OverRefusal}
	}
	svg := study.BarChartSVG("Held-out rates before and after ARES repair", labels, []string{"before", "after"},
		[][]float64{row(before), row(res.After)}, 1)
	if err := os.WriteFile(filepath.Join(out, "rates.svg"), []byte(svg), 0o644); err != nil {
		return err
	}
	size := "full"
	if quick {
		size = "quick"
	}
	md := fmt.Sprintf("# ARES demo report\n\nRun %s, size %s, seed %d, %s on this machine.\n\n"+
		"The synthetic world's weakened policy complies in some (tactic, persona) cells; the weakened RM prefers the harmful answer in some (tactic, topic) cells. "+
		"ARES red-teams both, repairs the RM on Type A and C findings (Bradley-Terry with replay and an anchor), then the policy on Type B and C prompts (Dr. GRPO against the repaired RM, unlikelihood, KL, replay), and evaluates on held-out paraphrases.\n\n"+
		"Findings during red-teaming: A %d, B %d, C %d.\n\n%s\n![rates](rates.svg)\n",
		time.Now().UTC().Format("2006-01-02"), size, cfg.Seed, wall.Round(time.Second), res.Findings["A"], res.Findings["B"], res.Findings["C"], table)
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Printf("report: %s\n", filepath.Join(out, "report.md"))
	return nil
}
