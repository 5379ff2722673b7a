package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/engine/study"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/torch"
)

func init() {
	register(command{name: "bench", summary: "benchmark runs: the baseline-RLHF-versus-ARES study (bench study)", run: runBench})
}

// runBench dispatches the bench subcommands.
func runBench(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: ares bench study --config FILE [--out DIR]\n\n"+
			"  study   five arms (baseline RLHF, policy-only, policy-only-rl, ARES sequential, ARES joint) from\n"+
			"          the same starting models over several seeds, each evaluated at the start, after its\n"+
			"          repair and after two more RLHF rounds (rlhf2, fresh_rlhf); writes study.md, study.csv,\n"+
			"          study.json and SVG charts with 95% confidence intervals and the config's goals")
		if len(args) == 0 {
			return usagef("a bench subcommand is required")
		}
		return nil
	}
	switch args[0] {
	case "study":
		return runBenchStudy(args[1:])
	}
	return usagef("unknown bench subcommand %q (want study)", args[0])
}

func runBenchStudy(args []string) error {
	fs := newFlagSet("bench study")
	config := fs.String("config", "", "study config (TOML; see bench/study.toml)")
	out := fs.String("out", "", "output directory (overrides run.out)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *config == "" {
		return usagef("--config is required")
	}
	cfg, err := study.LoadStudy(*config)
	if err != nil {
		return err
	}
	if *out != "" {
		cfg.Run.Out = *out
	}
	if err := os.MkdirAll(cfg.Run.Out, 0o755); err != nil {
		return err
	}
	// Keep the config next to the results, as run.
	raw, err := os.ReadFile(*config)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.Run.Out, "study.toml"), raw, 0o644); err != nil {
		return err
	}
	if cfg.Models.Policy == "" {
		if _, err := synth.UseTinyModelThreads(); err != nil {
			return err
		}
	}
	info, err := torch.Describe()
	if err != nil {
		return err
	}
	fmt.Printf("ares bench study: size %s, seeds %v, arms %s, start %s; libtorch %s, %d threads; output in %s\n",
		cfg.Study.Size, cfg.Study.Seeds, strings.Join(cfg.Study.Arms, ", "), cfg.Study.Start, info.RuntimeVersion, info.Threads, cfg.Run.Out)
	// SIGINT/SIGTERM stop the study at the next training step; the seeds
	// finished by then stay reported.
	ctx := commandContext()
	t0 := time.Now()
	res, err := study.RunStudy(ctx, cfg, synth.Env{Out: cfg.Run.Out, Progress: os.Stderr, Log: os.Stdout, Ctx: ctx})
	if res != nil {
		res.Threads = info.Threads
	}
	if err != nil {
		if res != nil && len(res.Rows) > 0 {
			fmt.Fprintf(os.Stderr, "the seeds finished before the failure are reported in %s\n", filepath.Join(cfg.Run.Out, "study.md"))
		}
		return err
	}
	if err := res.Write(cfg.Run.Out); err != nil {
		return err
	}
	var tbl strings.Builder
	res.WriteTable(&tbl)
	fmt.Printf("\nheld-out evaluation, mean [95%% CI] over %d seeds (%s in all):\n\n%s\ngoals:\n", len(res.Seeds), time.Since(t0).Round(time.Second), tbl.String())
	var goals strings.Builder
	res.WriteGoals(&goals)
	fmt.Print(goals.String())
	fmt.Printf("\nreport: %s\n", filepath.Join(cfg.Run.Out, "study.md"))
	return nil
}
