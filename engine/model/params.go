package model

// The parameter tables. Each family lists its tensors once, in one place:
// the Hugging Face name (without the backbone prefix "transformer." or
// "model."), the shape from the config, the kind, and the field of the model
// (or of its block) the tensor fills. Init allocates and initialises from the
// table, Load reads and checks shapes against it, Save writes under its
// names, and LoRA finds the projections in it. The order of a table is the
// file's, the parameters' (Params) and the optimizer's.

import (
	"fmt"
	"strings"

	"github.com/ares-rlhf/ares/engine/torch"
)

// paramKind says how a parameter is initialised and stored.
type paramKind int

const (
	embedding paramKind = iota // token or position embeddings: N(0, 0.02²)
	linear                     // a projection's weight [out, in]: N(0, 0.02²); adapters can target it
	conv1D                     // GPT-2's Conv1D projection weight: a linear one, stored [in, out] on disk
	bias                       // zeros
	norm                       // a norm's weight: ones (Gemma 3's, which scale by 1 + weight: zeros)
	head                       // an output head, outside the backbone prefix: N(0, 0.02²)
)

// The output heads' names (no backbone prefix in the files).
const (
	lmHeadName = "lm_head.weight"
	scoreName  = "score.weight"
)

// paramSpec is one row of a parameter table.
type paramSpec struct {
	name  string
	shape []int64
	kind  paramKind
	dst   **torch.Tensor // the field the tensor fills
}

// table collects a family's rows; pre is the module path of what is added.
type table struct {
	rows []paramSpec
	pre  string
}

func (t *table) add(name string, kind paramKind, dst **torch.Tensor, shape ...int64) {
	t.rows = append(t.rows, paramSpec{name: t.pre + name, shape: shape, kind: kind, dst: dst})
}

// affine adds a weight [out, in] (kind linear or conv1D) or a norm's weight
// [out] (in 0, kind norm) and its bias [out] under module.
func (t *table) affine(module string, kind paramKind, w, b **torch.Tensor, out, in int64) {
	if kind == norm {
		t.add(module+".weight", kind, w, out)
	} else {
		t.add(module+".weight", kind, w, out, in)
	}
	t.add(module+".bias", bias, b, out)
}

// gpt2Block is a GPT-2 layer:
//
//	x += attn.c_proj(attention(split(attn.c_attn(ln_1(x)))))
//	x += mlp.c_proj(gelu(mlp.c_fc(ln_2(x))))
type gpt2Block struct {
	ln1W, ln1B   *torch.Tensor // ln_1 [H]
	qkvW, qkvB   *torch.Tensor // attn.c_attn [3H, H]: q, k and v in one projection
	oW, oB       *torch.Tensor // attn.c_proj [H, H]
	ln2W, ln2B   *torch.Tensor // ln_2 [H]
	fcW, fcB     *torch.Tensor // mlp.c_fc [I, H]
	projW, projB *torch.Tensor // mlp.c_proj [H, I]
}

func (b *gpt2Block) params(t *table, c *Config) {
	H, I := int64(c.Hidden), int64(c.Inter)
	t.affine("ln_1", norm, &b.ln1W, &b.ln1B, H, 0)
	t.affine("attn.c_attn", conv1D, &b.qkvW, &b.qkvB, 3*H, H)
	t.affine("attn.c_proj", conv1D, &b.oW, &b.oB, H, H)
	t.affine("ln_2", norm, &b.ln2W, &b.ln2B, H, 0)
	t.affine("mlp.c_fc", conv1D, &b.fcW, &b.fcB, I, H)
	t.affine("mlp.c_proj", conv1D, &b.projW, &b.projB, H, I)
}

// selfAttention is the attention of the Llama family and Gemma 3
// (self_attn.*): separate q, k, v projections, grouped-query heads.
type selfAttention struct {
	qW, kW, vW   *torch.Tensor // q_proj [nH*D, H], k_proj and v_proj [nKV*D, H]
	qB, kB, vB   *torch.Tensor // their biases (attention_bias, Qwen2); nil without
	qNorm, kNorm *torch.Tensor // q_norm, k_norm [D] over each head (Qwen3, Gemma 3); nil without
	oW           *torch.Tensor // o_proj [H, nH*D]
}

func (a *selfAttention) params(t *table, c *Config) {
	H, D, nH, nKV := int64(c.Hidden), int64(c.HeadDim), int64(c.Heads), int64(c.KVHeads)
	t.add("self_attn.q_proj.weight", linear, &a.qW, nH*D, H)
	t.add("self_attn.k_proj.weight", linear, &a.kW, nKV*D, H)
	t.add("self_attn.v_proj.weight", linear, &a.vW, nKV*D, H)
	if c.AttnBias {
		t.add("self_attn.q_proj.bias", bias, &a.qB, nH*D)
		t.add("self_attn.k_proj.bias", bias, &a.kB, nKV*D)
		t.add("self_attn.v_proj.bias", bias, &a.vB, nKV*D)
	}
	if c.QKNorm {
		t.add("self_attn.q_norm.weight", norm, &a.qNorm, D)
		t.add("self_attn.k_norm.weight", norm, &a.kNorm, D)
	}
	t.add("self_attn.o_proj.weight", linear, &a.oW, H, nH*D)
}

// gatedMLP is down_proj(act(gate_proj(x)) * up_proj(x)) (mlp.*).
type gatedMLP struct {
	gateW, upW *torch.Tensor // gate_proj, up_proj [I, H]
	downW      *torch.Tensor // down_proj [H, I]
}

func (g *gatedMLP) params(t *table, c *Config) {
	H, I := int64(c.Hidden), int64(c.Inter)
	t.add("mlp.gate_proj.weight", linear, &g.gateW, I, H)
	t.add("mlp.up_proj.weight", linear, &g.upW, I, H)
	t.add("mlp.down_proj.weight", linear, &g.downW, H, I)
}

// llamaBlock is a layer of Llama, Mistral, Qwen2 and Qwen3:
//
//	x += attention(rmsnorm(x))   (input_layernorm)
//	x += mlp(rmsnorm(x))         (post_attention_layernorm)
type llamaBlock struct {
	inputNorm *torch.Tensor // input_layernorm [H]
	attn      selfAttention
	mlpNorm   *torch.Tensor // post_attention_layernorm [H], before the MLP
	mlp       gatedMLP
}

func (b *llamaBlock) params(t *table, c *Config) {
	H := int64(c.Hidden)
	t.add("input_layernorm.weight", norm, &b.inputNorm, H)
	b.attn.params(t, c)
	t.add("post_attention_layernorm.weight", norm, &b.mlpNorm, H)
	b.mlp.params(t, c)
}

// gemma3Block is a Gemma 3 layer (gemma.go), every norm Gemma's:
//
//	x += norm(attention(norm(x)))   (input_layernorm, post_attention_layernorm)
//	x += norm(mlp(norm(x)))         (pre_ and post_feedforward_layernorm)
type gemma3Block struct {
	inputNorm    *torch.Tensor // input_layernorm [H]
	attn         selfAttention
	postAttnNorm *torch.Tensor // post_attention_layernorm [H], after attention
	preFFNorm    *torch.Tensor // pre_feedforward_layernorm [H]
	postFFNorm   *torch.Tensor // post_feedforward_layernorm [H]
	mlp          gatedMLP
	sliding      bool // a local (sliding-window) layer
}

func (b *gemma3Block) params(t *table, c *Config) {
	H := int64(c.Hidden)
	t.add("input_layernorm.weight", norm, &b.inputNorm, H)
	b.attn.params(t, c)
	t.add("post_attention_layernorm.weight", norm, &b.postAttnNorm, H)
	t.add("pre_feedforward_layernorm.weight", norm, &b.preFFNorm, H)
	t.add("post_feedforward_layernorm.weight", norm, &b.postFFNorm, H)
	b.mlp.params(t, c)
}

// newTransformer makes a model of cfg without parameters: the blocks of its
// family, empty, for layout to point into.
func newTransformer(cfg *Config, dev torch.Device, dt torch.DType) *Transformer {
	m := &Transformer{Cfg: cfg, Device: dev, DType: dt}
	for i := 0; i < cfg.Layers; i++ {
		switch {
		case cfg.Family == GPT2:
			m.gpt2 = append(m.gpt2, &gpt2Block{})
		case cfg.Gemma3:
			m.gemma3 = append(m.gemma3, &gemma3Block{sliding: cfg.LayerTypes[i] == slidingAttention})
		default:
			m.llama = append(m.llama, &llamaBlock{})
		}
	}
	return m
}

// layout is the parameter table of m's family for a model of kind, each row
// pointing into m.
func (m *Transformer) layout(kind Kind) []paramSpec {
	c := m.Cfg
	H, V := int64(c.Hidden), int64(c.VocabSize)
	t := &table{}
	if c.Family == GPT2 {
		t.add("wte.weight", embedding, &m.wte, V, H)
		t.add("wpe.weight", embedding, &m.wpe, int64(c.MaxPos), H)
		for i, b := range m.gpt2 {
			t.pre = fmt.Sprintf("h.%d.", i)
			b.params(t, c)
		}
		t.pre = ""
		t.affine("ln_f", norm, &m.normW, &m.normB, H, 0)
	} else {
		t.add("embed_tokens.weight", embedding, &m.wte, V, H)
		for i, b := range m.llama {
			t.pre = fmt.Sprintf("layers.%d.", i)
			b.params(t, c)
		}
		for i, b := range m.gemma3 {
			t.pre = fmt.Sprintf("layers.%d.", i)
			b.params(t, c)
		}
		t.pre = ""
		t.add("norm.weight", norm, &m.normW, H)
	}
	if kind == CausalLM && !c.Tied {
		t.add(lmHeadName, head, &m.lmHead, V, H)
	}
	if kind == Reward {
		t.add(scoreName, head, &m.scoreW, int64(c.NumLabels), H)
	}
	return t.rows
}

// shapes is the parameter table of cfg for kind, for allocating or reading
// the tensors before there is a model.
func shapes(cfg *Config, kind Kind) []paramSpec {
	return newTransformer(cfg, torch.CPU, torch.Float32).layout(kind)
}

// build assembles a Transformer around already-created parameters, given in
// the order of the table (as Init and Load make them); a reward model's end
// with score.weight.
func build(cfg *Config, dev torch.Device, dt torch.DType, params []Param) (*Transformer, error) {
	m := newTransformer(cfg, dev, dt)
	kind := CausalLM
	if n := len(params); n > 0 && params[n-1].Name == scoreName {
		kind = Reward
	}
	rows := m.layout(kind)
	if len(rows) != len(params) {
		return nil, fmt.Errorf("model: %d parameters for a %s %s of %d", len(params), cfg.ModelType, kindName(kind), len(rows))
	}
	for i, r := range rows {
		if params[i].Name != r.name {
			return nil, fmt.Errorf("model: parameter %d is %q, want %q", i, params[i].Name, r.name)
		}
		*r.dst = params[i].T
	}
	m.params = params
	if cfg.Family == GPT2 {
		return m, nil
	}
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
	return m, nil
}

// linearModule is a projection adapters can target: its Hugging Face module
// path (without the backbone prefix) and weight.
type linearModule struct {
	module string
	w      *torch.Tensor
}

// linearModules lists the projections of the blocks, in parameter order
// (the output heads are not among them).
func (m *Transformer) linearModules() []linearModule {
	var out []linearModule
	for _, r := range m.layout(CausalLM) {
		if r.kind == linear || r.kind == conv1D {
			out = append(out, linearModule{strings.TrimSuffix(r.name, ".weight"), *r.dst})
		}
	}
	return out
}
