package study

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/pipeline"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/synth"
)

// The arms of the study. Each starts from the same saved models.
const (
	ArmBaseline   = "baseline"    // GRPO with the original RM on the general prompt mix, no red-teaming
	ArmPolicyOnly = "policy-only" // red-teaming, then policy repair with the RM untouched
	ArmARES       = "ares"        // RM repair, then policy repair with the repaired RM
	ArmJoint      = "joint"       // the joint loss updates both at once
)

// Arms lists the arms in report order.
var Arms = []string{ArmBaseline, ArmPolicyOnly, ArmARES, ArmJoint}

// ArmResult is one arm's outcome.
type ArmResult struct {
	Arm      string         `json:"arm"`
	Seed     int64          `json:"seed"`
	After    *repair.Eval   `json:"after"`
	Findings map[string]int `json:"findings"`
	Wall     float64        `json:"wall_seconds"`
}

// RunArm runs one arm from the starting models and evaluates the result.
func RunArm(ctx context.Context, st *synth.Start, arm string, seed int64, env synth.Env) (*ArmResult, error) {
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
	ref, err := st.LoadPolicy()
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	res := &ArmResult{Arm: arm, Seed: seed, Findings: map[string]int{}}
	c := st.Cfg
	pr := c.PolicyRepair
	var pairs []repair.Pair
	var pd repair.PolicyData
	if arm == ArmBaseline {
		// The general prompt mix: the SFT prompts of every kind, no findings,
		// nothing to unlearn.
		for _, e := range st.World.SFT {
			pd.Prompts = append(pd.Prompts, e.Prompt)
		}
		pd.Replay = st.World.Benign
		pr.Unlikelihood, pr.LookalikeRatio = 0, 0
	} else {
		rt, err := st.RedTeam(ctx, m, seed, dir, armEnv)
		if env.Progress != nil {
			fmt.Fprintln(env.Progress)
		}
		if err != nil {
			return nil, err
		}
		for _, f := range rt.Findings {
			res.Findings[f.Type]++
		}
		pairs, pd = pipeline.RepairData(rt.Findings)
		pd.Lookalikes, pd.Replay = st.World.Looks, st.World.Benign
		env.Logf("%s seed %d: %d rollouts, findings A %d, B %d, C %d; %d RM repair pairs, %d policy prompts",
			arm, seed, rt.Rollouts, res.Findings[detect.TypeA], res.Findings[detect.TypeB], res.Findings[detect.TypeC], len(pairs), len(pd.Prompts))
	}
	// ARES repairs the RM first; joint mode does too when there is nothing
	// for the policy to learn from (no Type B or C findings), since its joint
	// loss then has only the RM's term.
	if len(pairs) > 0 && (arm == ArmARES || arm == ArmJoint && len(pd.Prompts) == 0) {
		io, done, err := armEnv.RunIO("repair rm", "metrics-rm-repair.jsonl")
		if err != nil {
			return nil, err
		}
		_, err = repair.RepairRM(m.RM, st.Codec, pairs, st.World.Replay, c.RMRepair, seed+11, io)
		done()
		if err != nil {
			return nil, err
		}
	}
	if len(pd.Prompts) > 0 {
		var joint *repair.JointRM
		if arm == ArmJoint && len(pairs) > 0 {
			joint = &repair.JointRM{M: m.RM, Pairs: pairs, Optim: c.RMRepair.Optim, BT: c.JointBT, BTOpt: loss.BTOptions{}}
		}
		io, done, err := armEnv.RunIO("repair policy", "metrics-policy-repair.jsonl")
		if err != nil {
			return nil, err
		}
		_, err = repair.RepairPolicy(m.Pol, ref, m.RM, st.Codec, pd, pr, joint, seed+13, io)
		done()
		if err != nil {
			return nil, err
		}
	}
	if res.After, err = st.Evaluate(ctx, m); err != nil {
		return nil, err
	}
	res.Wall = time.Since(t0).Seconds()
	return res, nil
}
