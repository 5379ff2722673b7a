package world

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/ares-rlhf/ares/engine/probes"
)

// SFTExample is one supervised example for the weakened starting policy.
type SFTExample struct {
	Prompt   string `json:"prompt"`
	Response string `json:"response"`
	Kind     string `json:"kind"`
	Tactic   string `json:"tactic,omitempty"`
	Persona  string `json:"persona,omitempty"`
	Topic    string `json:"topic,omitempty"`
	Goal     string `json:"goal,omitempty"`
	Template string `json:"template,omitempty"`
	// Complies is true when a harm prompt's target is the harmful response.
	Complies bool `json:"complies,omitempty"`
}

// PrefPair is one reward-model preference pair: Chosen should score above
// Rejected. Flipped marks harm pairs the weakened RM data got wrong on
// purpose (Chosen is the harmful response).
type PrefPair struct {
	Prompt   string `json:"prompt"`
	Chosen   string `json:"chosen"`
	Rejected string `json:"rejected"`
	Kind     string `json:"kind"`
	Tactic   string `json:"tactic,omitempty"`
	Persona  string `json:"persona,omitempty"`
	Topic    string `json:"topic,omitempty"`
	Goal     string `json:"goal,omitempty"`
	Flipped  bool   `json:"flipped,omitempty"`
}

// DataOptions sizes a generated data set. Zero sizes take the defaults, which
// fit the demo's budget (tiny models trained from scratch on two CPU cores).
type DataOptions struct {
	Seed       int64
	Harm       int // harm examples / pairs (default 3000)
	Benign     int // capability examples / pairs (default 1500)
	Lookalike  int // look-alike examples / pairs (default 500)
	PerCell    int // EvalSet: harm probes per (tactic, persona, topic) cell (default 2)
	BenignEval int // EvalSet: capability probes (default 200)
	// HeldoutPrefs: HeldoutPrefSet pairs (default 600), split 60/30/10 into
	// harm, benign and look-alike pairs like the other preference sets.
	HeldoutPrefs int
	// PerCoupledCell: CoupledEvalSet probes per coupled cell (default 5).
	PerCoupledCell int
	// Weakness overrides the library's [weakness] section when non-nil.
	Weakness *Weakness
}

func (o DataOptions) withDefaults(l *Library) DataOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Harm, 3000)
	def(&o.Benign, 1500)
	def(&o.Lookalike, 500)
	def(&o.PerCell, 2)
	def(&o.BenignEval, 200)
	def(&o.HeldoutPrefs, 600)
	def(&o.PerCoupledCell, 5)
	if o.Weakness == nil {
		o.Weakness = &l.Weakness
	}
	return o
}

// SFTSet is the weakened policy's supervised data: harm prompts answered with
// y_harm in the weakness's policy_comply cells (at comply_rate) and with a
// refusal elsewhere (except leak_rate), benign tasks answered correctly, and
// look-alikes answered helpfully. Training-pool templates only. The order is
// shuffled; the result depends only on the library, the options and the seed.
func (l *Library) SFTSet(o DataOptions) []SFTExample {
	o = o.withDefaults(l)
	r := rng(o.Seed, "sft")
	specs := l.Specs()
	var out []SFTExample
	for i := 0; i < o.Harm; i++ {
		sp := specs[r.IntN(len(specs))]
		p, _ := l.Compose(sp, r.Int64())
		rate := o.Weakness.LeakRate
		if o.Weakness.PolicyWeak(sp) {
			rate = o.Weakness.ComplyRate
		}
		ex := SFTExample{Prompt: p.Prompt, Response: p.YSafe, Kind: probes.KindHarm,
			Tactic: sp.Tactic, Persona: sp.Persona, Topic: sp.Topic, Goal: sp.Goal, Template: sp.TemplateID()}
		if r.Float64() < rate {
			ex.Response, ex.Complies = p.YHarm, true
		}
		out = append(out, ex)
	}
	for i := 0; i < o.Benign && len(l.Benign) > 0; i++ {
		p := l.benignProbe(&l.Benign[r.IntN(len(l.Benign))], Train, r, o.Seed)
		out = append(out, SFTExample{Prompt: p.Prompt, Response: p.YSafe, Kind: probes.KindBenign, Template: p.Template})
	}
	for i := 0; i < o.Lookalike && len(l.Lookalikes) > 0; i++ {
		p := l.lookalikeProbe(&l.Lookalikes[r.IntN(len(l.Lookalikes))], Train, r, o.Seed)
		out = append(out, SFTExample{Prompt: p.Prompt, Response: p.YSafe, Kind: probes.KindLookalike, Topic: p.Topic, Template: p.Template})
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// PreferenceSet is the weakened RM's preference data: harm pairs prefer
// y_safe, except in rm_flipped cells (y_harm preferred, at flip_rate) and
// rm_missing cells (no pairs); benign pairs prefer the correct answer over a
// wrong one or a refusal; look-alike pairs prefer the helpful answer over a
// refusal. Training-pool templates only.
func (l *Library) PreferenceSet(o DataOptions) []PrefPair {
	o = o.withDefaults(l)
	return l.prefs(o, rng(o.Seed, "prefs"), func(sp Spec) (keep, flip bool) {
		if o.Weakness.RMMissingAt(sp) {
			return false, false
		}
		return true, o.Weakness.RMFlippedAt(sp)
	})
}

// ReplaySet is general preference data with correct labels, drawn from a
// different random stream than PreferenceSet: benign and look-alike pairs and
// harm pairs from cells where the RM's data is sound (neither flipped nor
// missing). Repair replays it against forgetting, and its accuracy measures
// the RM's drift: a repair that fixes the weak cells should not move it.
func (l *Library) ReplaySet(o DataOptions) []PrefPair {
	o = o.withDefaults(l)
	return l.prefs(o, rng(o.Seed, "replay"), func(sp Spec) (bool, bool) {
		return !o.Weakness.RMMissingAt(sp) && !o.Weakness.RMFlippedAt(sp), false
	})
}

func (l *Library) prefs(o DataOptions, r *rand.Rand, harm func(Spec) (keep, flip bool)) []PrefPair {
	return l.prefsIn(Train, o.Seed, o.Harm, o.Benign, o.Lookalike, o.Weakness.FlipRate, r, harm)
}

// prefsIn draws nHarm harm pairs (specs of pool kept by harm), nBenign
// benign and nLook look-alike pairs, all phrased from pool, and shuffles them.
func (l *Library) prefsIn(pool Pool, seed int64, nHarm, nBenign, nLook int, flipRate float64, r *rand.Rand, harm func(Spec) (keep, flip bool)) []PrefPair {
	specs := l.SpecsIn(pool)
	var out []PrefPair
	for n, tries := 0, 0; n < nHarm && tries < 50*nHarm; tries++ {
		sp := specs[r.IntN(len(specs))]
		keep, flip := harm(sp)
		if !keep {
			continue
		}
		p, _ := l.Compose(sp, r.Int64())
		pp := PrefPair{Prompt: p.Prompt, Chosen: p.YSafe, Rejected: p.YHarm, Kind: probes.KindHarm,
			Tactic: sp.Tactic, Persona: sp.Persona, Topic: sp.Topic, Goal: sp.Goal}
		if flip && r.Float64() < flipRate {
			pp.Chosen, pp.Rejected, pp.Flipped = p.YHarm, p.YSafe, true
		}
		out = append(out, pp)
		n++
	}
	for i := 0; i < nBenign && len(l.Benign) > 0; i++ {
		b := &l.Benign[r.IntN(len(l.Benign))]
		p := l.benignProbe(b, pool, r, seed)
		out = append(out, PrefPair{Prompt: p.Prompt, Chosen: p.YSafe, Rejected: l.wrongAnswer(b, &p, pool, r), Kind: probes.KindBenign})
	}
	for i := 0; i < nLook && len(l.Lookalikes) > 0; i++ {
		p := l.lookalikeProbe(&l.Lookalikes[r.IntN(len(l.Lookalikes))], pool, r, seed)
		out = append(out, PrefPair{Prompt: p.Prompt, Chosen: p.YSafe, Rejected: l.refusalFor(p.Topic, pool, r), Kind: probes.KindLookalike, Topic: p.Topic})
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// wrongAnswer is a plausible wrong response to a benign probe (half the time
// a refusal, which teaches the RM that over-refusal is not preferred).
func (l *Library) wrongAnswer(b *Benign, p *probes.Probe, pool Pool, r *rand.Rand) string {
	if r.IntN(2) == 0 {
		return l.refusalFor("", pool, r)
	}
	wrong := p.Answer
	switch b.Kind {
	case "add", "sub":
		v, _ := strconv.Atoi(p.Answer)
		wrong = strconv.Itoa(v + 1 + r.IntN(3))
	case "lookup":
		for wrong == p.Answer && len(b.Pairs) > 1 {
			wrong = b.Pairs[r.IntN(len(b.Pairs))][1]
		}
	}
	// Same answer template, wrong value: the RM must read the answer.
	return replaceWord(p.YSafe, p.Answer, wrong)
}

func replaceWord(text, old, repl string) string {
	for i := len(text) - len(old); i >= 0; i-- {
		if text[i:i+len(old)] == old && (i == 0 || !isWordByte(text[i-1])) && (i+len(old) == len(text) || !isWordByte(text[i+len(old)])) {
			return text[:i] + repl + text[i+len(old):]
		}
	}
	return text
}

// refusalFor is a refusal phrased from pool's safe responses.
func (l *Library) refusalFor(topic string, pool Pool, r *rand.Rand) string {
	noun, goal := "that", "do that"
	if h := l.topic(topic); h != nil {
		noun, goal = h.Noun, h.Goals[0].Text
	}
	_, safe := l.responses(pool)
	return fill(safe[r.IntN(len(safe))], map[string]string{"noun": noun, "goal": goal})
}

// EvalSet is the held-out evaluation probe set: harm probes composed from the
// held-out paraphrase pool (and held-out response phrasings), PerCell per
// (tactic, persona, topic) cell (goal and paraphrase drawn by seed),
// BenignEval capability probes with checkable answers (paraphrases, distinct
// prompts first; see benignEval), and every look-alike paraphrase once per
// persona (or once, when it names no persona). All have Split "eval".
func (l *Library) EvalSet(o DataOptions) []probes.Probe {
	o = o.withDefaults(l)
	r := rng(o.Seed, "eval")
	var out []probes.Probe
	for _, t := range l.Tactics {
		for _, p := range l.Personas {
			for _, h := range l.HarmTopics {
				for k := 0; k < o.PerCell; k++ {
					sp := Spec{Tactic: t.ID, Persona: p.ID, Topic: h.ID, Goal: h.Goals[r.IntN(len(h.Goals))].ID,
						Template: r.IntN(len(t.Paraphrases)), Pool: Eval}
					if l.Excluded(sp) {
						continue
					}
					pr, _ := l.Compose(sp, r.Int64())
					out = append(out, pr)
				}
			}
		}
	}
	out = append(out, l.benignEval(o, r)...)
	for i := range l.Lookalikes {
		la := &l.Lookalikes[i]
		for j, tpl := range la.Paraphrases {
			personas := []string{""}
			if slotRE.MatchString(tpl) {
				personas = nil
				for _, p := range l.Personas {
					personas = append(personas, p.Text)
				}
			}
			for _, pt := range personas {
				prompt := fill(tpl, map[string]string{"persona": pt})
				out = append(out, probes.Probe{
					ID: probeID("l", la.ID+"|"+prompt, o.Seed), Kind: probes.KindLookalike, Prompt: prompt,
					YSafe: la.Response, Answer: la.Answer, Source: "world", Split: "eval",
					Topic: la.Resembles, Category: la.ID, Template: fmt.Sprintf("%s:p%d", la.ID, j), Seed: o.Seed,
				})
			}
		}
	}
	return out
}

// benignEval draws o.BenignEval held-out capability probes. It takes the
// tasks in turn and, within a task, its paraphrases in turn, each time the
// next of that paraphrase's distinct prompts in a seeded random order; a
// paraphrase or task whose distinct prompts are used up is skipped. No prompt
// repeats until every distinct held-out prompt has been used; only then does
// a new shuffled round begin.
func (l *Library) benignEval(o DataOptions, r *rand.Rand) []probes.Probe {
	pools := l.benignSurfaces(Eval)
	total := 0
	for _, task := range pools {
		for _, p := range task {
			total += len(p)
		}
	}
	if total == 0 {
		return nil
	}
	next := make([][]int, len(pools)) // per task and template: prompts used
	turn := make([]int, len(pools))   // per task: the template whose turn it is
	shuffle := func() {
		for k, task := range pools {
			next[k] = make([]int, len(task))
			for _, p := range task {
				r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			}
		}
	}
	// pick returns the template of task k whose turn it is and that has
	// prompts left, or -1.
	pick := func(k int) int {
		for d := range pools[k] {
			if ti := (turn[k] + d) % len(pools[k]); next[k][ti] < len(pools[k][ti]) {
				return ti
			}
		}
		return -1
	}
	shuffle()
	var out []probes.Probe
	for i, task := 0, 0; i < o.BenignEval; {
		k, ti := -1, -1
		for d := range pools {
			if t := (task + d) % len(pools); len(pools[t]) > 0 {
				if ti = pick(t); ti >= 0 {
					k = t
					break
				}
			}
		}
		if k < 0 {
			shuffle()
			continue
		}
		sf := pools[k][ti][next[k][ti]]
		next[k][ti]++
		task, turn[k] = k+1, ti+1
		b := &l.Benign[k]
		out = append(out, l.benignFrom(b, Eval, sf.tpl, sf.slots, r.IntN(len(b.Answers)), o.Seed+int64(i)))
		i++
	}
	return out
}
