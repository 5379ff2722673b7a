package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
	"github.com/ares-rlhf/ares/tokenizer"
)

// TestTokenIDsOutsideVocabulary: an input_ids id near 2^62 is an error
// naming the input line, before anything is sized by it.
func TestTokenIDsOutsideVocabulary(t *testing.T) {
	lm, rm := tinyModelDir(t)
	in := filepath.Join(t.TempDir(), "in.jsonl")
	os.WriteFile(in, []byte("{\"input_ids\":[5,6,7]}\n{\"input_ids\":[5,4611686018427387904]}\n"), 0o644)
	for _, args := range [][]string{{"--rm", rm, "--input", in}, {"--model", lm, "--input", in}} {
		run := runScore
		if args[0] == "--model" {
			run = runLogprobs
		}
		err := run(append(args, "--out", filepath.Join(t.TempDir(), "o.jsonl")))
		if err == nil || !strings.Contains(err.Error(), "in.jsonl:2: token 1: id 4611686018427387904 is outside the vocabulary") {
			t.Errorf("%v: %v", args, err)
		}
	}
	prompts := filepath.Join(t.TempDir(), "p.jsonl")
	os.WriteFile(prompts, []byte("{\"input_ids\":[-1]}\n"), 0o644)
	if err := runGenerate([]string{"--model", lm, "--prompts", prompts, "--out", filepath.Join(t.TempDir(), "g.jsonl")}); err == nil || !strings.Contains(err.Error(), "p.jsonl:1: token 0: id -1") {
		t.Errorf("generate: %v", err)
	}
}

// TestTiktokenHugeRank: a rank near 2^31 in a rank file is an error naming
// the line, not gigabytes of allocation.
func TestTiktokenHugeRank(t *testing.T) {
	_, err := tokenizer.ParseTiktoken(strings.NewReader("YQ== 0\nYg== 2147483000\n"), "r.tiktoken", tokenizer.TiktokenOptions{})
	if err == nil || !strings.Contains(err.Error(), "r.tiktoken:2: bad rank") {
		t.Fatalf("huge rank: %v", err)
	}
}

// TestSFTRejectsNaNLearningRate: `ares sft` with lr = nan used to exit 0 with
// all-NaN weights; now the config is refused (exit 1) before training.
func TestSFTRejectsNaNLearningRate(t *testing.T) {
	for _, body := range []string{"[sft]\nlr = nan\n", "[sft]\nlr = inf\n", "[sft]\nmin_lr_ratio = -1\n", "[sft]\nclip = nan\n", "[policy_repair]\nkl = nan\n"} {
		out := t.TempDir()
		bad := writeConfig(t, "[run]\nout = \""+out+"\"\n\n[data]\nworld = true\n\n"+body)
		if code := runMain([]string{"sft", "--config", bad}); code != 1 {
			t.Errorf("%q: exit %d", body, code)
		}
		if _, err := os.Stat(filepath.Join(out, "checkpoints")); err == nil {
			t.Errorf("%q: training started", body)
		}
	}
}

// TestRedteamConfigNumbers: `ares redteam` runs the shared [redteam] and
// [detect] checks and its own, with file, line and key.
func TestRedteamConfigNumbers(t *testing.T) {
	cfgtest.WantErrors(t, func(text string) error {
		path := cfgtest.Write(t, "rt.toml", text+"\n[models]\npolicy = \"p\"\nrm = \"r\"\n")
		c, err := loadRedteamConfig(path)
		if err == nil {
			err = c.validate(path)
		}
		return err
	}, strings.Contains, []cfgtest.Case{
		{"[redteam]\nbudget = 8\nrm_scale = nan\n", "rt.toml:3: redteam.rm_scale: NaN is not a finite number"},
		{"[redteam.sampler]\nexplore = nan\n", "rt.toml:2: redteam.sampler.explore: NaN"},
		{"[detect]\npolicy_harm_rate = nan\n", "rt.toml:2: detect.policy_harm_rate: NaN"},
		{"[generation]\ntemperature = nan\n", "rt.toml:2: generation.temperature: NaN"},
		// Upper bounds: accepted (and run) before.
		{"[generation]\ntemperature = 1e300\n", "rt.toml:2: generation.temperature: 1e+300 is above 100"},
		{"[generation]\nbatch = 100000000\n", "rt.toml:2: generation.batch: 100000000 is above"},
		{"[redteam.sampler]\ncap = 1e300\n", "rt.toml:2: redteam.sampler.cap: 1e+300 is above"},
		{"[detect]\nrm_high = 1e300\n", "rt.toml:2: detect.rm_high: 1e+300 is not in"},
	})
}

// TestEmptyDataFileNamed: an empty data.sft or data.pairs file failed with
// "sft: no examples", without the file; the error names it and the key.
func TestEmptyDataFileNamed(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct {
		key string
		run func([]string) error
	}{{"sft", runSFT}, {"pairs", runTrainRM}} {
		cfg := writeConfig(t, "[run]\nout = \""+filepath.Join(dir, c.key)+"\"\n[data]\n"+c.key+" = \""+empty+"\"\n")
		err := c.run([]string{"--config", cfg})
		if err == nil || !strings.Contains(err.Error(), empty+": data."+c.key+": no ") {
			t.Errorf("%s: %v", c.key, err)
		}
	}
}
