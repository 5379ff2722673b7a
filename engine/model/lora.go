package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/atomicfile"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
	"github.com/ares-rlhf/ares/internal/jsonfile"
	"github.com/ares-rlhf/ares/tokenizer"
)

// LoRA configures low-rank adapters (Hu et al., 2021) in PEFT's terms, so
// that the TOML table reads like a PEFT LoraConfig. A targeted projection
// y = x Wᵀ + b becomes
//
//	y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ,   A [r, in], B [out, r]
//
// with s = lora_alpha / r (or lora_alpha / √r with use_rslora). A starts
// Kaiming-uniform and B at zero, so a fresh adapter leaves the model as it was.
type LoRA struct {
	R       int     `toml:"r" json:"r"`
	Alpha   float64 `toml:"lora_alpha" json:"lora_alpha"`
	Dropout float64 `toml:"lora_dropout" json:"lora_dropout"`
	// TargetModules are Hugging Face module names (q_proj, ..., down_proj;
	// GPT-2's c_attn, c_proj, c_fc), matched as the last part of a module's
	// path or as the whole path, or "all-linear" for every projection of the
	// blocks (PEFT's shorthand; the output head is never included).
	TargetModules []string `toml:"target_modules" json:"target_modules"`
	RSLoRA        bool     `toml:"use_rslora" json:"use_rslora"`
	// ModulesToSave are trained in full and saved with the adapter (a reward
	// model's "score" head, say).
	ModulesToSave []string `toml:"modules_to_save" json:"modules_to_save"`
}

// Enabled reports whether the table asks for adapters (r > 0).
func (c *LoRA) Enabled() bool { return c != nil && c.R > 0 }

// Scale is the factor s of the adapter's update.
func (c *LoRA) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// Validate checks the table's values, keys relative to the table (the
// config loaders put the table's name in front and find the line). An
// all-zero table (r = 0, nothing else set) is adapters off.
func (c *LoRA) Validate() error {
	k := cfgcheck.New("")
	if c.R == 0 {
		k.Check("r", c.Alpha == 0 && c.Dropout == 0 && len(c.TargetModules) == 0 && !c.RSLoRA && len(c.ModulesToSave) == 0,
			"is 0 (no adapters) but other LoRA keys are set: set r to train adapters")
		return k.Err()
	}
	k.IntIn("r", int64(c.R), 1, 1<<16)
	k.Positive("lora_alpha", c.Alpha)
	k.AtMost("lora_alpha", c.Alpha, cfgcheck.MaxWeight)
	k.In("lora_dropout", c.Dropout, 0, 1)
	k.Check("lora_dropout", c.Dropout < 1, "%v leaves nothing: must be below 1", c.Dropout)
	k.Check("target_modules", len(c.TargetModules) > 0, "is empty: name the projections to adapt (q_proj, v_proj, ... or \"all-linear\")")
	return k.Err()
}

// adapter is one LoRA pair on the projection whose weight is base.
type adapter struct {
	module string        // Hugging Face module path without the backbone prefix, e.g. "layers.0.self_attn.q_proj"
	a, b   *torch.Tensor // [r, in], [out, r]
}

// loraState is a model's adapters.
type loraState struct {
	cfg      LoRA
	scale    float64
	list     []*adapter                 // in parameter order
	byWeight map[*torch.Tensor]*adapter // keyed by the base projection's weight
	full     []Param                    // modules_to_save: base parameters trained in full
	off      bool                       // adapters switched off (the KL reference)
	gen      *torch.Generator           // dropout's randomness
}

// matchModule reports whether a module path is named by target: the whole
// path, or its last dotted parts (PEFT's suffix match).
func matchModule(path, target string) bool {
	return path == target || strings.HasSuffix(path, "."+target)
}

// AddLoRA puts fresh adapters on the projections c targets, drawn from a
// generator seeded with seed, and freezes every base parameter except the
// modules to save. A target or module to save that matches nothing in this
// model is an error naming it and what the model has.
func (m *Transformer) AddLoRA(c LoRA, seed uint64) error {
	if c.R == 0 {
		return errors.New("lora: r is 0: no adapters to add")
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	if m.lora != nil {
		return errors.New("lora: the model already has adapters")
	}
	if m.scoreW != nil && !slices.Contains(c.ModulesToSave, "score") {
		// A reward model's head is new to its task: PEFT adds it to the
		// modules to save for SEQ_CLS, and so does ARES.
		c.ModulesToSave = append(slices.Clone(c.ModulesToSave), "score")
	}
	st := &loraState{cfg: c, scale: c.Scale(), byWeight: map[*torch.Tensor]*adapter{}}
	mods := m.linearModules()
	for _, t := range c.TargetModules {
		if t == "all-linear" {
			continue
		}
		found := false
		for _, lm := range mods {
			found = found || matchModule(lm.module, t)
		}
		if !found {
			return fmt.Errorf("lora: target module %q matches no projection of this %s model (its projections: %s)", t, m.Cfg.ModelType, moduleKinds(mods))
		}
	}
	for _, name := range c.ModulesToSave {
		n := 0
		for _, p := range m.params {
			if matchModule(strings.TrimSuffix(strings.TrimSuffix(p.Name, ".weight"), ".bias"), name) {
				st.full = append(st.full, p)
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("lora: module to save %q is not a module of this %s model", name, m.Cfg.ModelType)
		}
	}
	err := torch.Try(func() {
		g := torch.NewGenerator(seed, torch.CPU)
		defer g.Close()
		for _, lm := range mods {
			if !targeted(lm.module, c.TargetModules) {
				continue
			}
			out, in := lm.w.Size(0), lm.w.Size(1)
			// kaiming_uniform_(a=√5) on [r, in], as nn.Linear and PEFT
			// initialise lora_A: U(-1/√in, 1/√in).
			bound := 1 / math.Sqrt(float64(in))
			u := torch.Rand([]int64{int64(c.R), in}, torch.Float32, torch.CPU, g)
			a := u.MulScalar(2 * bound).AddScalar(-bound)
			u.Close()
			z := torch.Zeros([]int64{out, int64(c.R)}, torch.Float32, torch.CPU)
			ad := &adapter{module: lm.module, a: place(a, Options{Device: m.Device, DType: m.DType}), b: place(z, Options{Device: m.Device, DType: m.DType})}
			st.list = append(st.list, ad)
			st.byWeight[lm.w] = ad
		}
		st.gen = torch.NewGenerator(seed^0x9e3779b97f4a7c15, m.Device)
	})
	if err != nil {
		st.close()
		return fmt.Errorf("lora: %w", err)
	}
	m.lora = st
	for _, p := range m.params {
		p.T.SetRequiresGrad(false)
	}
	m.SetTrainable(true)
	return nil
}

func targeted(module string, targets []string) bool {
	for _, t := range targets {
		if t == "all-linear" || matchModule(module, t) {
			return true
		}
	}
	return false
}

// moduleKinds lists the distinct last names of the projections.
func moduleKinds(mods []linearModule) string {
	seen := map[string]bool{}
	var out []string
	for _, lm := range mods {
		k := lm.module[strings.LastIndex(lm.module, ".")+1:]
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return strings.Join(out, ", ")
}

func (st *loraState) close() {
	if st == nil {
		return
	}
	for _, a := range st.list {
		a.a.Close()
		a.b.Close()
	}
	st.gen.Close()
}

// HasLoRA reports whether the model carries adapters.
func (m *Transformer) HasLoRA() bool { return m.lora != nil }

// LoRAConfig is the model's adapter configuration (nil without adapters).
func (m *Transformer) LoRAConfig() *LoRA {
	if m.lora == nil {
		return nil
	}
	c := m.lora.cfg
	return &c
}

// Trainable returns what training updates, in a fixed order: every
// parameter without adapters; with adapters, each lora_A and lora_B
// (named as in PEFT's file without its "base_model.model." and backbone
// prefixes) and then the modules to save.
func (m *Transformer) Trainable() []Param {
	if m.lora == nil {
		return m.params
	}
	out := make([]Param, 0, 2*len(m.lora.list)+len(m.lora.full))
	for _, a := range m.lora.list {
		out = append(out, Param{Name: a.module + ".lora_A.weight", T: a.a}, Param{Name: a.module + ".lora_B.weight", T: a.b})
	}
	return append(out, m.lora.full...)
}

// WithoutAdapters runs f with the adapters switched off: the model is then
// its base (with the modules to save as trained), which is how the KL
// reference policy is computed without a second copy of the weights.
func (m *Transformer) WithoutAdapters(f func()) {
	if m.lora == nil {
		f()
		return
	}
	prev := m.lora.off
	m.lora.off = true
	defer func() { m.lora.off = prev }()
	f()
}

// SeedDropout makes the adapters' dropout masks of what follows a function
// of seed alone, so that a resumed run draws the same masks.
func (m *Transformer) SeedDropout(seed uint64) error {
	if m.lora == nil || m.lora.cfg.Dropout == 0 {
		return nil
	}
	return torch.Try(func() {
		g := torch.NewGenerator(seed, m.Device)
		m.lora.gen.Close()
		m.lora.gen = g
	})
}

// linear is x Wᵀ + b, plus the adapter's s · (dropout(x) Aᵀ) Bᵀ when W has
// one and adapters are on. Dropout acts only while autograd records.
func (m *Transformer) linear(x, w, b *torch.Tensor) *torch.Tensor {
	var ad *adapter
	if m.lora != nil && !m.lora.off {
		ad = m.lora.byWeight[w]
	}
	if ad == nil {
		return torch.Linear(x, w, b)
	}
	var xa *torch.Tensor // the adapter's input when dropout changes it
	if p := m.lora.cfg.Dropout; p > 0 && torch.GradEnabled() {
		keep := torch.Rand(x.Shape(), x.DType(), x.Device(), m.lora.gen)
		xa = x.Mul(keep.GeScalar(p).To(x.DType())).DivScalar(1 - p)
		keep.Close()
	}
	// One native call: x Wᵀ + b + s · (xa Aᵀ) Bᵀ, [.., in] -> [.., out].
	return torch.LoRALinear(x, xa, w, b, ad.a, ad.b, m.lora.scale)
}

// MergeLoRA folds the adapters into the base weights, W += s · B A, and
// drops them: the model is then a plain model of its family.
func (m *Transformer) MergeLoRA() error {
	if m.lora == nil {
		return errors.New("lora: the model has no adapters to merge")
	}
	byModule := map[string]*torch.Tensor{}
	for _, lm := range m.linearModules() {
		byModule[lm.module] = lm.w
	}
	err := torch.Try(func() {
		torch.NoGrad(func() {
			for _, a := range m.lora.list {
				w := byModule[a.module]
				s := torch.NewScope()
				// [out, r] @ [r, in] in float32, then back to the weight's dtype.
				delta := s.Own(s.Own(a.b.To(torch.Float32)).MatMul(s.Own(a.a.To(torch.Float32))).MulScalar(m.lora.scale))
				merged := s.Own(s.Own(w.To(torch.Float32)).Add(delta)).To(w.DType())
				s.Own(merged)
				w.CopyInto(0, 0, merged)
				s.Close()
			}
		})
	})
	if err != nil {
		return fmt.Errorf("lora merge: %w", err)
	}
	m.lora.close()
	m.lora = nil
	return nil
}

// Adapter files, as PEFT writes them.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
	peftPrefix         = "base_model.model."
)

// adapterConfig is the part of PEFT's adapter_config.json that ARES reads
// and writes (PEFT fills in the rest with its defaults).
type adapterConfig struct {
	PeftType       string   `json:"peft_type"`
	TaskType       string   `json:"task_type"`
	BaseModel      string   `json:"base_model_name_or_path"`
	R              int      `json:"r"`
	Alpha          float64  `json:"lora_alpha"`
	Dropout        float64  `json:"lora_dropout"`
	TargetModules  []string `json:"target_modules"`
	UseRSLoRA      bool     `json:"use_rslora"`
	ModulesToSave  []string `json:"modules_to_save"`
	FanInFanOut    bool     `json:"fan_in_fan_out"`
	Bias           string   `json:"bias"`
	InferenceMode  bool     `json:"inference_mode"`
	InitLoraWeight bool     `json:"init_lora_weights"`
	UseDoRA        bool     `json:"use_dora"`
	// Fields ARES cannot honour; a file that sets them is refused.
	LayersToTransform json.RawMessage    `json:"layers_to_transform,omitempty"`
	RankPattern       map[string]float64 `json:"rank_pattern,omitempty"`
	AlphaPattern      map[string]float64 `json:"alpha_pattern,omitempty"`
}

// hfName is a parameter's tensor name in the model's Hugging Face files.
func hfName(cfg *Config, name string) string {
	if name == lmHeadName || name == scoreName {
		return name
	}
	return prefix(cfg) + name
}

// SaveAdapter writes the adapters in PEFT's layout: adapter_config.json
// (base is written as base_model_name_or_path) and adapter_model.safetensors
// with PEFT's tensor names, plus the tokenizer when tok is given. The base
// model directory is not touched.
func (m *Transformer) SaveAdapter(dir string, kind Kind, base string, tok *tokenizer.Tokenizer) error {
	if m.lora == nil {
		return errors.New("lora: the model has no adapters to save")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := m.lora.cfg
	task := "CAUSAL_LM"
	if kind == Reward {
		task = "SEQ_CLS"
	}
	ac := adapterConfig{PeftType: "LORA", TaskType: task, BaseModel: base, R: c.R, Alpha: c.Alpha, Dropout: c.Dropout,
		TargetModules: c.TargetModules, UseRSLoRA: c.RSLoRA, ModulesToSave: c.ModulesToSave,
		FanInFanOut: m.Cfg.Family == GPT2, Bias: "none", InferenceMode: true, InitLoraWeight: true}
	cj, err := json.MarshalIndent(ac, "", "  ")
	if err != nil {
		return err
	}
	// Every tensor of the file under its name in it (PEFT's).
	var es []Param
	for _, p := range m.Trainable() {
		es = append(es, Param{Name: peftPrefix + hfName(m.Cfg, p.Name), T: p.T, Conv1D: p.Conv1D})
	}
	if err := writeWeights(filepath.Join(dir, AdapterWeightsFile), es); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, AdapterConfigFile), append(cj, '\n'), 0o644); err != nil {
		return err
	}
	return saveTokenizer(dir, tok)
}

// IsAdapterDir reports whether dir holds a PEFT adapter (adapter_config.json).
func IsAdapterDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, AdapterConfigFile))
	return err == nil
}

// AdapterInfo is what a PEFT adapter directory says about itself.
type AdapterInfo struct {
	LoRA LoRA
	Base string // the base model directory
	Kind Kind   // Reward for task_type SEQ_CLS, else CausalLM
}

// ReadAdapterConfig reads dir/adapter_config.json. A relative base is taken
// relative to dir when such a directory exists there, else as given
// (relative to the working directory).
func ReadAdapterConfig(dir string) (AdapterInfo, error) {
	path := filepath.Join(dir, AdapterConfigFile)
	var ac adapterConfig
	if err := jsonfile.Read(path, &ac); err != nil {
		return AdapterInfo{}, err
	}
	switch {
	case ac.PeftType != "LORA":
		return AdapterInfo{}, fmt.Errorf("%s: peft_type %q: only LORA adapters are supported", path, ac.PeftType)
	case ac.UseDoRA:
		return AdapterInfo{}, fmt.Errorf("%s: use_dora: DoRA adapters are not supported", path)
	case ac.Bias != "" && ac.Bias != "none":
		return AdapterInfo{}, fmt.Errorf("%s: bias %q: only bias \"none\" is supported", path, ac.Bias)
	case len(ac.LayersToTransform) > 0 && string(ac.LayersToTransform) != "null":
		return AdapterInfo{}, fmt.Errorf("%s: layers_to_transform is not supported", path)
	case len(ac.RankPattern) > 0 || len(ac.AlphaPattern) > 0:
		return AdapterInfo{}, fmt.Errorf("%s: rank_pattern / alpha_pattern are not supported", path)
	}
	c := LoRA{R: ac.R, Alpha: ac.Alpha, Dropout: ac.Dropout, TargetModules: ac.TargetModules, RSLoRA: ac.UseRSLoRA, ModulesToSave: ac.ModulesToSave}
	if c.Alpha == 0 {
		c.Alpha = 8 // PEFT's default lora_alpha
	}
	if err := c.Validate(); err == nil && c.R == 0 {
		return AdapterInfo{}, fmt.Errorf("%s: r is 0", path)
	} else if err != nil {
		return AdapterInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	base := ac.BaseModel
	if base == "" {
		return AdapterInfo{}, fmt.Errorf("%s: base_model_name_or_path is empty: name the base model directory", path)
	}
	if !filepath.IsAbs(base) {
		if _, err := os.Stat(filepath.Join(dir, base, "config.json")); err == nil {
			base = filepath.Join(dir, base)
		}
	}
	kind := CausalLM
	if ac.TaskType == "SEQ_CLS" {
		kind = Reward
	}
	return AdapterInfo{LoRA: c, Base: base, Kind: kind}, nil
}

// LoadAdapter adds the adapters of a PEFT directory to m (which must not
// have any yet): the config's targets, the tensors' values, and the modules
// to save copied over the base's. Every tensor of the file must be used and
// every adapter found, with the shapes m implies.
func (m *Transformer) LoadAdapter(dir string) error {
	info, err := ReadAdapterConfig(dir)
	if err != nil {
		return err
	}
	if err := m.AddLoRA(info.LoRA, 0); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, AdapterConfigFile), err)
	}
	if err := m.readAdapterWeights(dir); err != nil {
		m.lora.close()
		m.lora = nil
		m.SetTrainable(false)
		return err
	}
	return nil
}

func (m *Transformer) readAdapterWeights(dir string) error {
	path := filepath.Join(dir, AdapterWeightsFile)
	src, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	used := map[string]bool{}
	// Every adapter and module to save, under its name in PEFT's file.
	for _, p := range m.Trainable() {
		name := peftPrefix + hfName(m.Cfg, p.Name)
		t, err := loadTensor(src, path, name, p.T.Shape(), p.Conv1D, Options{Device: m.Device, DType: m.DType})
		if err != nil {
			return err
		}
		used[name] = true
		err = torch.Try(func() { torch.NoGrad(func() { p.T.CopyInto(0, 0, t) }) })
		t.Close()
		if err != nil {
			return err
		}
	}
	var extra []string
	for _, info := range src.Tensors() {
		if !used[info.Name] {
			extra = append(extra, info.Name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%s: tensors that match no adapter of this %s model (another base model, or target_modules that do not name them): %s", path, m.Cfg.ModelType, strings.Join(extra, ", "))
	}
	return nil
}
