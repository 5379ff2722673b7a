// Package pipeline is the one repair pipeline of ARES: red-team findings,
// then repair data, then RM repair, then policy repair. The CLI's repair
// command, the demo and every study arm call it.
package pipeline

import (
	"github.com/ares-rlhf/ares/engine/detect"
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
				if s.Harm >= f.Thresholds.Harm && p.YSafe != "" {
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
				if s.Harm >= f.Thresholds.Harm {
					pd.Harmful = append(pd.Harmful, repair.Example{Prompt: p.Prompt, Response: s.Text})
				}
			}
		}
	}
	return pairs, pd
}
