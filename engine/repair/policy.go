package repair

import (
	"context"
	"fmt"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/train"
)

// PolicyRepair configures stage 2 (and the policy side of joint mode).
type PolicyRepair struct {
	Optim
	// Prompts per rollout batch, and G samples per prompt (the group).
	Prompts int `toml:"prompts"`
	Group   int `toml:"group"`
	// UpdatesPerBatch is how many optimizer steps reuse one rollout batch
	// (PPO epochs); checkpoints fall on rollout-batch boundaries.
	UpdatesPerBatch int     `toml:"updates_per_batch"`
	MaxNewTokens    int     `toml:"max_new_tokens"`
	Temperature     float64 `toml:"temperature"`
	ClipEps         float64 `toml:"clip_eps"`
	// Unlikelihood weights -log(1-p) on the tokens of y_harm of the findings.
	Unlikelihood float64 `toml:"unlikelihood"`
	// KL weights the KL to the reference policy, with estimator k1, k2 or k3.
	KL          float64 `toml:"kl"`
	KLEstimator string  `toml:"kl_estimator"`
	// Replay weights the language-model loss on benign data.
	Replay      float64 `toml:"replay"`
	ReplayBatch int     `toml:"replay_batch"`
	// LookalikeRatio is the fraction of rollout prompts drawn from benign
	// look-alike prompts, against over-refusal.
	LookalikeRatio float64 `toml:"lookalike_ratio"`
}

// PolicyData is what stage 2 trains from.
type PolicyData struct {
	Prompts    []string  // Type B and C finding prompts
	Harmful    []Example // (prompt, harmful response) for unlikelihood
	Lookalikes []string  // benign look-alike prompts
	Replay     []Example // benign SFT data
}

// rollout is one batch of sampled responses with everything the updates need.
type rollout struct {
	prompts, responses [][]int
	adv                []float32
	old, ref           []float32 // per token [N, L-1], flattened
	width              int
	rewardMean         float64
	responseLen        float64 // mean response tokens, end-of-turn included
}

// JointRM is the RM side of joint mode: in every step the RM is trained on
// the same objective as stage 1 (Bradley-Terry on the repair pairs, replay
// of general preference pairs, the score anchor; weight BT in the joint
// loss) while its current scores are the policy's reward. Its learning-rate
// schedule runs over the policy's steps.
type JointRM struct {
	M      *model.Transformer
	Pairs  []Pair   // repair pairs (A and C findings)
	Replay []Pair   // general preference pairs: replay and anchor, as in stage 1
	Repair RMRepair // the RM objective and optimizer; Steps is taken from the policy
	BT     float64
}

// RepairPolicy runs stage 2 — Dr. GRPO against rm on the finding prompts,
// plus unlikelihood, KL to ref and replay — or, with joint set, joint mode,
// where the RM is updated in the same steps by its Bradley-Terry loss.
func RepairPolicy(pol, ref, rm *model.Transformer, c *Codec, data PolicyData, o PolicyRepair, joint *JointRM, seed int64, io RunIO) (*train.Trainer, error) {
	if len(data.Prompts) == 0 {
		return nil, fmt.Errorf("policy repair: no Type B or C findings to learn from")
	}
	if o.UpdatesPerBatch <= 0 {
		o.UpdatesPerBatch = 1
	}
	if io.CheckpointEvery%int64(o.UpdatesPerBatch) != 0 {
		return nil, fmt.Errorf("policy repair: checkpoint_every (%d) must be a multiple of updates_per_batch (%d) so that resume is exact", io.CheckpointEvery, o.UpdatesPerBatch)
	}
	if err := io.checkDivisible("policy_repair prompts", o.Prompts); err != nil {
		return nil, err
	}
	if err := io.checkDivisible("policy_repair replay_batch", o.ReplayBatch); err != nil {
		return nil, err
	}
	if ref == pol && !pol.HasLoRA() {
		return nil, fmt.Errorf("policy repair: the KL reference is the policy itself, which only works with LoRA adapters on the policy (the reference is then the policy with its adapters off)")
	}
	est, err := loss.ParseEstimator(o.KLEstimator)
	if err != nil {
		return nil, err
	}
	var jointOb *rmObjective
	if joint != nil {
		// The anchor's reference scores are taken before any update.
		if jointOb, err = newRMObjective(joint.M, c, joint.Pairs, joint.Replay, joint.Repair, io); err != nil {
			return nil, err
		}
	}
	var groups []*train.Group
	defer func() { closeGroups(groups) }()
	g, err := modelGroup("policy", pol, o.Optim)
	if err != nil {
		return nil, fmt.Errorf("policy repair: %w", err)
	}
	groups = append(groups, g)
	if joint != nil {
		ro := joint.Repair.Optim
		ro.Steps = o.Steps
		if g, err = modelGroup("rm", joint.M, ro); err != nil {
			return nil, fmt.Errorf("policy repair: %w", err)
		}
		groups = append(groups, g)
	} else if err := setTrainable(rm, false); err != nil {
		return nil, fmt.Errorf("policy repair: %w", err)
	}
	if ref != pol {
		if err := setTrainable(ref, false); err != nil {
			return nil, fmt.Errorf("policy repair: %w", err)
		}
	}
	harm := encodeExamples(c, data.Harmful)
	replay := encodeExamples(c, data.Replay)
	rmA := &RM{M: rm, C: c}
	// One rollout batch per micro-batch, regenerated every UpdatesPerBatch
	// steps (a fresh map after a resume regenerates them identically).
	rollouts := map[int]*rollout{}
	norm := float64(o.MaxNewTokens)
	trained := []*model.Transformer{pol}
	if joint != nil {
		trained = append(trained, joint.M)
	}
	return runTrainer(io, o.Optim, groups, seed, trained, func(s *torch.Scope, step int64, micro int, t *train.Timer) (train.Micro, error) {
		batch := step / int64(o.UpdatesPerBatch)
		cur := rollouts[micro]
		if cur == nil || step%int64(o.UpdatesPerBatch) == 0 {
			var err error
			if cur, err = makeRollout(pol, ref, rmA, c, data, o, seed, batch, micro, t, io); err != nil {
				return train.Micro{}, err
			}
			rollouts[micro] = cur
		}
		metrics := map[string]float64{"reward": cur.rewardMean, "response_len": cur.responseLen}
		var total *torch.Tensor
		var err error
		t.Phase("update_forward", func() {
			q, e := Sequences(s, pol, c, cur.prompts, cur.responses)
			if e != nil {
				err = e
				return
			}
			N, W := int64(len(cur.prompts)), int64(q.Mask.Size(1))
			logp := pol.TokenLogProbs(q.Batch)
			dev := pol.Device
			old := s.Own(torch.FromSlice(cur.old, N, W)).ToDevice(dev)
			refLP := s.Own(torch.FromSlice(cur.ref, N, W)).ToDevice(dev)
			adv := s.Own(torch.FromSlice(cur.adv)).ToDevice(dev)
			pg, st := loss.PolicyGradient(logp, old, adv, q.Mask, loss.PGOptions{ClipEps: o.ClipEps, NormConst: norm})
			metrics["clip_frac"], metrics["ratio"] = st.ClipFrac, st.MeanRatio
			terms := []loss.Term{{Name: "policy", Weight: 1, Loss: pg}}
			if o.KL > 0 {
				terms = append(terms, loss.Term{Name: "kl", Weight: o.KL, Loss: loss.KL(logp, refLP, q.Mask, est, norm)})
			}
			r := stepRand(seed, step, micro)
			if o.Unlikelihood > 0 && len(data.Harmful) > 0 {
				idx := pick(r, len(data.Harmful), o.Prompts)
				lo, hi := io.shard(len(idx))
				idx = idx[lo:hi]
				ps, rs := subset(harm, idx)
				hq, e := Sequences(s, pol, c, ps, rs)
				if e != nil {
					err = e
					return
				}
				terms = append(terms, loss.Term{Name: "unlikelihood", Weight: o.Unlikelihood,
					Loss: loss.Unlikelihood(pol.TokenLogProbs(hq.Batch), hq.Mask, norm)})
			}
			if o.Replay > 0 && len(data.Replay) > 0 {
				idx := pick(r, len(data.Replay), o.ReplayBatch)
				lo, hi := io.shard(len(idx))
				l, e := lmLoss(s, pol, c, replay, idx, lo, hi)
				if e != nil {
					err = e
					return
				}
				terms = append(terms, loss.Term{Name: "replay", Weight: o.Replay, Loss: l})
			}
			if joint != nil && joint.BT > 0 {
				l, rmMetrics, e := jointOb.loss(s, r, io)
				if e != nil {
					err = e
					return
				}
				terms = append(terms, loss.Term{Name: "rm", Weight: joint.BT, Loss: l})
				for k, v := range rmMetrics {
					metrics["rm_"+k] = v
				}
			}
			var parts map[string]float64
			total, parts = loss.Weighted(terms...)
			for k, v := range parts {
				metrics["loss/"+k] = v
			}
		})
		return train.Micro{Loss: total, Metrics: metrics}, err
	})
}

func pick(r interface{ Intn(int) int }, n, k int) []int {
	idx := make([]int, k)
	for i := range idx {
		idx[i] = r.Intn(n)
	}
	return idx
}

func subset(e encoded, idx []int) (ps, rs [][]int) {
	for _, j := range idx {
		ps, rs = append(ps, e.prompt[j]), append(rs, e.response[j])
	}
	return ps, rs
}

// makeRollout samples G responses for each of Prompts prompts with the
// current policy, scores them with the RM, computes Dr. GRPO advantages
// (reward minus group mean), and the old and reference log-probabilities.
func makeRollout(pol, ref *model.Transformer, rm *RM, c *Codec, data PolicyData, o PolicyRepair, seed, batch int64, micro int, t *train.Timer, io RunIO) (*rollout, error) {
	r := stepRand(seed, batch, 1000+micro)
	nLook := int(float64(o.Prompts)*o.LookalikeRatio + 0.5)
	if len(data.Lookalikes) == 0 {
		nLook = 0
	}
	var texts []string
	for i := 0; i < o.Prompts-nLook; i++ {
		texts = append(texts, data.Prompts[r.Intn(len(data.Prompts))])
	}
	for i := 0; i < nLook; i++ {
		texts = append(texts, data.Lookalikes[r.Intn(len(data.Lookalikes))])
	}
	// Each rank samples the groups of its share of the prompts; a group never
	// spans ranks, so its advantages are computed where it was sampled.
	lo, hi := io.shard(len(texts))
	texts = texts[lo:hi]
	rank := 0
	if io.DP != nil {
		rank = io.DP.Rank()
	}
	ro := &rollout{}
	var samples [][]string
	var err error
	t.Phase("generation", func() {
		p := &Policy{M: pol, C: c, MaxNew: o.MaxNewTokens, Temperature: o.Temperature, Batch: 256, Seed: uint64(seed)*1_000_003 + uint64(batch)*131 + uint64(rank) + uint64(micro)*7919}
		samples, err = p.Sample(context.Background(), texts, o.Group)
	})
	if err != nil {
		return nil, err
	}
	var flatP, flatR []string
	for i, pr := range texts {
		for _, resp := range samples[i] {
			flatP, flatR = append(flatP, pr), append(flatR, resp)
			ro.prompts = append(ro.prompts, c.Prompt(pr))
			ro.responses = append(ro.responses, c.Response(resp))
			ro.responseLen += float64(len(ro.responses[len(ro.responses)-1]))
		}
	}
	ro.responseLen /= float64(max(len(ro.responses), 1))
	var rewards []float64
	t.Phase("scoring", func() { rewards, err = rm.Score(context.Background(), flatP, flatR) })
	if err != nil {
		return nil, err
	}
	adv, err := loss.GroupAdvantages(rewards, o.Group)
	if err != nil {
		return nil, err
	}
	var sum float64
	for i, a := range adv {
		ro.adv = append(ro.adv, float32(a))
		sum += rewards[i]
	}
	ro.rewardMean = sum / float64(len(rewards))
	var seqErr error
	t.Phase("reference", func() {
		err = torch.Try(func() {
			torch.NoGrad(func() {
				s := torch.NewScope()
				defer s.Close()
				q, e := Sequences(s, pol, c, ro.prompts, ro.responses)
				if e != nil {
					seqErr = fmt.Errorf("rollout: %w", e) // keeps the chain
					return
				}
				ro.width = int(q.Mask.Size(1))
				ro.old = pol.TokenLogProbs(q.Batch).To(torch.Float32).Float32s()
				refLP := func() { ro.ref = ref.TokenLogProbs(q.Batch).To(torch.Float32).Float32s() }
				if ref == pol {
					pol.WithoutAdapters(refLP) // LoRA: the reference is the base, adapters off
				} else {
					refLP()
				}
			})
		})
	})
	if err == nil {
		err = seqErr
	}
	return ro, err
}
