package mentor

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/ares-rlhf/ares/engine/world"
)

// samplerState is implemented by the samplers whose progress a resumable
// run carries: everything Next and Update depend on (weights, archive,
// round count and the random source's state) as JSON.
type samplerState interface {
	saveState() (json.RawMessage, error)
	loadState(json.RawMessage) error
}

func saveRNG(src *rand.PCG) ([]byte, error) {
	if src == nil {
		return nil, fmt.Errorf("sampler has no saveable random source")
	}
	return src.MarshalBinary()
}

func loadRNG(src *rand.PCG, b []byte) error {
	if src == nil {
		return fmt.Errorf("sampler has no restorable random source")
	}
	if err := src.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("rng: %w", err)
	}
	return nil
}

type uniformState struct {
	RNG []byte `json:"rng"`
}

func (u *Uniform) saveState() (json.RawMessage, error) {
	b, err := saveRNG(u.src)
	if err != nil {
		return nil, err
	}
	return json.Marshal(uniformState{RNG: b})
}

func (u *Uniform) loadState(raw json.RawMessage) error {
	var st uniformState
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	return loadRNG(u.src, st.RNG)
}

type hierarchicalState struct {
	RNG    []byte      `json:"rng"`
	Rounds int         `json:"rounds"`
	Specs  int         `json:"specs"`
	CatW   []float64   `json:"category_weights"`
	InstW  [][]float64 `json:"instance_weights"`
}

func (h *Hierarchical) saveState() (json.RawMessage, error) {
	b, err := saveRNG(h.src)
	if err != nil {
		return nil, err
	}
	return json.Marshal(hierarchicalState{RNG: b, Rounds: h.rounds, Specs: len(h.all), CatW: h.catW, InstW: h.instW})
}

func (h *Hierarchical) loadState(raw json.RawMessage) error {
	var st hierarchicalState
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	if st.Specs != len(h.all) || len(st.CatW) != len(h.catW) || len(st.InstW) != len(h.instW) {
		return fmt.Errorf("hierarchical sampler: the state has %d specs in %d categories, the library %d in %d (a different component library?)",
			st.Specs, len(st.CatW), len(h.all), len(h.catW))
	}
	for c := range st.InstW {
		if len(st.InstW[c]) != len(h.instW[c]) {
			return fmt.Errorf("hierarchical sampler: category %d has %d instances in the state, %d in the library", c, len(st.InstW[c]), len(h.instW[c]))
		}
	}
	if err := checkWeights("category_weights", st.CatW); err != nil {
		return err
	}
	for c, w := range st.InstW {
		if err := checkWeights(fmt.Sprintf("instance_weights[%d]", c), w); err != nil {
			return err
		}
	}
	if st.Rounds < 0 {
		return fmt.Errorf("hierarchical sampler: rounds %d is negative", st.Rounds)
	}
	if err := loadRNG(h.src, st.RNG); err != nil {
		return err
	}
	h.rounds, h.catW, h.instW = st.Rounds, st.CatW, st.InstW
	return nil
}

func checkWeights(field string, w []float64) error {
	for i, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("hierarchical sampler: %s[%d] = %v is not a finite non-negative weight", field, i, v)
		}
	}
	return nil
}

type qdEliteState struct {
	Spec    world.Spec `json:"spec"`
	Fitness float64    `json:"fitness"`
}

type qdState struct {
	RNG    []byte         `json:"rng"`
	Rounds int            `json:"rounds"`
	Elites []qdEliteState `json:"elites"`
}

func (q *QD) saveState() (json.RawMessage, error) {
	b, err := saveRNG(q.src)
	if err != nil {
		return nil, err
	}
	st := qdState{RNG: b, Rounds: q.rounds, Elites: []qdEliteState{}}
	for _, e := range q.elite {
		st.Elites = append(st.Elites, qdEliteState{e.spec, e.fitness})
	}
	sort.Slice(st.Elites, func(i, j int) bool { return st.Elites[i].Spec.Key() < st.Elites[j].Spec.Key() })
	return json.Marshal(st)
}

func (q *QD) loadState(raw json.RawMessage) error {
	var st qdState
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	elite := map[[2]string]qdElite{}
	for i, e := range st.Elites {
		if err := q.lib.Check(e.Spec); err != nil {
			return fmt.Errorf("qd sampler: elites[%d]: %w", i, err)
		}
		if math.IsNaN(e.Fitness) || math.IsInf(e.Fitness, 0) || e.Fitness <= 0 {
			return fmt.Errorf("qd sampler: elites[%d].fitness = %v is not a finite positive number", i, e.Fitness)
		}
		elite[[2]string{e.Spec.Tactic, e.Spec.Topic}] = qdElite{e.Spec, e.Fitness}
	}
	if err := loadRNG(q.src, st.RNG); err != nil {
		return err
	}
	q.rounds, q.elite = st.Rounds, elite
	return nil
}
