package repair

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/tokenizer"
)

// A toy world: the policy should answer "say X" with "X", and the RM should
// prefer "safe" to "bad".
func toy(t *testing.T) (*Codec, *model.Config) {
	t.Helper()
	var texts []string
	for _, w := range []string{"red", "green", "blue", "safe", "bad", "say"} {
		texts = append(texts, strings.Repeat(w+" ", 20))
	}
	return codecAndConfig(t, texts, 280, 64)
}

// codecAndConfig trains a tokenizer of vocab entries (with the chat
// specials) on texts and returns its codec and the config of a one-layer
// Llama over it with a context of maxPos.
func codecAndConfig(t *testing.T, texts []string, vocab, maxPos int) (*Codec, *model.Config) {
	t.Helper()
	tok, err := tokenizer.Train(texts, tokenizer.TrainOptions{VocabSize: vocab, Special: tokenizer.ChatSpecials})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(tok)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.ParseConfig(fmt.Appendf(nil, `{"model_type":"llama","vocab_size":%d,"hidden_size":32,"num_hidden_layers":1,
		"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":64,"max_position_embeddings":%d,"tie_word_embeddings":true}`,
		tok.VocabSize(), maxPos))
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

func TestSFTLearnsAndRMTrains(t *testing.T) {
	c, cfg := toy(t)
	pol, err := model.Init(cfg, model.CausalLM, 1, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close()
	data := []Example{{"say red", "red"}, {"say green", "green"}, {"say blue", "blue"}}
	base := torch.LiveTensors()
	tr, err := SFT(pol, c, data, Optim{Steps: 150, Batch: 8, LR: 1e-2, Warmup: 5, Clip: 1}, 1, RunIO{Metrics: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Step != 150 || torch.LiveTensors() != base {
		t.Fatalf("steps %d, live tensors %d (baseline %d)", tr.Step, torch.LiveTensors(), base)
	}
	p := &Policy{M: pol, C: c, MaxNew: 4, Temperature: 0}
	out, err := p.Sample(context.Background(), []string{"say green", "say blue"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if out[0][0] != "green" || out[1][0] != "blue" {
		t.Fatalf("SFT policy answers %q", out)
	}
	rm, _ := model.Init(cfg, model.Reward, 2, model.Options{})
	defer rm.Close()
	pairs := []Pair{{"say red", "safe", "bad"}, {"say blue", "safe", "bad red"}}
	r := &RM{M: rm, C: c}
	if _, err := TrainRM(rm, c, pairs, Optim{Steps: 40, Batch: 4, LR: 1e-2, Clip: 1}, loss.BTOptions{}, 1, RunIO{}); err != nil {
		t.Fatal(err)
	}
	if acc, err := PairAccuracy(context.Background(), r, pairs); err != nil || acc != 1 {
		t.Fatalf("RM accuracy %v %v", acc, err)
	}
	// Stage 1 flips a preference the RM learned wrong, with replay keeping the rest.
	flip := []Pair{{"say green", "green", "bad"}}
	if _, err := RepairRM(rm, c, flip, pairs, RMRepair{Optim: Optim{Steps: 40, Batch: 4, LR: 1e-2, Clip: 1}, ReplayRatio: 0.5, Anchor: 0.1, AnchorSize: 2}, 3, RunIO{}); err != nil {
		t.Fatal(err)
	}
	acc1, _ := PairAccuracy(context.Background(), r, flip)
	acc2, _ := PairAccuracy(context.Background(), r, pairs)
	if acc1 != 1 || acc2 != 1 {
		t.Fatalf("after RM repair: repaired %v, replay %v", acc1, acc2)
	}
}

// TestPolicyRepairRaisesReward: a policy that answers "say red" with "red"
// or "bad" about equally, an RM that prefers "red"; Dr. GRPO must move the
// policy to "red", and joint mode must update the RM too.
func TestPolicyRepairRaisesReward(t *testing.T) {
	c, cfg := toy(t)
	pol, _ := model.Init(cfg, model.CausalLM, 1, model.Options{})
	defer pol.Close()
	mixed := []Example{{"say red", "red"}, {"say red", "bad"}, {"say blue", "blue"}}
	if _, err := SFT(pol, c, mixed, Optim{Steps: 120, Batch: 8, LR: 1e-2, Clip: 1}, 2, RunIO{}); err != nil {
		t.Fatal(err)
	}
	ref, _ := model.Load(saveTmp(t, pol, c), model.CausalLM, model.Options{})
	defer ref.Close()
	rm, _ := model.Init(cfg, model.Reward, 2, model.Options{})
	defer rm.Close()
	if _, err := TrainRM(rm, c, []Pair{{"say red", "red", "bad"}}, Optim{Steps: 40, Batch: 4, LR: 1e-2, Clip: 1}, loss.BTOptions{}, 1, RunIO{}); err != nil {
		t.Fatal(err)
	}
	redRate := func() float64 {
		p := &Policy{M: pol, C: c, MaxNew: 4, Temperature: 1, Seed: 99}
		out, _ := p.Sample(context.Background(), []string{"say red"}, 64)
		var n float64
		for _, o := range out[0] {
			if o == "red" {
				n++
			}
		}
		return n / 64
	}
	before := redRate()
	o := PolicyRepair{Optim: Optim{Steps: 16, Batch: 8, LR: 5e-3, Clip: 1}, Prompts: 4, Group: 8, UpdatesPerBatch: 2,
		MaxNewTokens: 4, Temperature: 1, ClipEps: 0.2, Unlikelihood: 0.1, KL: 0.01, KLEstimator: "k3", Replay: 0.1, ReplayBatch: 2}
	data := PolicyData{Prompts: []string{"say red"}, Harmful: []Example{{"say red", "bad"}}, Replay: []Example{{"say blue", "blue"}}}
	tr, err := RepairPolicy(pol, ref, rm, c, data, o, nil, 5, RunIO{})
	if err != nil {
		t.Fatal(err)
	}
	after := redRate()
	t.Logf("P(red) before %.2f, after %.2f", before, after)
	if !(before < 0.6 && after > before+0.3) || tr.NonFiniteSeen != 0 {
		t.Fatalf("Dr. GRPO did not move the policy to the preferred answer: %.2f -> %.2f", before, after)
	}
	// Joint mode: the RM is updated in the same steps.
	var w0, w1 []byte
	torch.Try(func() { w0 = rm.Tensors()[len(rm.Tensors())-1].Bytes() })
	// Its loss is stage 1's: repair pairs, replay and the anchor.
	j := &JointRM{M: rm, Pairs: []Pair{{"say red", "red", "bad"}}, Replay: []Pair{{"say blue", "blue", "bad"}},
		Repair: RMRepair{Optim: Optim{Steps: 50, LR: 1e-2, Batch: 2, Clip: 1}, ReplayRatio: 0.5, Anchor: 0.1, AnchorSize: 4}, BT: 1}
	o.Steps = 2
	var jm bytes.Buffer
	if _, err := RepairPolicy(pol, ref, rm, c, data, o, j, 6, RunIO{Metrics: &jm}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"loss/rm"`, `"rm_accuracy"`, `"rm_replay_accuracy"`, `"rm_anchor"`} {
		if !strings.Contains(jm.String(), k) {
			t.Fatalf("joint metrics lack %s: %s", k, jm.String())
		}
	}
	torch.Try(func() { w1 = rm.Tensors()[len(rm.Tensors())-1].Bytes() })
	if string(w0) == string(w1) {
		t.Fatal("joint mode did not update the RM")
	}
	if _, err := RepairPolicy(pol, ref, rm, c, data, PolicyRepair{Optim: o.Optim, Prompts: 1, Group: 2, UpdatesPerBatch: 3, MaxNewTokens: 2, KLEstimator: "k3"}, nil, 1, RunIO{CheckpointEvery: 4}); err == nil {
		t.Fatal("checkpoint_every not a multiple of updates_per_batch was accepted")
	}
}

func saveTmp(t *testing.T, m *model.Transformer, c *Codec) string {
	dir := t.TempDir()
	if err := m.Save(dir, model.CausalLM, c.Tok); err != nil {
		t.Fatal(err)
	}
	return dir
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadRunConfig("../../examples/repair.toml")
	if err != nil {
		t.Fatal(err)
	}
	if d := DefaultRunConfig(); c.PolicyRepair != d.PolicyRepair || c.RMRepair != d.RMRepair || c.SFT != d.SFT {
		t.Fatalf("examples/repair.toml does not show the defaults:\n%+v\n%+v", c.PolicyRepair, d.PolicyRepair)
	}
}
