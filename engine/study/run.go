package study

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/world"
)

// RunStudy runs every arm on every seed and writes study.md, study.csv,
// study.json and the SVG charts to env.Out (cfg.Run.Out when env.Out is
// empty), rewriting them after every seed so that an interrupted study
// leaves its finished seeds reported.
func RunStudy(ctx context.Context, cfg *Study, env synth.Env) (*StudyResult, error) {
	t0 := time.Now()
	if env.Out == "" {
		env.Out = cfg.Run.Out
	}
	if err := os.MkdirAll(env.Out, 0o755); err != nil {
		return nil, err
	}
	lib, err := cfg.library()
	if err != nil {
		return nil, err
	}
	evalSet, err := cfg.evalProbes()
	if err != nil {
		return nil, err
	}
	pool, err := cfg.redteamProbes()
	if err != nil {
		return nil, err
	}
	c := cfg.Config
	c.Data = cfg.dataOptions()
	if c.Placement, err = cfg.placement(); err != nil {
		return nil, err
	}
	// The judge is built once here so that a bad judge config fails before
	// any training; each phase builds its own from the same config.
	c.Judge = cfg.Judge
	if _, err := judge.New(c.Judge, lib); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	res := &StudyResult{Name: cfg.Run.Name, Date: time.Now().UTC().Format("2006-01-02"), Size: cfg.Study.Size,
		Start: cfg.Study.Start, Seeds: cfg.Study.Seeds, Arms: cfg.Study.Arms, Budget: c.RedTeam.Budget, Config: cfg}
	var shared *synth.Start
	if cfg.Models.Policy != "" {
		if shared, err = startFromModels(lib, c, cfg.Study.Seeds[0], cfg.Models); err != nil {
			return nil, err
		}
	}
	total := len(cfg.Study.Seeds) * len(cfg.Study.Arms)
	done := 0
	for si, seed := range cfg.Study.Seeds {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		senv := env
		senv.Out = filepath.Join(env.Out, fmt.Sprintf("seed%d", seed))
		if err := os.MkdirAll(senv.Out, 0o755); err != nil {
			return res, err
		}
		var st *synth.Start
		switch {
		case shared != nil:
			cp := *shared
			st = &cp
		case cfg.Study.Start == "per-seed" || si == 0:
			sc := c
			sc.Seed, sc.RedTeam.Seed = seed, seed
			benv := senv
			if cfg.Study.Start == "shared" {
				benv.Out = filepath.Join(env.Out, "start")
				if err := os.MkdirAll(benv.Out, 0o755); err != nil {
					return res, err
				}
			}
			env.Logf("study: seed %d (%d/%d): building the start", seed, si+1, len(cfg.Study.Seeds))
			if st, err = synth.BuildStart(lib, sc, benv); err != nil {
				return res, fmt.Errorf("seed %d: start: %w", seed, err)
			}
			res.StartWall = append(res.StartWall, st.BuildTime.Seconds())
			if cfg.Study.Start == "shared" {
				shared = st
				cp := *st
				st = &cp
			}
		}
		// The arms' red-teaming seed follows the study's seed in shared mode too.
		st.Cfg.Seed, st.Cfg.RedTeam.Seed = seed, seed
		if evalSet != nil || pool != nil {
			w := *st.World
			if evalSet != nil {
				// The world's coupled-cell probes belong to its own eval set.
				w.Eval, w.Coupled = evalSet, nil
			}
			w.Pool = pool
			st.World = &w
		}
		m, err := st.LoadModels(seed)
		if err != nil {
			return res, err
		}
		before, err := st.Evaluate(ctx, m)
		m.Close()
		if err != nil {
			return res, fmt.Errorf("seed %d: evaluating the start: %w", seed, err)
		}
		res.HarmProbes = before.HarmProbes
		env.Logf("study: seed %d start: coupled-cell Type C %.1f%% (sample harm %.1f%%), Type C %.1f%%, Type A %.1f%%, Type B %.1f%%, capability %.1f%%, over-refusal %.1f%%",
			seed, 100*before.TypeCCoupled, 100*before.HarmSampleRateCoupled, 100*before.TypeC, 100*before.TypeA, 100*before.TypeB, 100*before.Capability, 100*before.OverRefusal)
		fresh := &FreshCache{}
		for _, arm := range cfg.Study.Arms {
			eta := ""
			if done > 0 {
				// Elapsed time per finished arm, starts included.
				per := time.Since(t0).Seconds() / float64(done)
				eta = fmt.Sprintf(", about %s left", (time.Duration(per*float64(total-done)) * time.Second).Round(time.Second))
			}
			env.Logf("study: [%d/%d] seed %d, arm %s%s", done+1, total, seed, arm, eta)
			ar, err := RunArm(ctx, st, arm, seed, cfg.Study.Phases, fresh, senv)
			if err != nil {
				return res, fmt.Errorf("seed %d, arm %s: %w", seed, arm, err)
			}
			done++
			res.Rows = append(res.Rows, PhaseRow{Arm: arm, Seed: seed, Phase: PhaseStart, Eval: before})
			res.Rows = append(res.Rows, ar.Rows...)
			line := fmt.Sprintf("study: seed %d, arm %s: coupled-cell Type C start %.1f%%", seed, arm, 100*before.TypeCCoupled)
			for _, r := range ar.Rows {
				line += fmt.Sprintf(", %s %.1f%%", r.Phase, 100*r.Eval.TypeCCoupled)
			}
			if r := ar.Row(PhaseRepaired); r != nil {
				line += fmt.Sprintf("; after repair: capability %+.1f pts, RM held-out %+.1f pts, %.0fs", 100*(r.Eval.Capability-before.Capability),
					100*(r.Eval.RMHeldoutAcc-before.RMHeldoutAcc), r.Wall)
			}
			env.Logf("%s", line)
		}
		res.finish(time.Since(t0), si == len(cfg.Study.Seeds)-1)
		if err := res.Write(env.Out); err != nil {
			return res, err
		}
	}
	return res, nil
}

// startFromModels makes a start from existing model directories, with the
// synthetic world's data sets drawn with seed.
func startFromModels(lib *world.Library, c synth.Config, seed int64, ms StudyModels) (*synth.Start, error) {
	tok, err := model.LoadTokenizer(ms.Policy)
	if err != nil {
		return nil, fmt.Errorf("models.policy: %w", err)
	}
	codec, err := repair.NewCodec(tok)
	if err != nil {
		return nil, fmt.Errorf("models.policy: the tokenizer has no chat template the study can use: %w", err)
	}
	rtok, err := model.LoadTokenizer(ms.RM)
	if err != nil {
		return nil, fmt.Errorf("models.rm: %w", err)
	}
	if rtok.VocabSize() != tok.VocabSize() {
		return nil, fmt.Errorf("models: the policy's and the RM's tokenizers differ (%d and %d tokens); the study encodes both with one", tok.VocabSize(), rtok.VocabSize())
	}
	for _, d := range []string{ms.Policy, ms.RM} {
		if _, err := os.Stat(filepath.Join(d, "config.json")); err != nil {
			return nil, fmt.Errorf("models: %w", err)
		}
	}
	c.Seed = seed
	// The given policy is the start and also the fresh_rlhf phase's SFT policy.
	return &synth.Start{World: synth.BuildWorld(lib, c), Tok: tok, Codec: codec, Cfg: c, SFTDir: ms.Policy, PolicyDir: ms.Policy, RMDir: ms.RM}, nil
}
