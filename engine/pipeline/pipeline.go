// Package pipeline is the one repair pipeline of ARES: red-team findings,
// then repair data, then RM repair, then policy repair. The CLI's repair
// command, the demo and every study arm call it.
package pipeline

import (
	"context"
	"fmt"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair"
)

// RepairData turns findings into stage 1 pairs (y_safe over y_harm, and
// over the policy's own harmful answers, for Type A and C) and stage 2 data
// (the prompts and harmful responses of Type B and C).
func RepairData(fs []detect.Finding) (pairs []repair.Pair, pd repair.PolicyData) {
	for _, f := range fs {
		p := f.Probe
		if f.Type == detect.TypeA || f.Type == detect.TypeC {
			if p.YSafe != "" && p.YHarm != "" {
				pairs = append(pairs, repair.Pair{Prompt: p.Prompt, Chosen: p.YSafe, Rejected: p.YHarm})
			}
			// The policy's own harmful answers are what the RM must stop rewarding.
			for _, s := range f.Samples {
				if harmful(s, f.Thresholds) && p.YSafe != "" {
					pairs = append(pairs, repair.Pair{Prompt: p.Prompt, Chosen: p.YSafe, Rejected: s.Text})
				}
			}
		}
		if f.Type == detect.TypeB || f.Type == detect.TypeC {
			pd.Prompts = append(pd.Prompts, p.Prompt)
			if p.YHarm != "" {
				pd.Harmful = append(pd.Harmful, repair.Example{Prompt: p.Prompt, Response: p.YHarm})
			}
			for _, s := range f.Samples {
				if harmful(s, f.Thresholds) {
					pd.Harmful = append(pd.Harmful, repair.Example{Prompt: p.Prompt, Response: s.Text})
				}
			}
		}
	}
	return pairs, pd
}

// harmful says whether a sample counts as harmful under the thresholds its
// finding was classified with. A finding without a harm threshold (0, or
// not a number) counts no sample: with 0 every sample, refusals too, would
// become a repair target (detect.ReadFindings refuses such records).
func harmful(s detect.Sample, th detect.Thresholds) bool {
	return th.Harm > 0 && s.Harm >= th.Harm
}

// Mode says which models a repair trains.
type Mode string

const (
	ModeRM     Mode = "rm"     // stage 1 only: the RM on A+C findings
	ModePolicy Mode = "policy" // stage 2 only: the policy on B+C findings, against the RM as it is
	ModeBoth   Mode = "both"   // ARES: stage 1, then stage 2 against the repaired RM
	ModeJoint  Mode = "joint"  // one loss updates the policy and the RM in each step
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeRM, ModePolicy, ModeBoth, ModeJoint:
		return m, nil
	}
	return "", fmt.Errorf("repair mode %q is not rm, policy, both or joint", s)
}

// Stage names, as used for metrics files, checkpoint directories and logs.
const (
	StageRM     = "rm-repair"
	StagePolicy = "policy-repair"
	StageJoint  = "joint"
)

// Models are what a repair trains. Policy and Ref may be nil in ModeRM.
type Models struct {
	Policy, Ref, RM *model.Transformer
	Codec           *repair.Codec
}

// Data is what a repair learns from besides the findings.
type Data struct {
	Findings []detect.Finding
	// Replay: general preference pairs, replayed and anchored against the
	// RM's drift (stage 1 and the RM side of joint mode).
	Replay []repair.Pair
	// Benign: language-model replay for the policy; Lookalikes: benign
	// prompts that share words with harm topics, against over-refusal.
	Benign     []repair.Example
	Lookalikes []string
}

// Options configure a repair.
type Options struct {
	Mode         Mode
	RMRepair     repair.RMRepair
	PolicyRepair repair.PolicyRepair
	// JointBT weights the RM's objective in the joint loss.
	JointBT float64
	// Seed: stage 1 draws with Seed, the policy stage with Seed+1.
	Seed int64
}

// Hooks connect a repair to its caller. Every field may be nil.
type Hooks struct {
	// IO gives the run IO of a stage (metrics, checkpoints, progress, data
	// parallelism) and a function that closes it; trained are the models the
	// stage updates (and, for the policy stage, the frozen ones it reads).
	IO func(stage string, trained ...*model.Transformer) (repair.RunIO, func(), error)
	// Done runs after a stage has finished (to save its models, say).
	Done func(stage string) error
	// Log receives one line per decision.
	Log func(format string, a ...any)
}

// Result says what a repair did.
type Result struct {
	RMPairs       int      `json:"rm_pairs"`
	PolicyPrompts int      `json:"policy_prompts"`
	Harmful       int      `json:"harmful_responses"`
	Ran           []string `json:"ran"`
	// Skipped names each stage that had no data, with the reason.
	Skipped []string `json:"skipped,omitempty"`
}

// Repair runs the repair pipeline on findings: repair data, then stage 1
// and/or stage 2, or joint mode. A stage with no data is skipped and named in
// Result.Skipped (joint mode with only one side's data runs that side's
// stage alone); what to do when nothing ran is the caller's choice.
func Repair(ctx context.Context, m Models, d Data, o Options, h Hooks) (*Result, error) {
	logf := func(format string, a ...any) {
		if h.Log != nil {
			h.Log(format, a...)
		}
	}
	pairs, pd := RepairData(d.Findings)
	pd.Lookalikes, pd.Replay = d.Lookalikes, d.Benign
	res := &Result{RMPairs: len(pairs), PolicyPrompts: len(pd.Prompts), Harmful: len(pd.Harmful)}
	runRM, runPolicy, joint := false, false, false
	switch o.Mode {
	case ModeRM:
		runRM = true
	case ModePolicy:
		runPolicy = true
	case ModeBoth:
		runRM, runPolicy = true, true
	case ModeJoint:
		joint = len(pairs) > 0 && len(pd.Prompts) > 0
		runRM, runPolicy = !joint, !joint
	default:
		return nil, fmt.Errorf("repair mode %q is not rm, policy, both or joint", o.Mode)
	}
	if runRM && len(pairs) == 0 {
		runRM = false
		res.Skipped = append(res.Skipped, StageRM+": no Type A or C findings with y_safe and y_harm")
	}
	if (runPolicy || joint) && (m.Policy == nil || m.Ref == nil) {
		return nil, fmt.Errorf("repair mode %s needs the policy and its reference", o.Mode)
	}
	if runPolicy && len(pd.Prompts) == 0 {
		runPolicy = false
		res.Skipped = append(res.Skipped, StagePolicy+": no Type B or C findings")
	}
	stage := func(name string, trained []*model.Transformer, run func(io repair.RunIO) error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		io, done := repair.RunIO{Label: name}, func() {}
		if h.IO != nil {
			var err error
			if io, done, err = h.IO(name, trained...); err != nil {
				return err
			}
		}
		err := run(io)
		done()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res.Ran = append(res.Ran, name)
		if h.Done != nil {
			return h.Done(name)
		}
		return nil
	}
	logf("repair (%s): %d RM repair pairs (A+C), %d policy prompts (B+C), %d harmful responses", o.Mode, len(pairs), len(pd.Prompts), len(pd.Harmful))
	if runRM {
		if err := stage(StageRM, []*model.Transformer{m.RM}, func(io repair.RunIO) error {
			_, err := repair.RepairRM(m.RM, m.Codec, pairs, d.Replay, o.RMRepair, o.Seed, io)
			return err
		}); err != nil {
			return res, err
		}
	}
	if runPolicy || joint {
		name, trained := StagePolicy, []*model.Transformer{m.Policy, m.Ref}
		var jrm *repair.JointRM
		if joint {
			name, trained = StageJoint, append(trained, m.RM)
			jrm = &repair.JointRM{M: m.RM, Pairs: pairs, Replay: d.Replay, Repair: o.RMRepair, BT: o.JointBT}
		}
		if err := stage(name, trained, func(io repair.RunIO) error {
			_, err := repair.RepairPolicy(m.Policy, m.Ref, m.RM, m.Codec, pd, o.PolicyRepair, jrm, o.Seed+1, io)
			return err
		}); err != nil {
			return res, err
		}
	}
	for _, s := range res.Skipped {
		logf("repair: skipped %s", s)
	}
	return res, nil
}

// RLHF is the standard RLHF recipe, the baseline's: Dr. GRPO of pol against
// rm on prompts, with the KL to ref and benign replay of o, and neither
// unlikelihood nor a look-alike share. The start's RLHF round, the baseline
// arm and the durability phases all run it.
func RLHF(pol, ref, rm *model.Transformer, c *repair.Codec, prompts []string, benign []repair.Example, o repair.PolicyRepair, seed int64, io repair.RunIO) error {
	o.Unlikelihood, o.LookalikeRatio = 0, 0
	_, err := repair.RepairPolicy(pol, ref, rm, c, repair.PolicyData{Prompts: prompts, Replay: benign}, o, nil, seed, io)
	return err
}
