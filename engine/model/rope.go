package model

// Rotary position embeddings and their scaled variants.
//
// Supported (config.json "rope_scaling", keyed by "rope_type" or the older
// "type"; the same object under transformers 5's "rope_parameters" is read too):
//
//   - none / "default": plain RoPE, inv_freq[i] = rope_theta^(-2i/d).
//   - "linear": inv_freq / factor (position interpolation).
//   - "dynamic": dynamic NTK. While a forward's sequence length
//     seq = max(position)+1 is within max_position_embeddings the plain table is
//     used; past it the base is rescaled to
//     rope_theta * (factor*seq/max_position_embeddings - (factor-1))^(d/(d-2))
//     for that forward. Each forward uses its own seq; see dynamicTables for the
//     KV cache.
//   - "llama3": Llama 3.1's band-wise rescaling (factor, low_freq_factor,
//     high_freq_factor, original_max_position_embeddings).
//   - "yarn": YaRN (factor, beta_fast=32, beta_slow=1,
//     original_max_position_embeddings, truncate=true), with cos and sin
//     multiplied by attention_factor (default 0.1*ln(factor)+1, or the ratio
//     of the mscale / mscale_all_dim forms when both are given).
//
// partial_rotary_factor rotates only the first int(head_dim*factor) dimensions
// of each head (the rest pass through), as GPT-NeoX-style families do. Other
// rope types (longrope, su, ...) and unknown keys are refused by name.
// Every formula follows Hugging Face transformers' modeling_rope_utils.py, and
// as there inv_freq, positions and their products are float32; the tables are
// then converted to the model's dtype.

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/engine/torch"
)

// RopeScaling is a config's "rope_scaling" object. Optional fields are
// pointers so that what the file said (and only that) is written back.
type RopeScaling struct {
	Type string // linear, dynamic, llama3, yarn
	// Key is the key the type came under: "rope_type" or "type" (both when
	// the file had both).
	Key string

	Factor         *float64
	OriginalMaxPos *int // original_max_position_embeddings

	LowFreqFactor, HighFreqFactor *float64 // llama3

	BetaFast, BetaSlow   *float64 // yarn
	AttentionFactor      *float64 // yarn
	Mscale, MscaleAllDim *float64 // yarn
	Truncate             *bool    // yarn
}

// ropeKeys lists the keys each type accepts besides "type"/"rope_type".
var ropeKeys = map[string][]string{
	"linear":  {"factor", "original_max_position_embeddings"},
	"dynamic": {"factor", "original_max_position_embeddings"},
	"llama3":  {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
	"yarn": {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor",
		"mscale", "mscale_all_dim", "truncate"},
}

// parseRopeScaling reads the rope_scaling object (field names it in errors).
// It returns nil for the plain rotary embedding ("default" with no other key).
// extra receives keys that belong to the config rather than the scaling
// (rope_theta, partial_rotary_factor under transformers 5's rope_parameters).
func parseRopeScaling(field string, b []byte, extra map[string]json.RawMessage) (*RopeScaling, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("field %q: want an object, got %s", field, string(b))
	}
	for _, k := range []string{"rope_theta", "partial_rotary_factor"} {
		if v, ok := raw[k]; ok && extra != nil {
			extra[k] = v
			delete(raw, k)
		}
	}
	r := &RopeScaling{}
	var typ, old string
	if v, ok := raw["rope_type"]; ok {
		if err := json.Unmarshal(v, &typ); err != nil {
			return nil, fmt.Errorf("field %q: \"rope_type\" must be a string, got %s", field, string(v))
		}
		r.Key = "rope_type"
	}
	if v, ok := raw["type"]; ok {
		if err := json.Unmarshal(v, &old); err != nil {
			return nil, fmt.Errorf("field %q: \"type\" must be a string, got %s", field, string(v))
		}
		if r.Key != "" && old != typ {
			return nil, fmt.Errorf("field %q: \"rope_type\" %q and \"type\" %q disagree", field, typ, old)
		}
		if r.Key == "" {
			r.Key, typ = "type", old
		} else {
			r.Key = "rope_type+type"
		}
	}
	if r.Key == "" {
		return nil, fmt.Errorf("field %q has no \"rope_type\" (or \"type\"): %s", field, string(b))
	}
	r.Type = typ
	if typ == "default" {
		for k := range raw {
			if k != "rope_type" && k != "type" {
				return nil, fmt.Errorf("field %q: key %q is not supported for rope type \"default\"", field, k)
			}
		}
		return nil, nil
	}
	allowed, ok := ropeKeys[typ]
	if !ok {
		return nil, fmt.Errorf("field %q: rope type %q is not supported (supported: default, dynamic, linear, llama3, yarn)", field, typ)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "rope_type" || k == "type" {
			continue
		}
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		if !known {
			return nil, fmt.Errorf("field %q: key %q is not supported for rope type %q (accepted: %s)", field, k, typ, strings.Join(allowed, ", "))
		}
		v := raw[k]
		if string(v) == "null" {
			continue
		}
		var err error
		num := func(dst **float64) {
			var f float64
			if err = json.Unmarshal(v, &f); err == nil {
				*dst = &f
			}
		}
		switch k {
		case "factor":
			num(&r.Factor)
		case "low_freq_factor":
			num(&r.LowFreqFactor)
		case "high_freq_factor":
			num(&r.HighFreqFactor)
		case "beta_fast":
			num(&r.BetaFast)
		case "beta_slow":
			num(&r.BetaSlow)
		case "attention_factor":
			num(&r.AttentionFactor)
		case "mscale":
			num(&r.Mscale)
		case "mscale_all_dim":
			num(&r.MscaleAllDim)
		case "original_max_position_embeddings":
			var n int
			if err = json.Unmarshal(v, &n); err == nil {
				r.OriginalMaxPos = &n
			}
		case "truncate":
			var t bool
			if err = json.Unmarshal(v, &t); err == nil {
				r.Truncate = &t
			}
		}
		if err != nil {
			return nil, fmt.Errorf("field %q: key %q: %s is not a valid value", field, k, string(v))
		}
	}
	return r, nil
}

// validate checks the values against the model's sizes.
func (r *RopeScaling) validate(maxPos int) error {
	bad := func(key string, v any, why string) error {
		return fmt.Errorf("field \"rope_scaling\": %s = %v %s (rope type %q)", key, v, why, r.Type)
	}
	if r.Factor == nil {
		if r.Type != "yarn" || r.OriginalMaxPos == nil {
			return fmt.Errorf("field \"rope_scaling\": rope type %q needs \"factor\"", r.Type)
		}
	} else if !(*r.Factor >= 1) || math.IsInf(*r.Factor, 0) {
		return bad("factor", *r.Factor, "must be a finite number >= 1")
	}
	if r.OriginalMaxPos != nil && *r.OriginalMaxPos <= 0 {
		return bad("original_max_position_embeddings", *r.OriginalMaxPos, "must be positive")
	}
	switch r.Type {
	case "llama3":
		if r.LowFreqFactor == nil || r.HighFreqFactor == nil || r.OriginalMaxPos == nil {
			return fmt.Errorf("field \"rope_scaling\": rope type \"llama3\" needs \"factor\", \"low_freq_factor\", \"high_freq_factor\" and \"original_max_position_embeddings\"")
		}
		if !(*r.LowFreqFactor > 0) {
			return bad("low_freq_factor", *r.LowFreqFactor, "must be positive")
		}
		if !(*r.HighFreqFactor > *r.LowFreqFactor) {
			return bad("high_freq_factor", *r.HighFreqFactor, fmt.Sprintf("must exceed low_freq_factor %v", *r.LowFreqFactor))
		}
	case "yarn":
		if r.BetaFast != nil && !(*r.BetaFast > 0) {
			return bad("beta_fast", *r.BetaFast, "must be positive")
		}
		if r.BetaSlow != nil && !(*r.BetaSlow > 0) {
			return bad("beta_slow", *r.BetaSlow, "must be positive")
		}
		if r.AttentionFactor != nil && !(*r.AttentionFactor > 0) {
			return bad("attention_factor", *r.AttentionFactor, "must be positive")
		}
	}
	return nil
}

// factor is the scaling factor, for yarn derived as transformers does when the
// config omits it.
func (r *RopeScaling) factor(maxPos int) float64 {
	if r.Factor != nil {
		return *r.Factor
	}
	return float64(maxPos) / float64(*r.OriginalMaxPos)
}

// jsonValue renders the object as the file had it.
func (r *RopeScaling) jsonValue() map[string]any {
	m := map[string]any{}
	switch r.Key {
	case "type":
		m["type"] = r.Type
	case "rope_type+type":
		m["type"], m["rope_type"] = r.Type, r.Type
	default:
		m["rope_type"] = r.Type
	}
	put := func(k string, v *float64) {
		if v != nil {
			m[k] = *v
		}
	}
	put("factor", r.Factor)
	put("low_freq_factor", r.LowFreqFactor)
	put("high_freq_factor", r.HighFreqFactor)
	put("beta_fast", r.BetaFast)
	put("beta_slow", r.BetaSlow)
	put("attention_factor", r.AttentionFactor)
	put("mscale", r.Mscale)
	put("mscale_all_dim", r.MscaleAllDim)
	if r.OriginalMaxPos != nil {
		m["original_max_position_embeddings"] = *r.OriginalMaxPos
	}
	if r.Truncate != nil {
		m["truncate"] = *r.Truncate
	}
	return m
}

// RotaryDim is the number of dimensions of each head that rotary embeddings
// rotate: head_dim, or int(head_dim * partial_rotary_factor).
func (c *Config) RotaryDim() int {
	if c.PartialRotary == 0 {
		return c.HeadDim
	}
	return int(float64(c.HeadDim) * c.PartialRotary)
}

// Context is the longest sequence the model accepts: max_position_embeddings,
// or for rope scalings that extend it, the extended length (dynamic NTK:
// factor * max_position_embeddings; YaRN: at least factor *
// original_max_position_embeddings).
func (c *Config) Context() int {
	r := c.RopeScaling
	if c.Family != Llama || r == nil {
		return c.MaxPos
	}
	switch r.Type {
	case "dynamic":
		return int(*r.Factor * float64(c.MaxPos))
	case "yarn":
		orig := c.MaxPos
		if r.OriginalMaxPos != nil {
			orig = *r.OriginalMaxPos
		}
		return max(c.MaxPos, int(r.factor(c.MaxPos)*float64(orig)))
	}
	return c.MaxPos
}

// ropeInvFreq returns the inverse frequencies (rd/2 of them, float32 as
// transformers keeps them) and the factor applied to cos and sin. seqLen only
// matters for dynamic NTK; pass 0 for the table at load time.
func ropeInvFreq(c *Config, seqLen int) ([]float32, float64) {
	d := c.RotaryDim()
	base := c.RopeTheta
	r := c.RopeScaling
	if r != nil && r.Type == "dynamic" && seqLen > c.MaxPos {
		f := *r.Factor
		base *= math.Pow(f*float64(seqLen)/float64(c.MaxPos)-(f-1), float64(d)/float64(d-2))
	}
	inv := make([]float64, d/2)
	for i := range inv {
		// 1/base^(2i/d) in float64, rounded to float32 where the table is
		// built. transformers rounds the exponent and the power to float32
		// first; that differs by an ulp in some entries, well inside the
		// reference tolerance, and would change every result of the
		// synthetic world's published study, so the engine keeps its own.
		inv[i] = 1 / math.Pow(base, float64(2*i)/float64(d))
	}
	attn := 1.0
	if r != nil {
		switch r.Type {
		case "linear":
			for i := range inv {
				inv[i] = float64(float32(inv[i]) / float32(*r.Factor))
			}
		case "llama3":
			factor, lo, hi := *r.Factor, *r.LowFreqFactor, *r.HighFreqFactor
			old := float64(*r.OriginalMaxPos)
			loWave, hiWave := old/lo, old/hi
			for i, f := range inv {
				wave := 2 * math.Pi / f
				switch {
				case wave < hiWave: // high frequency: unchanged
				case wave > loWave: // low frequency: interpolated
					inv[i] = f / factor
				default: // in between: smooth blend
					s := (old/wave - lo) / (hi - lo)
					inv[i] = (1-s)*f/factor + s*f
				}
				inv[i] = float64(float32(inv[i]))
			}
		case "yarn":
			factor := r.factor(c.MaxPos)
			orig := c.MaxPos
			if r.OriginalMaxPos != nil {
				orig = *r.OriginalMaxPos
			}
			mscale := func(scale, m float64) float64 {
				if scale <= 1 {
					return 1
				}
				return 0.1*m*math.Log(scale) + 1
			}
			switch {
			case r.AttentionFactor != nil:
				attn = *r.AttentionFactor
			case r.Mscale != nil && *r.Mscale != 0 && r.MscaleAllDim != nil && *r.MscaleAllDim != 0:
				attn = mscale(factor, *r.Mscale) / mscale(factor, *r.MscaleAllDim)
			default:
				attn = mscale(factor, 1)
			}
			betaFast, betaSlow := 32.0, 1.0
			if r.BetaFast != nil {
				betaFast = *r.BetaFast
			}
			if r.BetaSlow != nil {
				betaSlow = *r.BetaSlow
			}
			corr := func(rot float64) float64 {
				return float64(d) * math.Log(float64(orig)/(rot*2*math.Pi)) / (2 * math.Log(c.RopeTheta))
			}
			lo, hi := corr(betaFast), corr(betaSlow)
			if r.Truncate == nil || *r.Truncate {
				lo, hi = math.Floor(lo), math.Ceil(hi)
			}
			lo, hi = math.Max(lo, 0), math.Min(hi, float64(d-1))
			if lo == hi {
				hi += 0.001
			}
			for i, f := range inv {
				ramp := float32(math.Min(math.Max((float64(i)-lo)/(hi-lo), 0), 1))
				extra := 1 - ramp // weight of the unscaled (extrapolated) frequency
				interp := float32(f) / float32(factor)
				inv[i] = float64(interp*(1-extra) + float32(f)*extra)
			}
		}
	}
	out := make([]float32, len(inv))
	for i, f := range inv {
		out[i] = float32(f)
	}
	return out, attn
}

// ropeTables returns cos and sin [n, rd] for positions 0..n-1 in float32:
// the angle position*inv_freq in float32, duplicated over the two halves of
// the rotary dimensions (Hugging Face's rotate_half convention), times attn.
func ropeTables(inv []float32, attn float64, n int) (cos, sin []float32) {
	h := len(inv)
	d := 2 * h
	cos = make([]float32, n*d)
	sin = make([]float32, n*d)
	for p := 0; p < n; p++ {
		for i, f := range inv {
			a := float64(float32(p) * f)
			c, s := float32(math.Cos(a)), float32(math.Sin(a))
			if attn != 1 {
				c, s = float32(float64(c)*attn), float32(float64(s)*attn)
			}
			cos[p*d+i], cos[p*d+i+h] = c, c
			sin[p*d+i], sin[p*d+i+h] = s, s
		}
	}
	return cos, sin
}

// buildRope precomputes the cos and sin tables for every position the model
// accepts (Context), in the model's dtype on its device. For dynamic NTK this
// is the table for sequences within max_position_embeddings.
func (m *Transformer) buildRope() {
	inv, attn := ropeInvFreq(m.Cfg, 0)
	n := m.Cfg.Context()
	if r := m.Cfg.RopeScaling; r != nil && r.Type == "dynamic" {
		n = m.Cfg.MaxPos
	}
	cos, sin := ropeTables(inv, attn, n)
	mk := func(v []float32) *torch.Tensor {
		t := torch.FromSlice(v, int64(n), int64(len(inv)*2))
		defer t.Close()
		return t.Convert(m.DType, m.Device)
	}
	// One at a time: a failure making the second leaves the first on m,
	// where build's error path frees it.
	m.ropeCos = mk(cos)
	m.ropeSin = mk(sin)
}

// ropeFor returns cos and sin [B, 1, L, rd] for positions pos [B, L].
func (m *Transformer) ropeFor(pos *torch.Tensor) (cos, sin *torch.Tensor) {
	if r := m.Cfg.RopeScaling; r != nil && r.Type == "dynamic" {
		if c, s := m.dynamicTables(pos); c != nil {
			return c, s
		}
	}
	return torch.RopeGather(m.ropeCos, m.ropeSin, pos) // [B, 1, L, rotary dim]
}

// dynamicTables computes cos and sin for a forward whose sequence length
// seq = max(pos)+1 exceeds max_position_embeddings, from the base rescaled for
// seq (nil when it does not). It reads max(pos) back from the device.
//
// With a KV cache each forward rotates its own keys and queries with the
// base of its own length, and the cached keys keep the rotation they were
// computed with: generation therefore equals transformers' cached generation
// (whose inv_freq also follows the growing length), not a full recompute over
// the final sequence. transformers keeps the largest length seen until a
// forward shorter than max_position_embeddings resets it; here every forward
// uses its own length, which is the same within one generation.
func (m *Transformer) dynamicTables(pos *torch.Tensor) (cos, sin *torch.Tensor) {
	seq := int(pos.AMax().Item()) + 1
	if seq <= m.Cfg.MaxPos {
		return nil, nil
	}
	inv, _ := ropeInvFreq(m.Cfg, seq)
	invT := torch.FromSlice(inv)
	if s := pos.Scope(); s != nil {
		s.Own(invT)
	}
	invD := invT.ToDevice(m.Device)
	a := pos.To(torch.Float32).Unsqueeze(-1).Mul(invD) // [B, L, rd/2]
	emb := torch.Cat([]*torch.Tensor{a, a}, -1).Unsqueeze(1)
	return emb.Cos().To(m.DType), emb.Sin().To(m.DType)
}
