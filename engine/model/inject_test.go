package model

import (
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/engine/torch/faulttest"
)

// TestGenerateFaults fails every native call of a generation in turn
// (greedy and sampled with top-k and top-p, each family): each failure is a
// Go error wrapping the *torch.Error, and the KV cache, the generator and
// every step's scope are freed.
func TestGenerateFaults(t *testing.T) {
	for _, name := range []string{"llama", "gpt2", "gemma3"} {
		m, err := Init(tinyConfigs()[name], CausalLM, 5, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []GenerateOptions{
			{MaxNewTokens: 3},
			{MaxNewTokens: 3, Temperature: 1, TopK: 5, TopP: 0.9, Seed: 7},
		} {
			faulttest.Sweep(t, name+" Generate", func() error {
				_, err := m.Generate(raggedBatch, o)
				return err
			}, faulttest.Options{MaxPoints: 200})
		}
		m.Close()
	}
}

// TestInitLoadFaults fails every native call of model set-up: Init of a
// policy and a reward model, Save, and Load. A failed set-up frees the
// parameters it had made.
func TestInitLoadFaults(t *testing.T) {
	for _, name := range []string{"llama", "gemma3"} {
		cfg := tinyConfigs()[name]
		for _, kind := range []Kind{CausalLM, Reward} {
			faulttest.Sweep(t, name+" Init", func() error {
				m, err := Init(cfg, kind, 1, Options{})
				if err == nil {
					m.Close()
				}
				return err
			}, faulttest.Options{})
		}
		m, err := Init(cfg, CausalLM, 1, Options{DType: torch.BFloat16})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		faulttest.Sweep(t, name+" Save", func() error { return m.Save(dir, CausalLM, nil) }, faulttest.Options{})
		m.Close()
		faulttest.Sweep(t, name+" Load", func() error {
			m, err := Load(dir, CausalLM, Options{})
			if err == nil {
				m.Close()
			}
			return err
		}, faulttest.Options{})
	}
}
