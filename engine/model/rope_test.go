package model

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

// ropeConfigs are tiny Llama-shaped models, one per rope variant. head_dim
// 16 gives 8 frequencies, enough for llama3's three bands and YaRN's ramp.
func ropeConfigs() map[string]string {
	base := `"vocab_size":53,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":40,"tie_word_embeddings":false,"rope_theta":500`
	return map[string]string{
		"linear":  `{"model_type":"llama",` + base + `,"max_position_embeddings":32,"rope_scaling":{"type":"linear","factor":2.5}}`,
		"dynamic": `{"model_type":"llama",` + base + `,"max_position_embeddings":16,"rope_scaling":{"rope_type":"dynamic","factor":2}}`,
		"llama3": `{"model_type":"llama",` + base + `,"max_position_embeddings":64,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,` +
			`"high_freq_factor":4,"original_max_position_embeddings":64}}`,
		"yarn": `{"model_type":"llama",` + base + `,"max_position_embeddings":64,"rope_scaling":{"rope_type":"yarn","factor":4,"original_max_position_embeddings":16}}`,
		"yarn-mscale": `{"model_type":"qwen2",` + base + `,"max_position_embeddings":16,"use_sliding_window":false,"rope_scaling":{"type":"yarn","factor":3,` +
			`"original_max_position_embeddings":16,"beta_fast":16,"beta_slow":2,"mscale":1,"mscale_all_dim":0.5,"truncate":false}}`,
		"partial":        `{"model_type":"llama",` + base + `,"max_position_embeddings":32,"partial_rotary_factor":0.5}`,
		"partial-linear": `{"model_type":"llama",` + base + `,"max_position_embeddings":32,"partial_rotary_factor":0.25,"rope_scaling":{"rope_type":"linear","factor":2}}`,
	}
}

// TestRopeScalingAgainstPyTorch compares the log-probs of each rope variant
// with testdata/rope_reference.py, on a short batch and on one of 24 tokens,
// longer than original_max_position_embeddings (dynamic, yarn) or
// max_position_embeddings (dynamic).
func TestRopeScalingAgainstPyTorch(t *testing.T) {
	py := python(t)
	for name, js := range ropeConfigs() {
		t.Run(name, func(t *testing.T) {
			cfg := parseConfig(t, js)
			dir := t.TempDir()
			m, err := Init(cfg, CausalLM, 5, Options{})
			if err != nil {
				t.Fatal(err)
			}
			m = saveAndLoad(t, m, dir, CausalLM)
			defer m.Close()
			long := make([]int, 24)
			for i := range long {
				long[i] = (i*7 + 3) % cfg.VocabSize
			}
			batches := map[string][][]int{
				"short": {{5, 9, 2, 7, 1, 3, 8, 11, 4, 6}, {4, 4, 6}},
				"long":  {long, long[:13]},
			}
			for bname, seqs := range batches {
				t.Run(bname, func(t *testing.T) {
					checkRopeReference(t, py, dir, m, seqs)
				})
			}
		})
	}
}

func checkRopeReference(t *testing.T, py, dir string, m *Transformer, seqs [][]int) {
	ref := runReference(t, py, "rope_reference.py", dir, t.TempDir(), seqs, CausalLM)
	_, lens, L := padBatch(seqs)
	withBatch(t, m, seqs, func(s *torch.Scope, b *Batch) {
		V := m.Cfg.VocabSize
		logits := m.Logits(m.Forward(b.IDs, b.Pos, b.Mask, nil))
		compare(t, "logits", logits.Float32s(), refFloat32s(t, ref, "logits"), validRows(lens, L, V), 1e-5, 1e-4)
		keep := keepMask(lens, L)
		lp := m.TokenLogProbs(b).Mul(s.Own(torch.FromSlice(keep, int64(len(lens)), int64(L-1))))
		compare(t, "logprobs", lp.Float32s(), mulMask(refFloat32s(t, ref, "logprobs"), keep), nil, 1e-5, 1e-4)
	})
}

// TestRopeKVCacheGeneration checks cached generation against full forwards.
// For static rope types the two agree at every step. For dynamic NTK they
// agree while the sequence stays within max_position_embeddings; past it the
// cache keeps the rotation each key was computed with (as transformers'
// cache does), so only the steps within the original context are compared.
func TestRopeKVCacheGeneration(t *testing.T) {
	for name, js := range ropeConfigs() {
		t.Run(name, func(t *testing.T) {
			cfg := parseConfig(t, js)
			m, err := Init(cfg, CausalLM, 3, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			prompts := [][]int{{5, 9, 2, 7, 1, 3, 8}, {4, 4, 6}}
			live := torch.LiveTensors()
			gen, err := m.Generate(prompts, GenerateOptions{MaxNewTokens: 14})
			if err != nil {
				t.Fatal(err)
			}
			if got := torch.LiveTensors(); got != live {
				t.Fatalf("live tensors %d after generation, %d before", got, live)
			}
			for bi, p := range prompts {
				seq := append([]int{}, p...)
				for _, tok := range gen.Tokens[bi] {
					if cfg.RopeScaling != nil && cfg.RopeScaling.Type == "dynamic" && len(seq) >= cfg.MaxPos {
						break
					}
					withBatch(t, m, [][]int{seq}, func(_ *torch.Scope, b *Batch) {
						logits := m.Logits(m.Forward(b.IDs, b.Pos, b.Mask, nil))
						want := int(logits.Narrow(1, int64(len(seq)-1), 1).ArgMax(-1).Item())
						if want != tok {
							t.Fatalf("sequence %d at length %d: cached generation chose %d, full forward %d", bi, len(seq), tok, want)
						}
					})
					seq = append(seq, tok)
				}
			}
		})
	}
}

func TestRopeConfigAccepted(t *testing.T) {
	for name, js := range ropeConfigs() {
		t.Run(name, func(t *testing.T) {
			c := parseConfig(t, js)
			// Round trip: what Save writes parses back to the same config.
			c2, out := reparse(t, c, "LlamaForCausalLM")
			c2.Architectures = c.Architectures // JSON names the architecture
			// Config's JSON tags leave the rope fields out: compare them too.
			dump := func(c *Config) string {
				b, _ := json.Marshal(struct {
					C *Config
					R *RopeScaling
					P float64
					S *bool
				}{c, c.RopeScaling, c.PartialRotary, c.UseSlidingWindow})
				return string(b)
			}
			if a, b := dump(c), dump(c2); a != b {
				t.Fatalf("round trip changed the config:\n%s\n%s", a, b)
			}
			// The rope object is written as the file had it (same keys).
			var in, back map[string]any
			json.Unmarshal([]byte(js), &in)
			json.Unmarshal(out, &back)
			for _, k := range []string{"rope_scaling", "partial_rotary_factor", "use_sliding_window"} {
				x, _ := json.Marshal(in[k])
				y, _ := json.Marshal(back[k])
				if string(x) != string(y) {
					t.Errorf("%s: wrote %s, file had %s", k, y, x)
				}
			}
		})
	}
	t.Run("forms", func(t *testing.T) {
		base := `{"model_type":"llama","vocab_size":53,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":40,"max_position_embeddings":64,`
		cases := map[string]func(*Config) bool{
			// Llama 3.1's own rope_scaling.
			`"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}}`: func(c *Config) bool {
				return c.RopeScaling.Type == "llama3" && *c.RopeScaling.OriginalMaxPos == 8192
			},
			// Both keys, agreeing.
			`"rope_scaling":{"type":"linear","rope_type":"linear","factor":2}}`: func(c *Config) bool { return c.RopeScaling.Type == "linear" },
			// "default" is plain rope; null is no scaling.
			`"rope_scaling":{"rope_type":"default"}}`: func(c *Config) bool { return c.RopeScaling == nil },
			`"rope_scaling":null}`:                    func(c *Config) bool { return c.RopeScaling == nil },
			// transformers 5 layout: theta inside rope_parameters.
			`"rope_parameters":{"rope_type":"default","rope_theta":1000000.0}}`: func(c *Config) bool {
				return c.RopeScaling == nil && c.RopeTheta == 1e6
			},
			`"rope_parameters":{"rope_type":"yarn","factor":4,"original_max_position_embeddings":16,"rope_theta":5000}}`: func(c *Config) bool {
				return c.RopeScaling.Type == "yarn" && c.RopeTheta == 5000 && c.Context() == 64
			},
			// YaRN without factor: max_position_embeddings / original.
			`"rope_scaling":{"rope_type":"yarn","original_max_position_embeddings":16}}`: func(c *Config) bool {
				return c.RopeScaling.factor(c.MaxPos) == 4
			},
			// Dynamic NTK extends the context to factor * max_position_embeddings.
			`"rope_scaling":{"rope_type":"dynamic","factor":2.0}}`: func(c *Config) bool { return c.Context() == 128 },
			`"use_sliding_window":false,"sliding_window":4096}`:    func(c *Config) bool { return !*c.UseSlidingWindow },
		}
		for tail, ok := range cases {
			c, err := ParseConfig([]byte(base + tail))
			if err != nil {
				t.Errorf("%s: %v", tail, err)
				continue
			}
			if !ok(c) {
				t.Errorf("%s: parsed as %+v %+v", tail, c, c.RopeScaling)
			}
		}
	})
}

func TestRopeConfigRefused(t *testing.T) {
	base := `{"model_type":"llama","vocab_size":53,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":40,"max_position_embeddings":64,`
	cases := map[string]string{
		`"rope_scaling":{"rope_type":"longrope","long_factor":[1],"short_factor":[1]}}`: `rope type "longrope" is not supported`,
		`"rope_scaling":{"type":"su","factor":2}}`:                                      `rope type "su" is not supported`,
		`"rope_scaling":{"rope_type":"linear","factor":2,"foo":1}}`:                     `key "foo" is not supported for rope type "linear"`,
		`"rope_scaling":{"rope_type":"linear","factor":2,"beta_fast":1}}`:               `key "beta_fast" is not supported for rope type "linear"`,
		`"rope_scaling":{"rope_type":"linear"}}`:                                        `rope type "linear" needs "factor"`,
		`"rope_scaling":{"rope_type":"linear","factor":0.5}}`:                           `factor = 0.5 must be a finite number >= 1`,
		`"rope_scaling":{"rope_type":"linear","factor":"2"}}`:                           `key "factor": "2" is not a valid value`,
		`"rope_scaling":{"factor":2}}`:                                                  `field "rope_scaling" has no "rope_type"`,
		`"rope_scaling":{"type":"linear","rope_type":"dynamic","factor":2}}`:            `"rope_type" "dynamic" and "type" "linear" disagree`,
		`"rope_scaling":{"rope_type":"llama3","factor":8}}`:                             `rope type "llama3" needs`,
		`"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1,"original_max_position_embeddings":8192}}`: `high_freq_factor = 1 must exceed low_freq_factor 4`,
		`"rope_scaling":{"rope_type":"yarn"}}`:                                                        `rope type "yarn" needs "factor"`,
		`"rope_scaling":{"rope_type":"default","factor":2}}`:                                          `key "factor" is not supported for rope type "default"`,
		`"rope_scaling":{"rope_type":"linear","factor":2,"rope_theta":5}}`:                            `key "rope_theta" belongs at the top level`,
		`"rope_scaling":{"rope_type":"linear","factor":2},"rope_parameters":{"rope_type":"default"}}`: `"rope_scaling" and "rope_parameters" are both set`,
		`"rope_scaling":[1,2]}`:        `field "rope_scaling": want an object`,
		`"use_sliding_window":true}`:   `"use_sliding_window" is true; sliding-window attention is not supported`,
		`"partial_rotary_factor":1.5}`: `"partial_rotary_factor" = 1.5 must be in (0, 1]`,
		`"partial_rotary_factor":0.1}`: `gives 1 rotary dimensions of head_dim 16`,
	}
	for tail, want := range cases {
		_, err := ParseConfig([]byte(base + tail))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %v, want one containing %q", tail, err, want)
		}
	}
	_, err := ParseConfig([]byte(`{"model_type":"gpt2","vocab_size":61,"n_embd":32,"n_layer":2,"n_head":4,"n_positions":64,"rope_scaling":{"rope_type":"linear","factor":2}}`))
	if err == nil || !strings.Contains(err.Error(), `model_type "gpt2" has no rotary embeddings`) {
		t.Errorf("gpt2 with rope_scaling: %v", err)
	}
}
