package model

import "github.com/ares-rlhf/ares/engine/torch"

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
// Its parameters are laid out by its family's table (params.go).
type Transformer struct {
	Cfg    *Config
	Device torch.Device
	DType  torch.DType

	wte          *torch.Tensor // [V, H]
	wpe          *torch.Tensor // [P, H], GPT-2 only
	normW, normB *torch.Tensor // final norm [H]; normB GPT-2 only
	lmHead       *torch.Tensor // [V, H]; nil when tied to wte or for a reward model
	scoreW       *torch.Tensor // [labels, H]; reward models only

	// The blocks: those of the model's family, the others empty.
	gpt2   []*gpt2Block
	llama  []*llamaBlock
	gemma3 []*gemma3Block

	ropeCos, ropeSin *torch.Tensor // [Context, rotary dim] tables, Llama family only (rope.go)

	// Gemma 3 (gemma.go): the embedding factor sqrt(hidden_size) as rounded
	// to the model's dtype, and the local layers' rotary tables.
	embedScale         float64
	localCos, localSin *torch.Tensor

	params []Param
	lora   *loraState // adapters (lora.go); nil without
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
	switch {
	case m.Cfg.Family == GPT2:
		return m.gpt2Forward(ids, pos, mask, cache)
	case m.Cfg.Gemma3:
		return m.gemma3Forward(ids, pos, mask, cache)
	}
	return m.llamaForward(ids, pos, mask, cache)
}

// gpt2Forward is Forward for GPT-2: learned positions, LayerNorm.
func (m *Transformer) gpt2Forward(ids, pos, mask *torch.Tensor, cache *KVCache) *torch.Tensor {
	eps := m.Cfg.NormEps
	x := torch.Embedding(m.wte, ids).Add(torch.Embedding(m.wpe, pos)) // [B, L, H]
	cache.begin(ids)                                                  // room for L more positions
	for i, b := range m.gpt2 {
		x = x.Add(m.gpt2Attention(b, torch.LayerNorm(x, b.ln1W, b.ln1B, eps), mask, cache.layer(i)))
		x = x.Add(m.gpt2MLP(b, torch.LayerNorm(x, b.ln2W, b.ln2B, eps)))
	}
	cache.advance()
	return torch.LayerNorm(x, m.normW, m.normB, eps)
}

// llamaForward is Forward for the Llama family: rotary positions, RMSNorm.
func (m *Transformer) llamaForward(ids, pos, mask *torch.Tensor, cache *KVCache) *torch.Tensor {
	eps := m.Cfg.NormEps
	x := torch.Embedding(m.wte, ids) // [B, L, H]
	cos, sin := m.ropeFor(pos)       // [B, 1, L, rotary dim]
	cache.begin(ids)                 // room for L more positions
	for i, b := range m.llama {
		x = x.Add(m.attention(&b.attn, torch.RMSNorm(x, b.inputNorm, eps), cos, sin, mask, cache.layer(i), torch.RMSNorm, 0))
		x = x.Add(m.gatedMLP(&b.mlp, torch.RMSNorm(x, b.mlpNorm, eps)))
	}
	cache.advance()
	return torch.RMSNorm(x, m.normW, eps)
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
// k, v to the layer's cache (none without one) and attend over everything
// cached, each KV head serving nH/nKV query heads, softmax(q kᵀ·scale + mask) v,
// and merge the heads back to [B, L, nH*D]. scale 0 means 1/sqrt(head_dim).
func (m *Transformer) attend(q, k, v, cos, sin, mask *torch.Tensor, kv layerKV, nKV int64, scale float64) *torch.Tensor {
	spec := torch.AttentionSpec{Heads: int64(m.Cfg.Heads), KVHeads: nKV, HeadDim: int64(m.Cfg.HeadDim), Scale: scale}
	if cos != nil {
		spec.RotaryDim = int64(m.Cfg.RotaryDim())
	}
	return torch.GQAttention(q, k, v, cos, sin, kv.k, kv.v, kv.start, mask, spec)
}

// gpt2Attention: x [B, L, H] -> [B, L, H], q, k and v from one projection.
func (m *Transformer) gpt2Attention(b *gpt2Block, x, mask *torch.Tensor, kv layerKV) *torch.Tensor {
	H, nH := int64(m.Cfg.Hidden), int64(m.Cfg.Heads)
	qkv := m.linear(x, b.qkvW, b.qkvB)                                            // [B, L, 3H]
	q, k, v := qkv.Narrow(-1, 0, H), qkv.Narrow(-1, H, H), qkv.Narrow(-1, 2*H, H) // [B, L, 3H] -> 3 x [B, L, H]
	out := m.attend(q, k, v, nil, nil, mask, kv, nH, 0)                           // [B, L, H]
	return m.linear(out, b.oW, b.oB)
}

// gpt2MLP: [B, L, H] -> [B, L, I] -> [B, L, H].
func (m *Transformer) gpt2MLP(b *gpt2Block, x *torch.Tensor) *torch.Tensor {
	h := m.linear(x, b.fcW, b.fcB)
	switch m.Cfg.HiddenAct {
	case "gelu":
		h = h.Gelu()
	default: // gelu_new, gelu_pytorch_tanh
		h = h.GeluTanh()
	}
	return m.linear(h, b.projW, b.projB)
}

// attention is the Llama family's and Gemma 3's self-attention, x [B, L, H]
// -> [B, L, H]: q, k, v projections; where the model has q_norm and k_norm,
// each head of q and k normalised by headNorm (RMSNorm, or Gemma's); then
// attend with the rotary tables cos, sin and scale (0: 1/sqrt(head_dim)).
func (m *Transformer) attention(a *selfAttention, x, cos, sin, mask *torch.Tensor, kv layerKV,
	headNorm func(x, w *torch.Tensor, eps float64) *torch.Tensor, scale float64) *torch.Tensor {
	nH, nKV, D := int64(m.Cfg.Heads), int64(m.Cfg.KVHeads), int64(m.Cfg.HeadDim)
	q := m.linear(x, a.qW, a.qB) // [B, L, nH*D]
	k := m.linear(x, a.kW, a.kB) // [B, L, nKV*D]
	v := m.linear(x, a.vW, a.vB) // [B, L, nKV*D]
	if a.qNorm != nil {
		B, L := x.Size(0), x.Size(1)
		q, k = q.Reshape(B, L, nH, D), k.Reshape(B, L, nKV, D) // [B, L, n*D] -> [B, L, n, D]
		q, k = headNorm(q, a.qNorm, m.Cfg.NormEps), headNorm(k, a.kNorm, m.Cfg.NormEps)
	}
	out := m.attend(q, k, v, cos, sin, mask, kv, nKV, scale) // [B, L, nH*D]
	return m.linear(out, a.oW, nil)
}

// gatedMLP is down(act(gate(x)) * up(x)) with the config's activation
// (SwiGLU for silu, GeGLU for Gemma's gelu_pytorch_tanh): [B, L, H] ->
// [B, L, I] -> [B, L, H]. Without adapters on its projections it is one
// native call (torch.GatedMLP).
func (m *Transformer) gatedMLP(p *gatedMLP, x *torch.Tensor) *torch.Tensor {
	act := torch.ActSilu
	switch m.Cfg.HiddenAct {
	case "gelu":
		act = torch.ActGelu
	case "gelu_new", "gelu_pytorch_tanh":
		act = torch.ActGeluTanh
	}
	if !m.adapted(p.gateW, p.upW, p.downW) {
		return torch.GatedMLP(x, p.gateW, p.upW, p.downW, act)
	}
	g := m.linear(x, p.gateW, nil)
	switch act {
	case torch.ActGelu:
		g = g.Gelu()
	case torch.ActGeluTanh:
		g = g.GeluTanh()
	default:
		g = g.Silu()
	}
	return m.linear(g.Mul(m.linear(x, p.upW, nil)), p.downW, nil)
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
