package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/mentor"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
	"github.com/ares-rlhf/ares/internal/config"
	"github.com/ares-rlhf/ares/internal/config/placement"
)

func init() {
	register(command{name: "redteam", summary: "red-team a policy and its reward model: findings, report, heatmap", run: runRedteam})
}

// redteamConfig is the TOML file of `ares redteam`: the discovery sections
// of mentor.RunConfig ([run], [world], [redteam], [redteam.sampler],
// [detect], [judge]) next to the model sections below. Every table and key
// is listed in docs/config.md and shown in examples/redteam.toml; unknown
// and renamed keys are rejected with the file, line and key.
type redteamConfig struct {
	mentor.RunConfig
	Models struct {
		// Policy and RM are Hugging Face model directories (config.json,
		// safetensors, tokenizer.json with the chat template's tokens).
		Policy string `toml:"policy"`
		RM     string `toml:"rm"`
	} `toml:"models"`
	Generation struct {
		MaxNewTokens int     `toml:"max_new_tokens"`
		Temperature  float64 `toml:"temperature"`
		// Batch is sequences per generation call; RMBatch pairs per RM call.
		Batch   int `toml:"batch"`
		RMBatch int `toml:"rm_batch"`
	} `toml:"generation"`
}

func defaultRedteamConfig() redteamConfig {
	var c redteamConfig
	c.Run.Out = "out/redteam"
	c.Run.Device, c.Run.DType = "cpu", "float32"
	c.Generation.MaxNewTokens, c.Generation.Temperature, c.Generation.Batch, c.Generation.RMBatch = 64, 1, 64, 64
	return c
}

// loadRedteamConfig reads a run config over the defaults. Relative model,
// library and judge-model paths are relative to the config file.
func loadRedteamConfig(path string) (*redteamConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := defaultRedteamConfig()
	if err := c.RunConfig.Decode(b, path, &c); err != nil {
		return nil, err
	}
	config.RelativeTo(path, &c.Models.Policy, &c.Models.RM, &c.World.Library, &c.Judge.Model)
	if _, _, err := c.placement(path).Parse(); err != nil {
		return nil, err
	}
	return &c, nil
}

// placement is run.device and run.dtype of the config read from path.
func (c *redteamConfig) placement(path string) placement.Spec {
	return placement.Spec{Device: c.Run.Device, DType: c.Run.DType, File: path, DeviceKey: "run.device", DTypeKey: "run.dtype"}
}

func (c *redteamConfig) validate(path string) error {
	g := c.Generation
	switch {
	case c.Models.Policy == "":
		return fmt.Errorf("%s: models.policy: no policy model directory (set it or pass --policy)", path)
	case c.Models.RM == "":
		return fmt.Errorf("%s: models.rm: no reward model directory (set it or pass --rm)", path)
	}
	k := cfgcheck.New("")
	k.IntIn("generation.max_new_tokens", int64(g.MaxNewTokens), 1, cfgcheck.MaxTokens)
	k.Between("generation.temperature", g.Temperature, 0, cfgcheck.MaxTemp)
	k.IntIn("generation.batch", int64(g.Batch), 1, cfgcheck.MaxBatch)
	k.IntIn("generation.rm_batch", int64(g.RMBatch), 1, cfgcheck.MaxBatch)
	k.IntIn("run.threads", int64(c.Run.Threads), 0, 1<<16)
	if err := k.Err(); err != nil {
		return cfgcheck.Locate(path, nil, err)
	}
	return c.RunConfig.Validate(path, nil)
}

func runRedteam(args []string) error {
	fs := newFlagSet("redteam")
	cfgPath := fs.String("config", "", "run config (TOML; see examples/redteam.toml)")
	out := fs.String("out", "", "output directory (overrides run.out)")
	policy := fs.String("policy", "", "policy model directory (overrides models.policy)")
	rmDir := fs.String("rm", "", "reward model directory (overrides models.rm)")
	device := fs.String("device", "", "cpu, cuda or cuda:N (overrides run.device)")
	budget := fs.Int("budget", 0, "policy rollouts (overrides redteam.budget)")
	seed := fs.Int64("seed", 0, "seed (overrides run.seed)")
	sampler := fs.String("sampler", "", "uniform, hierarchical or qd (overrides redteam.sampler.kind)")
	resume := fs.Bool("resume", false, "continue the interrupted run in the output directory (its findings.state.json) with the same config")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("--config is required")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg, err := loadRedteamConfig(*cfgPath)
	if err != nil {
		return err
	}
	for flagV, field := range map[*string]*string{out: &cfg.Run.Out, policy: &cfg.Models.Policy, rmDir: &cfg.Models.RM,
		device: &cfg.Run.Device, sampler: &cfg.Redteam.Sampler.Kind} {
		if *flagV != "" {
			*field = *flagV
		}
	}
	if *budget != 0 {
		cfg.Redteam.Budget = *budget
	}
	if *seed != 0 {
		cfg.Run.Seed, cfg.Redteam.Seed = *seed, *seed
	}
	if err := cfg.validate(*cfgPath); err != nil {
		return err
	}
	ps := cfg.placement(*cfgPath)
	if *device != "" {
		ps.DeviceFlag = "--device"
	}
	dev, dt, err := ps.Resolve()
	if err != nil {
		return err
	}
	if cfg.Run.Threads > 0 {
		if err := torch.SetNumThreads(cfg.Run.Threads); err != nil {
			return err
		}
	}
	opts := model.Options{Device: dev, DType: dt}
	pol, pc, err := loadWithCodec(cfg.Models.Policy, model.CausalLM, opts, "policy")
	if err != nil {
		return err
	}
	defer pol.Close()
	rm, rc, err := loadWithCodec(cfg.Models.RM, model.Reward, opts, "reward model")
	if err != nil {
		return err
	}
	defer rm.Close()

	// The first SIGINT or SIGTERM cancels ctx: the round in progress is
	// dropped, the last round's state stays on disk, --resume continues.
	ctx := commandContext()
	g := cfg.Generation
	p := &redteamPolicy{m: pol, c: pc, rm: rm, rc: rc, maxNew: g.MaxNewTokens, temperature: g.Temperature, batch: g.Batch, seed: uint64(cfg.Redteam.Seed)}
	r := &repair.RM{M: rm, C: rc, Batch: g.RMBatch}
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	t0 := time.Now()
	fmt.Printf("ares redteam: policy %s, reward model %s, %s, judge %s, output in %s\n",
		cfg.Models.Policy, cfg.Models.RM, dev, judgeKind(cfg.Judge.Kind), cfg.Run.Out)
	if *resume {
		fmt.Printf("ares redteam: resuming from %s\n", mentor.StatePath(filepath.Join(cfg.Run.Out, "findings.jsonl")))
	}
	report, end := mentor.ProgressDisplay(progress, "redteam")
	res, paths, err := mentor.DiscoverWith(ctx, &cfg.RunConfig, mentor.DiscoverOptions{Policy: p, RM: r, Progress: report, Resume: *resume})
	end()
	if err != nil {
		return err
	}
	t := res.Agg.Total
	fmt.Printf("%s sampler, seed %d: %d rollouts on %d probes in %s; findings A %d, B %d, C %d (%.1f Type C per 1,000 rollouts, %d distinct)\n",
		res.Sampler, res.Seed, res.Rollouts, t.Probes, time.Since(t0).Round(time.Millisecond), t.A, t.B, t.C,
		t.PerThousandRollouts(detect.TypeC), res.Distinct(detect.TypeC))
	if len(res.Skipped) > 0 {
		fmt.Printf("skipped %d probes longer than a model's context (listed in summary.json), first %s: %s\n", len(res.Skipped), res.Skipped[0].ID, res.Skipped[0].Reason)
	}
	for _, p := range paths {
		fmt.Println("wrote", p)
	}
	return nil
}

// redteamPolicy is the policy model as mentor.Policy. Each Sample call
// draws with a seed of its own, from the run seed and the call's number,
// and the number is the state a resumed run restores (mentor.Resumable), so
// that it samples what an uninterrupted run would have. It also tells the
// red-team loop which prompts do not fit the policy's context with
// max_new_tokens, or the reward model's (mentor.PromptChecker): those
// probes are skipped and recorded, not fatal.
type redteamPolicy struct {
	m, rm       *model.Transformer
	c, rc       *repair.Codec
	maxNew      int
	temperature float64
	batch       int
	seed        uint64
	calls       uint64
}

func (p *redteamPolicy) Sample(ctx context.Context, prompts []string, k int) ([][]string, error) {
	p.calls++
	rp := &repair.Policy{M: p.m, C: p.c, MaxNew: p.maxNew, Temperature: p.temperature, Batch: p.batch, Seed: p.seed*1_000_003 + p.calls}
	return rp.Sample(ctx, prompts, k)
}

func (p *redteamPolicy) SaveState() ([]byte, error) {
	return []byte(strconv.FormatUint(p.calls, 10)), nil
}

func (p *redteamPolicy) LoadState(b []byte) error {
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("policy sampling calls: %w", err)
	}
	p.calls = n
	return nil
}

func (p *redteamPolicy) CheckPrompt(prompt string) error {
	if n, ctxLen := len(p.c.Prompt(prompt)), p.m.Cfg.Context(); n+p.maxNew > ctxLen {
		return fmt.Errorf("the prompt has %d tokens; with generation.max_new_tokens = %d it exceeds the policy's context of %d", n, p.maxNew, ctxLen)
	}
	// The RM needs the prompt and at least one response token.
	if n, ctxLen := len(p.rc.Prompt(prompt)), min(p.rm.Cfg.MaxPos, p.rm.Cfg.Context()); n+1 > ctxLen {
		return fmt.Errorf("the prompt has %d tokens, no room for a response in the reward model's context of %d", n, ctxLen)
	}
	return nil
}

func judgeKind(k string) string {
	if k == "" {
		return "oracle"
	}
	return k
}

// loadWithCodec loads a model and checks that its tokenizer has the chat
// template's tokens.
func loadWithCodec(dir string, kind model.Kind, o model.Options, what string) (*model.Transformer, *repair.Codec, error) {
	m, err := model.Load(dir, kind, o)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	tok, err := model.LoadTokenizer(dir)
	if err == nil {
		var c *repair.Codec
		if c, err = repair.NewCodec(tok); err == nil {
			return m, c, nil
		}
	}
	m.Close()
	return nil, nil, fmt.Errorf("%s %s: %w", what, dir, err)
}
