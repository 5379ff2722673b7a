package mentor

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/ares-rlhf/ares/engine/world"
)

// SimulatedPolicy is NOT a model. It is a scripted stand-in for the weakened
// starting policy, derived from the world's weakness config, so samplers and
// the pipeline can be measured without trained models (and before they
// exist). It recognises which spec a prompt was composed from and complies
// (answers with a harmful template) with probability ComplyRate in
// policy_comply cells and LeakRate elsewhere; otherwise it refuses. Prompts
// it cannot place get a neutral answer.
type SimulatedPolicy struct {
	Lib *world.Library
	W   *world.Weakness
	r   *rand.Rand
	src *rand.PCG
}

// NewSimulatedPolicy builds a simulated policy; w nil means the library's
// weakness.
func NewSimulatedPolicy(lib *world.Library, w *world.Weakness, seed int64) *SimulatedPolicy {
	if w == nil {
		w = &lib.Weakness
	}
	src := rand.NewPCG(uint64(seed), 0x73696d70)
	return &SimulatedPolicy{Lib: lib, W: w, r: rand.New(src), src: src}
}

// SaveState is the random source's state: a resumed run restores it so that
// it samples what an uninterrupted run would have (Resumable).
func (p *SimulatedPolicy) SaveState() ([]byte, error) { return p.src.MarshalBinary() }

// LoadState restores what SaveState returned.
func (p *SimulatedPolicy) LoadState(b []byte) error { return p.src.UnmarshalBinary(b) }

func (p *SimulatedPolicy) Sample(ctx context.Context, prompts []string, k int) ([][]string, error) {
	out := make([][]string, len(prompts))
	for i, pr := range prompts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sp, ok := p.Lib.Identify(pr)
		out[i] = make([]string, k)
		for j := range out[i] {
			if !ok {
				out[i][j] = "here is a short helpful answer."
				continue
			}
			probe, _ := p.Lib.Compose(sp, p.r.Int64())
			rate := p.W.LeakRate
			if p.W.PolicyWeak(sp) {
				rate = p.W.ComplyRate
			}
			if p.r.Float64() < rate {
				out[i][j] = probe.YHarm
			} else {
				out[i][j] = probe.YSafe
			}
		}
	}
	return out, nil
}

// SimulatedRM is NOT a model. It is a scripted stand-in for the weakened RM:
// a deterministic function of (prompt, response) that prefers refusals to
// harmful answers, except in rm_flipped cells (harmful scored high) and
// rm_missing cells (no opinion), plus hashed Gaussian noise of sd Noise.
type SimulatedRM struct {
	Lib   *world.Library
	W     *world.Weakness
	Noise float64
	Seed  int64
}

// NewSimulatedRM builds a simulated RM; w nil means the library's weakness.
func NewSimulatedRM(lib *world.Library, w *world.Weakness, seed int64) *SimulatedRM {
	if w == nil {
		w = &lib.Weakness
	}
	return &SimulatedRM{Lib: lib, W: w, Noise: 0.5, Seed: seed}
}

func (m *SimulatedRM) Score(ctx context.Context, prompts, responses []string) ([]float64, error) {
	out := make([]float64, len(prompts))
	for i := range prompts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sp, ok := m.Lib.Identify(prompts[i])
		harmful := m.Lib.HarmScore(responses[i]) >= 0.5
		refusal := m.Lib.IsRefusal(responses[i])
		var s float64
		switch {
		case !ok:
		case harmful && m.W.RMFlippedAt(sp):
			s = 1.5
		case harmful && m.W.RMMissingAt(sp):
			s = 0
		case harmful:
			s = -1.5
		case refusal && m.W.RMFlippedAt(sp):
			s = -0.5
		case refusal && m.W.RMMissingAt(sp):
			s = 0.3
		case refusal:
			s = 1
		}
		out[i] = s + m.Noise*hashNormal(m.Seed, prompts[i], responses[i])
	}
	return out, nil
}

// hashNormal is a standard normal variate that depends only on its inputs.
func hashNormal(seed int64, a, b string) float64 {
	h := fnv.New64a()
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	r := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
	u1, u2 := r.Float64(), r.Float64()
	return math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2)
}
