package repair

import (
	"github.com/ares-rlhf/ares/internal/cfgcheck"
)

// Validate checks the numbers of a stage's optimisation settings; keys are
// relative to the stage's table (a *cfgcheck.Error, put under the table with
// cfgcheck.Under). Every loader of a run, red-team or study config calls it.
// Every value also has an upper bound far above any sane run (cfgcheck's
// Max* constants), so that 1e300 fails here, naming its key, rather than in
// the first op that overflows, or never.
// grad_accum 0 means 1. A warmup at least as long as the run is allowed:
// the learning rate then ramps up for the whole run.
func (o Optim) Validate() error {
	c := cfgcheck.New("")
	o.check(c)
	return c.Err()
}

func (o Optim) check(c *cfgcheck.Checker) {
	c.IntIn("steps", o.Steps, 0, cfgcheck.MaxSteps)
	c.IntIn("batch", int64(o.Batch), 1, cfgcheck.MaxBatch)
	c.IntIn("grad_accum", int64(o.Accum), 0, cfgcheck.MaxBatch)
	c.Positive("lr", o.LR)
	c.AtMost("lr", o.LR, cfgcheck.MaxLR)
	c.In("min_lr_ratio", o.MinLRRatio, 0, 1)
	c.IntIn("warmup", o.Warmup, 0, cfgcheck.MaxSteps)
	c.Between("weight_decay", o.WeightDecay, 0, cfgcheck.MaxWeight)
	c.Between("clip", o.Clip, 0, cfgcheck.MaxClip)
}

// Validate checks stage 1's settings (see Optim.Validate).
func (o RMRepair) Validate() error {
	c := cfgcheck.New("")
	o.Optim.check(c)
	c.Magnitude("bt.margin", o.BT.Margin, cfgcheck.MaxScore)
	c.Between("bt.center_coef", o.BT.CenterCoef, 0, cfgcheck.MaxWeight)
	if c.Finite("replay_ratio", o.ReplayRatio) {
		c.Check("replay_ratio", o.ReplayRatio >= 0 && o.ReplayRatio < 1, "%v is not in [0, 1)", o.ReplayRatio)
	}
	c.Between("anchor", o.Anchor, 0, cfgcheck.MaxWeight)
	c.IntIn("anchor_size", int64(o.AnchorSize), 0, cfgcheck.MaxBatch)
	c.IntIn("anchor_batch", int64(o.AnchorBatch), 0, cfgcheck.MaxBatch)
	return c.Err()
}

// Validate checks stage 2's settings (see Optim.Validate).
func (o PolicyRepair) Validate() error {
	c := cfgcheck.New("")
	o.Optim.check(c)
	c.IntIn("prompts", int64(o.Prompts), 1, cfgcheck.MaxBatch)
	c.Check("group", o.Group >= 2, "%d: a group needs at least 2 samples", o.Group)
	c.IntAtMost("group", int64(o.Group), cfgcheck.MaxCount)
	c.IntIn("updates_per_batch", int64(o.UpdatesPerBatch), 1, cfgcheck.MaxCount)
	c.IntIn("max_new_tokens", int64(o.MaxNewTokens), 1, cfgcheck.MaxTokens)
	c.Positive("temperature", o.Temperature)
	c.AtMost("temperature", o.Temperature, cfgcheck.MaxTemp)
	c.Positive("clip_eps", o.ClipEps)
	c.AtMost("clip_eps", o.ClipEps, 10)
	c.Between("unlikelihood", o.Unlikelihood, 0, cfgcheck.MaxWeight)
	c.Between("kl", o.KL, 0, cfgcheck.MaxWeight)
	c.Between("replay", o.Replay, 0, cfgcheck.MaxWeight)
	c.IntIn("replay_batch", int64(o.ReplayBatch), 0, cfgcheck.MaxBatch)
	if c.Finite("lookalike_ratio", o.LookalikeRatio) {
		c.Check("lookalike_ratio", o.LookalikeRatio >= 0 && o.LookalikeRatio < 1, "%v is not in [0, 1)", o.LookalikeRatio)
	}
	return c.Err()
}
