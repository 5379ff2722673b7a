package model

import (
	"fmt"
	"math"

	"github.com/ares-rlhf/ares/engine/torch"
)

// GenerateOptions control sampling.
type GenerateOptions struct {
	MaxNewTokens int
	Temperature  float64 // <= 0: greedy
	TopK         int     // 0: off
	TopP         float64 // 0 or 1: off
	StopIDs      []int   // generation of a sequence ends after one of these
	Pad          int     // fed for finished sequences
	Seed         uint64
}

// Generation is the result for a batch of prompts.
type Generation struct {
	Tokens   [][]int     // generated tokens per prompt (including a final stop token)
	LogProbs [][]float32 // log p of each generated token under the model at temperature 1
	Stopped  []bool      // ended on a stop token (not on the length limit)
}

// Generate samples continuations of prompts (token ids, any lengths) in one
// batch with a KV cache. Prompts are padded on the left so that every
// sequence's next token is at the same column.
func (m *Transformer) Generate(prompts [][]int, o GenerateOptions) (*Generation, error) {
	if len(prompts) == 0 {
		return &Generation{}, nil
	}
	if o.MaxNewTokens <= 0 {
		return nil, fmt.Errorf("max new tokens must be positive, got %d", o.MaxNewTokens)
	}
	Lp := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("prompt %d is empty", i)
		}
		for _, id := range p {
			if id < 0 || id >= m.Cfg.VocabSize {
				return nil, fmt.Errorf("prompt %d: token id %d outside the vocabulary (size %d)", i, id, m.Cfg.VocabSize)
			}
		}
		Lp = max(Lp, len(p))
	}
	for i, p := range prompts {
		if len(p)+o.MaxNewTokens > m.Cfg.Context() {
			return nil, fmt.Errorf("prompt %d has %d tokens; with %d new tokens it exceeds the model's context of %d",
				i, len(p), o.MaxNewTokens, m.Cfg.Context())
		}
	}
	B := len(prompts)
	stop := map[int]bool{}
	for _, s := range o.StopIDs {
		stop[s] = true
	}
	out := &Generation{Tokens: make([][]int, B), LogProbs: make([][]float32, B), Stopped: make([]bool, B)}
	err := torch.Try(func() {
		torch.NoGrad(func() { m.generate(prompts, Lp, o, stop, out) })
	})
	return out, err
}

func (m *Transformer) generate(prompts [][]int, Lp int, o GenerateOptions, stop map[int]bool, out *Generation) {
	B := len(prompts)
	gen := torch.NewGenerator(o.Seed, m.Device)
	defer gen.Close()
	cache := m.NewKVCache(int64(B), int64(Lp+o.MaxNewTokens))
	defer cache.Close()

	// Left-padded prompt block.
	ids := make([]int64, B*Lp)
	pos := make([]int64, B*Lp)
	valid := make([][]bool, B)
	next := make([]int64, B) // position of each sequence's next token
	for b, p := range prompts {
		valid[b] = make([]bool, Lp, Lp+o.MaxNewTokens)
		off := Lp - len(p)
		for j := 0; j < Lp; j++ {
			if j >= off {
				ids[b*Lp+j], pos[b*Lp+j], valid[b][j] = int64(p[j-off]), int64(j-off), true
			} else {
				ids[b*Lp+j] = int64(o.Pad)
			}
		}
		next[b] = int64(len(p))
	}
	done := make([]bool, B)
	s := torch.NewScope()
	// The step's scope is closed on every path: a failed op panics out of
	// here, and the tensors of the step it failed in must not outlive it.
	defer func() { s.Close() }()
	logits := m.step(s, cache, ids, pos, valid, Lp)
	for t := 0; t < o.MaxNewTokens; t++ {
		tok, lp := m.sample(s, logits, int64(B), o, gen)
		s.Close()
		alive := false
		for b := 0; b < B; b++ {
			if done[b] {
				tok[b] = int64(o.Pad)
				continue
			}
			out.Tokens[b] = append(out.Tokens[b], int(tok[b]))
			out.LogProbs[b] = append(out.LogProbs[b], lp[b])
			if stop[int(tok[b])] {
				done[b], out.Stopped[b] = true, true
			} else {
				alive = true
			}
		}
		if !alive || t == o.MaxNewTokens-1 {
			return
		}
		for b := 0; b < B; b++ {
			pos[b] = next[b]
			next[b]++
			valid[b] = append(valid[b], !done[b])
		}
		s = torch.NewScope()
		logits = m.step(s, cache, tok, pos[:B], valid, 1)
	}
}

// step runs the model on the next block of n tokens per sequence and
// returns the float32 logits of the last one, [B, V].
func (m *Transformer) step(s *torch.Scope, cache *KVCache, ids, pos []int64, valid [][]bool, n int) *torch.Tensor {
	B := int64(len(valid))
	idsT := m.toDevice(s.Own(torch.FromSlice(ids, B, int64(n))))            // [B, n]
	posT := m.toDevice(s.Own(torch.FromSlice(pos[:int(B)*n], B, int64(n)))) // [B, n]
	mask := m.toDevice(s.Own(attentionMask(valid, n)))                      // [B, 1, n, Lk]
	h := m.Forward(idsT, posT, mask, cache)                                 // [B, n, H]
	if n > 1 {
		h = h.Narrow(1, int64(n-1), 1) // [B, 1, H]: the last position
	}
	logits := m.Logits(h).Reshape(B, -1) // [B, V]
	if m.DType != torch.Float32 {
		logits = logits.To(torch.Float32)
	}
	return logits
}

// toDevice moves a tensor made on the host to the model's device (a no-op,
// and no native call, for a model on the CPU).
func (m *Transformer) toDevice(t *torch.Tensor) *torch.Tensor {
	if m.Device == torch.CPU {
		return t
	}
	return t.ToDevice(m.Device)
}

// sample draws the next token of every row of logits [B, V] and returns it
// with its log-probability under the unmodified distribution.
func (m *Transformer) sample(s *torch.Scope, logits *torch.Tensor, B int64, o GenerateOptions, g *torch.Generator) ([]int64, []float32) {
	logp := logits.LogSoftmax(-1)
	var tok *torch.Tensor
	if o.Temperature <= 0 {
		tok = logits.ArgMaxKeep(-1) // [B, 1]
	} else {
		z := logits.DivScalar(o.Temperature)
		if o.TopK > 0 && o.TopK < m.Cfg.VocabSize {
			vals, _ := z.TopK(int64(o.TopK), -1, true)
			kth := vals.Narrow(-1, int64(o.TopK-1), 1)
			z = z.MaskedFill(z.Lt(kth), math.Inf(-1))
		}
		if o.TopP > 0 && o.TopP < 1 {
			// Keep the smallest set of tokens whose probability reaches top-p:
			// the threshold is the logit of the last token of that set.
			sorted, _ := z.Sort(-1, true)
			probs := sorted.Softmax(-1)
			before := probs.CumSum(-1).Sub(probs) // mass of the tokens ranked above
			keep := before.LtScalar(o.TopP).To(torch.Int64).SumKeep(-1)
			thresh := sorted.Gather(-1, keep.SubScalar(1).To(torch.Int64))
			z = z.MaskedFill(z.Lt(thresh), math.Inf(-1))
		}
		tok = z.Softmax(-1).Multinomial(1, false, g)
	}
	lp := logp.Gather(-1, tok).Reshape(B)
	return tok.Reshape(B).Int64s(), lp.Float32s()
}
