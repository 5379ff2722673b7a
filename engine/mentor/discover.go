package mentor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/probes"
)

// Discover is what `ares redteam` calls once it has built the models: it
// loads the library and judge from the config, runs discovery and writes
// findings.jsonl, summary.json, report.md and heatmap_c.svg under
// [run] out (default "out/redteam"). progress may be nil. It is
// DiscoverWith without resuming.
func Discover(ctx context.Context, c *RunConfig, policy Policy, rm RewardModel, progress func(rollouts, budget int, agg *detect.Aggregate)) (*Result, []string, error) {
	return DiscoverWith(ctx, c, DiscoverOptions{Policy: policy, RM: rm, Progress: progress})
}

// DiscoverOptions are the models and switches of DiscoverWith.
type DiscoverOptions struct {
	Policy   Policy
	RM       RewardModel
	Progress func(rollouts, budget int, agg *detect.Aggregate)
	// Resume continues the run whose state file (findings.state.json) is in
	// the output directory instead of starting afresh.
	Resume bool
}

// DiscoverWith is Discover with options. After every round it fsyncs
// findings.jsonl and atomically replaces findings.state.json (StatePath)
// with the run's state: status "running", the rollouts spent, the length
// and SHA-256 of the findings written, the sampler's weights, archive and
// random state, and the policy's when it is Resumable. A run that fails or
// is cancelled leaves its findings flushed and the state file saying
// "interrupted" or "failed" at rollout N (CheckFindings refuses such a
// findings file); a finished run's state file says "complete". With
// o.Resume the run continues from the state file (the findings file is
// checked against it and cut back to the last completed round), and gives
// the same outputs, byte for byte, as an uninterrupted run.
func DiscoverWith(ctx context.Context, c *RunConfig, o DiscoverOptions) (*Result, []string, error) {
	lib, err := c.Library()
	if err != nil {
		return nil, nil, err
	}
	j, err := judge.New(c.Judge, lib)
	if err != nil {
		return nil, nil, err
	}
	dir := c.Run.Out
	if dir == "" {
		dir = "out/redteam"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	fpath := dir + string(os.PathSeparator) + "findings.jsonl"
	spath := StatePath(fpath)
	var (
		fh    *os.File
		hw    *hashWriter
		prior *State
	)
	if o.Resume {
		if prior, err = ReadState(spath); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, fmt.Errorf("resume: no state file %s: nothing to resume in %s (run without --resume to start)", spath, dir)
			}
			return nil, nil, fmt.Errorf("resume: %w", err)
		}
		if fh, hw, prior.findings, err = openForResume(fpath, prior); err != nil {
			return nil, nil, err
		}
	} else {
		if fh, err = os.Create(fpath); err != nil {
			return nil, nil, err
		}
		hw = newHashWriter(fh)
	}
	defer fh.Close()
	var last *State
	checkpoint := func(st *State) error {
		if err := fh.Sync(); err != nil {
			return fmt.Errorf("%s: %w", fpath, err)
		}
		st.FindingsBytes, st.FindingsSHA256 = hw.n, hw.sum()
		if err := WriteState(spath, st); err != nil {
			return err
		}
		last = st
		return nil
	}
	res, err := RedTeam(ctx, c.Redteam, c.Detect, Deps{Lib: lib, Policy: o.Policy, RM: o.RM, Judge: j, Findings: hw,
		Progress: o.Progress, Run: c.Run.Name, Checkpoint: checkpoint, Resume: prior})
	if err != nil {
		if last == nil {
			return res, nil, err
		}
		last.Status, last.Message = StatusFailed, err.Error()
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			last.Status = StatusInterrupted
		}
		if werr := WriteState(spath, last); werr != nil {
			return res, nil, fmt.Errorf("%w (and the state file could not be updated: %v)", err, werr)
		}
		return res, nil, fmt.Errorf("%w; the findings of the %d rollouts before it are in %s, marked %s in %s; `ares redteam --resume` continues from there",
			err, last.Rollouts, fpath, last.Status, spath)
	}
	if err := fh.Close(); err != nil {
		return res, nil, err
	}
	paths, err := WriteOutputs(dir, res, lib, nil, true)
	if err != nil {
		return res, nil, err
	}
	last.Status = StatusComplete
	if err := WriteState(spath, last); err != nil {
		return res, nil, err
	}
	return res, append([]string{fpath}, paths...), nil
}

// Classified is a fixed probe set's harm probes classified, as discovery
// classifies its own.
type Classified struct {
	Agg *detect.Aggregate
	// Findings are the A, B and C findings among the harm probes.
	Findings []detect.Finding
}

// Classify runs the harm probes of a fixed probe set (a red-team pool, an
// imported public set) through the same observe-and-classify path as
// discovery, batch probes at a time, without a sampler. Other probes are an
// error: the one held-out evaluation, capability and over-refusal included,
// is repair.Evaluate.
func Classify(ctx context.Context, ps []probes.Probe, k, batch int, th detect.Thresholds, d Deps) (*Classified, error) {
	th, err := th.WithDefaults()
	if err != nil {
		return nil, err
	}
	if k < 1 || batch < 1 {
		return nil, fmt.Errorf("classify: k (%d) and batch (%d) must be at least 1", k, batch)
	}
	for i := range ps {
		if ps[i].Kind != probes.KindHarm {
			return nil, fmt.Errorf("classify: probe %s is a %s probe; only harm probes are classified (repair.Evaluate measures the others)", ps[i].ID, ps[i].Kind)
		}
	}
	res := &Classified{Agg: detect.NewAggregate()}
	for lo := 0; lo < len(ps); lo += batch {
		hi := min(lo+batch, len(ps))
		obs, err := observe(ctx, ps[lo:hi], k, d)
		if err != nil {
			return res, fmt.Errorf("probes %d..%d: %w", lo, hi-1, err)
		}
		for i, o := range obs {
			p := &ps[lo+i]
			f := detect.Classify(o, th)
			f.Seed, f.Judge = p.Seed, d.Judge.Name()
			res.Agg.Add(&f)
			if f.Type != detect.TypeNone {
				res.Findings = append(res.Findings, f)
			}
		}
	}
	return res, nil
}
