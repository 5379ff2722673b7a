package study

import (
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
)

// TestStudyConfigNumbers: the study checks its optimiser, red-team and
// detect numbers with the same checks as the other loaders (before, lr = -1
// trained and nan passed).
func TestStudyConfigNumbers(t *testing.T) {
	cfgtest.WantLoadErrors(t, "bench.toml", LoadStudy, []cfgtest.Case{
		{"[sft]\nlr = -1\n", "bench.toml:2: sft.lr: -1 must be above 0"},
		{"[train_rm]\nlr = nan\n", "bench.toml:2: train_rm.lr: NaN is not a finite number"},
		{"[rm_repair]\nmin_lr_ratio = -1\n", "bench.toml:2: rm_repair.min_lr_ratio:"},
		{"[policy_repair]\nclip = nan\n", "bench.toml:2: policy_repair.clip: NaN"},
		{"[start_rlhf]\nkl = nan\n", "bench.toml:2: start_rlhf.kl: NaN"},
		{"[redteam]\nrm_scale = nan\n", "bench.toml:2: redteam.rm_scale: NaN"},
		{"[redteam.sampler]\neta = nan\n", "bench.toml:2: redteam.sampler.eta: NaN"},
		{"[detect]\nharm = nan\n", "bench.toml:2: detect.harm: NaN"},
		{"[joint]\nbt = nan\n", "bench.toml:2: joint.bt: NaN"},
		// Upper bounds, [data] and [model]: accepted before (the data's
		// negatives silently taken as the default, the model's shape
		// refused only after the world and tokenizer were built).
		{"[joint]\nbt = 1e300\n", "bench.toml:2: joint.bt: 1e+300 is above"},
		{"[sft]\nlr = 1e300\n", "bench.toml:2: sft.lr: 1e+300 is above 10"},
		{"[policy_repair]\ntemperature = 1e300\n", "bench.toml:2: policy_repair.temperature: 1e+300 is above"},
		{"[redteam.sampler]\nmax_weight = 1e300\n", "bench.toml:2: redteam.sampler.max_weight: 1e+300 is above"},
		{"[detect]\nrm_margin = 1e300\n", "bench.toml:2: detect.rm_margin: 1e+300 is not in"},
		{"[lora]\nlr_scale = 1e300\n", "bench.toml:2: lora.lr_scale: 1e+300 is above"},
		{"[data]\nharm = -1\n", "bench.toml:2: data.harm: -1 is below 0"},
		{"[data]\nheldout_prefs = 1000000000\n", "bench.toml:2: data.heldout_prefs: 1000000000 is above"},
		{"[model]\nhidden = -64\n", "bench.toml:2: model.hidden: -64 is below 1"},
		{"[model]\nheads = 0\n", "bench.toml:2: model.heads: 0 is below 1"},
		{"[model]\nheads = 3\n", "bench.toml:2: model.heads: 3 heads do not split model.hidden 64"},
		{"[model]\nkv_heads = 3\n", "bench.toml:2: model.kv_heads: 3 does not divide model.heads 4"},
		{"eval_k = 100000000\n", "bench.toml:1: eval_k: 100000000 is above"},
	})
	if _, err := LoadStudy(writeStudy(t, "[study]\nsize = \"quick\"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadStudy(writeStudy(t, "[study]\nsize = \"full\"\n")); err != nil {
		t.Fatal(err)
	}
}
