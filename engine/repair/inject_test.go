package repair

import (
	"testing"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/torch/faulttest"
)

// TestTrainingFaults fails native calls throughout the optimizer set-up and
// the steps of SFT, reward-model training, RM repair and policy repair (Dr.
// GRPO with rollouts, KL, unlikelihood and replay; joint mode too) on the
// toy world: each failure is an error wrapping the *torch.Error, no panic
// escapes, and the step's scope, the rollouts and the optimizer state are
// freed.
func TestTrainingFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("sweeps hundreds of failure points")
	}
	c, cfg := toy(t)
	pol, err := model.Init(cfg, model.CausalLM, 1, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close()
	ref, err := model.Init(cfg, model.CausalLM, 2, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	rm, err := model.Init(cfg, model.Reward, 3, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	sft := []Example{{"say red", "red"}, {"say blue", "blue"}}
	pairs := []Pair{{"say red", "safe", "bad"}, {"say blue", "safe", "bad red"}}
	// A zero learning rate keeps the weights, so that every run takes the
	// same path and makes the same native calls (the optimizer still runs).
	opt := Optim{Steps: 2, Batch: 2, LR: 0, Clip: 1}
	o := faulttest.Options{MaxPoints: 150}

	faulttest.Sweep(t, "SFT", func() error {
		_, err := SFT(pol, c, sft, Optim{Steps: 2, Batch: 2, LR: 0, Clip: 1, Accum: 2}, 1, RunIO{})
		return err
	}, o)
	faulttest.Sweep(t, "TrainRM", func() error {
		_, err := TrainRM(rm, c, pairs, opt, loss.BTOptions{}, 1, RunIO{})
		return err
	}, o)
	faulttest.Sweep(t, "RepairRM", func() error {
		_, err := RepairRM(rm, c, pairs[:1], pairs, RMRepair{Optim: opt, ReplayRatio: 0.5, Anchor: 0.1, AnchorSize: 2}, 3, RunIO{})
		return err
	}, o)
	po := PolicyRepair{Optim: Optim{Steps: 2, Batch: 2, LR: 0, Clip: 1}, Prompts: 2, Group: 2, UpdatesPerBatch: 1,
		MaxNewTokens: 3, Temperature: 1, ClipEps: 0.2, Unlikelihood: 0.1, KL: 0.01, KLEstimator: "k3", Replay: 0.1, ReplayBatch: 2}
	data := PolicyData{Prompts: []string{"say red", "say blue"}, Harmful: []Example{{"say red", "bad"}}, Replay: []Example{{"say blue", "blue"}}}
	faulttest.Sweep(t, "RepairPolicy", func() error {
		_, err := RepairPolicy(pol, ref, rm, c, data, po, nil, 5, RunIO{})
		return err
	}, faulttest.Options{MaxPoints: 250})
	j := &JointRM{M: rm, Pairs: pairs[:1], Replay: pairs,
		Repair: RMRepair{Optim: Optim{Steps: 2, LR: 0, Batch: 2, Clip: 1}, ReplayRatio: 0.5, Anchor: 0.1, AnchorSize: 2}, BT: 1}
	faulttest.Sweep(t, "RepairPolicy joint", func() error {
		_, err := RepairPolicy(pol, ref, rm, c, data, po, j, 6, RunIO{})
		return err
	}, o)
}
