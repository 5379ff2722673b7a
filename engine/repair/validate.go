package repair

import (
	"github.com/ares-rlhf/ares/internal/cfgcheck"
)

// Validate checks the numbers of a stage's optimisation settings; keys are
// relative to the stage's table (a *cfgcheck.Error, put under the table with
// cfgcheck.Under). Every loader of a run, red-team or study config calls it.
// grad_accum 0 means 1. A warmup at least as long as the run is allowed:
// the learning rate then ramps up for the whole run.
func (o Optim) Validate() error {
	c := cfgcheck.New("")
	o.check(c)
	return c.Err()
}

func (o Optim) check(c *cfgcheck.Checker) {
	c.IntAtLeast("steps", o.Steps, 0)
	c.IntAtLeast("batch", int64(o.Batch), 1)
	c.IntAtLeast("grad_accum", int64(o.Accum), 0)
	c.Positive("lr", o.LR)
	c.In("min_lr_ratio", o.MinLRRatio, 0, 1)
	c.IntAtLeast("warmup", o.Warmup, 0)
	c.AtLeast("weight_decay", o.WeightDecay, 0)
	c.AtLeast("clip", o.Clip, 0)
}

// Validate checks stage 1's settings (see Optim.Validate).
func (o RMRepair) Validate() error {
	c := cfgcheck.New("")
	o.Optim.check(c)
	c.Finite("bt.margin", o.BT.Margin)
	c.AtLeast("bt.center_coef", o.BT.CenterCoef, 0)
	if c.Finite("replay_ratio", o.ReplayRatio) {
		c.Check("replay_ratio", o.ReplayRatio >= 0 && o.ReplayRatio < 1, "%v is not in [0, 1)", o.ReplayRatio)
	}
	c.AtLeast("anchor", o.Anchor, 0)
	c.IntAtLeast("anchor_size", int64(o.AnchorSize), 0)
	c.IntAtLeast("anchor_batch", int64(o.AnchorBatch), 0)
	return c.Err()
}

// Validate checks stage 2's settings (see Optim.Validate).
func (o PolicyRepair) Validate() error {
	c := cfgcheck.New("")
	o.Optim.check(c)
	c.IntAtLeast("prompts", int64(o.Prompts), 1)
	c.Check("group", o.Group >= 2, "%d: a group needs at least 2 samples", o.Group)
	c.IntAtLeast("updates_per_batch", int64(o.UpdatesPerBatch), 1)
	c.IntAtLeast("max_new_tokens", int64(o.MaxNewTokens), 1)
	c.Positive("temperature", o.Temperature)
	c.Positive("clip_eps", o.ClipEps)
	c.AtLeast("unlikelihood", o.Unlikelihood, 0)
	c.AtLeast("kl", o.KL, 0)
	c.AtLeast("replay", o.Replay, 0)
	c.IntAtLeast("replay_batch", int64(o.ReplayBatch), 0)
	if c.Finite("lookalike_ratio", o.LookalikeRatio) {
		c.Check("lookalike_ratio", o.LookalikeRatio >= 0 && o.LookalikeRatio < 1, "%v is not in [0, 1)", o.LookalikeRatio)
	}
	return c.Err()
}
