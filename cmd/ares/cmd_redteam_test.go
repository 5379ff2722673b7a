package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/tokenizer"
)

// tinyChatModels saves a random tiny policy and reward model whose
// tokenizer (with the ChatML specials) is trained on the synthetic world's
// text, with a context long enough for its prompts plus generation.
func tinyChatModels(t *testing.T) (lm, rm string) {
	t.Helper()
	var texts []string
	for _, e := range world.Default().SFTSet(world.DataOptions{Harm: 60, Benign: 20, Lookalike: 10, PerCell: 1, BenignEval: 5, Seed: 1}) {
		texts = append(texts, e.Prompt, e.Response)
	}
	tok, err := tokenizer.Train(texts, tokenizer.TrainOptions{VocabSize: 400, Special: tokenizer.ChatSpecials})
	if err != nil {
		t.Fatal(err)
	}
	end, _ := tok.SpecialID(tok.ChatTemplate().End)
	cfg, err := model.ParseConfig([]byte(`{"model_type":"llama","vocab_size":` + itoa(tok.VocabSize()) + `,"hidden_size":32,
		"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":48,
		"max_position_embeddings":256,"tie_word_embeddings":true,"eos_token_id":` + itoa(end) + `}`))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	lm, rm = filepath.Join(root, "policy"), filepath.Join(root, "rm")
	for kind, dir := range map[model.Kind]string{model.CausalLM: lm, model.Reward: rm} {
		m, err := model.Init(cfg, kind, 3, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = m.Save(dir, kind, tok)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return lm, rm
}

// TestRedteamCommand runs `ares redteam` on tiny random models (with the
// ChatML specials) and a tiny budget, from the shipped example config with
// the model directories given on the command line.
func TestRedteamCommand(t *testing.T) {
	lm, rm := tinyChatModels(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	example, _ := filepath.Abs(filepath.Join("..", "..", "examples", "redteam.toml"))
	args := []string{"redteam", "--config", example, "--policy", lm, "--rm", rm, "--out", out, "--budget", "24", "--seed", "2", "--quiet"}
	if code := runMain(args); code != 0 {
		t.Fatalf("redteam exit %d", code)
	}
	for _, f := range []string{"findings.jsonl", "summary.json", "report.md", "heatmap_c.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || (f != "findings.jsonl" && st.Size() == 0) {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if _, err := detect.ReadFindings(filepath.Join(out, "findings.jsonl")); err != nil {
		t.Fatal(err)
	}
	svg, _ := os.ReadFile(filepath.Join(out, "heatmap_c.svg"))
	if !strings.Contains(string(svg), "<svg") {
		t.Fatalf("heatmap: %.200s", svg)
	}
	sum, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if !strings.Contains(string(sum), `"seed": 2`) || !strings.Contains(string(sum), `"rollouts": 24`) {
		t.Fatalf("summary.json does not reflect the overrides:\n%s", sum)
	}

	// A config of its own, every model setting in the file, write_all so
	// every probe is recorded, and the uniform sampler.
	cfg := filepath.Join(dir, "run.toml")
	os.WriteFile(cfg, []byte(`[run]
name = "t"
out = "o2"
threads = 1
[models]
policy = "`+filepath.ToSlash(lm)+`"
rm = "`+filepath.ToSlash(rm)+`"
[generation]
max_new_tokens = 4
batch = 3
rm_batch = 5
[redteam]
budget = 12
k = 2
batch = 3
write_all = true
[redteam.sampler]
kind = "uniform"
`), 0o644)
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	if code := runMain([]string{"redteam", "--config", cfg, "--quiet"}); code != 0 {
		t.Fatalf("redteam exit %d", code)
	}
	fs, err := detect.ReadFindings(filepath.Join(dir, "o2", "findings.jsonl"))
	if err != nil || len(fs) != 6 {
		t.Fatalf("write_all: %d findings (want 6 probes), %v", len(fs), err)
	}
	if fs[0].Run != "t" || fs[0].Sampler != "uniform" || len(fs[0].Samples) != 2 {
		t.Fatalf("finding %+v", fs[0])
	}

	// Errors: an unknown key is named with file and line; a missing model
	// directory, a tokenizer without the chat tokens and bad flags fail.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[run]\nname = \"x\"\n\n[redteam]\nbudget = 10\nbugdet = 5\n"), 0o644)
	if err := runRedteam([]string{"--config", bad, "--policy", lm, "--rm", rm}); err == nil ||
		!strings.Contains(err.Error(), "bad.toml:6") || !strings.Contains(err.Error(), "bugdet") {
		t.Fatalf("unknown key: %v", err)
	}
	if code := runMain([]string{"redteam", "--config", bad, "--policy", lm, "--rm", rm}); code != 1 {
		t.Fatalf("unknown key: exit %d", code)
	}
	os.WriteFile(bad, []byte("[models]\npolicy = \"p\"\nmodel = \"x\"\n"), 0o644)
	if err := runRedteam([]string{"--config", bad}); err == nil || !strings.Contains(err.Error(), "bad.toml:3") || !strings.Contains(err.Error(), "model") {
		t.Fatalf("unknown key in [models]: %v", err)
	}
	// Renamed keys are refused with their new names; a bad device names
	// the key or the flag.
	for _, tc := range []struct{ text, want string }{
		{"[run]\nname = \"x\"\nout_dir = \"o\"\n", "bad.toml:3: run.out_dir: renamed to run.out"},
		{"[models]\ndevice = \"cpu\"\n", "bad.toml:2: models.device: renamed to run.device"},
		{"[redteam]\nseed = 3\n", "bad.toml:2: redteam.seed: renamed to run.seed"},
		{"[run]\ndevice = \"gpu\"\n", "bad.toml:2: run.device: bad device \"gpu\""},
		{"[run]\ndtype = \"int8\"\n", "bad.toml:2: run.dtype: \"int8\" is not float32, bfloat16 or float16"},
	} {
		os.WriteFile(bad, []byte(tc.text), 0o644)
		if err := runRedteam([]string{"--config", bad, "--policy", lm, "--rm", rm}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
	if err := runRedteam([]string{"--config", example, "--policy", lm, "--rm", rm, "--device", "gpu"}); err == nil || !strings.HasPrefix(err.Error(), "--device: bad device \"gpu\"") {
		t.Errorf("--device gpu: %v", err)
	}
	// No machine here has ten GPUs.
	if err := runRedteam([]string{"--config", example, "--policy", lm, "--rm", rm, "--device", "cuda:9"}); err == nil || !strings.HasPrefix(err.Error(), "--device: cuda:9: no ") {
		t.Errorf("--device cuda:9: %v", err)
	}
	if err := runRedteam([]string{"--config", example, "--rm", rm}); err == nil || !strings.Contains(err.Error(), "models.policy") {
		t.Fatalf("no policy: %v", err)
	}
	if err := runRedteam([]string{"--config", example, "--policy", filepath.Join(dir, "nope"), "--rm", rm}); err == nil {
		t.Fatal("missing policy directory accepted")
	}
	if code := runMain([]string{"redteam"}); code != 2 {
		t.Fatalf("no --config: exit %d", code)
	}
	if code := runMain([]string{"redteam", "--config", example, "extra"}); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
}

// TestRedteamResume: a run cut short by its budget and continued with
// --resume writes the same findings, summary, report and heatmap, byte for
// byte, as one uninterrupted run (the policy's sampling seeds continue from
// the saved call count); a resumed run refuses another configuration; and
// probes too long for the policy's context are skipped and listed, not
// fatal.
func TestRedteamResume(t *testing.T) {
	lm, rm := tinyChatModels(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "run.toml")
	write := func(maxNew int) {
		os.WriteFile(cfg, []byte(`[run]
name = "r"
seed = 4
threads = 1
[models]
policy = "`+filepath.ToSlash(lm)+`"
rm = "`+filepath.ToSlash(rm)+`"
[generation]
max_new_tokens = `+itoa(maxNew)+`
batch = 4
[redteam]
k = 2
batch = 3
write_all = true
[redteam.sampler]
kind = "hierarchical"
warmup_rounds = 1
`), 0o644)
	}
	write(4)
	run := func(out string, budget int, resume bool) int {
		args := []string{"redteam", "--config", cfg, "--out", out, "--budget", itoa(budget), "--quiet"}
		if resume {
			args = append(args, "--resume")
		}
		return runMain(args)
	}
	full, cut := filepath.Join(dir, "full"), filepath.Join(dir, "cut")
	if code := run(full, 24, false); code != 0 {
		t.Fatalf("full run: exit %d", code)
	}
	if code := run(cut, 12, false); code != 0 {
		t.Fatalf("first half: exit %d", code)
	}
	if code := run(cut, 24, true); code != 0 {
		t.Fatalf("resume: exit %d", code)
	}
	for _, f := range []string{"findings.jsonl", "findings.state.json", "summary.json", "report.md", "heatmap_c.svg"} {
		a, _ := os.ReadFile(filepath.Join(full, f))
		b, _ := os.ReadFile(filepath.Join(cut, f))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s: resumed run differs from the uninterrupted one (%d and %d bytes)", f, len(a), len(b))
		}
	}
	if fs, err := detect.ReadFindings(filepath.Join(cut, "findings.jsonl")); err != nil || len(fs) != 12 {
		t.Fatalf("%d findings, %v", len(fs), err)
	}
	// Another seed is another run.
	if err := runRedteam([]string{"--config", cfg, "--out", cut, "--seed", "9", "--resume", "--quiet"}); err == nil || !strings.Contains(err.Error(), "seed was 4, is 9") {
		t.Fatalf("resume with another seed: %v", err)
	}
	if err := runRedteam([]string{"--config", cfg, "--out", filepath.Join(dir, "none"), "--resume", "--quiet"}); err == nil || !strings.Contains(err.Error(), "no state file") {
		t.Fatalf("resume of nothing: %v", err)
	}

	// Long probes: max_new_tokens leaves room for the shorter half of the
	// prompts only.
	_, codec, err := loadChat(lm, false)
	if err != nil {
		t.Fatal(err)
	}
	lib := world.Default()
	var lens []int
	for i, sp := range lib.Specs() {
		if i%5 == 0 {
			p, _ := lib.Compose(sp, int64(i))
			lens = append(lens, len(codec.Prompt(p.Prompt)))
		}
	}
	sort.Ints(lens)
	write(256 - lens[len(lens)/2])
	long := filepath.Join(dir, "long")
	if code := run(long, 24, false); code != 0 {
		t.Fatalf("long probes: exit %d", code)
	}
	sum, _ := os.ReadFile(filepath.Join(long, "summary.json"))
	var s struct {
		Skipped []struct{ ID, Reason string } `json:"skipped"`
		N       int                           `json:"skipped_probes"`
		Total   detect.Counts                 `json:"total"`
	}
	if err := json.Unmarshal(sum, &s); err != nil {
		t.Fatal(err)
	}
	if s.N == 0 || len(s.Skipped) != s.N || s.Skipped[0].ID == "" || !strings.Contains(s.Skipped[0].Reason, "exceeds the policy's context of 256") || s.Total.Rollouts != 24 {
		t.Fatalf("summary: %s", sum)
	}
}
