package model

import (
	"crypto/sha256"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
	"github.com/ares-rlhf/ares/engine/torch"
)

// logProbRows marks the valid entries of TokenLogProbs on sequences of lens
// padded to L: position j predicts token j+1, which must be a real token.
func logProbRows(lens []int, L int) []bool {
	var m []bool
	for _, n := range lens {
		for j := 0; j < L-1; j++ {
			m = append(m, j+1 < n)
		}
	}
	return m
}

// logProbs returns TokenLogProbs of raggedBatch (or reward scores).
func logProbs(t *testing.T, m *Transformer, kind Kind) []float32 {
	t.Helper()
	var out []float32
	withBatch(t, m, raggedBatch, func(_ *torch.Scope, b *Batch) {
		torch.NoGrad(func() {
			if kind == Reward {
				out = m.Score(b).To(torch.Float32).Float32s()
				return
			}
			out = m.TokenLogProbs(b).To(torch.Float32).Float32s()
		})
	})
	return out
}

// randomizeB gives every lora_B random values, so that adapters change the model.
func randomizeB(t *testing.T, m *Transformer, seed uint64) {
	t.Helper()
	mustTry(t, func() {
		g := torch.NewGenerator(seed, torch.CPU)
		defer g.Close()
		torch.NoGrad(func() {
			for _, a := range m.lora.list {
				r := torch.Randn(a.b.Shape(), a.b.DType(), a.b.Device(), g)
				v := r.MulScalar(0.1)
				a.b.CopyInto(0, 0, v)
				r.Close()
				v.Close()
			}
		})
	})
}

func TestLoRAAgainstPEFTReference(t *testing.T) {
	py := python(t)
	cases := []struct {
		name    string
		kind    Kind
		targets []string
		save    []string
		rslora  bool
	}{
		{"gpt2", CausalLM, []string{"c_attn", "c_proj", "c_fc"}, nil, false},
		{"llama", CausalLM, []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, nil, true},
		{"qwen3", CausalLM, []string{"q_proj", "v_proj", "down_proj"}, nil, false},
		{"llama", Reward, []string{"q_proj", "v_proj"}, []string{"score"}, false},
	}
	for _, c := range cases {
		t.Run(c.name+"/"+kindName(c.kind), func(t *testing.T) {
			dir := t.TempDir()
			base, adapterDir := filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
			m, err := Init(tinyConfigs()[c.name], c.kind, 5, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Save(base, c.kind, nil); err != nil {
				t.Fatal(err)
			}
			m.Close()
			sj, _ := json.Marshal(map[string]any{"r": 4, "alpha": 8.0, "rslora": c.rslora, "targets": c.targets, "modules_to_save": c.save, "seed": 3})
			sp := filepath.Join(dir, "spec.json")
			os.WriteFile(sp, sj, 0o644)
			ref := runReference(t, py, "lora_reference.py", base, dir, raggedBatch, c.kind, adapterDir, sp)
			// The adapter directory names its base: Load follows it.
			lm, err := Load(adapterDir, c.kind, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer lm.Close()
			if !lm.HasLoRA() || lm.LoRAConfig().RSLoRA != c.rslora {
				t.Fatalf("adapter config not read: %+v", lm.LoRAConfig())
			}
			got := logProbs(t, lm, c.kind)
			if c.kind == Reward {
				compare(t, "scores", got, refFloat32s(t, ref, "scores"), nil, 1e-5, 1e-4)
				return
			}
			_, lens, L := padBatch(raggedBatch)
			compare(t, "logprobs", got, refFloat32s(t, ref, "logprobs"), logProbRows(lens, L), 1e-5, 1e-4)
			// Without adapters the model is its base.
			bm, err := Load(base, c.kind, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer bm.Close()
			want := logProbs(t, bm, c.kind)
			var off []float32
			lm.WithoutAdapters(func() { off = logProbs(t, lm, c.kind) })
			compare(t, "adapters off", off, want, nil, 0, 0)
		})
	}
}

func TestLoRAZeroBIsBaseAndMergeEqualsAdapter(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			m, err := Init(tinyConfigs()[name], CausalLM, 7, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			base := logProbs(t, m, CausalLM)
			if err := m.AddLoRA(LoRA{R: 4, Alpha: 16, TargetModules: []string{"all-linear"}}, 1); err != nil {
				t.Fatal(err)
			}
			compare(t, "B = 0", logProbs(t, m, CausalLM), base, nil, 0, 0)
			randomizeB(t, m, 2)
			adapted := logProbs(t, m, CausalLM)
			if maxAbsDiff(adapted, base) < 1e-3 {
				t.Fatal("random lora_B did not change the model")
			}
			if err := m.MergeLoRA(); err != nil {
				t.Fatal(err)
			}
			if m.HasLoRA() {
				t.Fatal("adapters still present after merge")
			}
			compare(t, "merged", logProbs(t, m, CausalLM), adapted, nil, 2e-5, 1e-4)
		})
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestLoRAGradientsFiniteDifferences checks d(loss)/dA and d(loss)/dB of a
// float64 model against central differences, and that no base weight
// receives a gradient. GPT-2 is the family whose every op runs in float64
// (the Llama family's RMSNorm works in float32, as Hugging Face's does,
// which leaves differences of a float64 model at float32's noise).
func TestLoRAGradientsFiniteDifferences(t *testing.T) {
	m, err := Init(tinyConfigs()["gpt2"], CausalLM, 9, Options{DType: torch.Float64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.AddLoRA(LoRA{R: 2, Alpha: 4, TargetModules: []string{"c_attn", "mlp.c_proj"}, RSLoRA: true}, 3); err != nil {
		t.Fatal(err)
	}
	randomizeB(t, m, 4)
	loss := func() float64 {
		var v float64
		withBatch(t, m, raggedBatch, func(_ *torch.Scope, b *Batch) {
			v = m.TokenLogProbs(b).Narrow(0, 0, 1).Sum().Item()
		})
		return v
	}
	var grads [][]float64
	withBatch(t, m, raggedBatch, func(_ *torch.Scope, b *Batch) {
		m.TokenLogProbs(b).Narrow(0, 0, 1).Sum().Backward()
		for _, p := range m.Trainable() {
			g := p.T.Grad()
			if g == nil {
				t.Fatalf("%s has no gradient", p.Name)
			}
			grads = append(grads, torch.Data[float64](g))
			g.Close()
		}
		for _, p := range m.Params() {
			if g := p.T.Grad(); g != nil {
				t.Fatalf("base weight %s received a gradient", p.Name)
			}
		}
	})
	const h = 1e-6
	for i, p := range m.Trainable() {
		vals := torch.Data[float64](p.T)
		for _, j := range []int{0, len(vals) / 2, len(vals) - 1} {
			set := func(v float64) {
				mustTry(t, func() {
					torch.NoGrad(func() {
						c := append([]float64(nil), vals...)
						c[j] = v
						src := torch.FromSlice(c, p.T.Shape()...)
						defer src.Close()
						p.T.CopyInto(0, 0, src)
					})
				})
			}
			set(vals[j] + h)
			up := loss()
			set(vals[j] - h)
			down := loss()
			set(vals[j])
			fd := (up - down) / (2 * h)
			if math.Abs(fd-grads[i][j]) > 1e-6+1e-5*math.Abs(fd) {
				t.Errorf("%s[%d]: autograd %.9g, finite differences %.9g", p.Name, j, grads[i][j], fd)
			}
		}
	}
}

func hashDir(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(e.Name()))
		h.Write(b)
	}
	return string(h.Sum(nil))
}

func TestLoRASaveLoadRoundTripAndErrors(t *testing.T) {
	dir := t.TempDir()
	base, ad := filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	cfg := tinyConfigs()["llama"]
	m, err := Init(cfg, Reward, 3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Save(base, Reward, nil); err != nil {
		t.Fatal(err)
	}
	before := hashDir(t, base)
	if err := m.AddLoRA(LoRA{R: 3, Alpha: 6, TargetModules: []string{"q_proj", "up_proj"}, ModulesToSave: []string{"score"}}, 5); err != nil {
		t.Fatal(err)
	}
	randomizeB(t, m, 6)
	if err := m.Save(filepath.Join(dir, "x"), Reward, nil); err == nil || !strings.Contains(err.Error(), "SaveAdapter") {
		t.Fatalf("Save of a model with adapters: %v", err)
	}
	if err := m.SaveAdapter(ad, Reward, base, nil); err != nil {
		t.Fatal(err)
	}
	if hashDir(t, base) != before {
		t.Fatal("saving the adapter changed the base directory")
	}
	want := logProbs(t, m, Reward)
	lm, err := Load(ad, Reward, Options{})
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "reloaded", logProbs(t, lm, Reward), want, nil, 0, 0)
	lm.Close()
	// PEFT's names, as PEFT writes them.
	f, err := safetensors.Open(filepath.Join(ad, AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight", "base_model.model.score.weight"} {
		if _, ok := f.Info(n); !ok {
			t.Errorf("adapter file lacks %s", n)
		}
	}
	f.Close()

	// Errors name what does not match.
	other := *cfg
	other.Hidden, other.Inter = 40, 56
	om, err := Init(&other, Reward, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer om.Close()
	err = om.LoadAdapter(ad)
	if err == nil || !strings.Contains(err.Error(), "q_proj.lora_A.weight") || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("adapter on another hidden size: %v", err)
	}
	if om.HasLoRA() {
		t.Fatal("a failed LoadAdapter left adapters on the model")
	}
	for _, c := range []struct {
		l    LoRA
		want string
	}{
		{LoRA{R: 2, Alpha: 4, TargetModules: []string{"c_attn"}}, `target module "c_attn" matches no projection`},
		{LoRA{R: 2, Alpha: 4, TargetModules: []string{"q_proj"}, ModulesToSave: []string{"classifier"}}, `module to save "classifier"`},
		{LoRA{R: 0, Alpha: 4, TargetModules: []string{"q_proj"}}, "r is 0"},
		{LoRA{R: 2, Alpha: math.NaN(), TargetModules: []string{"q_proj"}}, "lora_alpha"},
		{LoRA{R: 2, Alpha: 4, Dropout: 1, TargetModules: []string{"q_proj"}}, "lora_dropout"},
	} {
		if err := om.AddLoRA(c.l, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error containing %q", c.l, err, c.want)
		}
	}
	// An adapter file with a tensor the model has no adapter for.
	os.WriteFile(filepath.Join(ad, AdapterConfigFile), []byte(`{"peft_type":"LORA","r":3,"lora_alpha":6,"target_modules":["q_proj"],"modules_to_save":["score"],"base_model_name_or_path":"`+base+`"}`), 0o644)
	if _, err := Load(ad, Reward, Options{}); err == nil || !strings.Contains(err.Error(), "up_proj.lora_A.weight") {
		t.Fatalf("unused adapter tensors: %v", err)
	}
	os.WriteFile(filepath.Join(ad, AdapterConfigFile), []byte(`{"peft_type":"IA3","target_modules":["q_proj"]}`), 0o644)
	if _, err := Load(ad, Reward, Options{}); err == nil || !strings.Contains(err.Error(), "IA3") {
		t.Fatalf("IA3 adapter: %v", err)
	}
}

func TestLoRADropoutOnlyWhileTraining(t *testing.T) {
	m, err := Init(tinyConfigs()["llama"], CausalLM, 7, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.AddLoRA(LoRA{R: 4, Alpha: 8, Dropout: 0.5, TargetModules: []string{"all-linear"}}, 1); err != nil {
		t.Fatal(err)
	}
	randomizeB(t, m, 2)
	a, b := logProbs(t, m, CausalLM), logProbs(t, m, CausalLM)
	compare(t, "no dropout without autograd", a, b, nil, 0, 0)
	train := func(seed uint64) []float32 {
		if err := m.SeedDropout(seed); err != nil {
			t.Fatal(err)
		}
		var out []float32
		withBatch(t, m, raggedBatch, func(_ *torch.Scope, b *Batch) {
			out = m.TokenLogProbs(b).Float32s()
		})
		return out
	}
	x, y, z := train(1), train(1), train(2)
	compare(t, "same dropout seed", x, y, nil, 0, 0)
	if maxAbsDiff(x, z) == 0 || maxAbsDiff(x, a) == 0 {
		t.Fatal("dropout had no effect while training")
	}
}
