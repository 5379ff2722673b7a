package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/cfgtest"
)

// loraBase writes a small synthetic-world policy to train adapters on.
func loraBase(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "base")
	cfg := writeConfig(t, strings.Replace(sftConfig, "steps = 8", "steps = 2", 1))
	if code := runMain([]string{"sft", "--config", cfg, "--out", out}); code != 0 {
		t.Fatalf("base sft: exit %d", code)
	}
	return filepath.Join(out, "policy")
}

func loraSFTConfig(t *testing.T, base string, dropout float64) string {
	return writeConfig(t, sftConfig+`
[models]
policy = "`+base+`"

[lora.policy]
r = 4
lora_alpha = 8
target_modules = ["q_proj", "v_proj", "down_proj"]
lora_dropout = `+strconv.FormatFloat(dropout, 'g', -1, 64)+`
`)
}

func dirDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestLoRASFTResumeMergeAndDataParallel: an sft run with [lora.policy]
// trains and checkpoints only the adapters, writes a PEFT adapter directory
// and leaves the base untouched; stopped and resumed it equals an
// uninterrupted run bit for bit (dropout included: its masks derive from the
// step); ares lora merge writes a model whose log-probabilities equal the
// adapter's; and 2 processes equal 1 (without dropout, whose masks depend on
// each rank's share of the batch, as in any data-parallel engine).
func TestLoRASFTResumeMergeAndDataParallel(t *testing.T) {
	base := loraBase(t)
	before := dirDigest(t, base)
	cfg := loraSFTConfig(t, base, 0.1)
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	sftStopResumeEqual(t, cfg, a, b, "LoRA run")
	// The checkpoint holds adapters and their moments only.
	src, err := checkpoints.OpenSource(finalCheckpoint(t, a, 8))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range src.Tensors() {
		if !strings.Contains(e.Name, ".lora_A.") && !strings.Contains(e.Name, ".lora_B.") && !strings.Contains(e.Name, "/adamw/") {
			t.Fatalf("checkpoint of a LoRA run holds %s", e.Name)
		}
		n++
	}
	src.Close()
	if n == 0 {
		t.Fatal("empty checkpoint")
	}
	for name, data := range dirDigest(t, base) {
		if before[name] != data {
			t.Fatalf("the base model's %s changed", name)
		}
	}
	adapter := filepath.Join(a, "policy")
	for _, f := range []string{model.AdapterConfigFile, model.AdapterWeightsFile, "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(adapter, f)); err != nil {
			t.Fatalf("adapter directory lacks %s", f)
		}
	}
	merged := filepath.Join(root, "merged")
	if code := runMain([]string{"lora", "merge", "--adapter", adapter, "--out", merged}); code != 0 {
		t.Fatalf("lora merge: exit %d", code)
	}
	if code := runMain([]string{"lora", "merge", "--adapter", adapter, "--out", base}); code != 1 {
		t.Fatalf("lora merge onto its base: exit %d, want 1", code)
	}
	withAdapter, mergedLP := policyLogProbs(t, adapter), policyLogProbs(t, merged)
	for i := range withAdapter {
		if d := withAdapter[i] - mergedLP[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("log-prob %d: adapter %g, merged %g", i, withAdapter[i], mergedLP[i])
		}
	}
	if testing.Short() {
		return
	}
	one, two := filepath.Join(root, "one"), filepath.Join(root, "two")
	cfg = loraSFTConfig(t, base, 0)
	if code := runMain([]string{"sft", "--config", cfg, "--out", one}); code != 0 {
		t.Fatalf("one process: exit %d", code)
	}
	t.Setenv("ARES_TEST_RUN_MAIN", strings.Join([]string{"sft", "--config", cfg, "--out", two}, "\x1f"))
	if code := runMain([]string{"launch", "--nproc", "2", "--", os.Args[0], "-test.run=^$"}); code != 0 {
		t.Fatalf("two processes: exit %d", code)
	}
	weightsClose(t, "LoRA, 1 and 2 processes", one, two)
}

func policyLogProbs(t *testing.T, dir string) []float32 {
	t.Helper()
	m, err := model.Load(dir, model.CausalLM, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var out []float32
	if err := torch.Try(func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			b, err := m.NewBatch(s, [][]int{{5, 9, 2, 7, 1, 3}, {4, 8, 6}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			out = m.TokenLogProbs(b).Float32s()
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLoRAConfigErrors(t *testing.T) {
	// The error names the key, and the file with the key's line.
	cfgtest.WantErrors(t, func(body string) error {
		cfg := writeConfig(t, "[data]\nworld = true\n"+body)
		return runErr([]string{"sft", "--config", cfg, "--out", t.TempDir()})
	}, func(s, want string) bool {
		return strings.Contains(s, want) && strings.Contains(s, "run.toml:")
	}, []cfgtest.Case{
		{"[lora.policy]\nlora_alpha = 8\n", "lora.policy.r"},
		{"[lora.policy]\nr = 4\nlora_alpha = nan\ntarget_modules = [\"q_proj\"]\n", "lora.policy.lora_alpha"},
		{"[lora.rm]\nr = 4\nlora_alpha = 8\nlora_dropout = 1.5\ntarget_modules = [\"q_proj\"]\n", "lora.rm.lora_dropout"},
		{"[lora.policy]\nr = 4\nlora_alpha = 8\n", "lora.policy.target_modules"},
		{"[lora.policy]\nrank = 4\n", "rank"},
	})
	// Adapters on a model started from scratch have no base to save against.
	cfg := writeConfig(t, "[data]\nworld = true\n[lora.policy]\nr = 2\nlora_alpha = 4\ntarget_modules = [\"q_proj\"]\n")
	if err := runErr([]string{"sft", "--config", cfg, "--out", t.TempDir()}); err == nil || !strings.Contains(err.Error(), "models.policy") {
		t.Errorf("LoRA from scratch: %v", err)
	}
	// A target the model does not have is named.
	base := loraBase(t)
	cfg = writeConfig(t, "[data]\nworld = true\n[models]\npolicy = \""+base+"\"\n[lora.policy]\nr = 2\nlora_alpha = 4\ntarget_modules = [\"c_attn\"]\n")
	if err := runErr([]string{"sft", "--config", cfg, "--out", t.TempDir()}); err == nil || !strings.Contains(err.Error(), `"c_attn"`) {
		t.Errorf("missing target module: %v", err)
	}
}

// runErr runs a command by name and returns its error.
func runErr(args []string) error {
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	return nil
}
