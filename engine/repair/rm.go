package repair

import (
	"context"
	"fmt"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/train"
)

// Pair is a preference: Chosen is preferred to Rejected for Prompt.
type Pair struct{ Prompt, Chosen, Rejected string }

type encodedPairs struct{ prompt, chosen, rejected [][]int }

func encodePairs(c *Codec, ps []Pair) encodedPairs {
	e := encodedPairs{make([][]int, len(ps)), make([][]int, len(ps)), make([][]int, len(ps))}
	for i, p := range ps {
		e.prompt[i], e.chosen[i], e.rejected[i] = c.Prompt(p.Prompt), c.Response(p.Chosen), c.Response(p.Rejected)
	}
	return e
}

// pairScores scores the chosen and rejected responses of pairs idx in one batch.
func pairScores(s *torch.Scope, m *model.Transformer, c *Codec, e encodedPairs, idx []int) (chosen, rejected *torch.Tensor, err error) {
	n := len(idx)
	ps := make([][]int, 2*n)
	rs := make([][]int, 2*n)
	for i, j := range idx {
		ps[i], rs[i] = e.prompt[j], e.chosen[j]
		ps[n+i], rs[n+i] = e.prompt[j], e.rejected[j]
	}
	q, err := Sequences(s, m, c, ps, rs)
	if err != nil {
		return nil, nil, err
	}
	sc := m.Score(q.Batch)
	return sc.Narrow(0, 0, int64(n)), sc.Narrow(0, int64(n), int64(n)), nil
}

// TrainRM trains a reward model on preference pairs with the Bradley-Terry loss.
func TrainRM(m *model.Transformer, c *Codec, data []Pair, o Optim, bt loss.BTOptions, seed int64, io RunIO) (*train.Trainer, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("train-rm: no preference pairs")
	}
	if err := io.checkDivisible("train-rm batch", o.Batch); err != nil {
		return nil, err
	}
	e := encodePairs(c, data)
	return trainModel(io, o, seed, "rm", "rm", m, func(s *torch.Scope, step int64, micro int, t *train.Timer) (train.Micro, error) {
		idx := pick(stepRand(seed, step, micro), len(data), o.Batch)
		lo, hi := io.shard(len(idx))
		var l *torch.Tensor
		var acc float64
		var err error
		t.Phase("forward", func() {
			var ch, rj *torch.Tensor
			if ch, rj, err = pairScores(s, m, c, e, idx[lo:hi]); err != nil {
				return
			}
			l = loss.BradleyTerry(ch, rj, bt)
			acc = loss.PairAccuracy(ch.Detach().Float32s(), rj.Detach().Float32s())
		})
		return train.Micro{Loss: l, Metrics: map[string]float64{"accuracy": acc}}, err
	})
}

// RMRepair configures stage 1.
type RMRepair struct {
	Optim
	BT loss.BTOptions `toml:"bt"`
	// ReplayRatio is the fraction of each batch drawn from the replay set.
	ReplayRatio float64 `toml:"replay_ratio"`
	// Anchor weights the squared change of the RM's scores on a frozen
	// reference set (AnchorSize responses from the replay set) against drift.
	Anchor     float64 `toml:"anchor"`
	AnchorSize int     `toml:"anchor_size"`
	// AnchorBatch is how many anchor pairs each step scores (default: the
	// batch size; a smaller one generalised worse in the demo).
	AnchorBatch int `toml:"anchor_batch"`
}

// RepairRM runs stage 1: Bradley-Terry on the repair pairs (y_safe over
// y_harm of Type A and C findings), replay of general preference data at
// ReplayRatio, and the score anchor.
func RepairRM(m *model.Transformer, c *Codec, repairPairs, replay []Pair, o RMRepair, seed int64, io RunIO) (*train.Trainer, error) {
	ob, err := newRMObjective(m, c, repairPairs, replay, o, io)
	if err != nil {
		return nil, err
	}
	return trainModel(io, o.Optim, seed, "rm repair", "rm", m, func(s *torch.Scope, step int64, micro int, t *train.Timer) (train.Micro, error) {
		var l *torch.Tensor
		var metrics map[string]float64
		var err error
		t.Phase("forward", func() {
			l, metrics, err = ob.loss(s, stepRand(seed, step, micro), io)
		})
		return train.Micro{Loss: l, Metrics: metrics}, err
	})
}

// rmObjective is the RM repair loss, written once for stage 1 and for the
// RM side of joint mode: Bradley-Terry on the repair pairs, Bradley-Terry on
// a ReplayRatio share of general preference pairs, and the squared change
// of the RM's scores on a frozen anchor set.
type rmObjective struct {
	m          *model.Transformer
	c          *Codec
	o          RMRepair
	rep, rpl   encodedPairs
	nRep, nRpl int // pairs per batch from each set
	anchor     encodedPairs
	ref        []float64 // anchor scores before any update: chosen, rejected per pair
}

// newRMObjective encodes the data and scores the anchor set with m as it is
// now, before any update.
func newRMObjective(m *model.Transformer, c *Codec, repairPairs, replay []Pair, o RMRepair, io RunIO) (*rmObjective, error) {
	if len(repairPairs) == 0 {
		return nil, fmt.Errorf("rm repair: no Type A or C findings with y_safe and y_harm to learn from")
	}
	ob := &rmObjective{m: m, c: c, o: o, rep: encodePairs(c, repairPairs), rpl: encodePairs(c, replay)}
	ob.nRpl = int(float64(o.Batch)*o.ReplayRatio + 0.5)
	if len(replay) == 0 {
		ob.nRpl = 0
	}
	ob.nRep = o.Batch - ob.nRpl
	if err := io.checkDivisible("rm_repair replay share", ob.nRpl); err != nil {
		return nil, err
	}
	if err := io.checkDivisible("rm_repair repair share", ob.nRep); err != nil {
		return nil, err
	}
	if o.Anchor <= 0 {
		return ob, nil
	}
	var anchorP, anchorR []string
	for i := 0; i < len(replay) && i < o.AnchorSize; i++ {
		anchorP = append(anchorP, replay[i].Prompt, replay[i].Prompt)
		anchorR = append(anchorR, replay[i].Chosen, replay[i].Rejected)
	}
	var err error
	if ob.ref, err = (&RM{M: m, C: c}).Score(context.Background(), anchorP, anchorR); err != nil {
		return nil, err
	}
	ob.anchor = encodePairs(c, anchorPairs(anchorP, anchorR))
	return ob, nil
}

// loss is one batch of the objective, drawn with r.
func (ob *rmObjective) loss(s *torch.Scope, r interface{ Intn(int) int }, io RunIO) (*torch.Tensor, map[string]float64, error) {
	m, c, o := ob.m, ob.c, ob.o
	metrics := map[string]float64{}
	idx := pick(r, len(ob.rep.prompt), ob.nRep)
	lo, hi := io.shard(len(idx))
	ch, rj, err := pairScores(s, m, c, ob.rep, idx[lo:hi])
	if err != nil {
		return nil, nil, err
	}
	l := loss.BradleyTerry(ch, rj, o.BT)
	metrics["accuracy"] = loss.PairAccuracy(ch.Detach().Float32s(), rj.Detach().Float32s())
	if ob.nRpl > 0 {
		ridx := pick(r, len(ob.rpl.prompt), ob.nRpl)
		rlo, rhi := io.shard(len(ridx))
		rc, rr, err := pairScores(s, m, c, ob.rpl, ridx[rlo:rhi])
		if err != nil {
			return nil, nil, err
		}
		// Each pair weighs the same whichever set it comes from.
		frac := float64(ob.nRpl) / float64(o.Batch)
		l = l.MulScalar(1 - frac).Add(loss.BradleyTerry(rc, rr, o.BT).MulScalar(frac))
		metrics["replay_accuracy"] = loss.PairAccuracy(rc.Detach().Float32s(), rr.Detach().Float32s())
	}
	if o.Anchor > 0 && len(ob.ref) > 0 {
		ab := o.AnchorBatch
		if ab <= 0 {
			ab = o.Batch
		}
		n := min(ab, len(ob.ref)/2)
		if io.DP != nil && io.DP.Size() > 1 {
			n -= n % io.DP.Size()
		}
		all := pick(r, len(ob.ref)/2, n)
		alo, ahi := io.shard(n)
		aidx := all[alo:ahi]
		n = len(aidx)
		ac, ar, err := pairScores(s, m, c, ob.anchor, aidx)
		if err != nil {
			return nil, nil, err
		}
		refs := make([]float32, 2*n)
		for i, j := range aidx {
			refs[i], refs[n+i] = float32(ob.ref[2*j]), float32(ob.ref[2*j+1])
		}
		refT := s.Own(torch.FromSlice(refs)).ToDevice(m.Device).To(ac.DType())
		a := loss.ScoreAnchor(torch.Cat([]*torch.Tensor{ac, ar}, 0), refT)
		metrics["anchor"] = a.Item()
		l = l.Add(a.MulScalar(o.Anchor))
	}
	return l, metrics, nil
}

func anchorPairs(p, r []string) []Pair {
	out := make([]Pair, len(p)/2)
	for i := range out {
		out[i] = Pair{Prompt: p[2*i], Chosen: r[2*i], Rejected: r[2*i+1]}
	}
	return out
}

// PairAccuracy scores pairs with the RM and returns the fraction where the
// chosen response scores higher.
func PairAccuracy(ctx context.Context, rm *RM, pairs []Pair) (float64, error) {
	if len(pairs) == 0 {
		return 0, nil
	}
	p := make([]string, 0, 2*len(pairs))
	r := make([]string, 0, 2*len(pairs))
	for _, x := range pairs {
		p = append(p, x.Prompt, x.Prompt)
		r = append(r, x.Chosen, x.Rejected)
	}
	sc, err := rm.Score(ctx, p, r)
	if err != nil {
		return 0, err
	}
	// The scores are float32 from the model, so narrowing them back is exact.
	chosen := make([]float32, len(pairs))
	rejected := make([]float32, len(pairs))
	for i := range pairs {
		chosen[i], rejected[i] = float32(sc[2*i]), float32(sc[2*i+1])
	}
	return loss.PairAccuracy(chosen, rejected), nil
}
