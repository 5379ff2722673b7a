// Package model holds the decoder-only transformers of the engine (the
// GPT-2 architecture, the Llama / Mistral / Qwen2 / Qwen3 family and Gemma 3's
// text decoder, model_type gemma3_text), the reward model
// built on them, batched generation with a KV cache, and teacher-forced
// log-probabilities. Models are configured from a Hugging Face config.json and
// load safetensors under the tensor names Hugging Face uses.
//
// Rotary embeddings: plain RoPE and the rope_scaling types "linear",
// "dynamic" (dynamic NTK), "llama3" (Llama 3.1/3.2) and "yarn" (Qwen2.5,
// Qwen3 long context), plus partial_rotary_factor; longrope and unknown types
// or keys are refused by name. See rope.go for the formulas and for how
// dynamic NTK behaves with a KV cache. Qwen2's use_sliding_window must be
// false (its sliding-window attention is not implemented).
//
// Gemma 3 (gemma3_text, see gemma.go) has its own sliding-window (local)
// layers; the multimodal model_type "gemma3" is refused by name, and so are
// attention/final logit soft-capping and bidirectional attention.
package model

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/internal/jsonfile"
)

// Family is the architecture family a config maps onto.
type Family string

const (
	GPT2  Family = "gpt2"  // learned positions, LayerNorm, GELU MLP, fused QKV (Conv1D layout)
	Llama Family = "llama" // rotary positions, RMSNorm, SwiGLU, grouped-query attention
)

// Config is the subset of a Hugging Face config.json the engine uses, with
// the family's defaults filled in.
type Config struct {
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures,omitempty"`

	VocabSize   int   `json:"vocab_size"`
	Hidden      int   `json:"hidden_size"`
	Layers      int   `json:"num_hidden_layers"`
	Heads       int   `json:"num_attention_heads"`
	KVHeads     int   `json:"num_key_value_heads,omitempty"`
	HeadDim     int   `json:"head_dim,omitempty"`
	Inter       int   `json:"intermediate_size,omitempty"`
	MaxPos      int   `json:"max_position_embeddings"`
	NumLabels   int   `json:"num_labels,omitempty"`
	PadTokenID  *int  `json:"pad_token_id,omitempty"`
	BOSTokenID  *int  `json:"bos_token_id,omitempty"`
	EOSTokenIDs []int `json:"-"`

	NormEps    float64 `json:"rms_norm_eps,omitempty"`
	RopeTheta  float64 `json:"rope_theta,omitempty"`
	Tied       bool    `json:"tie_word_embeddings"`
	AttnBias   bool    `json:"attention_bias,omitempty"`
	HiddenAct  string  `json:"hidden_act,omitempty"`
	TorchDType string  `json:"torch_dtype,omitempty"`

	// RopeScaling is the "rope_scaling" object (nil: plain rotary
	// embeddings); PartialRotary is partial_rotary_factor (0: the whole head).
	// See rope.go for the supported types.
	RopeScaling   *RopeScaling `json:"-"`
	PartialRotary float64      `json:"-"`
	// UseSlidingWindow is Qwen2's use_sliding_window as the file gave it;
	// only false is accepted (sliding-window attention is not implemented).
	UseSlidingWindow *bool `json:"-"`

	Family Family `json:"-"`
	QKNorm bool   `json:"-"` // Qwen3, Gemma 3: RMSNorm on each head of q and k

	// Gemma 3 (model_type gemma3_text; see gemma.go). Gemma3 marks the
	// architecture: embeddings scaled by sqrt(hidden_size), (1 + weight)
	// RMSNorms, a norm after attention and around the MLP, and a mix of
	// sliding-window (local) and global attention layers.
	Gemma3 bool `json:"-"`
	// QueryPreAttnScalar: attention scores are scaled by its -1/2 power
	// (query_pre_attn_scalar) instead of head_dim's.
	QueryPreAttnScalar float64 `json:"-"`
	// SlidingWindow is the number of positions (the query's own included) a
	// local layer's query attends to.
	SlidingWindow int `json:"-"`
	// LayerTypes is "sliding_attention" or "full_attention" for each layer
	// (from layer_types, or from sliding_window_pattern: every n-th layer global).
	LayerTypes []string `json:"-"`
	// RopeLocalTheta is rope_local_base_freq, the plain-RoPE base of the local
	// layers (global layers use rope_theta and rope_scaling).
	RopeLocalTheta float64 `json:"-"`
}

var supportedTypes = map[string]Family{
	"gpt2": GPT2, "llama": Llama, "mistral": Llama, "qwen2": Llama, "qwen3": Llama, "gemma3_text": Llama,
}

// LoadConfig reads a config.json. A syntax error gives its line and column.
func LoadConfig(path string) (*Config, error) {
	var b json.RawMessage
	if err := jsonfile.Read(path, &b); err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses config.json bytes, maps GPT-2's field names onto the
// common ones, fills the family defaults and validates the result.
func ParseConfig(b []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config is not a JSON object: %w", err)
	}
	get := func(key string, dst any) error {
		v, ok := raw[key]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		return nil
	}
	c := &Config{}
	if err := get("model_type", &c.ModelType); err != nil {
		return nil, err
	}
	fam, ok := supportedTypes[c.ModelType]
	if c.ModelType == "gemma3" {
		return nil, fmt.Errorf("model_type \"gemma3\" is the multimodal Gemma 3 (Gemma3ForConditionalGeneration, text under \"text_config\" and a vision tower) and is not supported; use a text-only checkpoint of model_type \"gemma3_text\" (Gemma3ForCausalLM, such as gemma-3-1b)")
	}
	if !ok {
		names := make([]string, 0, len(supportedTypes))
		for k := range supportedTypes {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("model_type %q is not supported (supported: %s)", c.ModelType, strings.Join(names, ", "))
	}
	c.Family = fam
	// Hugging Face's default for tie_word_embeddings is true; Llama and Qwen
	// configs set it explicitly or default to false in their classes.
	c.Tied = fam == GPT2
	if c.ModelType == "gemma3_text" {
		c.gemma3Defaults()
	}
	fields := []struct {
		keys []string
		dst  any
	}{
		{[]string{"architectures"}, &c.Architectures},
		{[]string{"vocab_size"}, &c.VocabSize},
		{[]string{"hidden_size", "n_embd"}, &c.Hidden},
		{[]string{"num_hidden_layers", "n_layer"}, &c.Layers},
		{[]string{"num_attention_heads", "n_head"}, &c.Heads},
		{[]string{"num_key_value_heads"}, &c.KVHeads},
		{[]string{"head_dim"}, &c.HeadDim},
		{[]string{"intermediate_size", "n_inner"}, &c.Inter},
		{[]string{"max_position_embeddings", "n_positions"}, &c.MaxPos},
		{[]string{"num_labels"}, &c.NumLabels},
		{[]string{"pad_token_id"}, &c.PadTokenID},
		{[]string{"bos_token_id"}, &c.BOSTokenID},
		{[]string{"rms_norm_eps", "layer_norm_epsilon"}, &c.NormEps},
		{[]string{"rope_theta"}, &c.RopeTheta},
		{[]string{"tie_word_embeddings"}, &c.Tied},
		{[]string{"attention_bias"}, &c.AttnBias},
		{[]string{"hidden_act", "activation_function"}, &c.HiddenAct},
		{[]string{"torch_dtype"}, &c.TorchDType},
	}
	for _, f := range fields {
		for _, k := range f.keys {
			if err := get(k, f.dst); err != nil {
				return nil, err
			}
		}
	}
	// eos_token_id is an int or a list of ints.
	if v, ok := raw["eos_token_id"]; ok && string(v) != "null" {
		var one int
		if json.Unmarshal(v, &one) == nil {
			c.EOSTokenIDs = []int{one}
		} else if err := json.Unmarshal(v, &c.EOSTokenIDs); err != nil {
			return nil, fmt.Errorf("field \"eos_token_id\": want an integer or a list of integers")
		}
	}
	if c.Gemma3 {
		if err := c.parseGemma3(raw, get); err != nil {
			return nil, err
		}
	} else if err := c.parseRope(raw, get); err != nil {
		return nil, err
	}
	switch c.ModelType {
	case "qwen2":
		c.AttnBias = true // Qwen2 always has q/k/v biases; its config does not say so
	case "qwen3":
		c.QKNorm = true
	}
	if c.NumLabels == 0 {
		c.NumLabels = 1
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.Inter == 0 && fam == GPT2 {
		c.Inter = 4 * c.Hidden
	}
	if c.NormEps == 0 {
		c.NormEps = map[Family]float64{GPT2: 1e-5, Llama: 1e-6}[fam]
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.HiddenAct == "" {
		c.HiddenAct = map[Family]string{GPT2: "gelu_new", Llama: "silu"}[fam]
	}
	return c, c.Validate()
}

// Validate checks that the sizes are consistent.
func (c *Config) Validate() error {
	pos := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.Hidden}, {"num_hidden_layers", c.Layers},
		{"num_attention_heads", c.Heads}, {"intermediate_size", c.Inter}, {"max_position_embeddings", c.MaxPos},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("field %q must be positive, got %d", p.name, p.v)
		}
		// Far above any published model: a value past it is a damaged file,
		// which would otherwise allocate or loop until the machine gives out.
		if p.v > 1<<24 {
			return fmt.Errorf("field %q = %d is beyond any model's (at most %d)", p.name, p.v, 1<<24)
		}
	}
	// Sizes that ParseConfig derives when the file leaves them out, and
	// num_labels: the same bounds, named by key.
	for _, p := range []struct {
		name string
		v    int
		hi   int
	}{{"num_key_value_heads", c.KVHeads, 1 << 24}, {"head_dim", c.HeadDim, 1 << 24}, {"num_labels", c.NumLabels, 1 << 16}} {
		if p.v <= 0 {
			return fmt.Errorf("field %q must be positive, got %d", p.name, p.v)
		}
		if p.v > p.hi {
			return fmt.Errorf("field %q = %d is beyond any model's (at most %d)", p.name, p.v, p.hi)
		}
	}
	// Each size may be in range and a product not: one weight matrix of
	// more than 2^36 elements (256 GiB in float32) is a damaged file, which
	// would fail in an allocation that names no key.
	const maxMatrix = 1 << 36
	matrices := []struct {
		names string
		a, b  int
	}{
		{"vocab_size × hidden_size", c.VocabSize, c.Hidden},
		{"intermediate_size × hidden_size", c.Inter, c.Hidden},
		{"num_attention_heads × head_dim, hidden_size", c.Heads * c.HeadDim, c.Hidden},
	}
	if c.Family == GPT2 { // learned positions: a matrix of its own
		matrices = append(matrices, struct {
			names string
			a, b  int
		}{"max_position_embeddings × hidden_size", c.MaxPos, c.Hidden})
	}
	for _, m := range matrices {
		if n := float64(m.a) * float64(m.b); n > maxMatrix {
			return fmt.Errorf("fields %s = %d × %d: a weight matrix of %.3g elements is beyond any model's (at most 2^36)", m.names, m.a, m.b, n)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if c.Family == GPT2 && c.HeadDim*c.Heads != c.Hidden {
		return fmt.Errorf("hidden_size %d is not divisible by num_attention_heads %d", c.Hidden, c.Heads)
	}
	if c.Family == Llama {
		if c.PartialRotary < 0 || c.PartialRotary > 1 {
			return fmt.Errorf("field \"partial_rotary_factor\" = %v must be in (0, 1]", c.PartialRotary)
		}
		if rd := c.RotaryDim(); rd <= 0 || rd%2 != 0 {
			if c.PartialRotary != 0 {
				return fmt.Errorf("field \"partial_rotary_factor\" = %v gives %d rotary dimensions of head_dim %d; they must be even and positive", c.PartialRotary, rd, c.HeadDim)
			}
			return fmt.Errorf("head_dim %d must be even for rotary embeddings", c.HeadDim)
		}
		if r := c.RopeScaling; r != nil {
			if err := r.validate(c.MaxPos); err != nil {
				return err
			}
			if r.Type == "dynamic" && c.RotaryDim() <= 2 {
				return fmt.Errorf("field \"rope_scaling\": rope type \"dynamic\" needs more than 2 rotary dimensions, got %d", c.RotaryDim())
			}
		}
	}
	if c.Gemma3 {
		if err := c.validateGemma3(); err != nil {
			return err
		}
	}
	switch c.HiddenAct {
	case "gelu_new", "gelu_pytorch_tanh", "gelu", "silu":
	default:
		return fmt.Errorf("activation %q is not supported (gelu_new, gelu_pytorch_tanh, gelu, silu)", c.HiddenAct)
	}
	return nil
}

// JSON renders the config in Hugging Face's layout for the family.
func (c *Config) JSON(architecture string) ([]byte, error) {
	m := map[string]any{
		"model_type": c.ModelType, "architectures": []string{architecture},
		"vocab_size": c.VocabSize, "tie_word_embeddings": c.Tied, "num_labels": c.NumLabels,
	}
	if c.PadTokenID != nil {
		m["pad_token_id"] = *c.PadTokenID
	}
	if c.BOSTokenID != nil {
		m["bos_token_id"] = *c.BOSTokenID
	}
	if len(c.EOSTokenIDs) == 1 {
		m["eos_token_id"] = c.EOSTokenIDs[0]
	} else if len(c.EOSTokenIDs) > 1 {
		m["eos_token_id"] = c.EOSTokenIDs
	}
	if c.Family == GPT2 {
		m["n_embd"], m["n_layer"], m["n_head"], m["n_inner"] = c.Hidden, c.Layers, c.Heads, c.Inter
		m["n_positions"], m["layer_norm_epsilon"], m["activation_function"] = c.MaxPos, c.NormEps, c.HiddenAct
	} else {
		m["hidden_size"], m["num_hidden_layers"], m["num_attention_heads"] = c.Hidden, c.Layers, c.Heads
		m["num_key_value_heads"], m["head_dim"], m["intermediate_size"] = c.KVHeads, c.HeadDim, c.Inter
		m["max_position_embeddings"], m["rms_norm_eps"], m["rope_theta"] = c.MaxPos, c.NormEps, c.RopeTheta
		m["hidden_act"] = c.HiddenAct
		if c.Gemma3 {
			c.gemma3JSON(m)
		}
		if c.ModelType == "llama" || c.ModelType == "qwen3" || c.Gemma3 {
			m["attention_bias"] = c.AttnBias
		}
		if c.RopeScaling != nil {
			m["rope_scaling"] = c.RopeScaling.jsonValue()
		}
		if c.PartialRotary != 0 {
			m["partial_rotary_factor"] = c.PartialRotary
		}
		if c.UseSlidingWindow != nil {
			m["use_sliding_window"] = *c.UseSlidingWindow
		}
	}
	return json.MarshalIndent(m, "", "  ")
}

// parseRope reads rope_scaling (or transformers 5's rope_parameters, which
// also carries rope_theta and partial_rotary_factor), partial_rotary_factor
// and use_sliding_window.
func (c *Config) parseRope(raw map[string]json.RawMessage, get func(string, any) error) error {
	set := func(k string) bool { v, ok := raw[k]; return ok && string(v) != "null" }
	if c.Family == GPT2 {
		for _, k := range []string{"rope_scaling", "rope_parameters", "partial_rotary_factor"} {
			if set(k) {
				return fmt.Errorf("field %q is set (%s), but model_type %q has no rotary embeddings", k, string(raw[k]), c.ModelType)
			}
		}
		return nil
	}
	if set("rope_scaling") && set("rope_parameters") {
		return fmt.Errorf("fields \"rope_scaling\" and \"rope_parameters\" are both set; give one")
	}
	if err := get("partial_rotary_factor", &c.PartialRotary); err != nil {
		return err
	}
	for _, k := range []string{"rope_scaling", "rope_parameters"} {
		if !set(k) {
			continue
		}
		extra := map[string]json.RawMessage{}
		r, err := parseRopeScaling(k, raw[k], extra)
		if err != nil {
			return err
		}
		c.RopeScaling = r
		if v, ok := extra["rope_theta"]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, &c.RopeTheta); err != nil {
				return fmt.Errorf("field %q: key \"rope_theta\": %s is not a number", k, string(v))
			}
		}
		if v, ok := extra["partial_rotary_factor"]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, &c.PartialRotary); err != nil {
				return fmt.Errorf("field %q: key \"partial_rotary_factor\": %s is not a number", k, string(v))
			}
		}
		if k == "rope_scaling" && len(extra) > 0 {
			for ek := range extra {
				return fmt.Errorf("field \"rope_scaling\": key %q belongs at the top level of config.json", ek)
			}
		}
	}
	if set("use_sliding_window") {
		var on bool
		if err := get("use_sliding_window", &on); err != nil {
			return err
		}
		if on {
			return fmt.Errorf("field \"use_sliding_window\" is true; sliding-window attention is not supported")
		}
		c.UseSlidingWindow = &on
	}
	return nil
}
