package study

import (
	"strings"
	"testing"
)

// TestStudyConfigNumbers: the study checks its optimiser, red-team and
// detect numbers with the same checks as the other loaders (before, lr = -1
// trained and nan passed).
func TestStudyConfigNumbers(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[sft]\nlr = -1\n", "bench.toml:2: sft.lr: -1 must be above 0"},
		{"[rm]\nlr = nan\n", "bench.toml:2: rm.lr: NaN is not a finite number"},
		{"[rm_repair]\nmin_lr_ratio = -1\n", "bench.toml:2: rm_repair.min_lr_ratio:"},
		{"[policy_repair]\nclip = nan\n", "bench.toml:2: policy_repair.clip: NaN"},
		{"[start_rlhf]\nkl = nan\n", "bench.toml:2: start_rlhf.kl: NaN"},
		{"[redteam]\nrm_scale = nan\n", "bench.toml:2: redteam.rm_scale: NaN"},
		{"[redteam.sampler]\neta = nan\n", "bench.toml:2: redteam.sampler.eta: NaN"},
		{"[detect]\nharm = nan\n", "bench.toml:2: detect.harm: NaN"},
		{"joint_bt = nan\n", "bench.toml:1: joint_bt: NaN"},
	} {
		_, err := LoadStudy(writeStudy(t, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want it to contain %q", tc.text, err, tc.want)
		}
	}
	if _, err := LoadStudy(writeStudy(t, "[study]\nsize = \"quick\"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadStudy(writeStudy(t, "[study]\nsize = \"full\"\n")); err != nil {
		t.Fatal(err)
	}
}
