package study

// The study: baseline RLHF against ARES, `ares bench study --config FILE`.
//
// Design. For each seed the study builds one start with that seed (the
// synthetic world's data sets, the tokenizer, the weakened policy and RM are
// all drawn from it), evaluates the start once on the held-out probes
// ("before"), and runs every configured arm from those same saved models with
// the same red-teaming budget. The spread over seeds therefore covers the
// world's sampling, the starting models' training and the arms' own
// randomness. With start = "shared" (or when [models] names existing model
// directories) one start serves every seed and only the arms' randomness
// (red-teaming, repair, sampling) varies with the seed.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
	"github.com/ares-rlhf/ares/internal/config"
	"github.com/ares-rlhf/ares/internal/config/placement"
)

// Study is the study's config file (docs/config.md lists every table and
// key). Besides the sections below, every sizing section of demo's Config
// may appear at the top level ([model], [sft], [train_rm], [redteam],
// [detect], [rm_repair], [policy_repair], [start_rlhf], [joint], [lora],
// rlhf2_steps, eval_k, max_new_tokens); they override the defaults of
// study.size.
type Study struct {
	Run   StudyRun     `toml:"run"`
	Study StudySection `toml:"study"`
	World StudyWorld   `toml:"world"`
	Data  StudyData    `toml:"data"`
	// Config sizes every phase (flattened into the top level of the file).
	synth.Config
	Models StudyModels  `toml:"models"`
	Probes StudyProbes  `toml:"probes"`
	Judge  judge.Config `toml:"judge"`
	// Goals are the goals checked on the results ([[goals]] tables, written
	// before the run); none: DefaultGoals.
	Goals []GoalSpec `toml:"goals"`

	file string // where the config was read from, for error messages
	raw  []byte // its text, for the lines of error messages
}

// StudyRun is the [run] table: the same keys as every command's [run].
type StudyRun struct {
	// Name labels the run in the report.
	Name string `toml:"name"`
	// Out is the output directory. Default "out/study".
	Out string `toml:"out"`
	// Device ("cpu", "cuda", "cuda:N") and DType ("float32", "bfloat16",
	// "float16") of every model. Defaults "cpu" and "float32".
	Device string `toml:"device"`
	DType  string `toml:"dtype"`
}

// StudySection says what to run.
type StudySection struct {
	// Size is "quick" or "full": the demo's reduced or full size, the base
	// that every other sizing key overrides. Default "quick".
	Size string `toml:"size"`
	// Seeds: one start (per-seed mode) and one run of every arm per seed.
	// Default [1, 2, 3].
	Seeds []int64 `toml:"seeds"`
	// Arms to run, in report order: baseline, policy-only, policy-only-rl,
	// ares, joint. Default all five.
	Arms []string `toml:"arms"`
	// Phases to evaluate: start and repaired always; rlhf2 and fresh_rlhf
	// (the durability phases) unless left out. Default all four.
	Phases []string `toml:"phases"`
	// Start is "per-seed" (default: a start built with each seed) or
	// "shared" (one start, built with the first seed, for every seed).
	Start string `toml:"start"`
}

// StudyWorld selects the synthetic world's component library.
type StudyWorld struct {
	// Library is a component library TOML; empty: the embedded default.
	Library string `toml:"library"`
}

// StudyData sizes the synthetic world's data sets (0: the size's default).
type StudyData struct {
	Harm       int `toml:"harm"`
	Benign     int `toml:"benign"`
	Lookalike  int `toml:"lookalike"`
	PerCell    int `toml:"per_cell"`
	BenignEval int `toml:"benign_eval"`
	// PerCoupledCell: held-out harm probes per designed coupled cell.
	PerCoupledCell int `toml:"per_coupled_cell"`
	// HeldoutPrefs: pairs of the held-out preference set (RM drift).
	HeldoutPrefs int `toml:"heldout_prefs"`
}

// StudyModels names existing starting models instead of training them.
type StudyModels struct {
	// Policy and RM are model directories (config.json, safetensors,
	// tokenizer.json whose chat-template tokens are specials). Both or
	// neither; with them the start is shared by every seed.
	Policy string `toml:"policy"`
	RM     string `toml:"rm"`
}

// StudyProbes names probe sets in place of the synthetic world's.
type StudyProbes struct {
	// Eval is a probes JSONL (engine/probes format) that replaces the
	// world's held-out probes. Harm probes need y_harm and y_safe (RM
	// pairwise accuracy); benign probes an answer; look-alikes are counted
	// as over-refused when the answer carries the library's refusal markers.
	Eval string `toml:"eval"`
	// Redteam is a probes JSONL to red-team from as a fixed pool instead of
	// the mentor's composition from the library: its harm probes (with
	// y_harm and y_safe) in a seeded order, budget/k of them.
	Redteam string `toml:"redteam"`
}

// DefaultStudy is the config every file is read over.
func DefaultStudy(size string) Study {
	return Study{
		Run:    StudyRun{Out: "out/study", Device: "cpu", DType: "float32"},
		Study:  StudySection{Size: size, Seeds: []int64{1, 2, 3}, Arms: append([]string(nil), Arms...), Phases: append([]string(nil), Phases...)},
		Config: synth.DefaultConfig(size != "full"),
		Judge:  judge.Config{Kind: "oracle"},
	}
}

// unsetSeed marks the seed keys that the study owns.
const unsetSeed = math.MinInt64

// LoadStudy reads a study config over DefaultStudy(study.size), rejecting
// unknown keys with the file, line and key named, and checks it.
func LoadStudy(path string) (*Study, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseStudy(data, path)
}

// ParseStudy is LoadStudy on data read from name.
func ParseStudy(data []byte, name string) (*Study, error) {
	// First pass: only the size, which picks the defaults. Syntax errors
	// are left to the strict pass, which names the line.
	var pre struct {
		Study struct {
			Size string `toml:"size"`
		} `toml:"study"`
	}
	_ = toml.Unmarshal(data, &pre)
	size := pre.Study.Size
	if size == "" {
		size = "quick"
	}
	c := DefaultStudy(size)
	c.file, c.raw = name, data
	c.Config.Seed, c.RedTeam.Seed = unsetSeed, unsetSeed
	c.Study.Seeds, c.Study.Phases = nil, nil
	if err := config.Decode(data, name, config.Study, &c); err != nil {
		return nil, err
	}
	if len(c.Study.Seeds) == 0 {
		c.Study.Seeds = []int64{1, 2, 3}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Study) errf(key, format string, a ...any) error {
	return config.At(c.file, c.raw, key, format, a...)
}

// checkNumbers runs the shared checks of every sizing table (the same as
// `ares repair`'s and `ares redteam`'s loaders), in a fixed order; each
// table reports its first bad key.
func (c *Study) checkNumbers() []error {
	var errs []error
	for _, t := range []struct {
		table string
		err   error
	}{
		{"sft", c.SFT.Validate()},
		{"train_rm", c.RM.Validate()},
		{"redteam", c.RedTeam.Validate()},
		{"detect", c.Thresholds.Validate()},
		{"rm_repair", c.RMRepair.Validate()},
		{"policy_repair", c.PolicyRepair.Validate()},
		{"start_rlhf", c.StartRLHF.Validate()},
		{"lora", c.LoRA.Validate()},
	} {
		if t.err != nil {
			errs = append(errs, cfgcheck.Locate(c.file, c.raw, cfgcheck.Under(t.table, t.err)))
		}
	}
	k := cfgcheck.New("")
	k.IntIn("rlhf2_steps", c.RLHF2Steps, 0, cfgcheck.MaxSteps)
	k.Between("joint.bt", c.Joint.BT, 0, cfgcheck.MaxWeight)
	k.IntIn("eval_k", int64(c.EvalK), 0, cfgcheck.MaxCount)
	k.IntIn("max_new_tokens", int64(c.MaxNewTokens), 0, cfgcheck.MaxTokens)
	// [data]: 0 is the size's default.
	for _, d := range []struct {
		key string
		v   int
	}{{"harm", c.Data.Harm}, {"benign", c.Data.Benign}, {"lookalike", c.Data.Lookalike}, {"per_cell", c.Data.PerCell},
		{"benign_eval", c.Data.BenignEval}, {"per_coupled_cell", c.Data.PerCoupledCell}, {"heldout_prefs", c.Data.HeldoutPrefs}} {
		k.IntIn("data."+d.key, int64(d.v), 0, cfgcheck.MaxCount)
	}
	// [model]: the tiny models' shape, checked here rather than when the
	// first model is built, after the world and its tokenizer.
	m := c.Model
	for _, d := range []struct {
		key string
		v   int
		hi  int64
	}{{"vocab", m.Vocab, cfgcheck.MaxCount}, {"hidden", m.Hidden, 1 << 16}, {"layers", m.Layers, 1 << 10},
		{"heads", m.Heads, 1 << 10}, {"kv_heads", m.KVHeads, 1 << 10}, {"intermediate", m.Inter, 1 << 18},
		{"max_positions", m.MaxPos, cfgcheck.MaxTokens}} {
		k.IntIn("model."+d.key, int64(d.v), 1, d.hi)
	}
	if k.Err() == nil {
		k.Check("model.heads", m.Hidden%m.Heads == 0 && (m.Hidden/m.Heads)%2 == 0,
			"%d heads do not split model.hidden %d into heads of an even size (rotary embeddings)", m.Heads, m.Hidden)
		k.Check("model.kv_heads", m.Heads%m.KVHeads == 0, "%d does not divide model.heads %d", m.KVHeads, m.Heads)
	}
	if err := k.Err(); err != nil {
		errs = append(errs, cfgcheck.Locate(c.file, c.raw, err))
	}
	return errs
}

func (c *Study) check() error {
	var errs []error
	add := func(e error) { errs = append(errs, e) }
	if c.Config.Seed != unsetSeed {
		add(c.errf("seed", "the study sets the seed; list seeds in study.seeds"))
	}
	if c.RedTeam.Seed != unsetSeed {
		add(c.errf("redteam.seed", "the study sets the red-teaming seed; list seeds in study.seeds"))
	}
	c.Config.Seed, c.RedTeam.Seed = 0, 0
	switch c.Study.Size {
	case "quick", "full":
	default:
		add(c.errf("study.size", "%q is not quick or full", c.Study.Size))
	}
	seen := map[int64]bool{}
	for _, s := range c.Study.Seeds {
		if seen[s] {
			add(c.errf("study.seeds", "seed %d is listed twice", s))
		}
		seen[s] = true
	}
	if len(c.Study.Arms) == 0 {
		add(c.errf("study.arms", "no arms to run"))
	}
	armSeen := map[string]bool{}
	for _, a := range c.Study.Arms {
		known := false
		for _, k := range AllArms {
			known = known || a == k
		}
		if !known {
			add(c.errf("study.arms", "%q is not one of %s", a, strings.Join(AllArms, ", ")))
		}
		if armSeen[a] {
			add(c.errf("study.arms", "%q is listed twice", a))
		}
		armSeen[a] = true
	}
	if len(c.Study.Phases) == 0 {
		c.Study.Phases = append([]string(nil), Phases...)
	}
	for _, p := range c.Study.Phases {
		if !has(Phases, p) {
			add(c.errf("study.phases", "%q is not one of %s", p, strings.Join(Phases, ", ")))
		}
	}
	for _, p := range []string{PhaseStart, PhaseRepaired} {
		if !has(c.Study.Phases, p) {
			c.Study.Phases = append(c.Study.Phases, p)
		}
	}
	if (c.Models.Policy == "") != (c.Models.RM == "") {
		add(c.errf("models", "models.policy and models.rm go together"))
	}
	switch c.Study.Start {
	case "":
		c.Study.Start = "per-seed"
		if c.Models.Policy != "" {
			c.Study.Start = "shared"
		}
	case "per-seed":
		if c.Models.Policy != "" {
			add(c.errf("study.start", "per-seed starts are trained by the study; with [models] the start is shared"))
		}
	case "shared":
	default:
		add(c.errf("study.start", "%q is not per-seed or shared", c.Study.Start))
	}
	if c.Run.Out == "" {
		add(c.errf("run.out", "an output directory is required"))
	}
	if _, _, err := c.placementSpec().Parse(); err != nil {
		add(err)
	}
	if err := c.Judge.Validate(); err != nil {
		add(cfgcheck.Locate(c.file, c.raw, err))
	}
	errs = append(errs, c.checkNumbers()...)
	errs = append(errs, c.checkGoals()...)
	return errors.Join(errs...)
}

// dataOptions are the world data sizes: the size's defaults, then [data].
func (c *Study) dataOptions() world.DataOptions {
	o := c.Config.Data
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&o.Harm, c.Data.Harm)
	set(&o.Benign, c.Data.Benign)
	set(&o.Lookalike, c.Data.Lookalike)
	set(&o.PerCell, c.Data.PerCell)
	set(&o.BenignEval, c.Data.BenignEval)
	set(&o.PerCoupledCell, c.Data.PerCoupledCell)
	set(&o.HeldoutPrefs, c.Data.HeldoutPrefs)
	return o
}

// library loads the configured component library.
func (c *Study) library() (*world.Library, error) {
	if c.World.Library == "" {
		return world.Default(), nil
	}
	return world.LoadFile(c.World.Library)
}

// placement is run.device and run.dtype, checked against the machine.
func (c *Study) placement() (model.Options, error) {
	dev, dt, err := c.placementSpec().Resolve()
	return model.Options{Device: dev, DType: dt}, err
}

func (c *Study) placementSpec() placement.Spec {
	return placement.Spec{Device: c.Run.Device, DType: c.Run.DType, File: c.file, Data: c.raw, DeviceKey: "run.device", DTypeKey: "run.dtype"}
}

func (c *Study) oracle() bool { return c.Judge.Kind == "" || c.Judge.Kind == "oracle" }

// evalProbes reads [probes] eval and checks that the study can measure it.
func (c *Study) evalProbes() ([]probes.Probe, error) {
	return c.readProbes("probes.eval", c.Probes.Eval, true)
}

// redteamProbes reads [probes] redteam, the fixed red-teaming pool.
func (c *Study) redteamProbes() ([]probes.Probe, error) {
	return c.readProbes("probes.redteam", c.Probes.Redteam, false)
}

// readProbes reads a probe file. Every harm probe needs y_harm and y_safe:
// RM pairwise accuracy and Type A need the RM's view of both. The oracle
// judge recognises only the synthetic world's payload markers, so with it
// the probes must come from the world.
func (c *Study) readProbes(key, path string, eval bool) ([]probes.Probe, error) {
	if path == "" {
		return nil, nil
	}
	ps, err := probes.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var harm int
	for i := range ps {
		p := &ps[i]
		if p.Kind != probes.KindHarm {
			continue
		}
		harm++
		if p.YHarm == "" || p.YSafe == "" {
			return nil, fmt.Errorf("%s: probe %q has no y_harm or y_safe: the study compares the RM's scores of both on every harm probe", path, p.ID)
		}
		if c.oracle() && p.Source != "" && p.Source != "world" {
			return nil, fmt.Errorf("%s: probe %q comes from %q: the oracle judge recognises only the synthetic world's payload markers; set [judge] kind to classifier, http or command", path, p.ID, p.Source)
		}
	}
	if harm == 0 {
		what := "to measure Type A/B/C on"
		if !eval {
			what = "to red-team with"
		}
		return nil, fmt.Errorf("%s (%s): no harm probes %s", path, key, what)
	}
	return ps, nil
}
