package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/internal/config/placement"
)

func init() {
	register(command{name: "lora", summary: "LoRA adapters in PEFT's format: merge an adapter into its base model",
		run: subcommands("lora", loraUsage, map[string]func([]string) error{"merge": loraMerge})})
}

const loraUsage = `usage:
  ares lora merge --adapter DIR --out DIR [--model DIR] [--dtype D]
      writes a Hugging Face model directory with the adapter folded in,
      W + s·B·A; --model defaults to the adapter's base_model_name_or_path.
      The base model directory is read, never written.`

func loraMerge(args []string) error {
	fs := newFlagSet("lora merge")
	var base, adapter, out, dtype string
	fs.StringVar(&base, "model", "", "base model directory (default: the adapter's base_model_name_or_path)")
	fs.StringVar(&adapter, "adapter", "", "PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
	fs.StringVar(&out, "out", "", "output model directory")
	fs.StringVar(&dtype, "dtype", "", "dtype of the merged weights (default float32)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if adapter == "" || out == "" {
		return usagef("--adapter and --out are required")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %v", fs.Args())
	}
	info, err := model.ReadAdapterConfig(adapter)
	if err != nil {
		return err
	}
	if base == "" {
		base = info.Base
	}
	if same, _ := sameDir(base, out); same {
		return fmt.Errorf("--out %s is the base model directory: the base is never overwritten; choose another directory", out)
	}
	var o model.Options
	if dtype != "" {
		dt, err := placement.DType(dtype)
		if err != nil {
			return usagef("--dtype: %v", err)
		}
		o.DType = dt
	}
	m, err := model.Load(base, info.Kind, o)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.HasLoRA() {
		return fmt.Errorf("--model %s is itself an adapter directory: merge that one first", base)
	}
	if err := m.LoadAdapter(adapter); err != nil {
		return err
	}
	if err := m.MergeLoRA(); err != nil {
		return err
	}
	tok, terr := model.LoadTokenizer(adapter)
	if terr != nil {
		tok, terr = model.LoadTokenizer(base)
	}
	if terr != nil {
		fmt.Fprintf(os.Stderr, "lora merge: no tokenizer written (%v)\n", terr)
		tok = nil
	}
	if err := m.Save(out, info.Kind, tok); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "merged %s (r=%d, %d target modules) into %s: wrote %s\n", adapter, info.LoRA.R, len(info.LoRA.TargetModules), base, out)
	return nil
}

// sameDir reports whether a and b name the same existing directory.
func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if os.SameFile(sa, sb) {
		return true, nil
	}
	aa, _ := filepath.Abs(a)
	bb, _ := filepath.Abs(b)
	return aa == bb, nil
}
