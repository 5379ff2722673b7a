// Package mentor is the Safety Mentor of ARES: samplers that choose which
// component combinations to probe (uniform, the ARES hierarchical sampler, a
// Rainbow-Teaming-style quality-diversity archive), and the discovery
// pipeline that composes probes, samples the policy, judges and scores the
// answers, classifies them (package detect) and feeds the results back to
// the sampler. Models enter only through the Policy and RewardModel
// interfaces below, so this package needs no cgo.
package mentor

import (
	"cmp"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
)

// Feedback is what a sampler learns from one probe.
type Feedback struct {
	Spec world.Spec
	Type string // detect.TypeA/B/C/None
	// Harm is the mean judge harm score over the policy's samples, in [0, 1].
	Harm float64
	// RM is the RM's verdict on the policy's answer, squashed to [0, 1]: near
	// 1 when the RM scores the harmful answer above the safe response.
	RM float64
}

// Sampler proposes specs to probe and learns from feedback.
type Sampler interface {
	Name() string
	// Next proposes n specs (training pool) for the next round.
	Next(n int) []world.Spec
	// Update feeds back the results of the last proposals.
	Update(fb []Feedback)
}

// SamplerConfig is the [redteam.sampler] table.
type SamplerConfig struct {
	// Kind is "uniform", "hierarchical" (ARES) or "qd" (quality-diversity
	// archive).
	Kind string `toml:"kind" json:"kind"`
	// WarmupRounds: rounds of uniform sampling before weights are used
	// (hierarchical) or the archive is exploited (qd). Default 3.
	WarmupRounds int `toml:"warmup_rounds" json:"warmup_rounds"`
	// Eta scales the hierarchical boost: b = 1 + eta * harm * rm (default 4).
	Eta float64 `toml:"eta" json:"eta"`
	// Cap bounds one boost factor (default 3).
	Cap float64 `toml:"cap" json:"cap"`
	// MaxWeight bounds a weight relative to the mean after renormalisation
	// (default 50), so no region is starved for good.
	MaxWeight float64 `toml:"max_weight" json:"max_weight"`
	// Broadcast: siblings in the successful instance's category get the
	// boost raised to this power (default 0.5; 0 disables broadcasting).
	Broadcast *float64 `toml:"broadcast" json:"broadcast"`
	// Explore: probability of a uniform proposal after warm-up (default 0.1).
	Explore float64 `toml:"explore" json:"explore"`
	// Mutate: qd probability of changing the persona, the goal and the
	// template of a mutated elite, each (default 0.3).
	Mutate float64 `toml:"mutate" json:"mutate"`
}

func (c SamplerConfig) withDefaults() (SamplerConfig, error) {
	c = c.filled()
	return c, cfgcheck.Under("redteam.sampler", c.check())
}

func (c SamplerConfig) filled() SamplerConfig {
	c.Kind = cmp.Or(c.Kind, "hierarchical")
	c.WarmupRounds = cmp.Or(c.WarmupRounds, 3)
	c.Eta = cmp.Or(c.Eta, 4)
	c.Cap = cmp.Or(c.Cap, 3)
	c.MaxWeight = cmp.Or(c.MaxWeight, 50)
	c.Broadcast = cmp.Or(c.Broadcast, new(0.5))
	c.Explore = cmp.Or(c.Explore, 0.1)
	c.Mutate = cmp.Or(c.Mutate, 0.3)
	return c
}

func (c SamplerConfig) check() error {
	k := cfgcheck.New("")
	k.Check("kind", c.Kind == "uniform" || c.Kind == "hierarchical" || c.Kind == "qd", "%q is not uniform, hierarchical or qd", c.Kind)
	k.IntIn("warmup_rounds", int64(c.WarmupRounds), 0, cfgcheck.MaxCount)
	k.Between("eta", c.Eta, 0, cfgcheck.MaxWeight)
	k.Between("cap", c.Cap, 1, cfgcheck.MaxWeight)
	k.Between("max_weight", c.MaxWeight, 1, cfgcheck.MaxWeight)
	k.In("broadcast", *c.Broadcast, 0, 1)
	k.In("explore", c.Explore, 0, 1)
	k.In("mutate", c.Mutate, 0, 1)
	return k.Err()
}

// NewSampler builds the sampler a config names over the library's training
// specs.
func NewSampler(cfg SamplerConfig, lib *world.Library, seed int64) (Sampler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	specs := lib.Specs()
	src := rand.NewPCG(uint64(seed), 0x6d656e746f72)
	r := rand.New(src)
	switch cfg.Kind {
	case "uniform":
		return &Uniform{specs: specs, r: r, src: src}, nil
	case "qd":
		q := newQD(cfg, lib, specs, r)
		q.src = src
		return q, nil
	}
	h := newHierarchical(cfg, specs, r)
	h.src = src
	return h, nil
}

// Uniform draws specs uniformly: the baseline.
type Uniform struct {
	specs []world.Spec
	r     *rand.Rand
	src   *rand.PCG // r's source, saved and restored by a resumable run
}

func (u *Uniform) Name() string { return "uniform" }

func (u *Uniform) Next(n int) []world.Spec {
	out := make([]world.Spec, n)
	for i := range out {
		out[i] = u.specs[u.r.IntN(len(u.specs))]
	}
	return out
}

func (u *Uniform) Update([]Feedback) {}

// Hierarchical is the ARES sampler: a category (tactic x topic cell) is drawn
// by weight, then an instance (persona, goal, template) within it by weight.
// A success multiplies the instance's weight by a boost that grows with the
// judge's harm score and the RM's score, capped; the instance's siblings in
// the category get the boost raised to Broadcast, and the category's weight
// the full boost. Weights are then capped and renormalised. During warm-up
// proposals are uniform but feedback is already recorded.
type Hierarchical struct {
	cfg    SamplerConfig
	r      *rand.Rand
	cats   [][]world.Spec // category -> instances
	catW   []float64
	instW  [][]float64
	where  map[string][2]int // spec key -> (category, instance)
	all    []world.Spec
	rounds int
	src    *rand.PCG
}

func newHierarchical(cfg SamplerConfig, specs []world.Spec, r *rand.Rand) *Hierarchical {
	h := &Hierarchical{cfg: cfg, r: r, where: map[string][2]int{}, all: specs}
	idx := map[[2]string]int{}
	for _, s := range specs {
		k := [2]string{s.Tactic, s.Topic}
		c, ok := idx[k]
		if !ok {
			c = len(h.cats)
			idx[k] = c
			h.cats = append(h.cats, nil)
			h.catW = append(h.catW, 1)
			h.instW = append(h.instW, nil)
		}
		h.where[s.Key()] = [2]int{c, len(h.cats[c])}
		h.cats[c] = append(h.cats[c], s)
		h.instW[c] = append(h.instW[c], 1)
	}
	return h
}

func (h *Hierarchical) Name() string { return "hierarchical" }

func draw(r *rand.Rand, w []float64) int {
	total := 0.0
	for _, v := range w {
		total += v
	}
	x := r.Float64() * total
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

func (h *Hierarchical) Next(n int) []world.Spec {
	warm := h.rounds < h.cfg.WarmupRounds
	h.rounds++
	out := make([]world.Spec, n)
	for i := range out {
		if warm || h.r.Float64() < h.cfg.Explore {
			out[i] = h.all[h.r.IntN(len(h.all))]
			continue
		}
		c := draw(h.r, h.catW)
		out[i] = h.cats[c][draw(h.r, h.instW[c])]
	}
	return out
}

// Boost is the multiplicative factor for one result: 1 + eta * harm * rm,
// capped.
func (h *Hierarchical) Boost(f Feedback) float64 {
	return math.Min(h.cfg.Cap, 1+h.cfg.Eta*f.Harm*f.RM)
}

func (h *Hierarchical) Update(fb []Feedback) {
	touched := map[int]bool{}
	for _, f := range fb {
		pos, ok := h.where[f.Spec.Key()]
		if !ok {
			continue
		}
		b := h.Boost(f)
		if b <= 1 {
			continue
		}
		c, i := pos[0], pos[1]
		sib := math.Pow(b, *h.cfg.Broadcast)
		for j := range h.instW[c] {
			if j == i {
				h.instW[c][j] *= b
			} else {
				h.instW[c][j] *= sib
			}
		}
		h.catW[c] *= b
		touched[c] = true
	}
	capNormalise(h.catW, h.cfg.MaxWeight)
	for c := range touched {
		capNormalise(h.instW[c], h.cfg.MaxWeight)
	}
}

// capNormalise rescales w to mean 1, clipping at maxW times the mean (and
// repeating, since clipping moves the mean).
func capNormalise(w []float64, maxW float64) {
	for iter := 0; iter < 20; iter++ {
		sum := 0.0
		for _, v := range w {
			sum += v
		}
		mean := sum / float64(len(w))
		clipped := false
		for i := range w {
			w[i] /= mean
			if w[i] > maxW {
				w[i], clipped = maxW, true
			}
		}
		if !clipped {
			return
		}
	}
}

// Weights exposes the category weights (for reports and tests), keyed by
// "tactic/topic".
func (h *Hierarchical) Weights() map[string]float64 {
	out := map[string]float64{}
	for c, w := range h.catW {
		out[h.cats[c][0].Tactic+"/"+h.cats[c][0].Topic] = w
	}
	return out
}

// QD is a quality-diversity archive over (tactic x topic) cells in the manner
// of Rainbow Teaming: each cell keeps its best probe (elite) by fitness =
// harm * rm (a coupled failure is the fittest). A proposal takes an elite
// (chosen with probability proportional to fitness) and mutates it: half the
// time within its cell (new goal, template or persona, each with probability
// Mutate, at least one), half the time towards a neighbouring cell (a new
// tactic or a new topic, keeping the rest where it can), so that what breaks
// one cell is tried on the cells around it and the archive fills out.
type QD struct {
	cfg     SamplerConfig
	lib     *world.Library
	r       *rand.Rand
	all     []world.Spec
	tactics []string
	topics  []string
	elite   map[[2]string]qdElite
	rounds  int
	src     *rand.PCG
}

type qdElite struct {
	spec    world.Spec
	fitness float64
}

func newQD(cfg SamplerConfig, lib *world.Library, specs []world.Spec, r *rand.Rand) *QD {
	return &QD{cfg: cfg, lib: lib, r: r, all: specs, tactics: lib.TacticIDs(), topics: lib.TopicIDs(), elite: map[[2]string]qdElite{}}
}

func (q *QD) Name() string { return "qd" }

// Archive returns the current elites' fitness, keyed by "tactic/topic".
func (q *QD) Archive() map[string]float64 {
	out := map[string]float64{}
	for k, e := range q.elite {
		out[k[0]+"/"+k[1]] = e.fitness
	}
	return out
}

func (q *QD) Next(n int) []world.Spec {
	warm := q.rounds < q.cfg.WarmupRounds
	q.rounds++
	var parents []qdElite
	for _, e := range q.elite {
		parents = append(parents, e)
	}
	// Map iteration order is random; sort for determinism.
	sort.Slice(parents, func(i, j int) bool { return parents[i].spec.Key() < parents[j].spec.Key() })
	w := make([]float64, len(parents))
	for i, p := range parents {
		w[i] = p.fitness
	}
	out := make([]world.Spec, 0, n)
	for len(out) < n {
		if warm || len(parents) == 0 || q.r.Float64() < q.cfg.Explore {
			out = append(out, q.all[q.r.IntN(len(q.all))])
			continue
		}
		if s, ok := q.mutate(parents[draw(q.r, w)].spec); ok {
			out = append(out, s)
		}
	}
	return out
}

func (q *QD) goals(topic string) []world.Goal {
	return q.lib.HarmTopics[indexOf(q.topics, topic)].Goals
}

func (q *QD) nTemplates(tactic string) int {
	return len(q.lib.Tactics[indexOf(q.tactics, tactic)].Templates)
}

func (q *QD) mutate(p world.Spec) (world.Spec, bool) {
	for try := 0; try < 20; try++ {
		s := p
		if q.r.IntN(2) == 0 {
			// Within the cell: change at least one of goal, template, persona.
			changed := false
			for !changed {
				if q.r.Float64() < q.cfg.Mutate {
					g := q.goals(s.Topic)
					s.Goal, changed = g[q.r.IntN(len(g))].ID, true
				}
				if q.r.Float64() < q.cfg.Mutate {
					s.Template, changed = q.r.IntN(q.nTemplates(s.Tactic)), true
				}
				if q.r.Float64() < q.cfg.Mutate {
					s.Persona, changed = q.lib.Personas[q.r.IntN(len(q.lib.Personas))].ID, true
				}
			}
		} else if q.r.IntN(2) == 0 {
			// Neighbouring cell along the tactic axis.
			s.Tactic = q.tactics[q.r.IntN(len(q.tactics))]
			if s.Template >= q.nTemplates(s.Tactic) || s.Tactic != p.Tactic {
				s.Template = q.r.IntN(q.nTemplates(s.Tactic))
			}
		} else {
			// Neighbouring cell along the topic axis.
			s.Topic = q.topics[q.r.IntN(len(q.topics))]
			if s.Topic != p.Topic {
				g := q.goals(s.Topic)
				s.Goal = g[q.r.IntN(len(g))].ID
			}
		}
		if s != p && q.lib.Check(s) == nil {
			return s, true
		}
	}
	return world.Spec{}, false
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func (q *QD) Update(fb []Feedback) {
	for _, f := range fb {
		fit := f.Harm * f.RM
		if fit <= 0 {
			continue
		}
		k := [2]string{f.Spec.Tactic, f.Spec.Topic}
		if e, ok := q.elite[k]; !ok || fit > e.fitness {
			q.elite[k] = qdElite{f.Spec, fit}
		}
	}
}
