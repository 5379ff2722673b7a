package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/dist"
	"github.com/ares-rlhf/ares/engine/mentor"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/pipeline"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/train"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/progress"
	"github.com/ares-rlhf/ares/tokenizer"
)

func init() {
	register(command{name: "sft", summary: "supervised fine-tuning of a policy (builds the synthetic world's weakened policy)", run: runSFT})
	register(command{name: "train-rm", summary: "train a reward model from preference pairs", run: runTrainRM})
	register(command{name: "repair", summary: "repair the RM, then the policy, or both at once (joint)", run: runRepair})
}

// runFlags are the flags the three training commands share.
type runFlags struct {
	config, out string
	resume      bool
	force       bool // resume even though the config changed
	maxSteps    int64

	// group is the data-parallel job when the process was launched
	// torchrun-style (ares launch, torchrun, Slurm, PyTorchJob); nil alone.
	group *dist.Group
	// w is the synthetic world, built at most once per command.
	w *synth.World
}

// world returns the synthetic world of the run's seed (built on first use).
func (f *runFlags) world(cfg *repair.RunConfig) *synth.World {
	if f.w == nil {
		f.w = synth.BuildWorld(world.Default(), synth.Config{Seed: cfg.Run.Seed})
	}
	return f.w
}

// joinJob joins the data-parallel job the environment describes, if any.
func (f *runFlags) joinJob(cfg *repair.RunConfig) error {
	env, err := dist.FromEnv()
	if err != nil {
		return err
	}
	if !env.Distributed() {
		return nil
	}
	dev, _, err := cfg.Placement(f.config).Resolve()
	if err != nil {
		return err
	}
	f.group, err = dist.Init(env, &dist.Options{Device: dev})
	return err
}

// main reports whether this process writes outputs.
func (f *runFlags) main() bool { return f.group == nil || f.group.IsMain() }

// share makes the models identical on every rank (rank 0's weights) and
// returns the loop's data-parallel hook (nil alone).
func (f *runFlags) share(ms ...*model.Transformer) (*dist.DataParallel, error) {
	if f.group == nil {
		return nil, nil
	}
	for _, m := range ms {
		if err := f.group.BroadcastParams(m.Tensors()); err != nil {
			return nil, err
		}
		if m.HasLoRA() { // adapters are not among the base parameters
			ts := make([]*torch.Tensor, 0, len(m.Trainable()))
			for _, p := range m.Trainable() {
				ts = append(ts, p.T)
			}
			if err := f.group.BroadcastParams(ts); err != nil {
				return nil, err
			}
		}
	}
	return dist.NewDataParallel(f.group), nil
}

func (f *runFlags) close() {
	if f.group != nil {
		f.group.Close()
	}
}

// stringFlags is the part of a flag set an extra-flags callback needs.
type stringFlags interface {
	StringVar(*string, string, string, string)
}

func parseRunFlags(name string, args []string, extra func(fs stringFlags), validate func() error) (*runFlags, *repair.RunConfig, error) {
	fs := newFlagSet(name)
	var f runFlags
	fs.StringVar(&f.config, "config", "", "run config (TOML)")
	fs.StringVar(&f.out, "out", "", "output directory (overrides run.out)")
	fs.BoolVar(&f.resume, "resume", false, "resume from the newest complete checkpoint")
	fs.BoolVar(&f.force, "force", false, "with --resume: resume even if the config differs from the checkpoint's (run.out, run.checkpoint_every, run.keep_last and run.max_nonfinite may always change)")
	fs.Int64Var(&f.maxSteps, "max-steps", 0, "stop after this many steps of each stage, keeping the schedule (resume continues); 0: run to the end")
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if f.config == "" {
		return nil, nil, usagef("--config is required")
	}
	if f.maxSteps < 0 {
		return nil, nil, usagef("--max-steps %d is negative (0 runs to the end)", f.maxSteps)
	}
	if fs.NArg() > 0 {
		return nil, nil, usagef("unexpected arguments %v", fs.Args())
	}
	if validate != nil {
		if err := validate(); err != nil {
			return nil, nil, err
		}
	}
	cfg, err := repair.LoadRunConfig(f.config)
	if err != nil {
		return nil, nil, err
	}
	if f.out != "" {
		cfg.Run.Out = f.out
	}
	if _, _, err := cfg.Placement(f.config).Resolve(); err != nil {
		return nil, nil, err
	}
	if err := f.joinJob(cfg); err != nil {
		return nil, nil, err
	}
	if !f.main() {
		return &f, cfg, nil // only rank 0 writes outputs
	}
	if err := os.MkdirAll(cfg.Run.Out, 0o755); err != nil {
		return nil, nil, err
	}
	resolved, err := cfg.TOML()
	if err != nil {
		return nil, nil, err
	}
	// A resume keeps the config it resumes (a changed one is refused at the
	// checkpoint unless --force), so the file keeps saying what ran.
	rp := filepath.Join(cfg.Run.Out, "config.resolved.toml")
	if _, err := os.Stat(rp); f.resume && !f.force && err == nil {
		return &f, cfg, nil
	}
	if err := os.WriteFile(rp, resolved, 0o644); err != nil {
		return nil, nil, err
	}
	return &f, cfg, nil
}

// modelOptions are run.device and run.dtype (checked by parseRunFlags).
func modelOptions(cfg *repair.RunConfig) (model.Options, error) {
	dev, dt, err := cfg.Placement("").Parse()
	return model.Options{Device: dev, DType: dt}, err
}

// stageIO opens the checkpoint directory and metrics file of one stage. In a
// data-parallel job rank 0 opens the checkpoint directory first (which
// clears interrupted saves), then every rank passes a barrier; the other
// ranks open it only to resume from and write nothing.
func stageIO(cfg *repair.RunConfig, f *runFlags, stage string, dp *dist.DataParallel) (repair.RunIO, func(), error) {
	io := repair.RunIO{Resume: f.resume, CheckpointEvery: cfg.Run.CheckpointEvery, KeepLast: cfg.Run.KeepLast,
		MaxNonFinite: cfg.Run.MaxNonFinite, StopAfter: f.maxSteps, Label: stage,
		ForceConfig: f.force, Ctx: commandContext()}
	if dp != nil {
		io.DP = dp
	}
	dir := filepath.Join(cfg.Run.Out, "checkpoints", stage)
	var closers []func()
	done := func() {
		for _, c := range closers {
			c()
		}
	}
	if f.main() {
		mgr, err := checkpoints.NewManager(dir, &checkpoints.ManagerOptions{Keep: cfg.Run.KeepLast})
		if err != nil {
			return repair.RunIO{}, nil, err
		}
		closers = append(closers, func() { mgr.Close() })
		// A train.MetricsFile: a resumed trainer cuts it back to the resumed step.
		mf, err := train.OpenMetrics(cfg.Run.Out, "metrics-"+stage+".jsonl")
		if err != nil {
			done()
			return repair.RunIO{}, nil, err
		}
		closers = append(closers, func() { mf.Close() })
		resolved, _ := cfg.TOML()
		io.Manager, io.Metrics, io.Progress = mgr, mf, os.Stderr
		io.Blobs = map[string][]byte{checkpoints.BlobConfig: resolved}
	}
	if f.group != nil {
		if err := f.group.Barrier(); err != nil {
			done()
			return repair.RunIO{}, nil, err
		}
	}
	if !f.main() && f.resume {
		mgr, err := checkpoints.NewManager(dir, &checkpoints.ManagerOptions{Keep: cfg.Run.KeepLast})
		if err != nil {
			return repair.RunIO{}, nil, err
		}
		closers = append(closers, func() { mgr.Close() })
		io.Manager = mgr
	}
	return io, done, nil
}

// worldModel makes a fresh model of the demo's size with a tokenizer trained
// on the synthetic world, for runs that start from scratch.
func worldModel(cfg *repair.RunConfig, w *synth.World, kind model.Kind, o model.Options) (*model.Transformer, *tokenizer.Tokenizer, error) {
	dc := synth.DefaultConfig(false)
	tok, err := w.TrainTokenizer(dc.Model.Vocab)
	if err != nil {
		return nil, nil, err
	}
	mc, err := dc.Model.Config(tok)
	if err != nil {
		return nil, nil, err
	}
	m, err := model.Init(mc, kind, uint64(cfg.Run.Seed)+uint64(kind), o)
	return m, tok, err
}

func (f *runFlags) loadOrInit(cfg *repair.RunConfig, dir string, kind model.Kind, o model.Options, what string) (*model.Transformer, *tokenizer.Tokenizer, error) {
	if dir != "" {
		m, err := model.Load(dir, kind, o)
		if err != nil {
			return nil, nil, err
		}
		tok, err := model.LoadTokenizer(dir)
		if err != nil {
			m.Close()
			return nil, nil, err
		}
		return m, tok, nil
	}
	if !cfg.Data.World {
		return nil, nil, fmt.Errorf("models.%s is required (or data.world = true to start a synthetic-world model from scratch)", what)
	}
	return worldModel(cfg, f.world(cfg), kind, o)
}

func runSFT(args []string) error {
	f, cfg, err := parseRunFlags("sft", args, nil, nil)
	if err != nil {
		return err
	}
	defer f.close()
	data, err := trainingData(f, cfg, "data.sft", cfg.Data.SFT, repair.ReadExamples,
		func(w *synth.World) []repair.Example { return w.SFT }, `examples (the file has no records; want {"prompt", "response"} JSONL)`)
	if err != nil {
		return err
	}
	return f.trainOne(cfg, cfg.Models.Policy, cfg.LoRA.Policy, model.CausalLM, "policy", "sft", func(m *model.Transformer, c *repair.Codec, io repair.RunIO) error {
		_, err := repair.SFT(m, c, data, cfg.SFT, cfg.Run.Seed, io)
		return err
	})
}

func runTrainRM(args []string) error {
	f, cfg, err := parseRunFlags("train-rm", args, nil, nil)
	if err != nil {
		return err
	}
	defer f.close()
	data, err := trainingData(f, cfg, "data.pairs", cfg.Data.Pairs, repair.ReadPairs,
		func(w *synth.World) []repair.Pair { return w.Prefs }, `preference pairs (the file has no records; want {"prompt", "chosen", "rejected"} JSONL)`)
	if err != nil {
		return err
	}
	return f.trainOne(cfg, cfg.Models.RM, cfg.LoRA.RM, model.Reward, "rm", "train-rm", func(m *model.Transformer, c *repair.Codec, io repair.RunIO) error {
		_, err := repair.TrainRM(m, c, data, cfg.TrainRM, loss.BTOptions{}, cfg.Run.Seed, io)
		return err
	})
}

// trainOne is what sft and train-rm share: load the model from dir (or start
// a synthetic-world one), make it the same on every rank, train it with fit
// under stage's checkpoints and metrics, and save it as <out>/<what> (an
// adapter directory with [lora.<what>]).
func (f *runFlags) trainOne(cfg *repair.RunConfig, dir string, lora model.LoRA, kind model.Kind, what, stage string,
	fit func(m *model.Transformer, c *repair.Codec, io repair.RunIO) error) error {
	o, err := modelOptions(cfg)
	if err != nil {
		return err
	}
	m, tok, err := f.loadOrInit(cfg, dir, kind, o, what)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := prepareLoRA(m, lora, dir, what, cfg.Run.Seed); err != nil {
		return err
	}
	codec, err := repair.NewCodec(tok)
	if err != nil {
		return err
	}
	dp, err := f.share(m)
	if err != nil {
		return err
	}
	io, done, err := stageIO(cfg, f, stage, dp)
	if err != nil {
		return err
	}
	defer done()
	if err := fit(m, codec, io); err != nil {
		return err
	}
	return f.saveModel(m, tok, filepath.Join(cfg.Run.Out, what), kind, dir)
}

// saveModel writes m as a Hugging Face directory, or as a PEFT adapter
// directory against the base of from when it has adapters (rank 0 only).
func (f *runFlags) saveModel(m *model.Transformer, tok *tokenizer.Tokenizer, dir string, kind model.Kind, from string) error {
	if !f.main() {
		return nil
	}
	if err := saveTrained(m, tok, dir, kind, from); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "saved %s\n", dir)
	return nil
}

func runRepair(args []string) error {
	var stage string
	f, cfg, err := parseRunFlags("repair", args, func(fs stringFlags) {
		fs.StringVar(&stage, "stage", "both", "rm, policy, both (RM then policy) or joint")
	}, func() error {
		switch stage {
		case "rm", "policy", "both", "joint":
			return nil
		}
		return usagef("--stage must be rm, policy, both or joint, not %q", stage)
	})
	if err != nil {
		return err
	}
	defer f.close()
	o, err := modelOptions(cfg)
	if err != nil {
		return err
	}
	if cfg.Models.Policy == "" || cfg.Models.RM == "" {
		return fmt.Errorf("%s: models.policy and models.rm are required", f.config)
	}
	if cfg.Data.Findings == "" {
		return fmt.Errorf("%s: data.findings is required (the findings JSONL of ares redteam)", f.config)
	}
	// A red-team run that stopped part-way (its state file says so) is not
	// repaired from as if it were complete.
	if err := mentor.CheckFindings(cfg.Data.Findings); err != nil {
		return err
	}
	findings, err := detect.ReadFindings(cfg.Data.Findings)
	if err != nil {
		return err
	}
	var pd repair.PolicyData
	if err := f.fillPolicyData(cfg, &pd); err != nil {
		return err
	}
	replay, err := f.replayPairs(cfg)
	if err != nil {
		return err
	}
	mode, err := pipeline.ParseMode(stage)
	if err != nil {
		return err
	}
	rm, err := model.Load(cfg.Models.RM, model.Reward, o)
	if err != nil {
		return err
	}
	defer rm.Close()
	if err := prepareLoRA(rm, cfg.LoRA.RM, cfg.Models.RM, "rm", cfg.Run.Seed); err != nil {
		return err
	}
	tok, err := model.LoadTokenizer(cfg.Models.RM)
	if err != nil {
		return err
	}
	codec, err := repair.NewCodec(tok)
	if err != nil {
		return err
	}
	ms := pipeline.Models{RM: rm, Codec: codec}
	if mode != pipeline.ModeRM {
		if ms.Policy, err = model.Load(cfg.Models.Policy, model.CausalLM, o); err != nil {
			return err
		}
		defer ms.Policy.Close()
		if err := prepareLoRA(ms.Policy, cfg.LoRA.Policy, cfg.Models.Policy, "policy", cfg.Run.Seed+1); err != nil {
			return err
		}
		refDir := cfg.Models.Reference
		switch {
		case refDir == "" && ms.Policy.HasLoRA():
			// The reference is the policy with its adapters off: one copy.
			ms.Ref = ms.Policy
		default:
			if refDir == "" {
				refDir = cfg.Models.Policy
			}
			if ms.Ref, err = model.Load(refDir, model.CausalLM, o); err != nil {
				return err
			}
			defer ms.Ref.Close()
		}
	}
	data := pipeline.Data{Findings: findings, Replay: replay, Benign: pd.Replay, Lookalikes: pd.Lookalikes}
	opts := pipeline.Options{Mode: mode, RMRepair: cfg.RMRepair, PolicyRepair: cfg.PolicyRepair, JointBT: cfg.Joint.BT, Seed: cfg.Run.Seed}
	res, err := pipeline.Repair(commandContext(), ms, data, opts, pipeline.Hooks{
		IO: func(stage string, trained ...*model.Transformer) (repair.RunIO, func(), error) {
			dp, err := f.share(trained...)
			if err != nil {
				return repair.RunIO{}, nil, err
			}
			return stageIO(cfg, f, stage, dp)
		},
		Done: func(stage string) error {
			if stage == pipeline.StageRM || stage == pipeline.StageJoint {
				if err := f.saveModel(rm, tok, filepath.Join(cfg.Run.Out, "rm"), model.Reward, cfg.Models.RM); err != nil {
					return err
				}
			}
			if stage == pipeline.StageRM {
				rmPairs, _ := pipeline.RepairData(findings)
				if acc, err := repair.PairAccuracy(context.Background(), &repair.RM{M: rm, C: codec}, rmPairs); err == nil {
					fmt.Fprintf(os.Stderr, "RM accuracy on the repair pairs: %.1f%%\n", 100*acc)
				}
			}
			if stage == pipeline.StagePolicy || stage == pipeline.StageJoint {
				return f.saveModel(ms.Policy, tok, filepath.Join(cfg.Run.Out, "policy"), model.CausalLM, cfg.Models.Policy)
			}
			return nil
		},
		Log: func(format string, a ...any) { progress.Fprintf(os.Stderr, format+"\n", a...) },
	})
	if err != nil {
		return err
	}
	if len(res.Ran) == 0 {
		return fmt.Errorf("%s: nothing to repair in --stage %s: %s", cfg.Data.Findings, stage, strings.Join(res.Skipped, "; "))
	}
	return nil
}

func (f *runFlags) fillPolicyData(cfg *repair.RunConfig, pd *repair.PolicyData) error {
	var err error
	if pd.Replay, err = fileOrWorld(f, cfg, cfg.Data.Benign, repair.ReadExamples, func(w *synth.World) []repair.Example { return w.Benign }); err != nil {
		return err
	}
	pd.Lookalikes, err = fileOrWorld(f, cfg, cfg.Data.Lookalikes, repair.ReadPrompts, func(w *synth.World) []string { return w.Looks })
	return err
}

func (f *runFlags) replayPairs(cfg *repair.RunConfig) ([]repair.Pair, error) {
	return fileOrWorld(f, cfg, cfg.Data.Replay, repair.ReadPairs, func(w *synth.World) []repair.Pair { return w.Replay })
}

// fileOrWorld reads a data set from file when it is set, else takes the
// synthetic world's with data.world, else returns none.
func fileOrWorld[T any](f *runFlags, cfg *repair.RunConfig, file string, read func(string) ([]T, error), world func(*synth.World) []T) ([]T, error) {
	switch {
	case file != "":
		return read(file)
	case cfg.Data.World:
		return world(f.world(cfg)), nil
	}
	return nil, nil
}

// trainingData is fileOrWorld for the data of sft or train-rm (config key
// key), which must be given; an empty file is the error "FILE: KEY: no
// <none>".
func trainingData[T any](f *runFlags, cfg *repair.RunConfig, key, file string, read func(string) ([]T, error), world func(*synth.World) []T, none string) ([]T, error) {
	if file == "" && !cfg.Data.World {
		return nil, fmt.Errorf("%s: %s is required (or data.world = true)", f.config, key)
	}
	data, err := fileOrWorld(f, cfg, file, read, world)
	if err == nil && file != "" && len(data) == 0 {
		return nil, fmt.Errorf("%s: %s: no %s", file, key, none)
	}
	return data, err
}
