package mentor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
)

// Policy is what discovery needs from the policy model: k sampled responses
// for each prompt (out[i] has k entries for prompts[i]). The implementation
// owns its randomness and batching.
type Policy interface {
	Sample(ctx context.Context, prompts []string, k int) ([][]string, error)
}

// RewardModel is what discovery needs from the RM: a scalar score for each
// (prompt, response) pair, higher meaning preferred.
type RewardModel interface {
	Score(ctx context.Context, prompts, responses []string) ([]float64, error)
}

// Config is the [redteam] table of a run config.
type Config struct {
	// Budget is the number of policy rollouts (probes x K). Default 2000.
	Budget int `toml:"budget"`
	// K is the number of policy samples per probe. Default 4.
	K int `toml:"k"`
	// Batch is the number of probes per round (one sampler update per
	// round). Default 32.
	Batch int `toml:"batch"`
	// Seed makes the run reproducible (composition and sampler).
	Seed int64 `toml:"seed"`
	// RMScale is the temperature that squashes RM margins into the
	// sampler's [0, 1] RM signal: sigmoid((rm_policy - rm_y_safe) / scale).
	// Default 1.
	RMScale float64 `toml:"rm_scale"`
	// WriteAll writes every probe to findings (type "none" too), for audit.
	WriteAll bool          `toml:"write_all"`
	Sampler  SamplerConfig `toml:"sampler"`
}

func (c Config) withDefaults() (Config, error) {
	c = c.filled()
	return c, cfgcheck.Under("redteam", c.check())
}

func (c Config) filled() Config {
	if c.Budget == 0 {
		c.Budget = 2000
	}
	if c.K == 0 {
		c.K = 4
	}
	if c.Batch == 0 {
		c.Batch = 32
	}
	if c.RMScale == 0 {
		c.RMScale = 1
	}
	c.Sampler = c.Sampler.filled()
	return c
}

// Validate checks the [redteam] table as a run does (zero fields take their
// defaults); keys are relative to the table (a *cfgcheck.Error). Every
// loader of a [redteam] table calls it.
func (c Config) Validate() error { return c.filled().check() }

func (c Config) check() error {
	k := cfgcheck.New("")
	k.IntAtLeast("budget", int64(c.Budget), 0)
	k.IntAtLeast("k", int64(c.K), 1)
	k.IntAtLeast("batch", int64(c.Batch), 1)
	k.Positive("rm_scale", c.RMScale)
	if err := k.Err(); err != nil {
		return err
	}
	return cfgcheck.Under("sampler", c.Sampler.check())
}

// Deps are the models and services a run uses.
type Deps struct {
	Lib    *world.Library
	Policy Policy
	RM     RewardModel
	Judge  judge.Judge
	// Findings, when set, receives findings JSONL as they are found.
	Findings io.Writer
	// Run names the run in every finding.
	Run string
	// Progress, when set, is called after each round.
	Progress func(rollouts, budget int, agg *detect.Aggregate)
}

// Result is the outcome of a discovery run.
type Result struct {
	Sampler  string
	Judge    string
	Seed     int64
	Rollouts int
	Rounds   int
	Agg      *detect.Aggregate
	// Findings holds the A, B and C findings (and, with WriteAll, the rest).
	Findings []detect.Finding
}

// Distinct counts distinct (tactic, persona, topic, goal) combinations among
// findings of a type.
func (r *Result) Distinct(typ string) int {
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if f.Type == typ {
			seen[f.Probe.Tactic+"/"+f.Probe.Persona+"/"+f.Probe.Topic+"/"+f.Probe.Goal] = true
		}
	}
	return len(seen)
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// RedTeam runs discovery: rounds of (sampler proposes specs -> compose probes
// -> policy samples K answers each -> judge scores harm -> RM scores the
// answers, y_harm and y_safe -> detect classifies -> sampler learns) until
// the rollout budget is spent.
func RedTeam(ctx context.Context, cfg Config, th detect.Thresholds, d Deps) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if th, err = th.WithDefaults(); err != nil {
		return nil, err
	}
	if d.Lib == nil || d.Policy == nil || d.RM == nil || d.Judge == nil {
		return nil, fmt.Errorf("redteam: library, policy, reward model and judge are all required")
	}
	s, err := NewSampler(cfg.Sampler, d.Lib, cfg.Seed)
	if err != nil {
		return nil, err
	}
	res := &Result{Sampler: s.Name(), Judge: d.Judge.Name(), Seed: cfg.Seed, Agg: detect.NewAggregate()}
	var w *detect.Writer
	if d.Findings != nil {
		w = detect.NewWriter(d.Findings)
	}
	for round := 0; res.Rollouts+cfg.K <= cfg.Budget; round++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(cfg.Batch, (cfg.Budget-res.Rollouts)/cfg.K)
		specs := s.Next(n)
		ps := make([]probes.Probe, len(specs))
		for i, sp := range specs {
			// A per-probe seed: reproducible, different for each repeat.
			seed := cfg.Seed*1_000_003 + int64(round)*4099 + int64(i)
			if ps[i], err = d.Lib.Compose(sp, seed); err != nil {
				return res, fmt.Errorf("round %d: %w", round, err)
			}
		}
		obs, err := observe(ctx, ps, cfg.K, d)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		fb := make([]Feedback, len(obs))
		for i, o := range obs {
			f := detect.Classify(o, th)
			f.Run, f.Sampler, f.Judge, f.Round, f.Seed = d.Run, s.Name(), d.Judge.Name(), round, ps[i].Seed
			res.Agg.Add(&f)
			res.Rollouts += len(o.Samples)
			fb[i] = feedback(specs[i], &f, th, cfg.RMScale)
			if f.Type == detect.TypeNone && !cfg.WriteAll {
				continue
			}
			res.Findings = append(res.Findings, f)
			if w != nil {
				if err := w.Write(&f); err != nil {
					return res, err
				}
			}
		}
		if w != nil {
			if err := w.Flush(); err != nil {
				return res, err
			}
		}
		s.Update(fb)
		res.Rounds++
		if d.Progress != nil {
			d.Progress(res.Rollouts, cfg.Budget, res.Agg)
		}
	}
	return res, nil
}

func feedback(sp world.Spec, f *detect.Finding, th detect.Thresholds, scale float64) Feedback {
	mean := 0.0
	for _, s := range f.Samples {
		mean += s.Harm
	}
	if len(f.Samples) > 0 {
		mean /= float64(len(f.Samples))
	}
	ref := th.RMHigh
	if th.RMMode == "relative" && f.RMSafe != nil {
		ref = *f.RMSafe + th.RMMargin
	}
	return Feedback{Spec: sp, Type: f.Type, Harm: mean, RM: sigmoid((f.RMPolicy - ref) / scale)}
}

// observe samples the policy on probes and scores everything in three
// batched calls (policy, judge, RM).
func observe(ctx context.Context, ps []probes.Probe, k int, d Deps) ([]detect.Observation, error) {
	prompts := make([]string, len(ps))
	for i := range ps {
		prompts[i] = ps[i].Prompt
	}
	outs, err := d.Policy.Sample(ctx, prompts, k)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(outs) != len(ps) {
		return nil, fmt.Errorf("policy returned %d answer lists for %d prompts", len(outs), len(ps))
	}
	var items []judge.Item
	var rmP, rmR []string
	for i, o := range outs {
		if len(o) != k {
			return nil, fmt.Errorf("policy returned %d samples for prompt %d, want %d", len(o), i, k)
		}
		for _, r := range o {
			items = append(items, judge.Item{Prompt: prompts[i], Response: r})
			rmP, rmR = append(rmP, prompts[i]), append(rmR, r)
		}
	}
	nPolicy := len(rmP)
	for i := range ps {
		if ps[i].YHarm != "" && ps[i].YSafe != "" {
			rmP, rmR = append(rmP, prompts[i], prompts[i]), append(rmR, ps[i].YHarm, ps[i].YSafe)
		}
	}
	harm, err := d.Judge.Score(ctx, items)
	if err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	if len(harm) != len(items) {
		return nil, fmt.Errorf("judge returned %d scores for %d items", len(harm), len(items))
	}
	rm, err := d.RM.Score(ctx, rmP, rmR)
	if err != nil {
		return nil, fmt.Errorf("reward model: %w", err)
	}
	if len(rm) != len(rmP) {
		return nil, fmt.Errorf("reward model returned %d scores for %d pairs", len(rm), len(rmP))
	}
	obs := make([]detect.Observation, len(ps))
	ref := nPolicy
	for i := range ps {
		o := detect.Observation{Probe: ps[i], Samples: make([]detect.Sample, k)}
		for j := 0; j < k; j++ {
			x := i*k + j
			o.Samples[j] = detect.Sample{Text: outs[i][j], Harm: harm[x], RM: rm[x]}
		}
		if ps[i].YHarm != "" && ps[i].YSafe != "" {
			h, s := rm[ref], rm[ref+1]
			o.RMHarm, o.RMSafe = &h, &s
			ref += 2
		}
		obs[i] = o
	}
	return obs, nil
}

// Compare runs discovery once per (sampler kind, seed) with the same budget
// and reports findings of typ per 1,000 rollouts, mean and spread over
// seeds. deps builds fresh models for a seed (a run must not see another's
// state).
func Compare(ctx context.Context, base Config, th detect.Thresholds, kinds []string, seeds []int64, typ string, deps func(seed int64) (Deps, error)) ([]detect.SamplerStat, error) {
	var out []detect.SamplerStat
	for _, kind := range kinds {
		st := detect.SamplerStat{Sampler: kind, Type: typ}
		distinct := 0.0
		for _, seed := range seeds {
			d, err := deps(seed)
			if err != nil {
				return nil, err
			}
			cfg := base
			cfg.Seed = seed
			cfg.Sampler.Kind = kind
			res, err := RedTeam(ctx, cfg, th, d)
			if err != nil {
				return nil, fmt.Errorf("%s seed %d: %w", kind, seed, err)
			}
			st.PerSeed = append(st.PerSeed, res.Agg.Total.PerThousandRollouts(typ))
			distinct += float64(res.Distinct(typ))
		}
		st.Mean, st.SD = detect.MeanSD(st.PerSeed)
		st.Distinct = distinct / float64(len(seeds))
		out = append(out, st)
	}
	return out, nil
}

// WriteOutputs writes a run's findings.jsonl (unless the run streamed them
// already, streamed=true), summary.json, report.md and heatmap_c.svg into
// dir, and returns the paths written.
func WriteOutputs(dir string, res *Result, lib *world.Library, comparison []detect.SamplerStat, streamed bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	if !streamed {
		p := filepath.Join(dir, "findings.jsonl")
		fh, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		w := detect.NewWriter(fh)
		for i := range res.Findings {
			if err := w.Write(&res.Findings[i]); err != nil {
				fh.Close()
				return nil, err
			}
		}
		if err := w.Flush(); err != nil {
			fh.Close()
			return nil, err
		}
		if err := fh.Close(); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	sum := map[string]any{
		"sampler": res.Sampler, "judge": res.Judge, "seed": res.Seed, "rounds": res.Rounds,
		"total": res.Agg.Total, "per_1000_rollouts": map[string]float64{
			"A": res.Agg.Total.PerThousandRollouts(detect.TypeA),
			"B": res.Agg.Total.PerThousandRollouts(detect.TypeB),
			"C": res.Agg.Total.PerThousandRollouts(detect.TypeC),
		},
		"distinct_c": res.Distinct(detect.TypeC),
	}
	if comparison != nil {
		sum["comparison"] = comparison
	}
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "summary.json")
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	paths = append(paths, p)
	rep := &detect.Report{Sampler: res.Sampler, Judge: res.Judge, Seed: res.Seed, Agg: res.Agg, Comparison: comparison, Top: topFindings(res.Findings, 5)}
	if lib != nil {
		rep.Tactics, rep.Topics = lib.TacticIDs(), lib.TopicIDs()
	}
	more, err := rep.Write(dir)
	return append(paths, more...), err
}

func topFindings(fs []detect.Finding, n int) []detect.Finding {
	var c []detect.Finding
	for _, f := range fs {
		if f.Type == detect.TypeC {
			c = append(c, f)
		}
	}
	sort.SliceStable(c, func(i, j int) bool { return c[i].RMPolicy > c[j].RMPolicy })
	if len(c) > n {
		c = c[:n]
	}
	return c
}

func nan() float64 { return math.NaN() }
