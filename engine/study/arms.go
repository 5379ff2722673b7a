package study

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/pipeline"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"
)

// The arms of the study. Each starts from the same saved models of its seed.
const (
	// ArmBaseline: standard RLHF (the start's recipe) against the original
	// RM on the general prompt mix, for as many steps as policy repair; no
	// red-teaming.
	ArmBaseline = "baseline"
	// ArmPolicyOnly: red-teaming, then policy repair (RL, unlikelihood on the
	// harmful answers, KL, replay) against the original RM: "red-team and
	// fine-tune".
	ArmPolicyOnly = "policy-only"
	// ArmPolicyOnlyRL: the control that isolates the reward: red-teaming,
	// then RL on the red-team prompts against the original RM, without
	// unlikelihood.
	ArmPolicyOnlyRL = "policy-only-rl"
	// ArmARES: RM repair (stage 1), then policy repair against the repaired RM.
	ArmARES = "ares"
	// ArmJoint: one loss updates the policy and the RM in each step.
	ArmJoint = "joint"
	// ArmARESLoRA: ARES with LoRA adapters ([lora]) on the policy and the RM
	// instead of training them in full; the KL reference is the policy with
	// its adapters off. The adapters are merged after the repair, so the
	// durability phases train the merged models like every other arm's.
	ArmARESLoRA = "ares-lora"
)

// Arms lists the arms a study runs by default, in report order.
var Arms = []string{ArmBaseline, ArmPolicyOnly, ArmPolicyOnlyRL, ArmARES, ArmJoint}

// AllArms adds the arms a study runs only when asked (study.arms).
var AllArms = append(slices.Clone(Arms), ArmARESLoRA)

// armMode is the repair pipeline's mode of each arm that red-teams.
var armMode = map[string]pipeline.Mode{
	ArmPolicyOnly:   pipeline.ModePolicy,
	ArmPolicyOnlyRL: pipeline.ModePolicy,
	ArmARES:         pipeline.ModeBoth,
	ArmJoint:        pipeline.ModeJoint,
	ArmARESLoRA:     pipeline.ModeBoth,
}

// ArmResult is one arm's evaluations on one seed, one per phase run.
type ArmResult struct {
	Arm  string     `json:"arm"`
	Seed int64      `json:"seed"`
	Rows []PhaseRow `json:"rows"`
	// RMChanged is false when the arm left the starting RM as it was.
	RMChanged bool `json:"rm_changed"`
}

// Row returns the arm's row of phase, or nil.
func (r *ArmResult) Row(phase string) *PhaseRow {
	for i := range r.Rows {
		if r.Rows[i].Phase == phase {
			return &r.Rows[i]
		}
	}
	return nil
}

// FreshCache shares one seed's fresh_rlhf evaluation against the original
// RM between the arms that leave the RM untouched: the phase is a
// deterministic function of (SFT policy, RM, recipe, seed), so those arms'
// fresh_rlhf rows are the same run.
type FreshCache struct {
	orig *PhaseRow
}

// RunArm runs one arm from the starting models of st: its treatment
// (evaluated as the repaired phase), then the durability phases among
// phases: rlhf2 (the standard RLHF recipe from the arm's policy against the
// arm's RM, for RLHF2Steps) and fresh_rlhf (the same recipe from the SFT
// policy against the arm's RM, for the start's RLHF steps).
func RunArm(ctx context.Context, st *synth.Start, arm string, seed int64, phases []string, fresh *FreshCache, env synth.Env) (*ArmResult, error) {
	t0 := time.Now()
	dir := filepath.Join(env.Out, "arms", fmt.Sprintf("%s-seed%d", arm, seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	armEnv := env
	armEnv.Out = dir
	m, err := st.LoadModels(seed)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	res := &ArmResult{Arm: arm, Seed: seed}
	findings, err := treat(ctx, st, m, arm, seed, armEnv, res)
	if err != nil {
		return nil, err
	}
	ev, err := st.Evaluate(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("evaluating the repaired models: %w", err)
	}
	res.Rows = append(res.Rows, PhaseRow{Arm: arm, Seed: seed, Phase: PhaseRepaired, Eval: ev, Findings: findings, Wall: time.Since(t0).Seconds()})
	if has(phases, PhaseFresh) {
		row := fresh.cached(res.RMChanged)
		if row == nil {
			if row, err = FreshRLHF(ctx, st, m.RM, seed, armEnv); err != nil {
				return nil, err
			}
			fresh.store(res.RMChanged, row)
		}
		r := *row
		r.Arm = arm
		res.Rows = append(res.Rows, r)
	}
	if has(phases, PhaseRLHF2) {
		t1 := time.Now()
		// The reference of the KL is the arm's policy as rlhf2 begins.
		refDir := filepath.Join(dir, "policy-repaired")
		if err := m.Pol.Save(refDir, model.CausalLM, st.Tok); err != nil {
			return nil, err
		}
		ref, err := model.Load(refDir, model.CausalLM, st.Cfg.Placement)
		if err != nil {
			return nil, err
		}
		o := st.Cfg.StartRLHF
		o.Steps = st.Cfg.RLHF2Steps
		err = st.RLHF(m.Pol, ref, m.RM, o, seed+31, armEnv, "rlhf2", "metrics-rlhf2.jsonl")
		ref.Close()
		if err != nil {
			return nil, err
		}
		ev, err := st.Evaluate(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("evaluating rlhf2: %w", err)
		}
		res.Rows = append(res.Rows, PhaseRow{Arm: arm, Seed: seed, Phase: PhaseRLHF2, Eval: ev, Wall: time.Since(t1).Seconds()})
	}
	return res, nil
}

// treat applies the arm's treatment to m and returns the red-teaming
// findings by type (nil for the baseline).
func treat(ctx context.Context, st *synth.Start, m *synth.Models, arm string, seed int64, env synth.Env, res *ArmResult) (map[string]int, error) {
	c := st.Cfg
	if arm == ArmBaseline {
		ref, err := st.LoadPolicy()
		if err != nil {
			return nil, err
		}
		defer ref.Close()
		o := c.StartRLHF
		o.Steps = c.PolicyRepair.Steps
		return nil, st.RLHF(m.Pol, ref, m.RM, o, seed+13, env, "baseline rlhf", "metrics-baseline-rlhf.jsonl")
	}
	mode, ok := armMode[arm]
	if !ok {
		return nil, fmt.Errorf("unknown arm %q", arm)
	}
	rt, err := st.RedTeam(ctx, m, seed, env.Out, env)
	if err != nil {
		return nil, err
	}
	findings := map[string]int{}
	for _, f := range rt.Findings {
		findings[f.Type]++
	}
	o := pipeline.Options{Mode: mode, RMRepair: c.RMRepair, PolicyRepair: c.PolicyRepair, JointBT: c.Joint.BT, Seed: seed + 11}
	if arm == ArmPolicyOnlyRL {
		o.PolicyRepair.Unlikelihood = 0
	}
	var ref *model.Transformer
	if arm == ArmARESLoRA {
		if err := m.Pol.AddLoRA(c.LoRA.Policy, uint64(seed)+17); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if err := m.RM.AddLoRA(c.LoRA.RM, uint64(seed)+19); err != nil {
			return nil, fmt.Errorf("rm: %w", err)
		}
		o.RMRepair.LR *= c.LoRA.LRScale
		o.PolicyRepair.LR *= c.LoRA.LRScale
		ref = m.Pol // the reference is the policy with its adapters off
	} else {
		if ref, err = st.LoadPolicy(); err != nil {
			return nil, err
		}
		defer ref.Close()
	}
	d := pipeline.Data{Findings: rt.Findings, Replay: st.World.Replay, Benign: st.World.Benign, Lookalikes: st.World.Looks}
	pr, err := pipeline.Repair(ctx, pipeline.Models{Policy: m.Pol, Ref: ref, RM: m.RM, Codec: st.Codec}, d, o, pipeline.Hooks{
		IO: func(stage string, _ ...*model.Transformer) (repair.RunIO, func(), error) {
			return env.RunIO(stage, "metrics-"+stage+".jsonl")
		},
		Log: env.Logf,
	})
	if err != nil {
		return nil, err
	}
	if arm == ArmARESLoRA {
		// Evaluation and the durability phases use the merged models.
		if err := m.Pol.MergeLoRA(); err != nil {
			return nil, err
		}
		if err := m.RM.MergeLoRA(); err != nil {
			return nil, err
		}
	}
	env.Logf("%s seed %d: %d rollouts, findings A %d, B %d, C %d; ran %v", arm, seed, rt.Rollouts,
		findings[detect.TypeA], findings[detect.TypeB], findings[detect.TypeC], pr.Ran)
	for _, s := range pr.Ran {
		res.RMChanged = res.RMChanged || s == pipeline.StageRM || s == pipeline.StageJoint
	}
	return findings, nil
}

// FreshRLHF is the fresh_rlhf phase: the start's RLHF recipe from a fresh
// copy of the SFT policy against rm, evaluated with rm.
func FreshRLHF(ctx context.Context, st *synth.Start, rm *model.Transformer, seed int64, env synth.Env) (*PhaseRow, error) {
	t0 := time.Now()
	pol, err := st.LoadSFT()
	if err != nil {
		return nil, err
	}
	defer pol.Close()
	ref, err := st.LoadSFT()
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	if err := st.RLHF(pol, ref, rm, st.Cfg.StartRLHF, seed+41, env, "fresh rlhf", "metrics-fresh-rlhf.jsonl"); err != nil {
		return nil, err
	}
	m := st.Bind(pol, rm, seed)
	ev, err := st.Evaluate(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("evaluating fresh_rlhf: %w", err)
	}
	return &PhaseRow{Seed: seed, Phase: PhaseFresh, Eval: ev, Wall: time.Since(t0).Seconds()}, nil
}

func (f *FreshCache) cached(rmChanged bool) *PhaseRow {
	if f == nil || rmChanged {
		return nil
	}
	return f.orig
}

func (f *FreshCache) store(rmChanged bool, row *PhaseRow) {
	if f != nil && !rmChanged {
		f.orig = row
	}
}

func has(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
