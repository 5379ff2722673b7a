package repair

import (
	"context"
	"fmt"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/torch"
)

// Policy adapts a language model to mentor.Policy: k samples per prompt.
type Policy struct {
	M           *model.Transformer
	C           *Codec
	MaxNew      int
	Temperature float64
	Batch       int
	Seed        uint64
	calls       uint64
}

// Sample returns k responses per prompt.
func (p *Policy) Sample(ctx context.Context, prompts []string, k int) ([][]string, error) {
	ids := make([][]int, 0, len(prompts)*k)
	for _, pr := range prompts {
		enc := p.C.Prompt(pr)
		for j := 0; j < k; j++ {
			ids = append(ids, enc)
		}
	}
	texts, err := p.generate(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([][]string, len(prompts))
	for i := range prompts {
		out[i] = texts[i*k : (i+1)*k]
	}
	return out, nil
}

func (p *Policy) generate(ctx context.Context, ids [][]int) ([]string, error) {
	bs := p.Batch
	if bs <= 0 {
		bs = 64
	}
	texts := make([]string, 0, len(ids))
	for lo := 0; lo < len(ids); lo += bs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+bs, len(ids))
		p.calls++
		g, err := p.M.Generate(ids[lo:hi], model.GenerateOptions{MaxNewTokens: p.MaxNew, Temperature: p.Temperature,
			StopIDs: []int{p.C.End}, Pad: p.C.Pad, Seed: p.Seed*7919 + p.calls})
		if err != nil {
			return nil, err
		}
		for _, t := range g.Tokens {
			texts = append(texts, p.C.Text(t))
		}
	}
	return texts, nil
}

// RM adapts a reward model to mentor.RewardModel.
type RM struct {
	M     *model.Transformer
	C     *Codec
	Batch int
}

// Score returns the RM's score of each (prompt, response) pair.
func (r *RM) Score(ctx context.Context, prompts, responses []string) ([]float64, error) {
	if len(prompts) != len(responses) {
		return nil, fmt.Errorf("score: %d prompts, %d responses", len(prompts), len(responses))
	}
	bs := r.Batch
	if bs <= 0 {
		bs = 64
	}
	out := make([]float64, 0, len(prompts))
	for lo := 0; lo < len(prompts); lo += bs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+bs, len(prompts))
		ps := make([][]int, hi-lo)
		rs := make([][]int, hi-lo)
		for i := lo; i < hi; i++ {
			ps[i-lo], rs[i-lo] = r.C.Prompt(prompts[i]), r.C.Response(responses[i])
		}
		var scores []float32
		var seqErr error // returned as is, so that its chain is kept
		err := torch.Try(func() {
			torch.NoGrad(func() {
				s := torch.NewScope()
				defer s.Close()
				q, err := Sequences(s, r.M, r.C, ps, rs)
				if err != nil {
					seqErr = err
					return
				}
				scores = r.M.Score(q.Batch).To(torch.Float32).Float32s()
			})
		})
		if err == nil {
			err = seqErr
		}
		if err != nil {
			return nil, err
		}
		for _, v := range scores {
			out = append(out, float64(v))
		}
	}
	return out, nil
}
