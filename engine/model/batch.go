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
//
// When the [B·(L-1), V] logits would hold FusedLogitsMin elements or more,
// the log-probabilities come from torch.TokenLogProbs, which runs over
// vocabulary chunks with an online log-sum-exp and never holds the whole
// logits, forward or backward (its backward recomputes each chunk's
// logits). Below that size it takes the plain path (full logits,
// log-softmax, gather). Both give the same values and gradients to float
// rounding; TokenLogProbsPlain and TokenLogProbsFused pick one explicitly.
func (m *Transformer) TokenLogProbs(b *Batch) *torch.Tensor {
	h := m.Forward(b.IDs, b.Pos, b.Mask, nil)
	n := h.Size(0) * (h.Size(1) - 1)
	if n*int64(m.Cfg.VocabSize) >= FusedLogitsMin {
		return m.headLogProbsFused(h, b.IDs, 0)
	}
	return m.headLogProbsPlain(h, b.IDs)
}

// FusedLogitsMin is the size of the logits [N, V] (in elements) from which
// TokenLogProbs takes the fused, vocabulary-chunked path: 2^22 (16 MiB of
// float32 logits). Below it (the embedded demo's models: vocabulary 640)
// the two paths take the same time within the noise of the measurements
// (0.92x-1.10x) and save little memory, so the plain path, the one the
// demo's figures were made with, is kept; from about this size up the
// chunked path is faster (1.1x-1.3x on the CPU at a 16k-152k vocabulary)
// and holds [N, chunk] instead of [N, V]. See bench/results/vocab-cpu.md.
const FusedLogitsMin = 1 << 22

// FusedChunkBytes bounds the float32 logits of one vocabulary chunk of the
// fused path: the chunk is FusedChunkBytes / (4 N) vocabulary rows, at
// least 1024 (and at most V). On the CPU a chunk that stays in cache is
// faster than a larger one (bench/results/vocab-cpu.md: at N = 252 and
// 1016 rows, 4 MiB chunks beat 8192 rows by 10-25 %).
const FusedChunkBytes = 4 << 20

// TokenLogProbsPlain is TokenLogProbs through the full logits [B, L-1, V]:
// Logits, log-softmax (in float32 for half-precision weights), gather.
func (m *Transformer) TokenLogProbsPlain(b *Batch) *torch.Tensor {
	return m.headLogProbsPlain(m.Forward(b.IDs, b.Pos, b.Mask, nil), b.IDs)
}

// TokenLogProbsFused is TokenLogProbs through torch.TokenLogProbs over
// vocabulary chunks of chunk rows (<= 0: from FusedChunkBytes).
func (m *Transformer) TokenLogProbsFused(b *Batch, chunk int64) *torch.Tensor {
	return m.headLogProbsFused(m.Forward(b.IDs, b.Pos, b.Mask, nil), b.IDs, chunk)
}

// headLogProbsPlain: h [B, L, H] final-normed hidden states, ids [B, L].
func (m *Transformer) headLogProbsPlain(h, ids *torch.Tensor) *torch.Tensor {
	L := h.Size(1)
	logits := m.Logits(h.Narrow(1, 0, L-1)) // [B, L, H] -> [B, L-1, H] -> [B, L-1, V]
	if dt := logits.DType(); dt == torch.BFloat16 || dt == torch.Float16 {
		logits = logits.To(torch.Float32)
	}
	logp := logits.LogSoftmax(-1)
	targets := ids.Narrow(1, 1, L-1).Unsqueeze(-1) // [B, L] -> [B, L-1] -> [B, L-1, 1]
	return logp.Gather(2, targets).Squeeze(-1)     // [B, L-1, 1] -> [B, L-1]
}

// headLogProbsFused is headLogProbsPlain without the [B, L-1, V] logits.
// torch.TokenLogProbs computes the logits chunks in the weights' dtype and
// the log-sum-exp in float32 (float64 for float64), as the plain path does.
func (m *Transformer) headLogProbsFused(h, ids *torch.Tensor, chunk int64) *torch.Tensor {
	B, L, H := h.Size(0), h.Size(1), h.Size(2)
	n := B * (L - 1)
	w := m.OutputWeight()
	if chunk <= 0 {
		chunk = max(FusedChunkBytes/(4*max(n, 1)), 1024)
	}
	chunk = min(chunk, w.Size(0))
	x := h.Narrow(1, 0, L-1).Reshape(n, H)                           // [B, L, H] -> [B, L-1, H] -> [n, H]
	targets := ids.Narrow(1, 1, L-1).Reshape(n)                      // [B, L] -> [B, L-1] -> [n]
	return torch.TokenLogProbs(x, w, targets, chunk).Reshape(B, L-1) // [n] -> [B, L-1]
}

// Score returns the reward model's scalar for every sequence of the batch,
// read at its last real token: [B], differentiable.
func (m *Transformer) Score(b *Batch) *torch.Tensor {
	if m.scoreW == nil {
		panic(&torch.Error{Op: "model.Score", Code: torch.CodeInvalid, Msg: "not a reward model (no score.weight)"})
	}
	h := m.Forward(b.IDs, b.Pos, b.Mask, nil)
	B, H := h.Size(0), h.Size(2)
	idx := b.Last.Reshape(B, 1, 1).Expand(B, 1, H)                      // [B] -> [B, 1, 1] -> [B, 1, H]
	last := h.Gather(1, idx).Reshape(B, H)                              // [B, 1, H] -> [B, H]
	return torch.Linear(last, m.scoreW, nil).Narrow(1, 0, 1).Reshape(B) // [B, labels] -> [B, 1] -> [B]
}
