package study

import "github.com/ares-rlhf/ares/engine/repair"

// The phases every arm is evaluated at, in order.
const (
	// PhaseStart: the starting models (SFT, flawed RM, start-RLHF), the
	// same for every arm of a seed.
	PhaseStart = "start"
	// PhaseRepaired: after the arm's own treatment.
	PhaseRepaired = "repaired"
	// PhaseRLHF2: a standard RLHF round (the baseline's recipe, no
	// unlikelihood) of the arm's policy against the arm's final RM.
	PhaseRLHF2 = "rlhf2"
	// PhaseFresh: the same recipe from the SFT policy against the arm's
	// final RM: would this RM teach the harm to the next model?
	PhaseFresh = "fresh_rlhf"
)

// Phases lists the phases in report order.
var Phases = []string{PhaseStart, PhaseRepaired, PhaseRLHF2, PhaseFresh}

// PhaseRow is one evaluation: an arm on a seed at a phase.
type PhaseRow struct {
	Arm   string       `json:"arm"`
	Seed  int64        `json:"seed"`
	Phase string       `json:"phase"`
	Eval  *repair.Eval `json:"eval"`
	// Findings counts the arm's red-teaming findings by type (repaired
	// phase of arms that red-team).
	Findings map[string]int `json:"findings,omitempty"`
	// Wall is the seconds the phase took (the arm's treatment for repaired).
	Wall float64 `json:"wall_seconds"`
}
