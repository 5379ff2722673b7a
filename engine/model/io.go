package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/atomicfile"
	"github.com/ares-rlhf/ares/tokenizer"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Kind says which head a model carries.
type Kind int

const (
	CausalLM Kind = iota // language-model head (lm_head, or tied to the embeddings)
	Reward               // scalar head score.weight on the last non-padding token
)

// prefix is the name prefix Hugging Face puts before the backbone's tensors.
func prefix(cfg *Config) string {
	if cfg.Family == GPT2 {
		return "transformer."
	}
	return "model."
}

// architecture is the class name written to config.json.
func architecture(cfg *Config, kind Kind) string {
	base := map[string]string{"gpt2": "GPT2", "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma3_text": "Gemma3Text"}[cfg.ModelType]
	if kind == Reward {
		return base + "ForSequenceClassification"
	}
	if cfg.Gemma3 {
		return "Gemma3ForCausalLM"
	}
	if cfg.Family == GPT2 {
		return "GPT2LMHeadModel"
	}
	return base + "ForCausalLM"
}

// Options choose where and in which precision a model lives.
type Options struct {
	Device torch.Device
	DType  torch.DType // parameters are converted to it on load (default float32)
}

func (o Options) withDefaults() Options {
	if o.DType == 0 && o.Device == (torch.Device{}) {
		o.Device = torch.CPU
	}
	if o.Device == (torch.Device{}) {
		o.Device = torch.CPU
	}
	return o
}

// Init creates a model with freshly initialised weights (normal, std 0.02, as
// Hugging Face initialises these families; norms at one (Gemma 3's, which
// scale by 1 + weight, at zero), biases at zero),
// drawn from a generator seeded with seed.
func Init(cfg *Config, kind Kind, seed uint64, o Options) (m *Transformer, err error) {
	defer torch.ReleaseFreeMemory() // the unit draws and conversions of the initialisation
	o = o.withDefaults()
	var params []Param
	// randn is std·N(0, 1) of shape, freeing the unit draw on every path.
	randn := func(shape []int64, g *torch.Generator) *torch.Tensor {
		r := torch.Randn(shape, torch.Float32, torch.CPU, g)
		defer r.Close()
		return r.MulScalar(0.02)
	}
	err = torch.Try(func() {
		g := torch.NewGenerator(seed, torch.CPU)
		defer g.Close()
		for _, s := range shapes(cfg, kind) {
			var t *torch.Tensor
			switch {
			case s.kind == norm && cfg.Gemma3: // Gemma's norms scale by 1 + weight
				t = torch.Zeros(s.shape, torch.Float32, torch.CPU)
			case s.kind == norm:
				t = torch.Ones(s.shape, torch.Float32, torch.CPU)
			case s.kind == bias:
				t = torch.Zeros(s.shape, torch.Float32, torch.CPU)
			default:
				t = randn(s.shape, g)
			}
			params = append(params, Param{Name: s.name, T: place(t, o), Conv1D: s.kind == conv1D})
		}
	})
	if err == nil {
		m, err = build(cfg, o.Device, o.DType, params)
	}
	if err != nil {
		for _, p := range params {
			p.T.Close()
		}
		return nil, err
	}
	return m, nil
}

// place moves a fresh CPU f32 tensor to the model's device and dtype, and
// frees the original.
func place(t *torch.Tensor, o Options) *torch.Tensor {
	defer t.Close()
	return t.Convert(o.DType, o.Device)
}

// weightSource is a single safetensors file or a sharded set.
type weightSource interface {
	Info(name string) (safetensors.TensorInfo, bool)
	Data(name string) ([]byte, error)
	Tensors() []safetensors.TensorInfo
	Close() error
}

func openWeights(dir string) (weightSource, string, error) {
	idx := filepath.Join(dir, safetensors.IndexName)
	if _, err := os.Stat(idx); err == nil {
		s, err := safetensors.OpenSet(idx)
		return s, idx, err
	}
	single := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(single)
	return f, single, err
}

var torchDTypes = map[safetensors.DType]torch.DType{
	safetensors.F32: torch.Float32, safetensors.F64: torch.Float64, safetensors.F16: torch.Float16,
	safetensors.BF16: torch.BFloat16, safetensors.I64: torch.Int64, safetensors.I32: torch.Int32,
	safetensors.I16: torch.Int16, safetensors.I8: torch.Int8, safetensors.U8: torch.Uint8, safetensors.Bool: torch.Bool,
}

// Load reads a model directory: config.json, then model.safetensors or a
// sharded set named by model.safetensors.index.json, under Hugging Face's
// tensor names. A missing or mis-shaped tensor is an error naming it.
// Buffers Hugging Face saves but the engine recomputes (GPT-2's attn.bias
// masks, rotary inv_freq) are ignored; other unexpected tensors are errors.
//
// A PEFT adapter directory (adapter_config.json, no config.json) loads its
// base model (base_model_name_or_path) with the adapters on it.
func Load(dir string, kind Kind, o Options) (*Transformer, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil && IsAdapterDir(dir) {
		return loadWithAdapter(dir, kind, o)
	}
	defer torch.ReleaseFreeMemory() // the file's bytes and the dtype conversions of loading
	o = o.withDefaults()
	cfgPath := filepath.Join(dir, "config.json")
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	src, srcPath, err := openWeights(dir)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// Checkpoints of the bare backbone (GPT2Model, as the original gpt2 weights
	// are published) have no prefix; detect which layout this one uses.
	want := shapes(cfg, kind)
	pre := prefix(cfg)
	if _, ok := src.Info(pre + want[0].name); !ok {
		pre = ""
	}
	used := map[string]bool{}
	var params []Param
	fail := func(e error) (*Transformer, error) {
		for _, p := range params {
			p.T.Close()
		}
		return nil, e
	}
	for _, s := range want {
		name := pre + s.name
		if s.kind == head {
			name = s.name
		}
		t, err := loadTensor(src, srcPath, name, s.shape, s.kind == conv1D, o)
		if err != nil {
			return fail(err)
		}
		used[name] = true
		params = append(params, Param{Name: s.name, T: t, Conv1D: s.kind == conv1D})
	}
	for _, info := range src.Tensors() {
		n := info.Name
		if used[n] || ignorable(n, kind, cfg) {
			continue
		}
		return fail(fmt.Errorf("%s: unexpected tensor %q for a %s %s", srcPath, n, cfg.ModelType, kindName(kind)))
	}
	m, err := build(cfg, o.Device, o.DType, params)
	if err != nil {
		return fail(err)
	}
	return m, nil
}

func loadWithAdapter(dir string, kind Kind, o Options) (*Transformer, error) {
	info, err := ReadAdapterConfig(dir)
	if err != nil {
		return nil, err
	}
	base := info.Base
	if IsAdapterDir(base) {
		if _, err := os.Stat(filepath.Join(base, "config.json")); err != nil {
			return nil, fmt.Errorf("%s: base model %s is itself an adapter: stacked adapters are not supported (merge the first with ares lora merge)", dir, base)
		}
	}
	m, err := Load(base, kind, o)
	if err != nil {
		return nil, fmt.Errorf("%s: base model: %w", dir, err)
	}
	if err := m.LoadAdapter(dir); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func kindName(k Kind) string {
	if k == Reward {
		return "reward model"
	}
	return "language model"
}

func ignorable(name string, kind Kind, cfg *Config) bool {
	switch {
	case strings.HasSuffix(name, ".attn.bias"), strings.HasSuffix(name, ".attn.masked_bias"),
		strings.HasSuffix(name, "rotary_emb.inv_freq"):
		return true
	case name == lmHeadName && (cfg.Tied || kind == Reward):
		return true // tied copies, or a language-model head on a reward checkpoint
	case name == scoreName && kind == CausalLM:
		return true
	}
	return false
}

func loadTensor(src weightSource, path, name string, shape []int64, conv1D bool, o Options) (t *torch.Tensor, err error) {
	info, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %q", path, name)
	}
	diskShape := shape
	if conv1D {
		diskShape = []int64{shape[1], shape[0]}
	}
	if !slices.Equal(info.Shape, diskShape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, want %v", path, name, info.Shape, diskShape)
	}
	dt, ok := torchDTypes[info.DType]
	if !ok || !dt.IsFloat() {
		return nil, fmt.Errorf("%s: tensor %q has dtype %s, want a floating-point type", path, name, info.DType)
	}
	data, err := src.Data(name)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", path, name, err)
	}
	err = torch.Try(func() {
		raw := torch.FromBytes(data, dt, info.Shape, torch.CPU)
		defer raw.Close()
		if conv1D {
			tr := raw.Transpose(0, 1)
			defer tr.Close()
			c := tr.Contiguous()
			defer c.Close()
			t = c.Convert(o.DType, o.Device)
			return
		}
		t = raw.Convert(o.DType, o.Device)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", path, name, err)
	}
	return t, nil
}

// Save writes the model as a Hugging Face directory: config.json (in the
// family's layout, naming the architecture for kind) and model.safetensors,
// plus tokenizer.json when tok is given.
func (m *Transformer) Save(dir string, kind Kind, tok *tokenizer.Tokenizer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cj, err := m.Cfg.JSON(architecture(m.Cfg, kind))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "config.json"), cj, 0o644); err != nil {
		return err
	}
	if m.lora != nil {
		return errors.New("model.Save: the model has adapters: save them with SaveAdapter, or merge them first (MergeLoRA)")
	}
	ps := make([]Param, len(m.params))
	for i, p := range m.params {
		ps[i] = Param{Name: hfName(m.Cfg, p.Name), T: p.T, Conv1D: p.Conv1D}
	}
	if err := writeWeights(filepath.Join(dir, "model.safetensors"), ps); err != nil {
		return err
	}
	return saveTokenizer(dir, tok)
}

// writeWeights writes ps to the safetensors file path, each under its Name,
// with the metadata format=pt; a Conv1D weight is written transposed, in
// GPT-2's layout.
func writeWeights(path string, ps []Param) error {
	infos := make([]safetensors.TensorInfo, len(ps))
	for i, p := range ps {
		sdt, err := safetensorsDType(p.T.DType())
		if err != nil {
			return err
		}
		shape := p.T.Shape()
		if p.Conv1D {
			shape = []int64{shape[1], shape[0]}
		}
		infos[i] = safetensors.TensorInfo{Name: p.Name, DType: sdt, Shape: shape}
	}
	fetch := func(i int) (b []byte, err error) {
		err = torch.Try(func() {
			t := ps[i].T
			if ps[i].Conv1D {
				tr := t.Transpose(0, 1)
				defer tr.Close()
				b = tr.Bytes()
				return
			}
			b = t.Bytes()
		})
		return b, err
	}
	return safetensors.WriteFile(path, infos, map[string]string{"format": "pt"}, fetch)
}

// saveTokenizer writes tok's tokenizer.json and its chat template to dir;
// with tok nil it writes nothing.
func saveTokenizer(dir string, tok *tokenizer.Tokenizer) error {
	if tok == nil {
		return nil
	}
	if err := tok.Save(filepath.Join(dir, "tokenizer.json")); err != nil {
		return err
	}
	return tok.SaveHFChatTemplate(dir)
}

func safetensorsDType(d torch.DType) (safetensors.DType, error) {
	for k, v := range torchDTypes {
		if v == d {
			return k, nil
		}
	}
	return "", fmt.Errorf("dtype %v has no safetensors name", d)
}

// LoadTokenizer reads dir/tokenizer.json with the model's chat template
// (dir/chat_template.jinja or tokenizer_config.json's chat_template) when
// the directory has one; without one the tokenizer keeps ChatML. An adapter
// directory without a tokenizer uses its base model's.
func LoadTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	p := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) && IsAdapterDir(dir) {
		// A PEFT adapter without its own tokenizer uses its base model's.
		if info, err := ReadAdapterConfig(dir); err == nil {
			return LoadTokenizer(info.Base)
		}
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no tokenizer.json in the model directory", dir)
	}
	return tokenizer.LoadWithChatTemplate(p)
}
