package repair

import (
	"context"
	"fmt"
	"io"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/train"
)

// Optim are the optimisation settings of one stage (a TOML table).
type Optim struct {
	Steps       int64   `toml:"steps"`
	Batch       int     `toml:"batch"`
	Accum       int     `toml:"grad_accum"`
	LR          float64 `toml:"lr"`
	MinLRRatio  float64 `toml:"min_lr_ratio"`
	Warmup      int64   `toml:"warmup"`
	WeightDecay float64 `toml:"weight_decay"`
	Clip        float64 `toml:"clip"`
}

func (o Optim) schedule() train.Schedule {
	return train.Schedule{LR: o.LR, Warmup: o.Warmup, Total: o.Steps, MinRatio: o.MinLRRatio}
}

// RunIO is where a stage writes: checkpoints, metrics, progress.
type RunIO struct {
	Manager         *checkpoints.Manager
	Metrics         io.Writer
	Progress        io.Writer
	Label           string
	Blobs           map[string][]byte
	CheckpointEvery int64
	KeepLast        int
	MaxNonFinite    int
	Resume          bool
	// ForceConfig resumes even from a checkpoint written with another
	// config (train.Trainer.ForceConfig).
	ForceConfig bool
	StopAfter   int64 // stop after this many steps (0: run to the end)
	// DP makes the stage data-parallel: each rank trains on its share of
	// every global batch and gradients are averaged (nil: one process).
	DP train.DataParallel
	// Ctx interrupts the stage at a step boundary, with a checkpoint, when
	// it is cancelled (nil: never; train.Trainer.Ctx).
	Ctx context.Context
}

// shard returns this rank's contiguous share of a global batch, the same on
// every run so that data-parallel training equals one process on the global
// batch.
func (io RunIO) shard(n int) (lo, hi int) {
	if io.DP == nil || io.DP.Size() <= 1 {
		return 0, n
	}
	per := n / io.DP.Size()
	return io.DP.Rank() * per, (io.DP.Rank() + 1) * per
}

// checkDivisible rejects batch sizes that ranks cannot share equally.
func (io RunIO) checkDivisible(what string, n int) error {
	if io.DP != nil && io.DP.Size() > 1 && n%io.DP.Size() != 0 {
		return fmt.Errorf("%s %d is not divisible by the world size %d", what, n, io.DP.Size())
	}
	return nil
}

// modelGroup is what training updates of m (every parameter, or with LoRA
// adapters only the adapters and the modules to save) with its optimizer:
// only these carry gradients, optimizer state, checkpoint entries and
// data-parallel all-reduces. A failure to set it up (an out-of-memory
// allocating the optimizer state) is an error, with nothing left allocated.
func modelGroup(name string, m *model.Transformer, o Optim) (*train.Group, error) {
	ps := m.Trainable()
	names := make([]string, len(ps))
	ts := make([]*torch.Tensor, len(ps))
	for i, p := range ps {
		names[i], ts[i] = p.Name, p.T
	}
	if err := torch.Try(func() { m.SetTrainable(true) }); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return train.MakeGroup(name, names, ts, o.schedule(), o.WeightDecay, o.Clip)
}

// setTrainable is SetTrainable with a failure returned as an error.
func setTrainable(m *model.Transformer, on bool) error {
	return torch.Try(func() { m.SetTrainable(on) })
}

// trainModel trains m alone: its modelGroup named group, under o, with step
// run for each micro-batch (runTrainer). A failure to set up the group is
// returned prefixed with what.
func trainModel(io RunIO, o Optim, seed int64, what, group string, m *model.Transformer, step train.StepFunc) (*train.Trainer, error) {
	g, err := modelGroup(group, m, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	groups := []*train.Group{g}
	defer closeGroups(groups)
	return runTrainer(io, o, groups, seed, []*model.Transformer{m}, step)
}

// runTrainer builds the trainer, resumes if asked, and runs step.
// trained are the models whose groups these are: their adapters' dropout is
// seeded from (seed, step, micro) before each micro-batch, so that a resumed
// run draws the same masks as an uninterrupted one.
func runTrainer(io RunIO, o Optim, groups []*train.Group, seed int64, trained []*model.Transformer, step train.StepFunc) (*train.Trainer, error) {
	inner := step
	step = func(s *torch.Scope, st int64, micro int, t *train.Timer) (train.Micro, error) {
		for i, m := range trained {
			if err := m.SeedDropout(mixSeed(uint64(seed), uint64(st), uint64(micro), uint64(i))); err != nil {
				return train.Micro{}, err
			}
		}
		return inner(s, st, micro, t)
	}
	tr := &train.Trainer{
		Cfg: train.Config{Steps: o.Steps, Accum: o.Accum, MaxNonFinite: io.MaxNonFinite,
			CheckpointEvery: io.CheckpointEvery, KeepLast: io.KeepLast, Progress: io.Progress, Label: io.Label, StopAfter: io.StopAfter},
		Groups: groups, Manager: io.Manager, Metrics: io.Metrics, Blobs: io.Blobs, DP: io.DP,
		Ctx: io.Ctx, ForceConfig: io.ForceConfig,
	}
	if io.Resume && io.Manager != nil {
		if _, err := tr.Resume(); err != nil {
			return nil, err
		}
	}
	return tr, tr.Run(step)
}

// mixSeed combines numbers into one seed (SplitMix64's finaliser per step).
func mixSeed(xs ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, x := range xs {
		h ^= x + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

func closeGroups(gs []*train.Group) {
	for _, g := range gs {
		g.Opt.Close()
	}
}
