package model

import (
	"fmt"
	"math"

	"github.com/ares-rlhf/ares/engine/torch"
)

// Param is one named parameter. Name is the Hugging Face tensor name (without
// the "transformer." / "model." prefix, which the loader adds per family).
// Conv1D marks GPT-2's Conv1D weights, stored [in, out] on disk and [out, in]
// here so that every projection is a plain Linear.
type Param struct {
	Name   string
	T      *torch.Tensor
	Conv1D bool
}

// Transformer is a decoder-only language model: token embeddings, a stack of
// pre-norm blocks, a final norm, and (for a language model) an output head.
type Transformer struct {
	Cfg    *Config
	Device torch.Device
	DType  torch.DType

	wte    *torch.Tensor // [V, H]
	wpe    *torch.Tensor // [P, H], GPT-2 only
	blocks []*block
	normW  *torch.Tensor
	normB  *torch.Tensor // GPT-2 only
	lmHead *torch.Tensor // [V, H]; nil when tied to wte or for a reward model
	scoreW *torch.Tensor // [labels, H]; reward models only

	ropeCos, ropeSin *torch.Tensor // [Context, rotary dim] tables, Llama family only (rope.go)

	// Gemma 3 (gemma.go): the embedding factor sqrt(hidden_size) as rounded
	// to the model's dtype, and the local layers' rotary tables.
	embedScale         float64
	localCos, localSin *torch.Tensor

	params []Param
	lora   *loraState // adapters (lora.go); nil without
}

type block struct {
	ln1W, ln1B, ln2W, ln2B *torch.Tensor
	// attention: GPT-2 has one fused qkv projection, Llama separate ones.
	qkvW, qkvB             *torch.Tensor
	qW, kW, vW, qB, kB, vB *torch.Tensor
	qNorm, kNorm           *torch.Tensor // Qwen3, Gemma 3
	oW, oB                 *torch.Tensor
	// MLP: GPT-2 fc/proj with GELU; Llama gate/up/down with SiLU (SwiGLU),
	// Gemma 3 the same with gelu_pytorch_tanh.
	fcW, fcB, projW, projB *torch.Tensor
	gateW, upW, downW      *torch.Tensor
	// Gemma 3: ln1W is input_layernorm and these are the other three norms
	// (ln2W is unused); sliding marks a local (sliding-window) layer.
	postAttnW, preFFW, postFFW *torch.Tensor
	sliding                    bool
}

// shapes lists every parameter of cfg with its shape, in a fixed order.
func shapes(cfg *Config, withLMHead bool) []struct {
	name   string
	shape  []int64
	conv1D bool
	norm   bool
} {
	type ps = struct {
		name   string
		shape  []int64
		conv1D bool
		norm   bool
	}
	H, I, V := int64(cfg.Hidden), int64(cfg.Inter), int64(cfg.VocabSize)
	D, nH, nKV := int64(cfg.HeadDim), int64(cfg.Heads), int64(cfg.KVHeads)
	var out []ps
	if cfg.Family == GPT2 {
		out = append(out, ps{"wte.weight", []int64{V, H}, false, false}, ps{"wpe.weight", []int64{int64(cfg.MaxPos), H}, false, false})
		for i := 0; i < cfg.Layers; i++ {
			p := fmt.Sprintf("h.%d.", i)
			out = append(out,
				ps{p + "ln_1.weight", []int64{H}, false, true}, ps{p + "ln_1.bias", []int64{H}, false, false},
				ps{p + "attn.c_attn.weight", []int64{3 * H, H}, true, false}, ps{p + "attn.c_attn.bias", []int64{3 * H}, false, false},
				ps{p + "attn.c_proj.weight", []int64{H, H}, true, false}, ps{p + "attn.c_proj.bias", []int64{H}, false, false},
				ps{p + "ln_2.weight", []int64{H}, false, true}, ps{p + "ln_2.bias", []int64{H}, false, false},
				ps{p + "mlp.c_fc.weight", []int64{I, H}, true, false}, ps{p + "mlp.c_fc.bias", []int64{I}, false, false},
				ps{p + "mlp.c_proj.weight", []int64{H, I}, true, false}, ps{p + "mlp.c_proj.bias", []int64{H}, false, false})
		}
		out = append(out, ps{"ln_f.weight", []int64{H}, false, true}, ps{"ln_f.bias", []int64{H}, false, false})
	} else {
		out = append(out, ps{"embed_tokens.weight", []int64{V, H}, false, false})
		for i := 0; i < cfg.Layers; i++ {
			p := fmt.Sprintf("layers.%d.", i)
			out = append(out, ps{p + "input_layernorm.weight", []int64{H}, false, true},
				ps{p + "self_attn.q_proj.weight", []int64{nH * D, H}, false, false},
				ps{p + "self_attn.k_proj.weight", []int64{nKV * D, H}, false, false},
				ps{p + "self_attn.v_proj.weight", []int64{nKV * D, H}, false, false})
			if cfg.AttnBias {
				out = append(out, ps{p + "self_attn.q_proj.bias", []int64{nH * D}, false, false},
					ps{p + "self_attn.k_proj.bias", []int64{nKV * D}, false, false},
					ps{p + "self_attn.v_proj.bias", []int64{nKV * D}, false, false})
			}
			if cfg.QKNorm {
				out = append(out, ps{p + "self_attn.q_norm.weight", []int64{D}, false, true},
					ps{p + "self_attn.k_norm.weight", []int64{D}, false, true})
			}
			out = append(out, ps{p + "self_attn.o_proj.weight", []int64{H, nH * D}, false, false},
				ps{p + "post_attention_layernorm.weight", []int64{H}, false, true})
			if cfg.Gemma3 {
				out = append(out, ps{p + "pre_feedforward_layernorm.weight", []int64{H}, false, true},
					ps{p + "post_feedforward_layernorm.weight", []int64{H}, false, true})
			}
			out = append(out, ps{p + "mlp.gate_proj.weight", []int64{I, H}, false, false},
				ps{p + "mlp.up_proj.weight", []int64{I, H}, false, false},
				ps{p + "mlp.down_proj.weight", []int64{H, I}, false, false})
		}
		out = append(out, ps{"norm.weight", []int64{H}, false, true})
	}
	if withLMHead && !cfg.Tied {
		out = append(out, ps{"lm_head.weight", []int64{V, H}, false, false})
	}
	return out
}

// build assembles a Transformer around already-created parameter tensors.
func build(cfg *Config, dev torch.Device, dt torch.DType, params []Param) (*Transformer, error) {
	m := &Transformer{Cfg: cfg, Device: dev, DType: dt, params: params}
	byName := make(map[string]*torch.Tensor, len(params))
	for _, p := range params {
		byName[p.Name] = p.T
	}
	get := func(n string) *torch.Tensor { return byName[n] }
	m.blocks = make([]*block, cfg.Layers)
	if cfg.Family == GPT2 {
		m.wte, m.wpe = get("wte.weight"), get("wpe.weight")
		for i := range m.blocks {
			p := fmt.Sprintf("h.%d.", i)
			m.blocks[i] = &block{
				ln1W: get(p + "ln_1.weight"), ln1B: get(p + "ln_1.bias"), ln2W: get(p + "ln_2.weight"), ln2B: get(p + "ln_2.bias"),
				qkvW: get(p + "attn.c_attn.weight"), qkvB: get(p + "attn.c_attn.bias"),
				oW: get(p + "attn.c_proj.weight"), oB: get(p + "attn.c_proj.bias"),
				fcW: get(p + "mlp.c_fc.weight"), fcB: get(p + "mlp.c_fc.bias"),
				projW: get(p + "mlp.c_proj.weight"), projB: get(p + "mlp.c_proj.bias"),
			}
		}
		m.normW, m.normB = get("ln_f.weight"), get("ln_f.bias")
	} else {
		m.wte = get("embed_tokens.weight")
		for i := range m.blocks {
			p := fmt.Sprintf("layers.%d.", i)
			m.blocks[i] = &block{
				ln1W: get(p + "input_layernorm.weight"), ln2W: get(p + "post_attention_layernorm.weight"),
				qW: get(p + "self_attn.q_proj.weight"), kW: get(p + "self_attn.k_proj.weight"), vW: get(p + "self_attn.v_proj.weight"),
				qB: get(p + "self_attn.q_proj.bias"), kB: get(p + "self_attn.k_proj.bias"), vB: get(p + "self_attn.v_proj.bias"),
				qNorm: get(p + "self_attn.q_norm.weight"), kNorm: get(p + "self_attn.k_norm.weight"),
				oW:    get(p + "self_attn.o_proj.weight"),
				gateW: get(p + "mlp.gate_proj.weight"), upW: get(p + "mlp.up_proj.weight"), downW: get(p + "mlp.down_proj.weight"),
			}
			if cfg.Gemma3 {
				b := m.blocks[i]
				b.postAttnW, b.ln2W = b.ln2W, nil
				b.preFFW, b.postFFW = get(p+"pre_feedforward_layernorm.weight"), get(p+"post_feedforward_layernorm.weight")
				b.sliding = cfg.LayerTypes[i] == slidingAttention
			}
		}
		m.normW = get("norm.weight")
		err := torch.Try(m.buildRope)
		if err == nil && cfg.Gemma3 {
			err = torch.Try(m.buildGemma3)
		}
		if err != nil {
			// The tables made before the failure (the parameters are the
			// caller's to free).
			m.ropeCos.Close()
			m.ropeSin.Close()
			m.localCos.Close()
			m.localSin.Close()
			return nil, err
		}
	}
	m.lmHead = get("lm_head.weight")
	m.scoreW = get("score.weight")
	return m, nil
}

// Params returns the parameters in a fixed order (the optimizer's order).
func (m *Transformer) Params() []Param { return m.params }

// Tensors returns the parameter tensors in Params order.
func (m *Transformer) Tensors() []*torch.Tensor {
	out := make([]*torch.Tensor, len(m.params))
	for i, p := range m.params {
		out[i] = p.T
	}
	return out
}

// NumParams is the number of scalar parameters.
func (m *Transformer) NumParams() int64 {
	var n int64
	for _, p := range m.params {
		n += p.T.Numel()
	}
	return n
}

// SetTrainable turns gradient tracking of what training updates (Trainable:
// every parameter, or with adapters the adapters and the modules to save)
// on or off. Frozen base weights under adapters stay off.
func (m *Transformer) SetTrainable(on bool) {
	for _, p := range m.Trainable() {
		p.T.SetRequiresGrad(on)
	}
}

// Close frees the parameters and tables.
func (m *Transformer) Close() {
	for _, p := range m.params {
		p.T.Close()
	}
	m.ropeCos.Close()
	m.ropeSin.Close()
	m.localCos.Close()
	m.localSin.Close()
	m.lora.close()
	m.lora = nil
}

// Forward returns the final-normed hidden states [B, L, H] of ids [B, L] at
// positions pos [B, L], attending under mask (bool [B, 1, L, Lk], true = may
// attend; see AttentionMask). With a cache, the keys and values of ids are
// appended at cache.Len() and attention covers the cached ones too.
func (m *Transformer) Forward(ids, pos, mask *torch.Tensor, cache *KVCache) *torch.Tensor {
	if m.Cfg.Gemma3 {
		return m.gemma3Forward(ids, pos, mask, cache)
	}
	x := torch.Embedding(m.wte, ids)
	if m.Cfg.Family == GPT2 {
		x = x.Add(torch.Embedding(m.wpe, pos))
	}
	var cos, sin *torch.Tensor
	if m.Cfg.Family == Llama {
		cos, sin = m.ropeFor(pos) // [B, 1, L, rotary dim]
	}
	if cache != nil {
		cache.begin(ids.Size(1)) // room for L more positions
	}
	for i, b := range m.blocks {
		var kv *layerCache
		if cache != nil {
			kv = &cache.layers[i]
		}
		if m.Cfg.Family == GPT2 {
			x = x.Add(m.gpt2Attention(b, torch.LayerNorm(x, b.ln1W, b.ln1B, m.Cfg.NormEps), mask, kv, cache))
			x = x.Add(m.gpt2MLP(b, torch.LayerNorm(x, b.ln2W, b.ln2B, m.Cfg.NormEps)))
		} else {
			x = x.Add(m.llamaAttention(b, torch.RMSNorm(x, b.ln1W, m.Cfg.NormEps), cos, sin, mask, kv, cache))
			x = x.Add(m.gatedMLP(b, torch.RMSNorm(x, b.ln2W, m.Cfg.NormEps)))
		}
	}
	if cache != nil {
		cache.advance()
	}
	if m.Cfg.Family == GPT2 {
		return torch.LayerNorm(x, m.normW, m.normB, m.Cfg.NormEps)
	}
	return torch.RMSNorm(x, m.normW, m.Cfg.NormEps)
}

// Logits projects hidden states onto the vocabulary.
func (m *Transformer) Logits(h *torch.Tensor) *torch.Tensor {
	if m.lmHead != nil {
		return torch.Linear(h, m.lmHead, nil)
	}
	return torch.Linear(h, m.wte, nil)
}

// OutputWeight is the [V, H] matrix Logits multiplies by.
func (m *Transformer) OutputWeight() *torch.Tensor {
	if m.lmHead != nil {
		return m.lmHead
	}
	return m.wte
}

// attend is attention over the projections q [B, L, nH*D], k, v
// [B, L, nKV*D] (or [B, L, n, D]), in one native call (torch.GQAttention):
// split into heads, rotate q and k with cos, sin (nil: no rotation), append
// k, v to the layer's cache (nil: none) and attend over everything cached,
// each KV head serving nH/nKV query heads, softmax(q kᵀ·scale + mask) v, and
// merge the heads back to [B, L, nH*D]. scale 0 means 1/sqrt(head_dim).
func (m *Transformer) attend(q, k, v, cos, sin, mask *torch.Tensor, kv *layerCache, c *KVCache, nKV int64, scale float64) *torch.Tensor {
	var kc, vc *torch.Tensor
	var start int64
	if kv != nil {
		kc, vc, start = kv.k, kv.v, c.len
	}
	spec := torch.AttentionSpec{Heads: int64(m.Cfg.Heads), KVHeads: nKV, HeadDim: int64(m.Cfg.HeadDim), Scale: scale}
	if cos != nil {
		spec.RotaryDim = int64(m.Cfg.RotaryDim())
	}
	return torch.GQAttention(q, k, v, cos, sin, kc, vc, start, mask, spec)
}

func (m *Transformer) gpt2Attention(b *block, x, mask *torch.Tensor, kv *layerCache, c *KVCache) *torch.Tensor {
	H, nH := int64(m.Cfg.Hidden), int64(m.Cfg.Heads)
	qkv := m.linear(x, b.qkvW, b.qkvB) // [B, L, 3H]
	q, k, v := qkv.Narrow(-1, 0, H), qkv.Narrow(-1, H, H), qkv.Narrow(-1, 2*H, H)
	out := m.attend(q, k, v, nil, nil, mask, kv, c, nH, 0) // [B, L, H]
	return m.linear(out, b.oW, b.oB)
}

func (m *Transformer) gpt2MLP(b *block, x *torch.Tensor) *torch.Tensor {
	h := m.linear(x, b.fcW, b.fcB)
	switch m.Cfg.HiddenAct {
	case "gelu":
		h = h.Gelu()
	default: // gelu_new, gelu_pytorch_tanh
		h = h.GeluTanh()
	}
	return m.linear(h, b.projW, b.projB)
}

func (m *Transformer) llamaAttention(b *block, x, cos, sin, mask *torch.Tensor, kv *layerCache, c *KVCache) *torch.Tensor {
	nH, nKV, D := int64(m.Cfg.Heads), int64(m.Cfg.KVHeads), int64(m.Cfg.HeadDim)
	q := m.linear(x, b.qW, b.qB) // [B, L, nH*D]
	k := m.linear(x, b.kW, b.kB) // [B, L, nKV*D]
	v := m.linear(x, b.vW, b.vB) // [B, L, nKV*D]
	scale := 0.0                 // 1/sqrt(head_dim)
	if m.Cfg.Gemma3 || m.Cfg.QKNorm {
		// Each head's q and k normalised over D: [B, L, n, D].
		B, L := x.Size(0), x.Size(1)
		q, k = q.Reshape(B, L, nH, D), k.Reshape(B, L, nKV, D)
		if m.Cfg.Gemma3 {
			q, k = gemmaNorm(q, b.qNorm, m.Cfg.NormEps), gemmaNorm(k, b.kNorm, m.Cfg.NormEps)
			scale = 1 / math.Sqrt(m.Cfg.QueryPreAttnScalar)
		} else {
			q, k = torch.RMSNorm(q, b.qNorm, m.Cfg.NormEps), torch.RMSNorm(k, b.kNorm, m.Cfg.NormEps)
		}
	}
	out := m.attend(q, k, v, cos, sin, mask, kv, c, nKV, scale) // [B, L, nH*D]
	return m.linear(out, b.oW, nil)
}

// gatedMLP is down(act(gate(x)) * up(x)) with the config's activation
// (SwiGLU for silu, GeGLU for Gemma's gelu_pytorch_tanh): [B, L, H] ->
// [B, L, I] -> [B, L, H]. Without adapters on its projections it is one
// native call (torch.GatedMLP).
func (m *Transformer) gatedMLP(b *block, x *torch.Tensor) *torch.Tensor {
	act := torch.ActSilu
	switch m.Cfg.HiddenAct {
	case "gelu":
		act = torch.ActGelu
	case "gelu_new", "gelu_pytorch_tanh":
		act = torch.ActGeluTanh
	}
	if !m.adapted(b.gateW, b.upW, b.downW) {
		return torch.GatedMLP(x, b.gateW, b.upW, b.downW, act)
	}
	g := m.linear(x, b.gateW, nil)
	switch act {
	case torch.ActGelu:
		g = g.Gelu()
	case torch.ActGeluTanh:
		g = g.GeluTanh()
	default:
		g = g.Silu()
	}
	return m.linear(g.Mul(m.linear(x, b.upW, nil)), b.downW, nil)
}

// adapted reports whether linear would put an active LoRA adapter on any of
// the projections ws.
func (m *Transformer) adapted(ws ...*torch.Tensor) bool {
	if m.lora == nil || m.lora.off {
		return false
	}
	for _, w := range ws {
		if m.lora.byWeight[w] != nil {
			return true
		}
	}
	return false
}
