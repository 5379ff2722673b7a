package repair

import (
	"path/filepath"
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
)

// TestRunConfigNumbers: non-finite and out-of-range numbers are refused
// with file, line and key, in a fixed order (the first bad key in the file's
// sections order sft, train_rm, rm_repair, policy_repair).
func TestRunConfigNumbers(t *testing.T) {
	cfgtest.WantLoadErrors(t, "r.toml", LoadRunConfig, []cfgtest.Case{
		{"[sft]\nlr = nan\n", "r.toml:2: sft.lr: NaN is not a finite number"},
		{"[sft]\nlr = inf\n", "r.toml:2: sft.lr: +Inf is not a finite number"},
		{"[train_rm]\nsteps = 3\nmin_lr_ratio = -0.5\n", "r.toml:3: train_rm.min_lr_ratio: -0.5 is not in [0, 1]"},
		{"[rm_repair]\nclip = nan\n", "r.toml:2: rm_repair.clip: NaN"},
		{"[rm_repair]\nbt = { margin = nan }\n", "r.toml:2: rm_repair.bt.margin: NaN"},
		{"[policy_repair]\nkl = nan\n", "r.toml:2: policy_repair.kl: NaN"},
		{"[policy_repair]\nunlikelihood = -1\n", "policy_repair.unlikelihood: -1 is below 0"},
		{"[policy_repair]\ntemperature = 0\n", "policy_repair.temperature: 0 must be above 0"},
		{"[policy_repair]\nclip_eps = nan\n", "policy_repair.clip_eps: NaN"},
		{"[policy_repair]\nlookalike_ratio = nan\n", "policy_repair.lookalike_ratio: NaN"},
		{"[sft]\nweight_decay = -1\n", "sft.weight_decay: -1 is below 0"},
		{"[sft]\nwarmup = -1\n", "sft.warmup: -1 is below 0"},
		{"[joint]\nbt = nan\n", "r.toml:2: joint.bt: NaN"},
		// Two bad keys: the first in the fixed order is reported, every time.
		{"[policy_repair]\nkl = nan\n[sft]\nlr = -1\n", "r.toml:4: sft.lr: -1 must be above 0"},
	})
	c := DefaultRunConfig()
	if err := c.Validate("defaults"); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// TestRunConfigUpperBounds: a finite but absurd value (1e300, a batch of
// a billion) is refused at load with file, line and key, not accepted or
// left to overflow in the first optimizer step; the example config, and
// values at the bounds, still load.
func TestRunConfigUpperBounds(t *testing.T) {
	cfgtest.WantLoadErrors(t, "r.toml", LoadRunConfig, []cfgtest.Case{
		{"[sft]\nlr = 1e300\n", "r.toml:2: sft.lr: 1e+300 is above 10"},
		{"[sft]\nweight_decay = 1e300\n", "r.toml:2: sft.weight_decay: 1e+300 is above"},
		{"[sft]\nclip = 1e300\n", "r.toml:2: sft.clip: 1e+300 is above"},
		{"[sft]\nbatch = 1000000000\n", "r.toml:2: sft.batch: 1000000000 is above"},
		{"[train_rm]\nlr = 1e300\n", "r.toml:2: train_rm.lr: 1e+300 is above"},
		{"[train_rm]\nsteps = 9000000000000\n", "r.toml:2: train_rm.steps: 9000000000000 is above"},
		{"[rm_repair]\nanchor = 1e300\n", "r.toml:2: rm_repair.anchor: 1e+300 is above"},
		{"[rm_repair]\nbt = { margin = 1e300 }\n", "r.toml:2: rm_repair.bt.margin: 1e+300 is not in"},
		{"[policy_repair]\ntemperature = 1e300\n", "r.toml:2: policy_repair.temperature: 1e+300 is above 100"},
		{"[policy_repair]\nclip_eps = 1e300\n", "r.toml:2: policy_repair.clip_eps: 1e+300 is above"},
		{"[policy_repair]\nunlikelihood = 1e300\n", "r.toml:2: policy_repair.unlikelihood: 1e+300 is above"},
		{"[policy_repair]\nkl = 1e300\n", "r.toml:2: policy_repair.kl: 1e+300 is above"},
		{"[policy_repair]\nreplay = 1e300\n", "r.toml:2: policy_repair.replay: 1e+300 is above"},
		{"[policy_repair]\nmax_new_tokens = 100000000\n", "r.toml:2: policy_repair.max_new_tokens: 100000000 is above"},
		{"[joint]\nbt = 1e300\n", "r.toml:2: joint.bt: 1e+300 is above"},
		{"[run]\nkeep_last = 100000000\n", "r.toml:2: run.keep_last: 100000000 is above"},
		{"[lora.policy]\nr = 2\nlora_alpha = 1e300\ntarget_modules = [\"q_proj\"]\n", "r.toml:3: lora.policy.lora_alpha: 1e+300 is above"},
		{"[lora.rm]\nr = 1000000\nlora_alpha = 4\ntarget_modules = [\"q_proj\"]\n", "r.toml:2: lora.rm.r: 1000000 is above"},
	})
	for _, text := range []string{"[sft]\nlr = 10\nclip = 1e6\n[policy_repair]\ntemperature = 100\n", "[joint]\nbt = 1e4\n"} {
		if _, err := LoadRunConfig(cfgtest.Write(t, "r.toml", text)); err != nil {
			t.Errorf("%q: values at the bounds refused: %v", text, err)
		}
	}
	if _, err := LoadRunConfig(filepath.Join("..", "..", "examples", "repair.toml")); err != nil {
		t.Errorf("examples/repair.toml: %v", err)
	}
}
