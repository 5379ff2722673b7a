package repair

import (
	"fmt"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/train"
)

// Example is one supervised (prompt, response) pair.
type Example struct{ Prompt, Response string }

// encoded caches the token ids of examples.
type encoded struct{ prompt, response [][]int }

func encodeExamples(c *Codec, ex []Example) encoded {
	e := encoded{make([][]int, len(ex)), make([][]int, len(ex))}
	for i, x := range ex {
		e.prompt[i], e.response[i] = c.Prompt(x.Prompt), c.Response(x.Response)
	}
	return e
}

// lmLoss is the mean negative log-likelihood per response token of the
// global batch idx, computed on this rank's share [lo, hi): loss.LanguageModel
// normalised by loss.GlobalTokens, so that averaging the ranks' gradients
// gives exactly the global batch's gradient.
func lmLoss(s *torch.Scope, m *model.Transformer, c *Codec, e encoded, idx []int, lo, hi int) (*torch.Tensor, error) {
	var total int
	for _, j := range idx {
		total += min(len(e.response[j]), m.Cfg.MaxPos-len(e.prompt[j]))
	}
	ps := make([][]int, hi-lo)
	rs := make([][]int, hi-lo)
	for i, j := range idx[lo:hi] {
		ps[i], rs[i] = e.prompt[j], e.response[j]
	}
	q, err := Sequences(s, m, c, ps, rs)
	if err != nil {
		return nil, err
	}
	if total <= 0 {
		return nil, fmt.Errorf("no response tokens in the batch")
	}
	return loss.LanguageModel(m.TokenLogProbs(q.Batch), q.Mask, loss.GlobalTokens(total, len(idx), hi-lo)), nil
}

// SFT fine-tunes m on data with the language-model loss of the responses.
func SFT(m *model.Transformer, c *Codec, data []Example, o Optim, seed int64, io RunIO) (*train.Trainer, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("sft: no examples")
	}
	if err := io.checkDivisible("sft batch", o.Batch); err != nil {
		return nil, err
	}
	e := encodeExamples(c, data)
	return trainModel(io, o, seed, "sft", "policy", m, func(s *torch.Scope, step int64, micro int, t *train.Timer) (train.Micro, error) {
		idx := pick(stepRand(seed, step, micro), len(data), o.Batch)
		lo, hi := io.shard(len(idx))
		var l *torch.Tensor
		var err error
		t.Phase("forward", func() { l, err = lmLoss(s, m, c, e, idx, lo, hi) })
		return train.Micro{Loss: l}, err
	})
}
