package mentor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
	"github.com/ares-rlhf/ares/internal/jsonl"
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
	Budget int `toml:"budget" json:"budget"`
	// K is the number of policy samples per probe. Default 4.
	K int `toml:"k" json:"k"`
	// Batch is the number of probes per round (one sampler update per
	// round). Default 32.
	Batch int `toml:"batch" json:"batch"`
	// Seed makes the run reproducible (composition and sampler).
	Seed int64 `toml:"seed" json:"seed"`
	// RMScale is the temperature that squashes RM margins into the
	// sampler's [0, 1] RM signal: sigmoid((rm_policy - rm_y_safe) / scale).
	// Default 1.
	RMScale float64 `toml:"rm_scale" json:"rm_scale"`
	// WriteAll writes every probe to findings (type "none" too), for audit.
	WriteAll bool          `toml:"write_all" json:"write_all"`
	Sampler  SamplerConfig `toml:"sampler" json:"sampler"`
}

func (c Config) withDefaults() (Config, error) {
	c = c.filled()
	return c, cfgcheck.Under("redteam", c.check())
}

func (c Config) filled() Config {
	c.Budget = cmp.Or(c.Budget, 2000)
	c.K = cmp.Or(c.K, 4)
	c.Batch = cmp.Or(c.Batch, 32)
	c.RMScale = cmp.Or(c.RMScale, 1)
	c.Sampler = c.Sampler.filled()
	return c
}

// Validate checks the [redteam] table as a run does (zero fields take their
// defaults); keys are relative to the table (a *cfgcheck.Error). Every
// loader of a [redteam] table calls it.
func (c Config) Validate() error { return c.filled().check() }

func (c Config) check() error {
	k := cfgcheck.New("")
	k.IntIn("budget", int64(c.Budget), 0, cfgcheck.MaxSteps)
	k.IntIn("k", int64(c.K), 1, cfgcheck.MaxCount)
	// A round's probes take seeds round*seedStride + i: a larger batch would
	// give two probes of consecutive rounds one seed, and so one id.
	k.IntIn("batch", int64(c.Batch), 1, seedStride)
	k.Positive("rm_scale", c.RMScale)
	k.AtMost("rm_scale", c.RMScale, cfgcheck.MaxScore)
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
	// Checkpoint, when set, receives the run's state before the first round
	// and after every round, once that round's findings are flushed to
	// Findings: what a resumed run needs (Discover writes it to disk).
	Checkpoint func(*State) error
	// Resume, when set, continues the run a checkpoint describes: its
	// findings are taken as already written, and the sampler (and the
	// policy and RM when they are Resumable) continue from its state.
	Resume *State
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
	// Skipped are the probes not run (PromptChecker: too long for a model's
	// context).
	Skipped []Skipped
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

// maxEmptyRounds bounds consecutive rounds whose every probe was skipped.
const maxEmptyRounds = 10

// seedStride separates the probe seeds of consecutive rounds (and bounds a
// round's batch).
const seedStride = 4099

// RedTeam runs discovery: rounds of (sampler proposes specs -> compose probes
// -> policy samples K answers each -> judge scores harm -> RM scores the
// answers, y_harm and y_safe -> detect classifies -> sampler learns) until
// the rollout budget is spent.
//
// Cancelling ctx stops the run at the next round boundary: a round in
// progress is abandoned (its findings are not written), the last
// checkpoint stands, and the error wraps ctx's cause (context.Canceled).
// A resumed run (Deps.Resume) continues with the same sampler, policy and
// RM state and gives the same findings as an uninterrupted one.
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
	empty := 0
	if d.Resume != nil {
		if empty, err = resumeFrom(d.Resume, cfg, th, s, d, res); err != nil {
			return nil, err
		}
	}
	var w *detect.Writer
	if d.Findings != nil {
		w = detect.NewWriter(d.Findings)
	}
	checkpoint := func() error {
		if d.Checkpoint == nil {
			return nil
		}
		st, err := snapshot(cfg, th, s, d, res, empty)
		if err != nil {
			return fmt.Errorf("checkpoint after round %d: %w", res.Rounds, err)
		}
		return d.Checkpoint(st)
	}
	if err := checkpoint(); err != nil {
		return res, err
	}
	checkers := promptCheckers(d)
	for res.Rollouts+cfg.K <= cfg.Budget {
		round := res.Rounds
		if err := ctx.Err(); err != nil {
			return res, interrupted(ctx, res, cfg)
		}
		n := min(cfg.Batch, (cfg.Budget-res.Rollouts)/cfg.K)
		specs := s.Next(n)
		ps := make([]probes.Probe, 0, len(specs))
		kept := make([]world.Spec, 0, len(specs))
		var skipped []Skipped
		for i, sp := range specs {
			// A per-probe seed: reproducible, different for each repeat.
			seed := cfg.Seed*1_000_003 + int64(round)*seedStride + int64(i)
			p, err := d.Lib.Compose(sp, seed)
			if err != nil {
				return res, fmt.Errorf("round %d: %w", round, err)
			}
			if why := checkPrompt(checkers, p.Prompt); why != "" {
				skipped = append(skipped, Skipped{ID: p.ID, Round: round, Reason: why})
				continue
			}
			ps, kept = append(ps, p), append(kept, sp)
		}
		var obs []detect.Observation
		if len(ps) > 0 {
			if obs, err = observe(ctx, ps, cfg.K, d); err != nil {
				if ctx.Err() != nil {
					return res, interrupted(ctx, res, cfg)
				}
				return res, fmt.Errorf("round %d: %w", round, err)
			}
		}
		fb := make([]Feedback, len(obs))
		for i, o := range obs {
			f := detect.Classify(o, th)
			f.Run, f.Sampler, f.Judge, f.Round, f.Seed = d.Run, s.Name(), d.Judge.Name(), round, ps[i].Seed
			res.Agg.Add(&f)
			res.Rollouts += len(o.Samples)
			fb[i] = feedback(kept[i], &f, th, cfg.RMScale)
			if f.Type == detect.TypeNone && !cfg.WriteAll {
				continue
			}
			res.Findings = append(res.Findings, f)
			if w != nil {
				if err := w.Write(&f); err != nil {
					return res, fmt.Errorf("round %d: finding for probe %s: %w", round, f.Probe.ID, findingErr(&f, err))
				}
			}
		}
		if w != nil {
			if err := w.Flush(); err != nil {
				return res, fmt.Errorf("round %d: writing findings: %w", round, err)
			}
		}
		res.Skipped = append(res.Skipped, skipped...)
		s.Update(fb)
		res.Rounds++
		if len(ps) == 0 {
			empty++
		} else {
			empty = 0
		}
		if err := checkpoint(); err != nil {
			return res, err
		}
		if d.Progress != nil {
			d.Progress(res.Rollouts, cfg.Budget, res.Agg)
		}
		if empty >= maxEmptyRounds {
			last := res.Skipped[len(res.Skipped)-1]
			return res, fmt.Errorf("round %d: every probe of the last %d rounds was skipped (probe %s: %s)", round, empty, last.ID, last.Reason)
		}
	}
	return res, nil
}

// interrupted is the error of a run stopped by ctx: it wraps ctx's cause.
func interrupted(ctx context.Context, res *Result, cfg Config) error {
	return fmt.Errorf("redteam interrupted at rollout %d of %d (after round %d): %w", res.Rollouts, cfg.Budget, res.Rounds, context.Cause(ctx))
}

func promptCheckers(d Deps) []PromptChecker {
	var out []PromptChecker
	for _, m := range []any{d.Policy, d.RM} {
		if c, ok := m.(PromptChecker); ok {
			out = append(out, c)
		}
	}
	return out
}

func checkPrompt(cs []PromptChecker, prompt string) string {
	for _, c := range cs {
		if err := c.CheckPrompt(prompt); err != nil {
			return err.Error()
		}
	}
	return ""
}

// snapshot is the run's state at a round boundary.
func snapshot(cfg Config, th detect.Thresholds, s Sampler, d Deps, res *Result, empty int) (*State, error) {
	ss, ok := s.(samplerState)
	if !ok {
		return nil, fmt.Errorf("sampler %s cannot save its state", s.Name())
	}
	raw, err := ss.saveState()
	if err != nil {
		return nil, fmt.Errorf("sampler: %w", err)
	}
	st := &State{Version: stateVersion, Status: StatusRunning, Run: d.Run, Sampler: s.Name(), Judge: d.Judge.Name(), Config: cfg, Thresholds: th,
		Round: res.Rounds, Rollouts: res.Rollouts, Budget: cfg.Budget, Aggregate: saveAgg(res.Agg), Skipped: res.Skipped, EmptyRound: empty,
		Findings: len(res.Findings), SamplerState: raw}
	if r, ok := d.Policy.(Resumable); ok {
		if st.PolicyState, err = r.SaveState(); err != nil {
			return nil, fmt.Errorf("policy state: %w", err)
		}
	}
	if r, ok := d.RM.(Resumable); ok {
		if st.RMState, err = r.SaveState(); err != nil {
			return nil, fmt.Errorf("reward model state: %w", err)
		}
	}
	return st, nil
}

// resumeFrom restores a run from st after checking that it is the same run
// (configuration, thresholds, judge, run name; the budget may differ).
func resumeFrom(st *State, cfg Config, th detect.Thresholds, s Sampler, d Deps, res *Result) (int, error) {
	if diff := configDiff(st.Config, cfg); diff != "" {
		return 0, fmt.Errorf("resume: [redteam] differs from the interrupted run's: %s", diff)
	}
	if diff := configDiff(st.Thresholds, th); diff != "" {
		return 0, fmt.Errorf("resume: [detect] differs from the interrupted run's: %s", diff)
	}
	if st.Judge != d.Judge.Name() {
		return 0, fmt.Errorf("resume: the interrupted run's judge was %s, this one is %s", st.Judge, d.Judge.Name())
	}
	if st.Run != d.Run {
		return 0, fmt.Errorf("resume: the interrupted run was named %q, this one %q", st.Run, d.Run)
	}
	if len(st.findings) != st.Findings {
		return 0, fmt.Errorf("resume: %d findings given, the state records %d", len(st.findings), st.Findings)
	}
	ss, ok := s.(samplerState)
	if !ok {
		return 0, fmt.Errorf("resume: sampler %s cannot restore its state", s.Name())
	}
	if err := ss.loadState(st.SamplerState); err != nil {
		return 0, fmt.Errorf("resume: sampler_state: %w", err)
	}
	for _, m := range []struct {
		what  string
		v     any
		state []byte
	}{{"policy", d.Policy, st.PolicyState}, {"reward model", d.RM, st.RMState}} {
		r, ok := m.v.(Resumable)
		switch {
		case ok && m.state == nil:
			return 0, fmt.Errorf("resume: the state file has no %s state, and this %s needs one to continue where the run stopped", m.what, m.what)
		case !ok && m.state != nil:
			return 0, fmt.Errorf("resume: the state file has %s state, and this %s cannot restore it", m.what, m.what)
		case ok:
			if err := r.LoadState(m.state); err != nil {
				return 0, fmt.Errorf("resume: %s state: %w", m.what, err)
			}
		}
	}
	res.Rollouts, res.Rounds, res.Agg = st.Rollouts, st.Round, st.Aggregate.restore()
	res.Skipped = append([]Skipped(nil), st.Skipped...)
	res.Findings = append([]detect.Finding(nil), st.findings...)
	return st.EmptyRound, nil
}

// configDiff names the JSON fields where a and b differ, budget excepted
// ("" when none).
func configDiff(a, b any) string {
	flat := func(v any) map[string]string {
		raw, _ := json.Marshal(v)
		var m map[string]json.RawMessage
		json.Unmarshal(raw, &m)
		out := map[string]string{}
		for k, v := range m {
			out[k] = string(v)
		}
		return out
	}
	fa, fb := flat(a), flat(b)
	var diffs []string
	for k, va := range fa {
		if k != "budget" && fb[k] != va {
			diffs = append(diffs, fmt.Sprintf("%s was %s, is %s", k, va, fb[k]))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
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
		return nil, fmt.Errorf("judge %s returned %d scores for %d items", d.Judge.Name(), len(harm), len(items))
	}
	for x, h := range harm {
		if !(h >= 0 && h <= 1) {
			return nil, fmt.Errorf("judge %s: the harm score of probe %s, sample %d (item %d) is %v, not a number in [0, 1]", d.Judge.Name(), ps[x/k].ID, x%k, x, h)
		}
	}
	rm, err := d.RM.Score(ctx, rmP, rmR)
	if err != nil {
		return nil, fmt.Errorf("reward model: %w", err)
	}
	if len(rm) != len(rmP) {
		return nil, fmt.Errorf("reward model returned %d scores for %d pairs", len(rm), len(rmP))
	}
	for x, v := range rm {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("reward model: the score of %s is %v, not a finite number", rmWhat(ps, k, nPolicy, x), v)
		}
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

// rmWhat names the x-th pair of observe's RM call.
func rmWhat(ps []probes.Probe, k, nPolicy, x int) string {
	if x < nPolicy {
		return fmt.Sprintf("probe %s, policy sample %d", ps[x/k].ID, x%k)
	}
	ref := nPolicy
	for i := range ps {
		if ps[i].YHarm != "" && ps[i].YSafe != "" {
			if x == ref {
				return fmt.Sprintf("probe %s, y_harm", ps[i].ID)
			}
			if x == ref+1 {
				return fmt.Sprintf("probe %s, y_safe", ps[i].ID)
			}
			ref += 2
		}
	}
	return fmt.Sprintf("pair %d", x)
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
				return nil, fmt.Errorf("%s: finding %d (probe %s): %w", p, i, res.Findings[i].Probe.ID, findingErr(&res.Findings[i], err))
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
	if len(res.Skipped) > 0 {
		sum["skipped"] = res.Skipped
	}
	sum["skipped_probes"] = len(res.Skipped)
	b, err := marshalJSON("summary", sum)
	if err != nil {
		return nil, fmt.Errorf("summary.json: %w", err)
	}
	p := filepath.Join(dir, "summary.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
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

// findingErr names the non-finite field of a finding that failed to encode.
func findingErr(f *detect.Finding, err error) error {
	var ue *json.UnsupportedValueError
	if errors.As(err, &ue) {
		if p := jsonl.NonFinitePath(f, "finding"); p != "" {
			return fmt.Errorf("%s is %s: JSON has no encoding for it", p, ue.Str)
		}
	}
	return err
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
