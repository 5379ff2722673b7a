package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/tokenizer"
)

// prepareLoRA readies a loaded model for training under its [lora.<what>]
// table. With the table, a model loaded from a plain directory gets fresh
// adapters and one loaded from an adapter directory goes on training that
// adapter. Without it, a model loaded from an adapter directory has the
// adapter merged in, and is trained in full.
func prepareLoRA(m *model.Transformer, l model.LoRA, dir, what string, seed int64) error {
	switch {
	case !l.Enabled() && m.HasLoRA():
		if err := m.MergeLoRA(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: merged the adapter of %s into its base, to train the whole model (no [lora.%s] table)\n", what, dir, what)
	case l.Enabled() && m.HasLoRA():
		fmt.Fprintf(os.Stderr, "%s: training on the adapter of %s (r=%d); its adapter_config.json, not [lora.%s], sets the adapters\n", what, dir, m.LoRAConfig().R, what)
	case l.Enabled():
		if dir == "" {
			return fmt.Errorf("[lora.%s] needs a base model directory (models.%s): adapters on a model started from scratch would have no base to be saved against", what, what)
		}
		if err := m.AddLoRA(l, uint64(seed)+0x10a); err != nil {
			return fmt.Errorf("%s (%s): %w", what, dir, err)
		}
	}
	return nil
}

// baseDir is the directory a model's adapters are saved against: the
// adapter directory's own base, or the model directory itself.
func baseDir(dir string) (string, error) {
	if model.IsAdapterDir(dir) {
		info, err := model.ReadAdapterConfig(dir)
		if err != nil {
			return "", err
		}
		dir = info.Base
	}
	return filepath.Abs(dir)
}

// saveTrained writes a trained model to dir: a PEFT adapter directory
// against the base of from when it has adapters, else a whole Hugging Face
// model directory.
func saveTrained(m *model.Transformer, tok *tokenizer.Tokenizer, dir string, kind model.Kind, from string) error {
	if !m.HasLoRA() {
		return m.Save(dir, kind, tok)
	}
	base, err := baseDir(from)
	if err != nil {
		return err
	}
	return m.SaveAdapter(dir, kind, base, tok)
}
