package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/tokenizer"
)

// tinyModelDir writes a random tiny Llama-family model with a trained
// tokenizer, as a language model and as a reward model.
func tinyModelDir(t *testing.T) (lm, rm string) {
	t.Helper()
	tok, err := tokenizer.Train([]string{strings.Repeat("the cat sat on the mat. a dog ran. ", 50)},
		tokenizer.TrainOptions{VocabSize: 300, Special: tokenizer.ChatSpecials})
	if err != nil {
		t.Fatal(err)
	}
	eos, _ := tok.SpecialID("<|endoftext|>")
	cfg, err := model.ParseConfig([]byte(`{"model_type":"qwen2","vocab_size":300,"hidden_size":32,"num_hidden_layers":1,
		"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":48,"max_position_embeddings":128,
		"tie_word_embeddings":true,"eos_token_id":` + itoa(eos) + `}`))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, k := range []model.Kind{model.CausalLM, model.Reward} {
		m, err := model.Init(cfg, k, 1, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, map[model.Kind]string{model.CausalLM: "lm", model.Reward: "rm"}[k])
		if err := m.Save(dir, k, tok); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	return filepath.Join(root, "lm"), filepath.Join(root, "rm")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func TestModelCommands(t *testing.T) {
	lm, rm := tinyModelDir(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte(`{"prompt":"the cat","response":" sat on the mat"}
{"input_ids":[5,6,7,8]}

{"prompt":"a dog","response":" ran"}
`), 0o644)
	prompts := filepath.Join(dir, "prompts.jsonl")
	os.WriteFile(prompts, []byte("{\"prompt\":\"the cat\",\"id\":1}\n{\"messages\":[{\"role\":\"user\",\"content\":\"a dog\"}]}\n{\"input_ids\":[1,2,3]}\n"), 0o644)

	out := filepath.Join(dir, "gen.jsonl")
	if code := runMain([]string{"generate", "--model", lm, "--prompts", prompts, "--out", out, "--max-new-tokens", "6", "--top-k", "20", "--top-p", "0.9", "--batch-size", "2", "--seed", "3"}); code != 0 {
		t.Fatalf("generate exit %d", code)
	}
	gen := readLines(t, out)
	if len(gen) != 3 || gen[0]["id"].(float64) != 1 || len(gen[1]["tokens"].([]any)) == 0 {
		t.Fatalf("generate output %v", gen)
	}
	out = filepath.Join(dir, "lp.jsonl")
	if code := runMain([]string{"logprobs", "--model", lm, "--input", in, "--out", out}); code != 0 {
		t.Fatalf("logprobs exit %d", code)
	}
	lp := readLines(t, out)
	if len(lp) != 3 || len(lp[1]["logprobs"].([]any)) != 3 {
		t.Fatalf("logprobs output %v", lp)
	}
	tok, _ := model.LoadTokenizer(lm)
	// Chat-formatted by default: the response's tokens and the end of turn.
	if n := len(tok.Encode(" sat on the mat")) + 1; len(lp[0]["logprobs"].([]any)) != n {
		t.Fatalf("response log-probs: %d, want %d", len(lp[0]["logprobs"].([]any)), n)
	}
	rawOut := filepath.Join(dir, "lpraw.jsonl")
	if code := runMain([]string{"logprobs", "--raw", "--model", lm, "--input", in, "--out", rawOut}); code != 0 {
		t.Fatalf("logprobs --raw exit %d", code)
	}
	if n, lr := len(tok.Encode(" sat on the mat")), readLines(t, rawOut); len(lr[0]["logprobs"].([]any)) != n {
		t.Fatalf("raw response log-probs: %d, want %d", len(lr[0]["logprobs"].([]any)), n)
	}
	out = filepath.Join(dir, "score.jsonl")
	if code := runMain([]string{"score", "--rm", rm, "--input", in, "--out", out, "--batch-size", "1"}); code != 0 {
		t.Fatalf("score exit %d", code)
	}
	if sc := readLines(t, out); len(sc) != 3 || sc[0]["score"] == nil {
		t.Fatalf("score output %v", sc)
	}
	// Bad input: a malformed line is named; bad flags are usage errors.
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"prompt\":\"x\",\"response\":\"y\"}\n{\"prompt\": oops}\n"), 0o644)
	if code := runMain([]string{"score", "--rm", rm, "--input", bad, "--out", filepath.Join(dir, "x")}); code != 1 {
		t.Fatalf("malformed input exit %d", code)
	}
	if code := runMain([]string{"generate", "--model", lm}); code != 2 {
		t.Fatalf("missing flag exit %d", code)
	}
	if code := runMain([]string{"score", "--rm", lm, "--input", in, "--device", "tpu"}); code != 2 {
		t.Fatalf("bad device exit %d", code)
	}
	if code := runMain([]string{"score", "--rm", lm, "--input", in, "--out", filepath.Join(dir, "y")}); code != 1 {
		t.Fatalf("language model as reward model: exit %d", code)
	}
	if code := runMain([]string{"nonsense"}); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}

func TestVersionCommand(t *testing.T) {
	if code := runMain([]string{"version"}); code != 0 {
		t.Fatalf("version exit %d", code)
	}
	if code := runMain([]string{"version", "extra"}); code != 2 {
		t.Fatalf("version with arguments: exit %d", code)
	}
}
