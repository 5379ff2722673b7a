package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

// tinyGemma3: sliding_window_pattern 3 makes layers 0, 1 and 3 local and
// layer 2 global; the window of 4 is shorter than the test sequences.
const tinyGemma3 = `{"model_type":"gemma3_text","architectures":["Gemma3ForCausalLM"],"vocab_size":64,"hidden_size":32,
"num_hidden_layers":4,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"intermediate_size":48,
"max_position_embeddings":64,"sliding_window":4,"sliding_window_pattern":3,"query_pre_attn_scalar":16,
"rope_theta":1000.0,"rope_local_base_freq":100.0,"rope_scaling":{"rope_type":"linear","factor":8.0},
"hidden_activation":"gelu_pytorch_tanh","rms_norm_eps":1e-6,"final_logit_softcapping":null,
"attn_logit_softcapping":null,"pad_token_id":0,"eos_token_id":1,"bos_token_id":2}`

// perturbNorms overwrites every norm weight with normal noise (std 0.3), so
// that a reference comparison checks how the weights enter.
func perturbNorms(t *testing.T, m *Transformer, seed uint64) {
	t.Helper()
	mustTry(t, func() {
		g := torch.NewGenerator(seed, torch.CPU)
		defer g.Close()
		for _, p := range m.Params() {
			if !strings.Contains(p.Name, "norm") {
				continue
			}
			r := torch.Randn(p.T.Shape(), torch.Float32, torch.CPU, g)
			s := r.MulScalar(0.3)
			c := s.Convert(p.T.DType(), p.T.Device())
			p.T.CopyInto(0, 0, c)
			r.Close()
			s.Close()
			c.Close()
		}
	})
}

func TestGemma3Config(t *testing.T) {
	c := tinyConfigs()["gemma3"]
	want := []string{slidingAttention, slidingAttention, fullAttention, slidingAttention}
	if strings.Join(c.LayerTypes, ",") != strings.Join(want, ",") {
		t.Fatalf("layer types %v, want %v", c.LayerTypes, want)
	}
	if !c.Gemma3 || !c.QKNorm || !c.Tied || c.HeadDim != 8 || c.QueryPreAttnScalar != 16 || c.SlidingWindow != 4 ||
		c.RopeTheta != 1000 || c.RopeLocalTheta != 100 || c.RopeScaling == nil || c.RopeScaling.Type != "linear" ||
		c.HiddenAct != "gelu_pytorch_tanh" {
		t.Fatalf("parsed %+v", c)
	}
	// Defaults of Gemma3TextConfig: pattern 6, window 4096, scalar 256,
	// thetas 1e6 / 1e4, tied, gelu_pytorch_tanh (hidden_act is not read).
	d := parseConfig(t, `{"model_type":"gemma3_text","vocab_size":64,"hidden_size":32,"num_hidden_layers":7,
		"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"intermediate_size":48,"max_position_embeddings":64,"hidden_act":"silu"}`)
	if d.LayerTypes[5] != fullAttention || d.LayerTypes[4] != slidingAttention || d.LayerTypes[6] != slidingAttention ||
		d.SlidingWindow != 4096 || d.QueryPreAttnScalar != 256 || d.RopeTheta != 1e6 || d.RopeLocalTheta != 1e4 ||
		!d.Tied || d.HiddenAct != "gelu_pytorch_tanh" || d.NormEps != 1e-6 {
		t.Fatalf("defaults %+v", d)
	}
	// gemma-3-1b-it's config.json as published (transformers 4.50 layout).
	g1 := parseConfig(t, `{"architectures":["Gemma3ForCausalLM"],"attention_bias":false,"attention_dropout":0.0,
		"attn_logit_softcapping":null,"bos_token_id":2,"cache_implementation":"hybrid","eos_token_id":[1,106],
		"final_logit_softcapping":null,"head_dim":256,"hidden_activation":"gelu_pytorch_tanh","hidden_size":1152,
		"initializer_range":0.02,"intermediate_size":6912,"max_position_embeddings":32768,"model_type":"gemma3_text",
		"num_attention_heads":4,"num_hidden_layers":26,"num_key_value_heads":1,"pad_token_id":0,"query_pre_attn_scalar":256,
		"rms_norm_eps":1e-06,"rope_local_base_freq":10000,"rope_scaling":null,"rope_theta":1000000,"sliding_window":512,
		"sliding_window_pattern":6,"torch_dtype":"bfloat16","transformers_version":"4.50.0.dev0","use_cache":true,"vocab_size":262144}`)
	if g1.LayerTypes[5] != fullAttention || g1.LayerTypes[23] != fullAttention || g1.LayerTypes[25] != slidingAttention ||
		g1.SlidingWindow != 512 || !g1.Tied || len(g1.EOSTokenIDs) != 2 || g1.Context() != 32768 {
		t.Fatalf("gemma-3-1b config %+v", g1)
	}
	// transformers 5's rope_parameters keyed by layer type, and layer_types.
	v5 := parseConfig(t, `{"model_type":"gemma3_text","vocab_size":64,"hidden_size":32,"num_hidden_layers":2,
		"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"intermediate_size":48,"max_position_embeddings":64,
		"layer_types":["full_attention","sliding_attention"],
		"rope_parameters":{"full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0},
		"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}}`)
	if v5.RopeScaling == nil || *v5.RopeScaling.Factor != 8 || v5.RopeTheta != 1e6 || v5.RopeLocalTheta != 1e4 ||
		v5.LayerTypes[0] != fullAttention || v5.LayerTypes[1] != slidingAttention {
		t.Fatalf("v5 rope parameters %+v", v5)
	}
	// config.json round trip.
	c2, b := reparse(t, c, "Gemma3ForCausalLM")
	if strings.Join(c2.LayerTypes, ",") != strings.Join(c.LayerTypes, ",") || c2.SlidingWindow != 4 ||
		c2.QueryPreAttnScalar != 16 || c2.RopeLocalTheta != 100 || c2.RopeTheta != 1000 || c2.RopeScaling == nil ||
		!strings.Contains(string(b), `"hidden_activation"`) || strings.Contains(string(b), `"hidden_act"`) {
		t.Fatalf("round trip %+v\n%s", c2, b)
	}
}

func TestGemma3Refusals(t *testing.T) {
	base := `"vocab_size":64,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"intermediate_size":48,"max_position_embeddings":64`
	cases := map[string]string{
		`{"model_type":"gemma3","text_config":{"model_type":"gemma3_text",` + base + `}}`:                                     `"gemma3" is the multimodal Gemma 3`,
		`{"model_type":"gemma3_text",` + base + `,"final_logit_softcapping":30.0}`:                                            `"final_logit_softcapping" is set`,
		`{"model_type":"gemma3_text",` + base + `,"attn_logit_softcapping":50.0}`:                                             `"attn_logit_softcapping" is set`,
		`{"model_type":"gemma3_text",` + base + `,"use_bidirectional_attention":true}`:                                        `"use_bidirectional_attention" is true`,
		`{"model_type":"gemma3_text",` + base + `,"layer_types":["full_attention"]}`:                                          `"layer_types" has 1 entries for 2 layers`,
		`{"model_type":"gemma3_text",` + base + `,"layer_types":["full_attention","chunked"]}`:                                `layer 1 has type "chunked"`,
		`{"model_type":"gemma3_text",` + base + `,"sliding_window":0}`:                                                        `"sliding_window" = 0`,
		`{"model_type":"gemma3_text",` + base + `,"sliding_window_pattern":0}`:                                                `"sliding_window_pattern" = 0`,
		`{"model_type":"gemma3_text",` + base + `,"attention_bias":true}`:                                                     `"attention_bias" is true`,
		`{"model_type":"gemma3_text",` + base + `,"rope_scaling":{"rope_type":"longrope"}}`:                                   `rope type "longrope" is not supported`,
		`{"model_type":"gemma3_text",` + base + `,"rope_parameters":{"sliding_attention":{"rope_type":"linear","factor":2}}}`: `for local layers is not supported`,
		`{"model_type":"gemma3_text",` + base + `,"rope_parameters":{"chunked_attention":{"rope_type":"default"}}}`:           `"chunked_attention" is not a layer type`,
	}
	for js, want := range cases {
		if _, err := ParseConfig([]byte(js)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: error %v, want %q", js, err, want)
		}
	}
}

// TestGemma3SaveLoad: a saved Gemma 3 (both kinds) loads back under Hugging
// Face's names with the same logits / scores, and nothing leaks.
func TestGemma3SaveLoad(t *testing.T) {
	cfg := tinyConfigs()["gemma3"]
	base := torch.LiveTensors()
	for _, kind := range []Kind{CausalLM, Reward} {
		m, err := Init(cfg, kind, 7, Options{})
		if err != nil {
			t.Fatal(err)
		}
		perturbNorms(t, m, 8)
		dir := t.TempDir()
		if err := m.Save(dir, kind, nil); err != nil {
			t.Fatal(err)
		}
		cj, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		arch := map[Kind]string{CausalLM: `"Gemma3ForCausalLM"`, Reward: `"Gemma3TextForSequenceClassification"`}[kind]
		if !strings.Contains(string(cj), arch) {
			t.Fatalf("config.json lacks %s:\n%s", arch, cj)
		}
		m2, err := Load(dir, kind, Options{})
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, p := range m2.Params() {
			names[p.Name] = true
		}
		for _, n := range []string{"layers.3.pre_feedforward_layernorm.weight", "layers.3.post_feedforward_layernorm.weight",
			"layers.0.self_attn.q_norm.weight", "layers.0.self_attn.k_norm.weight", "norm.weight"} {
			if !names[n] {
				t.Fatalf("no parameter %s", n)
			}
		}
		if names["lm_head.weight"] {
			t.Fatal("Gemma 3's head is tied; lm_head.weight should not exist")
		}
		mustTry(t, func() {
			torch.NoGrad(func() {
				s := torch.NewScope()
				defer s.Close()
				b1, _ := m.NewBatch(s, raggedBatch, 0)
				b2, _ := m2.NewBatch(s, raggedBatch, 0)
				if kind == Reward {
					compare(t, "scores", m2.Score(b2).Float32s(), m.Score(b1).Float32s(), nil, 0, 0)
				} else {
					compare(t, "logits", m2.Logits(m2.Forward(b2.IDs, b2.Pos, b2.Mask, nil)).Float32s(),
						m.Logits(m.Forward(b1.IDs, b1.Pos, b1.Mask, nil)).Float32s(), nil, 0, 0)
				}
			})
		})
		m.Close()
		m2.Close()
	}
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after init/save/load/close, baseline %d", got, base)
	}
}

// TestGemma3WindowMatters: the local layers' window changes the result
// once a sequence is longer than it (and not before), so the reference
// comparison does exercise the window.
func TestGemma3WindowMatters(t *testing.T) {
	cfg := *tinyConfigs()["gemma3"]
	wide := cfg
	wide.SlidingWindow = 64
	m, err := Init(&cfg, CausalLM, 5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	perturbNorms(t, m, 6)
	m2, err := build(&wide, m.Device, m.DType, m.Params())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m2.ropeCos.Close(); m2.ropeSin.Close(); m2.localCos.Close(); m2.localSin.Close() }()
	mustTry(t, func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			seq := [][]int{{5, 9, 2, 7, 1, 3, 8}}
			b, _ := m.NewBatch(s, seq, 0)
			a1 := m.Logits(m.Forward(b.IDs, b.Pos, b.Mask, nil)).Float32s()
			a2 := m2.Logits(m2.Forward(b.IDs, b.Pos, b.Mask, nil)).Float32s()
			V := cfg.VocabSize
			compare(t, "within the window", a1[:4*V], a2[:4*V], nil, 0, 0)
			same := true
			for i := 4 * V; i < len(a1); i++ {
				same = same && a1[i] == a2[i]
			}
			if same {
				t.Fatal("logits past the window do not depend on it")
			}
		})
	})
}

// TestGemma3BFloat16: a bf16 Gemma 3 runs (norms in float32, the embedding
// factor rounded to bf16) and its log-probabilities stay close to float32's.
func TestGemma3BFloat16(t *testing.T) {
	m, _ := Init(tinyConfigs()["gemma3"], CausalLM, 1, Options{DType: torch.BFloat16})
	perturbNorms(t, m, 2)
	if m.embedScale != 5.65625 { // sqrt(32) = 5.6568... in bf16
		t.Fatalf("bf16 embedding factor %v, want 5.65625", m.embedScale)
	}
	bf16NearFloat32(t, m)
}
