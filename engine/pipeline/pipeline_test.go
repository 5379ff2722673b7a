package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/tokenizer"
)

// tiny builds untrained policy, reference and RM on a toy tokenizer.
func tiny(t *testing.T) Models {
	t.Helper()
	var texts []string
	for _, w := range []string{"red", "blue", "safe", "bad", "say"} {
		texts = append(texts, strings.Repeat(w+" ", 20))
	}
	tok, err := tokenizer.Train(texts, tokenizer.TrainOptions{VocabSize: 280, Special: tokenizer.ChatSpecials})
	if err != nil {
		t.Fatal(err)
	}
	c, err := repair.NewCodec(tok)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.ParseConfig([]byte(fmt.Sprintf(`{"model_type":"llama","vocab_size":%d,"hidden_size":16,
		"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":32,"max_position_embeddings":64,"tie_word_embeddings":true}`, tok.VocabSize())))
	if err != nil {
		t.Fatal(err)
	}
	m := Models{Codec: c}
	for i, dst := range []**model.Transformer{&m.Policy, &m.Ref, &m.RM} {
		kind := model.CausalLM
		if i == 2 {
			kind = model.Reward
		}
		if *dst, err = model.Init(cfg, kind, 1, model.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*dst).Close)
	}
	return m
}

func finding(typ string) detect.Finding {
	p := probes.Probe{ID: "p-" + typ, Kind: probes.KindHarm, Prompt: "say red", YHarm: "bad", YSafe: "safe"}
	return detect.Finding{Type: typ, Probe: p, Thresholds: detect.Thresholds{Harm: 0.5},
		Samples: []detect.Sample{{Text: "bad bad", Harm: 1}, {Text: "safe", Harm: 0}}}
}

func opts(mode Mode) Options {
	o := Optim()
	return Options{Mode: mode, JointBT: 1, Seed: 3,
		RMRepair:     repair.RMRepair{Optim: o, ReplayRatio: 0.5, Anchor: 0.1, AnchorSize: 4},
		PolicyRepair: repair.PolicyRepair{Optim: o, Prompts: 2, Group: 2, UpdatesPerBatch: 1, MaxNewTokens: 4, Temperature: 1, ClipEps: 0.2, Unlikelihood: 0.5, KL: 0.05, KLEstimator: "k3", Replay: 0.5, ReplayBatch: 2}}
}

// Optim is a two-step schedule.
func Optim() repair.Optim { return repair.Optim{Steps: 2, Batch: 2, Accum: 1, LR: 1e-3, Clip: 1} }

// TestRepairStages checks, for every mode, which stages run and which are
// skipped when the findings have no data for them: the empty-stage
// behaviour is defined here once for the CLI, the demo and the study.
func TestRepairStages(t *testing.T) {
	m := tiny(t)
	base := torch.LiveTensors()
	d := Data{Replay: []repair.Pair{{Prompt: "say blue", Chosen: "blue", Rejected: "bad"}},
		Benign: []repair.Example{{Prompt: "say blue", Response: "blue"}}, Lookalikes: []string{"say blue"}}
	onlyA := []detect.Finding{finding(detect.TypeA)}
	onlyB := []detect.Finding{finding(detect.TypeB)}
	both := []detect.Finding{finding(detect.TypeC), finding(detect.TypeA)}
	cases := []struct {
		mode     Mode
		findings []detect.Finding
		ran      []string
		skipped  int
	}{
		{ModeRM, both, []string{StageRM}, 0},
		{ModeRM, onlyB, nil, 1},
		{ModePolicy, both, []string{StagePolicy}, 0},
		{ModePolicy, onlyA, nil, 1},
		{ModeBoth, both, []string{StageRM, StagePolicy}, 0},
		{ModeBoth, onlyA, []string{StageRM}, 1},
		{ModeBoth, onlyB, []string{StagePolicy}, 1},
		{ModeJoint, both, []string{StageJoint}, 0},
		{ModeJoint, onlyA, []string{StageRM}, 1},
		{ModeJoint, onlyB, []string{StagePolicy}, 1},
		{ModeJoint, nil, nil, 2},
	}
	for _, c := range cases {
		d.Findings = c.findings
		var ios, dones []string
		h := Hooks{
			IO: func(stage string, trained ...*model.Transformer) (repair.RunIO, func(), error) {
				ios = append(ios, fmt.Sprintf("%s/%d", stage, len(trained)))
				return repair.RunIO{}, func() {}, nil
			},
			Done: func(stage string) error { dones = append(dones, stage); return nil },
		}
		res, err := Repair(context.Background(), m, d, opts(c.mode), h)
		if err != nil {
			t.Fatalf("%s with %d findings: %v", c.mode, len(c.findings), err)
		}
		if !reflect.DeepEqual(res.Ran, c.ran) || len(res.Skipped) != c.skipped || !reflect.DeepEqual(dones, c.ran) || len(ios) != len(c.ran) {
			t.Errorf("%s with %d findings: ran %v (done %v, io %v), skipped %v; want ran %v, %d skipped", c.mode, len(c.findings), res.Ran, dones, ios, res.Skipped, c.ran, c.skipped)
		}
		for _, s := range ios {
			// The joint stage trains and shares all three models.
			if strings.HasPrefix(s, StageJoint+"/") && s != StageJoint+"/3" || strings.HasPrefix(s, StageRM+"/") && s != StageRM+"/1" {
				t.Errorf("%s: stage IO got the wrong models: %s", c.mode, s)
			}
		}
	}
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after the repairs, %d before", got, base)
	}
}

func TestRepairErrors(t *testing.T) {
	m := tiny(t)
	d := Data{Findings: []detect.Finding{finding(detect.TypeC)}}
	if _, err := Repair(context.Background(), m, d, opts("both-ish"), Hooks{}); err == nil || !strings.Contains(err.Error(), "not rm, policy, both or joint") {
		t.Fatalf("bad mode: %v", err)
	}
	if _, err := ParseMode("joint"); err != nil {
		t.Fatal(err)
	}
	noPolicy := Models{RM: m.RM, Codec: m.Codec}
	if _, err := Repair(context.Background(), noPolicy, d, opts(ModeBoth), Hooks{}); err == nil || !strings.Contains(err.Error(), "needs the policy") {
		t.Fatalf("policy stage without a policy: %v", err)
	}
	// A hook's failure stops the pipeline with the stage named; the RM
	// stage's result is kept, the policy stage never starts.
	boom := errors.New("disk full")
	var started []string
	res, err := Repair(context.Background(), m, d, opts(ModeBoth), Hooks{
		IO: func(stage string, _ ...*model.Transformer) (repair.RunIO, func(), error) {
			started = append(started, stage)
			return repair.RunIO{}, func() {}, nil
		},
		Done: func(stage string) error { return boom },
	})
	if !errors.Is(err, boom) || !reflect.DeepEqual(res.Ran, []string{StageRM}) || !reflect.DeepEqual(started, []string{StageRM}) {
		t.Fatalf("hook failure: err %v, ran %v, started %v", err, res.Ran, started)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Repair(ctx, m, d, opts(ModeBoth), Hooks{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

// TestRLHF runs the standard recipe (its repair-only terms, look-alike
// share and unlikelihood, are ignored) and rejects an empty prompt mix.
func TestRLHF(t *testing.T) {
	m := tiny(t)
	o := opts(ModePolicy).PolicyRepair
	o.LookalikeRatio = 0.5
	if err := RLHF(m.Policy, m.Ref, m.RM, m.Codec, []string{"say red", "say blue"}, []repair.Example{{Prompt: "say blue", Response: "blue"}}, o, 1, repair.RunIO{}); err != nil {
		t.Fatal(err)
	}
	if err := RLHF(m.Policy, m.Ref, m.RM, m.Codec, nil, nil, o, 1, repair.RunIO{}); err == nil {
		t.Fatal("RLHF with no prompts was accepted")
	}
}
