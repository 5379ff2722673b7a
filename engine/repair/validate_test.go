package repair

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunConfigNumbers: non-finite and out-of-range numbers are refused
// with file, line and key, in a fixed order (the first bad key in the file's
// sections order sft, train_rm, rm_repair, policy_repair).
func TestRunConfigNumbers(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
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
	} {
		path := filepath.Join(t.TempDir(), "r.toml")
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadRunConfig(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
	c := DefaultRunConfig()
	if err := c.Validate("defaults"); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}
