package model

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
	"github.com/ares-rlhf/ares/engine/torch"
)

func intp(v int) *int { return &v }

// tinyConfigs covers each family and its variants: GPT-2; Llama with
// grouped-query attention and untied head; Qwen2 (q/k/v biases, tied);
// Qwen3 (per-head q/k norm, head_dim not hidden/heads); Gemma 3 (local
// layers with a window shorter than raggedBatch's longest sequence, global
// layers with linear rope scaling, query_pre_attn_scalar != head_dim).
func tinyConfigs() map[string]*Config {
	mk := func(js string) *Config {
		c, err := ParseConfig([]byte(js))
		if err != nil {
			panic(err)
		}
		return c
	}
	return map[string]*Config{
		"gpt2":   mk(`{"model_type":"gpt2","vocab_size":61,"n_embd":32,"n_layer":2,"n_head":4,"n_positions":64}`),
		"llama":  mk(`{"model_type":"llama","vocab_size":67,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":48,"max_position_embeddings":64,"tie_word_embeddings":false,"rope_theta":500}`),
		"qwen2":  mk(`{"model_type":"qwen2","vocab_size":53,"hidden_size":24,"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"intermediate_size":40,"max_position_embeddings":64,"tie_word_embeddings":true}`),
		"qwen3":  mk(`{"model_type":"qwen3","vocab_size":59,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":12,"intermediate_size":40,"max_position_embeddings":64,"tie_word_embeddings":false}`),
		"gemma3": mk(tinyGemma3),
	}
}

func mustTry(t *testing.T, f func()) {
	t.Helper()
	if err := torch.Try(f); err != nil {
		t.Fatal(err)
	}
}

// python returns the interpreter with torch, or skips (fails under CI).
func python(t *testing.T) string {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PyTorch for Python is required in CI: %v", err)
		}
		t.Skipf("no PyTorch for Python (%v): install python3-torch", err)
	}
	return py
}

var raggedBatch = [][]int{{5, 9, 2, 7, 1, 3, 8}, {4, 4, 6}, {1, 2, 3, 4, 5}}

// parseConfig parses the config.json text js.
func parseConfig(t *testing.T, js string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reparse writes c as config.json for architecture and parses that back.
func reparse(t *testing.T, c *Config, architecture string) (*Config, []byte) {
	t.Helper()
	b, err := c.JSON(architecture)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, b)
	}
	return c2, b
}

// saveAndLoad saves m as kind to dir, closes it and loads what was saved.
func saveAndLoad(t *testing.T, m *Transformer, dir string, kind Kind) *Transformer {
	t.Helper()
	if err := m.Save(dir, kind, nil); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m, err := Load(dir, kind, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// withBatch runs f, in a scope of its own, on a batch of seqs.
func withBatch(t *testing.T, m *Transformer, seqs [][]int, f func(s *torch.Scope, b *Batch)) {
	t.Helper()
	mustTry(t, func() {
		s := torch.NewScope()
		defer s.Close()
		b, err := m.NewBatch(s, seqs, 0)
		if err != nil {
			t.Fatal(err)
		}
		f(s, b)
	})
}

// padBatch right-pads seqs with zeros to the longest, L, as the reference
// scripts read a batch; lens are the sequences' lengths.
func padBatch(seqs [][]int) (ids [][]int, lens []int, L int) {
	for _, q := range seqs {
		L = max(L, len(q))
	}
	for _, q := range seqs {
		lens = append(lens, len(q))
		ids = append(ids, append(append([]int{}, q...), make([]int, L-len(q))...))
	}
	return ids, lens, L
}

// runReference runs the Python script testdata/script on the model in
// modelDir, seqs (written to out/batch.json as a batch of kind), out and
// extra, and opens the out/reference.safetensors it writes.
func runReference(t *testing.T, py, script, modelDir, out string, seqs [][]int, kind Kind, extra ...string) *safetensors.File {
	t.Helper()
	ids, lens, _ := padBatch(seqs)
	bj, _ := json.Marshal(map[string]any{"ids": ids, "lens": lens, "kind": map[Kind]string{CausalLM: "lm", Reward: "reward"}[kind]})
	bp := filepath.Join(out, "batch.json")
	if err := os.WriteFile(bp, bj, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{filepath.Join("testdata", script), modelDir, bp, out}, extra...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference: %v\n%s", err, b)
	}
	ref, err := safetensors.Open(filepath.Join(out, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return ref
}

func TestAgainstPyTorchReference(t *testing.T) {
	py := python(t)
	for name, cfg := range tinyConfigs() {
		for _, kind := range []Kind{CausalLM, Reward} {
			if kind == Reward && name == "qwen2" {
				continue // one reward variant per family is enough
			}
			t.Run(name+"/"+kindName(kind), func(t *testing.T) {
				dir := t.TempDir()
				m, err := Init(cfg, kind, 11, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Gemma3 {
					perturbNorms(t, m, 12) // Gemma's norms initialise at zero
				}
				// Load what was saved: the reference reads the same file.
				m = saveAndLoad(t, m, dir, kind)
				defer m.Close()
				ref := runReference(t, py, "torch_reference.py", dir, dir, raggedBatch, kind)
				_, lens, L := padBatch(raggedBatch)
				var summary struct{ Loss float64 }
				sb, _ := os.ReadFile(filepath.Join(dir, "reference.json"))
				json.Unmarshal(sb, &summary)
				refF32 := func(n string) []float32 { return refFloat32s(t, ref, n) }
				withBatch(t, m, raggedBatch, func(s *torch.Scope, b *Batch) {
					m.SetTrainable(true)
					var loss *torch.Tensor
					if kind == Reward {
						scores := m.Score(b)
						compare(t, "scores", scores.Float32s(), refF32("scores"), nil, 1e-5, 1e-4)
						loss = scores.Sum()
					} else {
						h := m.Forward(b.IDs, b.Pos, b.Mask, nil)
						logits := m.Logits(h)
						V := int64(cfg.VocabSize)
						validLogits := validRows(lens, L, int(V))
						compare(t, "logits", logits.Float32s(), refF32("logits"), validLogits, 1e-5, 1e-4)
						lp := m.TokenLogProbs(b)
						keep := s.Own(torch.FromSlice(keepMask(lens, L), int64(len(lens)), int64(L-1)))
						compare(t, "logprobs", lp.Mul(keep).Float32s(), mulMask(refF32("logprobs"), keepMask(lens, L)), nil, 1e-5, 1e-4)
						loss = lp.Mul(keep).Sum().Neg().DivScalar(float64(sumF(keepMask(lens, L))))
					}
					if math.Abs(loss.Item()-summary.Loss) > 1e-5+1e-4*math.Abs(summary.Loss) {
						t.Fatalf("loss %v, reference %v", loss.Item(), summary.Loss)
					}
					loss.Backward()
					pre := prefix(cfg)
					for _, p := range m.Params() {
						n := pre + p.Name
						if p.Name == "lm_head.weight" || p.Name == "score.weight" {
							n = p.Name
						}
						g := p.T.Grad()
						if g == nil {
							t.Fatalf("no gradient for %s", n)
						}
						if p.Conv1D {
							g = s.Own(g).Transpose(0, 1).Contiguous()
						}
						compare(t, "grad "+n, g.Float32s(), refF32("grad."+n), nil, 1e-6, 1e-3)
						s.Own(g)
					}
					torch.ZeroGrad(m.Tensors())
				})
			})
		}
	}
}

func validRows(lens []int, L, V int) []bool {
	var m []bool
	for _, n := range lens {
		for j := 0; j < L; j++ {
			for v := 0; v < V; v++ {
				m = append(m, j < n)
			}
		}
	}
	return m
}

func keepMask(lens []int, L int) []float32 {
	var m []float32
	for _, n := range lens {
		for j := 1; j < L; j++ {
			if j < n {
				m = append(m, 1)
			} else {
				m = append(m, 0)
			}
		}
	}
	return m
}

func mulMask(x, m []float32) []float32 {
	out := make([]float32, len(x))
	for i := range x {
		out[i] = x[i] * m[i]
	}
	return out
}

func sumF(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += v
	}
	return s
}

// compare checks |got-want| <= atol + rtol*max|want| elementwise where
// check is nil or true. The tolerance scales with the largest reference value
// so that near-zero entries of a gradient are not held to a relative bound.
func compare(t *testing.T, name string, got, want []float32, check []bool, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference has %d", name, len(got), len(want))
	}
	var scale float64
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	var worst float64
	for i := range got {
		if check != nil && !check[i] {
			continue
		}
		d := math.Abs(float64(got[i]) - float64(want[i]))
		worst = math.Max(worst, d)
		if d > atol+rtol*scale {
			t.Fatalf("%s[%d] = %v, reference %v (tolerance %.2g)", name, i, got[i], want[i], atol+rtol*scale)
		}
	}
	_ = worst
}

// TestKVCacheEqualsRecompute generates greedily with the cache and checks
// every step against a full forward pass over the sequence so far.
func TestKVCacheEqualsRecompute(t *testing.T) {
	for name, cfg := range tinyConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := Init(cfg, CausalLM, 3, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			gen, err := m.Generate(raggedBatch, GenerateOptions{MaxNewTokens: 9})
			if err != nil {
				t.Fatal(err)
			}
			for b, p := range raggedBatch {
				seq := append([]int{}, p...)
				for step, tok := range gen.Tokens[b] {
					withBatch(t, m, [][]int{seq}, func(_ *torch.Scope, bt *Batch) {
						torch.NoGrad(func() {
							logits := m.Logits(m.Forward(bt.IDs, bt.Pos, bt.Mask, nil)).Narrow(1, int64(len(seq)-1), 1).Reshape(-1)
							logp := logits.LogSoftmax(-1)
							want := logits.ArgMax(0).Item()
							if int(want) != tok {
								t.Fatalf("prompt %d step %d: cached greedy token %d, recomputed %d", b, step, tok, int(want))
							}
							if d := math.Abs(float64(logp.Float32s()[tok] - gen.LogProbs[b][step])); d > 1e-4 {
								t.Fatalf("prompt %d step %d: log-prob differs by %v", b, step, d)
							}
						})
					})
					seq = append(seq, tok)
				}
				if len(gen.Tokens[b]) != 9 {
					t.Fatalf("prompt %d: %d tokens", b, len(gen.Tokens[b]))
				}
			}
		})
	}
}

func TestGenerateSamplingAndStops(t *testing.T) {
	m, err := Init(tinyConfigs()["llama"], CausalLM, 5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	o := GenerateOptions{MaxNewTokens: 12, Temperature: 1, TopK: 5, TopP: 0.9, Seed: 42}
	a, err := m.Generate(raggedBatch, o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Generate(raggedBatch, o)
	for i := range a.Tokens {
		if len(a.Tokens[i]) != len(b.Tokens[i]) {
			t.Fatal("same seed, different lengths")
		}
		for j := range a.Tokens[i] {
			if a.Tokens[i][j] != b.Tokens[i][j] {
				t.Fatal("same seed, different tokens")
			}
			if a.LogProbs[i][j] > 0 || math.IsNaN(float64(a.LogProbs[i][j])) {
				t.Fatalf("bad log-prob %v", a.LogProbs[i][j])
			}
		}
	}
	// Stop on the first token generated for prompt 0.
	o.StopIDs = []int{a.Tokens[0][0]}
	c, _ := m.Generate(raggedBatch, o)
	if !c.Stopped[0] || len(c.Tokens[0]) != 1 {
		t.Fatalf("stop token: %v %v", c.Stopped[0], c.Tokens[0])
	}
	// top-k 1 is greedy.
	g1, _ := m.Generate(raggedBatch, GenerateOptions{MaxNewTokens: 5, Temperature: 1, TopK: 1, Seed: 1})
	g0, _ := m.Generate(raggedBatch, GenerateOptions{MaxNewTokens: 5})
	for i := range g0.Tokens {
		for j := range g0.Tokens[i] {
			if g0.Tokens[i][j] != g1.Tokens[i][j] {
				t.Fatal("top-k 1 differs from greedy")
			}
		}
	}
}

func TestLiveTensorsAfterGenerateAndStep(t *testing.T) {
	m, err := Init(tinyConfigs()["gpt2"], CausalLM, 5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := torch.LiveTensors()
	if _, err := m.Generate(raggedBatch, GenerateOptions{MaxNewTokens: 4, Temperature: 1, TopP: 0.8}); err != nil {
		t.Fatal(err)
	}
	withBatch(t, m, raggedBatch, func(_ *torch.Scope, b *Batch) {
		m.SetTrainable(true)
		m.TokenLogProbs(b).Sum().Backward()
	})
	mustTry(t, func() { torch.ZeroGrad(m.Tensors()) })
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d, baseline %d", got, base)
	}
}

func TestLoadAndCloseFreeEverything(t *testing.T) {
	base := torch.LiveTensors()
	for _, kind := range []Kind{CausalLM, Reward} {
		m, _ := Init(tinyConfigs()["qwen3"], kind, 1, Options{DType: torch.BFloat16})
		saveAndLoad(t, m, t.TempDir(), kind).Close()
	}
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after init/save/load/close, baseline %d", got, base)
	}
}

// TestBFloat16LogProbs: a bf16 model's token log-probabilities come out in
// float32 (the log-softmax is taken in float32) and stay close to those of
// the float32 model with the same (bf16-rounded) weights.
func TestBFloat16LogProbs(t *testing.T) {
	m, _ := Init(tinyConfigs()["llama"], CausalLM, 1, Options{DType: torch.BFloat16})
	bf16NearFloat32(t, m)
}

// bf16NearFloat32 saves the bf16 model m (closing it), loads it back in bf16
// and in float32, and checks that both give float32 token log-probabilities,
// within 0.1 of each other.
func bf16NearFloat32(t *testing.T, m *Transformer) {
	t.Helper()
	dir := t.TempDir()
	if err := m.Save(dir, CausalLM, nil); err != nil {
		t.Fatal(err)
	}
	m.Close()
	lp := map[torch.DType][]float32{}
	for _, dt := range []torch.DType{torch.BFloat16, torch.Float32} {
		m, err := Load(dir, CausalLM, Options{DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		withBatch(t, m, raggedBatch, func(_ *torch.Scope, b *Batch) {
			out := m.TokenLogProbs(b)
			if out.DType() != torch.Float32 {
				t.Fatalf("%s model: log-probs are %s, want float32", dt, out.DType())
			}
			lp[dt] = out.Float32s()
		})
		m.Close()
	}
	for i, v := range lp[torch.Float32] {
		if d := math.Abs(float64(v - lp[torch.BFloat16][i])); d > 0.1 {
			t.Fatalf("log-prob %d: bf16 %v, float32 %v", i, lp[torch.BFloat16][i], v)
		}
	}
}

func TestBadInput(t *testing.T) {
	cases := map[string]string{
		`{"model_type":"bert","vocab_size":3}`:                                                     `model_type "bert" is not supported`,
		`{"model_type":"gpt2","vocab_size":10,"n_embd":30,"n_layer":1,"n_head":4,"n_positions":8}`: "not divisible",
		`{"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"max_position_embeddings":8,"rope_scaling":{"type":"llama3"}}`: "rope_scaling",
		`{"model_type":"gpt2","vocab_size":"x"}`: `field "vocab_size"`,
		`[1,2]`:                                  "not a JSON object",
	}
	for js, want := range cases {
		if _, err := ParseConfig([]byte(js)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: error %v, want %q", js, err, want)
		}
	}
	cfg := tinyConfigs()["llama"]
	m, _ := Init(cfg, CausalLM, 1, Options{})
	defer m.Close()
	long := make([]int, 60)
	if _, err := m.Generate([][]int{long}, GenerateOptions{MaxNewTokens: 10}); err == nil || !strings.Contains(err.Error(), "exceeds the model's context") {
		t.Errorf("long prompt: %v", err)
	}
	if _, err := m.Generate([][]int{{1, 999}}, GenerateOptions{MaxNewTokens: 1}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("bad id: %v", err)
	}
	// A mis-shaped and a missing tensor are named.
	dir := t.TempDir()
	if err := m.Save(dir, CausalLM, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, Reward, Options{}); err == nil || !strings.Contains(err.Error(), `missing tensor "score.weight"`) {
		t.Errorf("missing: %v", err)
	}
	cj, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(cj), `"intermediate_size": 48`, `"intermediate_size": 50`, 1)), 0o644)
	if _, err := Load(dir, CausalLM, Options{}); err == nil || !strings.Contains(err.Error(), `"model.layers.0.mlp.gate_proj.weight" has shape [48 32], want [50 32]`) {
		t.Errorf("mis-shaped: %v", err)
	}
}

// TestBareGPT2NamesLoad: the published GPT-2 weights are a bare GPT2Model
// ("h.0.attn.c_attn.weight", "wte.weight", with attn.bias mask buffers), not
// "transformer."-prefixed; they must load without renaming and give the same
// logits.
func TestBareGPT2NamesLoad(t *testing.T) {
	cfg := tinyConfigs()["gpt2"]
	m, _ := Init(cfg, CausalLM, 4, Options{})
	defer m.Close()
	dir := t.TempDir()
	if err := m.Save(dir, CausalLM, nil); err != nil {
		t.Fatal(err)
	}
	src, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var infos []safetensors.TensorInfo
	var datas [][]byte
	for _, ti := range src.Tensors() {
		b, _ := src.Data(ti.Name)
		datas = append(datas, append([]byte{}, b...))
		ti.Name = strings.TrimPrefix(ti.Name, "transformer.")
		infos = append(infos, ti)
	}
	// The causal-mask buffer old checkpoints carry, which the loader ignores.
	infos = append(infos, safetensors.TensorInfo{Name: "h.0.attn.bias", DType: safetensors.F32, Shape: []int64{1}})
	datas = append(datas, make([]byte, 4))
	src.Close()
	bare := t.TempDir()
	cj, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	os.WriteFile(filepath.Join(bare, "config.json"), cj, 0o644)
	if err := safetensors.WriteFile(filepath.Join(bare, "model.safetensors"), infos, nil, func(i int) ([]byte, error) { return datas[i], nil }); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(bare, CausalLM, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	mustTry(t, func() {
		s := torch.NewScope()
		defer s.Close()
		b1, _ := m.NewBatch(s, raggedBatch, 0)
		b2, _ := m2.NewBatch(s, raggedBatch, 0)
		l1 := m.Logits(m.Forward(b1.IDs, b1.Pos, b1.Mask, nil)).Float32s()
		l2 := m2.Logits(m2.Forward(b2.IDs, b2.Pos, b2.Mask, nil)).Float32s()
		compare(t, "bare GPT-2 logits", l2, l1, nil, 0, 0)
	})
}

// refFloat32s reads the float32 tensor name of a reference safetensors file
// (little-endian, as the Python reference scripts write it).
func refFloat32s(t *testing.T, ref *safetensors.File, name string) []float32 {
	t.Helper()
	b, err := ref.Data(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
