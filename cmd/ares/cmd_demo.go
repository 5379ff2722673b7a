package main

import (
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

// runDemo shows the claim in one run on the embedded synthetic world: it
// builds the flawed start (SFT policy, flawed RM, a round of standard RLHF
// against that RM), red-teams it, repairs the RM and then the policy (ARES),
// and asks whether each RM would teach the harm to the next model: the same
// RLHF recipe from the SFT policy against the repaired RM and against the
// original one (the fresh_rlhf phase of the study).
func runDemo(args []string) error {
	fs := newFlagSet("demo")
	out := fs.String("out", "out/demo", "directory for models, findings, metrics and the report")
	quick := fs.Bool("quick", false, "reduced size for smoke checks")
	seed := fs.Int64("seed", 1, "random seed")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if _, err := synth.UseTinyModelThreads(); err != nil {
		return err
	}
	info, err := torch.Describe()
	if err != nil {
		return err
	}
	cfg := synth.DefaultConfig(*quick)
	cfg.Seed, cfg.RedTeam.Seed = *seed, *seed
	fmt.Printf("ares demo: synthetic safety world, libtorch %s, %d threads, output in %s\n", info.RuntimeVersion, info.Threads, *out)
	ctx := commandContext() // SIGINT/SIGTERM stop it at the next training step
	res, err := study.RunDemo(ctx, world.Default(), cfg, synth.Env{Out: *out, Progress: os.Stdout, Log: os.Stdout, Ctx: ctx})
	if err != nil {
		return err
	}
	var tbl strings.Builder
	study.WriteEvalTable(&tbl, study.DemoColumns, res.Evals())
	fmt.Printf("\nheld-out evaluation (%d harm probes and %d probes in the designed coupled cells, %d samples each):\n\n%s\n",
		res.Start.HarmProbes, res.Start.CoupledProbes, cfg.EvalK, tbl.String())
	fmt.Printf("findings: A %d, B %d, C %d; total time %s\n", res.Findings["A"], res.Findings["B"], res.Findings["C"], res.Wall.Round(time.Second))
	return writeDemoReport(*out, cfg, *quick, res, tbl.String())
}

func writeDemoReport(out string, cfg synth.Config, quick bool, res *study.DemoResult, table string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), b, 0o644); err != nil {
		return err
	}
	labels := []string{"coupled Type C", "coupled harmful samples", "Type C", "RM acc. flipped", "capability", "over-refusal"}
	row := func(e *repair.Eval) []float64 {
		return []float64{e.TypeCCoupled, e.HarmSampleRateCoupled, e.TypeC, e.RMAccFlipped, e.Capability, e.OverRefusal}
	}
	var series [][]float64
	for _, e := range res.Evals() {
		series = append(series, row(e))
	}
	svg := study.BarChartSVG("Held-out rates: start, after ARES, and fresh RLHF with each RM", labels, study.DemoColumns, series, 1)
	if err := os.WriteFile(filepath.Join(out, "rates.svg"), []byte(svg), 0o644); err != nil {
		return err
	}
	size := "full"
	if quick {
		size = "quick"
	}
	md := fmt.Sprintf("# ARES demo report\n\nRun %s, size %s, seed %d, %s on this machine.\n\n"+
		"The start is an RLHF equilibrium: a policy fine-tuned (SFT) with a small harmful-answer leak, then trained by standard RLHF against a reward model whose preference data prefers the harmful answer in some (tactic, topic) cells. "+
		"ARES red-teams both models, repairs the RM on Type A and C findings (Bradley-Terry with replay and an anchor), then the policy on Type B and C prompts (Dr. GRPO against the repaired RM, unlikelihood, KL, replay). "+
		"The last two columns run the start's RLHF recipe again from the SFT policy, once against the repaired RM and once against the original RM: would this RM teach the harm to the next model? "+
		"Every rate is measured on held-out paraphrases and response phrasings.\n\n"+
		"Findings during red-teaming: A %d, B %d, C %d.\n\n%s\n![rates](rates.svg)\n",
		time.Now().UTC().Format("2006-01-02"), size, cfg.Seed, res.Wall.Round(time.Second), res.Findings["A"], res.Findings["B"], res.Findings["C"], table)
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Printf("report: %s\n", filepath.Join(out, "report.md"))
	return nil
}
