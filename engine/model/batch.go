package model

import (
	"fmt"

	"github.com/ares-rlhf/ares/engine/torch"
)

// Batch is a padded batch of token sequences on a device, owned by a scope.
type Batch struct {
	IDs   *torch.Tensor // [B, L] int64
	Pos   *torch.Tensor // [B, L] int64, position of each token in its own sequence
	Mask  *torch.Tensor // [B, 1, L, L] bool: causal attention over real tokens
	Last  *torch.Tensor // [B] int64, index of each sequence's last real token
	Lens  []int
	Width int
}

// NewBatch pads seqs on the right with pad and builds positions and the
// attention mask, in scope s on dev. Every sequence must be non-empty and fit
// the model's context.
func (m *Transformer) NewBatch(s *torch.Scope, seqs [][]int, pad int) (*Batch, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("empty batch")
	}
	L := 0
	for i, q := range seqs {
		if len(q) == 0 {
			return nil, fmt.Errorf("sequence %d is empty", i)
		}
		if len(q) > m.Cfg.Context() {
			return nil, fmt.Errorf("sequence %d has %d tokens, more than the model's context of %d", i, len(q), m.Cfg.Context())
		}
		for _, id := range q {
			if id < 0 || id >= m.Cfg.VocabSize {
				return nil, fmt.Errorf("sequence %d: token id %d outside the vocabulary (size %d)", i, id, m.Cfg.VocabSize)
			}
		}
		L = max(L, len(q))
	}
	B := len(seqs)
	ids := make([]int64, B*L)
	pos := make([]int64, B*L)
	valid := make([][]bool, B)
	last := make([]int64, B)
	lens := make([]int, B)
	for b, q := range seqs {
		valid[b] = make([]bool, L)
		for j := 0; j < L; j++ {
			if j < len(q) {
				ids[b*L+j], pos[b*L+j], valid[b][j] = int64(q[j]), int64(j), true
			} else {
				ids[b*L+j], pos[b*L+j] = int64(pad), int64(len(q)-1)
			}
		}
		last[b], lens[b] = int64(len(q)-1), len(q)
	}
	bt := &Batch{Lens: lens, Width: L}
	err := torch.Try(func() {
		bt.IDs = s.Own(torch.FromSlice(ids, int64(B), int64(L))).ToDevice(m.Device)
		bt.Pos = s.Own(torch.FromSlice(pos, int64(B), int64(L))).ToDevice(m.Device)
		bt.Last = s.Own(torch.FromSlice(last)).ToDevice(m.Device)
		bt.Mask = s.Own(attentionMask(valid, L)).ToDevice(m.Device)
	})
	return bt, err
}

// attentionMask builds the bool mask [B, 1, Lq, Lk] for queries that are the
// last Lq of Lk key positions: causal (aligned to the bottom-right corner),
// restricted to valid keys. A query always sees its own position, so that
// padding rows never have an empty softmax (their outputs are unused).
func attentionMask(valid [][]bool, lq int) *torch.Tensor {
	B, lk := len(valid), len(valid[0])
	m := make([]bool, B*lq*lk)
	off := lk - lq
	for b := 0; b < B; b++ {
		for i := 0; i < lq; i++ {
			row := m[(b*lq+i)*lk:]
			for j := 0; j <= i+off; j++ {
				row[j] = valid[b][j] || j == i+off
			}
		}
	}
	return torch.FromSlice(m, int64(B), 1, int64(lq), int64(lk))
}

// TokenLogProbs returns log p(token t | tokens < t) for t = 1..L-1 of every
// sequence of the batch: [B, L-1], differentiable. Entries past a sequence's
// end are meaningless; mask them with ResponseMask or Lens. With bf16 or
// f16 weights the log-softmax is taken in float32 (and the result is
// float32): in bf16 the log-sum-exp over the vocabulary loses about two
// decimal digits.
func (m *Transformer) TokenLogProbs(b *Batch) *torch.Tensor {
	h := m.Forward(b.IDs, b.Pos, b.Mask, nil)
	L := h.Size(1)
	logits := m.Logits(h.Narrow(1, 0, L-1))
	if dt := logits.DType(); dt == torch.BFloat16 || dt == torch.Float16 {
		logits = logits.To(torch.Float32)
	}
	logp := logits.LogSoftmax(-1)
	targets := b.IDs.Narrow(1, 1, L-1).Unsqueeze(-1)
	return logp.Gather(2, targets).Squeeze(-1)
}

// Score returns the reward model's scalar for every sequence of the batch,
// read at its last real token: [B], differentiable.
func (m *Transformer) Score(b *Batch) *torch.Tensor {
	if m.scoreW == nil {
		panic(&torch.Error{Op: "model.Score", Code: torch.CodeInvalid, Msg: "not a reward model (no score.weight)"})
	}
	h := m.Forward(b.IDs, b.Pos, b.Mask, nil)
	B, H := h.Size(0), h.Size(2)
	idx := b.Last.Reshape(B, 1, 1).Expand(B, 1, H)
	last := h.Gather(1, idx).Reshape(B, H)
	return torch.Linear(last, m.scoreW, nil).Narrow(1, 0, 1).Reshape(B)
}
