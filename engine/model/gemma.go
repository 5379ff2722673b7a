package model

// Gemma 3's text decoder (config model_type "gemma3_text", Hugging Face's
// Gemma3ForCausalLM and Gemma3TextForSequenceClassification), as
// transformers' modeling_gemma3.py computes it:
//
//   - embeddings times sqrt(hidden_size), the factor rounded to the model's
//     dtype first (transformers multiplies by a tensor in the weights' dtype);
//   - every RMSNorm is Gemma's: x * rsqrt(mean(x^2) + eps) * (1 + weight),
//     computed in float32 and cast back (weights initialise at zero);
//   - a block is x += post_attention_norm(attn(input_norm(x))), then
//     x += post_feedforward_norm(mlp(pre_feedforward_norm(x)));
//   - q_norm and k_norm over each head before the rotary embedding; scores
//     scaled by query_pre_attn_scalar^-1/2; grouped-query attention with an
//     explicit head_dim;
//   - MLP down(act(gate(x)) * up(x)) with hidden_activation (gelu_pytorch_tanh);
//   - layers are "sliding_attention" (local) or "full_attention" (global), from
//     layer_types or else sliding_window_pattern (layer i is global when
//     (i+1) % pattern == 0). A local layer's query at column q sees keys at
//     columns k with q-k < sliding_window (besides the causal and padding
//     mask), and rotates with plain RoPE of base rope_local_base_freq; global
//     layers use rope_theta and rope_scaling;
//   - the output head is tied to the embeddings by default.
//
// The KV cache keeps every position for local layers too; the window is a
// mask over it, so cached generation equals a full recompute.
//
// attn_logit_softcapping and final_logit_softcapping (null in Gemma 3) are
// refused when set, as is use_bidirectional_attention (EmbeddingGemma).
// transformers 5's rope_parameters keyed by layer type is read as well.

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/ares-rlhf/ares/engine/torch"
)

const (
	slidingAttention = "sliding_attention"
	fullAttention    = "full_attention"
)

// gemma3Defaults sets Gemma3TextConfig's defaults for the fields the file may
// leave out; the file's values are read over them.
func (c *Config) gemma3Defaults() {
	c.Gemma3, c.QKNorm, c.Tied = true, true, true
	c.KVHeads, c.HeadDim, c.MaxPos = 4, 256, 131072
	c.NormEps, c.RopeTheta, c.RopeLocalTheta = 1e-6, 1e6, 1e4
	c.QueryPreAttnScalar, c.SlidingWindow = 256, 4096
	pad, bos := 0, 2
	c.PadTokenID, c.BOSTokenID, c.EOSTokenIDs = &pad, &bos, []int{1}
}

// parseGemma3 reads Gemma 3's own fields and its rotary settings.
func (c *Config) parseGemma3(raw map[string]json.RawMessage, get func(string, any) error) error {
	set := func(k string) bool { v, ok := raw[k]; return ok && string(v) != "null" }
	for _, k := range []string{"attn_logit_softcapping", "final_logit_softcapping"} {
		if set(k) {
			return fmt.Errorf("field %q is set (%s); logit soft-capping is not supported (Gemma 3 leaves it null)", k, string(raw[k]))
		}
	}
	if set("use_bidirectional_attention") {
		var on bool
		if err := get("use_bidirectional_attention", &on); err != nil {
			return err
		}
		if on {
			return fmt.Errorf("field \"use_bidirectional_attention\" is true; only causal Gemma 3 decoders are supported")
		}
	}
	if set("partial_rotary_factor") {
		return fmt.Errorf("field \"partial_rotary_factor\" is set (%s), but Gemma 3 rotates whole heads", string(raw["partial_rotary_factor"]))
	}
	// transformers reads hidden_activation; a hidden_act key is ignored there.
	c.HiddenAct = "gelu_pytorch_tanh"
	pattern := 6
	for _, f := range []struct {
		key string
		dst any
	}{
		{"hidden_activation", &c.HiddenAct}, {"query_pre_attn_scalar", &c.QueryPreAttnScalar},
		{"sliding_window", &c.SlidingWindow}, {"rope_local_base_freq", &c.RopeLocalTheta},
		{"sliding_window_pattern", &pattern}, {"layer_types", &c.LayerTypes},
	} {
		if err := get(f.key, f.dst); err != nil {
			return err
		}
	}
	if len(c.LayerTypes) == 0 {
		if pattern <= 0 {
			return fmt.Errorf("field \"sliding_window_pattern\" = %d must be positive", pattern)
		}
		c.LayerTypes = make([]string, c.Layers)
		for i := range c.LayerTypes {
			c.LayerTypes[i] = slidingAttention
			if (i+1)%pattern == 0 {
				c.LayerTypes[i] = fullAttention
			}
		}
	}
	if set("rope_scaling") && set("rope_parameters") {
		return fmt.Errorf("fields \"rope_scaling\" and \"rope_parameters\" are both set; give one")
	}
	if set("rope_scaling") {
		r, err := parseRopeScaling("rope_scaling", raw["rope_scaling"], nil)
		if err != nil {
			return err
		}
		c.RopeScaling = r
	}
	if set("rope_parameters") {
		return c.parseGemma3RopeParameters(raw["rope_parameters"])
	}
	return nil
}

// parseGemma3RopeParameters reads transformers 5's rope_parameters, keyed by
// layer type: the global layers' object may carry any supported scaling, the
// local layers' must be plain RoPE; each may carry its rope_theta.
func (c *Config) parseGemma3RopeParameters(b []byte) error {
	var byType map[string]json.RawMessage
	if err := json.Unmarshal(b, &byType); err != nil {
		return fmt.Errorf("field \"rope_parameters\": want an object, got %s", string(b))
	}
	for typ, v := range byType {
		field := "rope_parameters." + typ
		extra := map[string]json.RawMessage{}
		r, err := parseRopeScaling(field, v, extra)
		if err != nil {
			return err
		}
		if pv, ok := extra["partial_rotary_factor"]; ok && string(pv) != "null" {
			return fmt.Errorf("field %q: key \"partial_rotary_factor\" is not supported for Gemma 3", field)
		}
		theta := &c.RopeTheta
		switch typ {
		case fullAttention:
			c.RopeScaling = r
		case slidingAttention:
			if r != nil {
				return fmt.Errorf("field %q: rope type %q for local layers is not supported (only \"default\")", field, r.Type)
			}
			theta = &c.RopeLocalTheta
		default:
			return fmt.Errorf("field \"rope_parameters\": key %q is not a layer type (full_attention, sliding_attention)", typ)
		}
		if tv, ok := extra["rope_theta"]; ok && string(tv) != "null" {
			if err := json.Unmarshal(tv, theta); err != nil {
				return fmt.Errorf("field %q: key \"rope_theta\": %s is not a number", field, string(tv))
			}
		}
	}
	return nil
}

// validateGemma3 checks Gemma 3's own fields.
func (c *Config) validateGemma3() error {
	if len(c.LayerTypes) != c.Layers {
		return fmt.Errorf("field \"layer_types\" has %d entries for %d layers", len(c.LayerTypes), c.Layers)
	}
	for i, t := range c.LayerTypes {
		if t != slidingAttention && t != fullAttention {
			return fmt.Errorf("field \"layer_types\": layer %d has type %q (want %q or %q)", i, t, slidingAttention, fullAttention)
		}
	}
	if c.SlidingWindow <= 0 {
		return fmt.Errorf("field \"sliding_window\" = %d must be positive", c.SlidingWindow)
	}
	if !(c.QueryPreAttnScalar > 0) || math.IsInf(c.QueryPreAttnScalar, 0) {
		return fmt.Errorf("field \"query_pre_attn_scalar\" = %v must be a positive number", c.QueryPreAttnScalar)
	}
	if !(c.RopeLocalTheta > 0) {
		return fmt.Errorf("field \"rope_local_base_freq\" = %v must be positive", c.RopeLocalTheta)
	}
	if c.AttnBias {
		return fmt.Errorf("field \"attention_bias\" is true; Gemma 3 with attention biases is not supported")
	}
	return nil
}

// gemma3JSON writes Gemma 3's fields into a config.json map in
// Gemma3TextConfig's (transformers 4) layout.
func (c *Config) gemma3JSON(m map[string]any) {
	delete(m, "hidden_act")
	m["hidden_activation"] = c.HiddenAct
	m["query_pre_attn_scalar"] = c.QueryPreAttnScalar
	m["sliding_window"] = c.SlidingWindow
	m["layer_types"] = c.LayerTypes
	m["rope_local_base_freq"] = c.RopeLocalTheta
	m["attn_logit_softcapping"] = nil
	m["final_logit_softcapping"] = nil
	if c.RopeScaling == nil {
		m["rope_scaling"] = nil
	}
}

// gemmaNorm is Gemma's RMSNorm: in float32, x*rsqrt(mean(x^2)+eps)*(1+w),
// cast back to x's dtype.
func gemmaNorm(x, w *torch.Tensor, eps float64) *torch.Tensor {
	dt := x.DType()
	xf, wf := x, w
	if dt != torch.Float32 {
		xf = x.To(torch.Float32)
	}
	// w is a parameter, in no scope: what is computed from it alone joins x's.
	sc := x.Scope()
	if w.DType() != torch.Float32 {
		wf = sc.Own(w.To(torch.Float32))
	}
	out := torch.RMSNorm(xf, nil, eps).Mul(sc.Own(wf.AddScalar(1)))
	if dt != torch.Float32 {
		out = out.To(dt)
	}
	return out
}

// buildGemma3 prepares what a Gemma 3 forward needs besides the parameters:
// the embedding factor in the model's dtype and the local layers' rotary
// tables (plain RoPE of base rope_local_base_freq).
func (m *Transformer) buildGemma3() {
	s := torch.FromSlice([]float32{float32(math.Sqrt(float64(m.Cfg.Hidden)))}, 1)
	defer s.Close()
	r := s.To(m.DType)
	defer r.Close()
	back := r.To(torch.Float32)
	defer back.Close()
	m.embedScale = float64(back.Float32s()[0])

	local := *m.Cfg
	local.RopeTheta, local.RopeScaling = m.Cfg.RopeLocalTheta, nil
	inv, attn := ropeInvFreq(&local, 0)
	n := m.Cfg.Context()
	cos, sin := ropeTables(inv, attn, n)
	mk := func(v []float32) *torch.Tensor {
		t := torch.FromSlice(v, int64(n), int64(len(inv)*2))
		defer t.Close()
		return t.Convert(m.DType, m.Device)
	}
	m.localCos = mk(cos) // one at a time: build frees what was made if the second fails
	m.localSin = mk(sin)
}

// gemma3Forward is Forward for Gemma 3 (see the file comment).
func (m *Transformer) gemma3Forward(ids, pos, mask *torch.Tensor, cache *KVCache) *torch.Tensor {
	eps := m.Cfg.NormEps
	scale := 1 / math.Sqrt(m.Cfg.QueryPreAttnScalar)
	x := torch.Embedding(m.wte, ids).MulScalar(m.embedScale)    // [B, L, H]
	cosG, sinG := m.ropeFor(pos)                                // [B, 1, L, head_dim]
	cosL, sinL := torch.RopeGather(m.localCos, m.localSin, pos) // [B, 1, L, head_dim]
	// mask is [B, 1, Lq, Lk] for queries at the last Lq of Lk columns: query
	// row i sits at column i+off. Keeping keys with column j > i+off-W is
	// keeping the diagonals j-i >= off-W+1.
	off := mask.Size(3) - mask.Size(2)
	localMask := mask.Triu(off - int64(m.Cfg.SlidingWindow) + 1)
	cache.begin(ids) // room for L more positions
	for i, b := range m.gemma3 {
		cos, sin, msk := cosG, sinG, mask
		if b.sliding {
			cos, sin, msk = cosL, sinL, localMask
		}
		a := m.attention(&b.attn, gemmaNorm(x, b.inputNorm, eps), cos, sin, msk, cache.layer(i), gemmaNorm, scale)
		x = x.Add(gemmaNorm(a, b.postAttnNorm, eps))
		h := m.gatedMLP(&b.mlp, gemmaNorm(x, b.preFFNorm, eps))
		x = x.Add(gemmaNorm(h, b.postFFNorm, eps))
	}
	cache.advance()
	return gemmaNorm(x, m.normW, eps)
}
