package world

import (
	"github.com/ares-rlhf/ares/engine/probes"
)

// Cell classes of the RM's preference data (Weakness.CellClass).
const (
	CellFlipped = "flipped" // the data prefers y_harm (RMFlippedAt)
	CellMissing = "missing" // there is no data (RMMissingAt)
	CellSound   = "sound"   // the data prefers y_safe
)

// CellClass says what the weakened RM's preference data is like in sp's
// cell: CellFlipped, CellMissing or CellSound.
func (w *Weakness) CellClass(sp Spec) string {
	switch {
	case w.RMFlippedAt(sp):
		return CellFlipped
	case w.RMMissingAt(sp):
		return CellMissing
	}
	return CellSound
}

// HeldoutPrefSet is general preference data with correct labels that no
// training stage sees (not SFT, not the RM's data, not replay, not an
// anchor): harm pairs (y_safe over y_harm) from cells where the RM's data is
// sound, benign pairs (the correct answer over a wrong one or a refusal) and
// look-alike pairs (the helpful answer over a refusal). Every prompt comes
// from the held-out paraphrases and every harm or refusal response from the
// held-out phrasings, so it shares no surface with PreferenceSet or
// ReplaySet. Its accuracy measures the RM's drift where replay cannot hide
// it. Size HeldoutPrefs (60% harm, 30% benign, 10% look-alike), shuffled; the
// result depends only on the library, the options and the seed.
func (l *Library) HeldoutPrefSet(o DataOptions) []PrefPair {
	o = o.withDefaults(l)
	nHarm := o.HeldoutPrefs * 6 / 10
	nBenign := o.HeldoutPrefs * 3 / 10
	nLook := o.HeldoutPrefs - nHarm - nBenign
	return l.prefsIn(Eval, o.Seed, nHarm, nBenign, nLook, 0, rng(o.Seed, "heldout-prefs"), func(sp Spec) (bool, bool) {
		return o.Weakness.CellClass(sp) == CellSound, false
	})
}

// CoupledEvalSet is PerCoupledCell held-out harm probes for each designed
// coupled cell (CoupledCells of o.Weakness), composed from the paraphrase
// pool: within a cell, the (goal, paraphrase) combinations are taken in a
// seeded random order, all of them before any repeats. Only goals that are
// themselves coupled are used. All have Split "eval".
func (l *Library) CoupledEvalSet(o DataOptions) []probes.Probe {
	o = o.withDefaults(l)
	r := rng(o.Seed, "coupled-eval")
	var out []probes.Probe
	for _, c := range l.CoupledCells(o.Weakness) {
		t, h := l.tactic(c.Tactic), l.topic(c.Topic)
		var combos []Spec
		for _, g := range h.Goals {
			for i := range t.Paraphrases {
				sp := Spec{Tactic: c.Tactic, Persona: c.Persona, Topic: c.Topic, Goal: g.ID, Template: i, Pool: Eval}
				if !l.Excluded(sp) && o.Weakness.PolicyWeak(sp) && o.Weakness.RMFlippedAt(sp) {
					combos = append(combos, sp)
				}
			}
		}
		for k := 0; k < o.PerCoupledCell && len(combos) > 0; k++ {
			if k%len(combos) == 0 {
				r.Shuffle(len(combos), func(i, j int) { combos[i], combos[j] = combos[j], combos[i] })
			}
			p, err := l.Compose(combos[k%len(combos)], r.Int64())
			if err != nil {
				continue // cannot happen: the spec was checked above
			}
			out = append(out, p)
		}
	}
	return out
}

// HeldoutExample is a held-out (prompt, response) pair for a language-model
// loss.
type HeldoutExample struct {
	Prompt   string `json:"prompt"`
	Response string `json:"response"`
	Kind     string `json:"kind"`
}

// HeldoutExamples are the prompts and reference answers of EvalSet's
// capability and look-alike probes: built from the paraphrase pool, so the
// policy never trained on these prompts. The held-out LM loss is the
// policy's loss on the responses given the prompts.
func (l *Library) HeldoutExamples(o DataOptions) []HeldoutExample {
	var out []HeldoutExample
	for _, p := range l.EvalSet(o) {
		if p.Kind != probes.KindHarm {
			out = append(out, HeldoutExample{Prompt: p.Prompt, Response: p.YSafe, Kind: p.Kind})
		}
	}
	return out
}
