package repair

import (
	"bytes"
	"fmt"
	"os"

	"github.com/pelletier/go-toml/v2"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
	"github.com/ares-rlhf/ares/internal/config"
	"github.com/ares-rlhf/ares/internal/config/placement"
	"github.com/ares-rlhf/ares/internal/jsonl"
)

// RunConfig is the TOML file of `ares sft`, `ares train-rm` and `ares repair`.
// Every table and key is listed in docs/config.md and shown in
// examples/repair.toml; unknown and renamed keys are rejected with the file,
// line and key.
type RunConfig struct {
	Run struct {
		Seed            int64  `toml:"seed"`
		Out             string `toml:"out"`
		Device          string `toml:"device"`
		DType           string `toml:"dtype"`
		CheckpointEvery int64  `toml:"checkpoint_every"`
		KeepLast        int    `toml:"keep_last"`
		MaxNonFinite    int    `toml:"max_nonfinite"`
	} `toml:"run"`
	Models struct {
		// Policy and RM are Hugging Face model directories (config.json,
		// safetensors, tokenizer.json with the chat template's tokens).
		Policy string `toml:"policy"`
		RM     string `toml:"rm"`
		// Reference is the frozen policy of the KL term (default: Policy).
		Reference string `toml:"reference"`
	} `toml:"models"`
	Data struct {
		// World uses the embedded synthetic world's data sets where a file is
		// not given (SFT set, preference set, replay set, benign data).
		World      bool   `toml:"world"`
		Findings   string `toml:"findings"`   // findings JSONL of `ares redteam`
		SFT        string `toml:"sft"`        // {"prompt", "response"} per line
		Pairs      string `toml:"pairs"`      // {"prompt", "chosen", "rejected"} per line
		Replay     string `toml:"replay"`     // preference pairs replayed against forgetting
		Benign     string `toml:"benign"`     // {"prompt", "response"}: LM replay in policy repair
		Lookalikes string `toml:"lookalikes"` // {"prompt"}: benign look-alike prompts
	} `toml:"data"`
	SFT          Optim        `toml:"sft"`
	TrainRM      Optim        `toml:"train_rm"`
	RMRepair     RMRepair     `toml:"rm_repair"`
	PolicyRepair PolicyRepair `toml:"policy_repair"`
	Joint        Joint        `toml:"joint"`
	// LoRA trains low-rank adapters instead of the whole model, per model
	// (PEFT's LoraConfig keys; r = 0, the default, trains in full). With
	// [lora.policy] the KL reference is the policy with its adapters off,
	// unless models.reference names another model.
	LoRA LoRATables `toml:"lora"`
}

// Joint is the [joint] table of the joint mode (one loss updates the
// policy and the RM in each step).
type Joint struct {
	// BT weights the RM's Bradley-Terry objective in the joint loss.
	BT float64 `toml:"bt"`
}

// LoRATables are the [lora.policy] and [lora.rm] tables.
type LoRATables struct {
	Policy model.LoRA `toml:"policy"`
	RM     model.LoRA `toml:"rm"`
}

// Validate checks both tables.
func (l *LoRATables) Validate() error {
	if err := l.Policy.Validate(); err != nil {
		return cfgcheck.Under("policy", err)
	}
	return cfgcheck.Under("rm", l.RM.Validate())
}

// DefaultRunConfig has the defaults every unset field takes.
func DefaultRunConfig() RunConfig {
	var c RunConfig
	c.Run.Seed, c.Run.Out, c.Run.Device, c.Run.DType = 1, "out/repair", "cpu", "float32"
	c.Run.CheckpointEvery, c.Run.KeepLast, c.Run.MaxNonFinite = 50, 3, 10
	c.SFT = Optim{Steps: 500, Batch: 32, Accum: 1, LR: 3e-3, Warmup: 30, MinLRRatio: 0.1, Clip: 1}
	c.TrainRM = Optim{Steps: 400, Batch: 32, Accum: 1, LR: 2e-3, Warmup: 30, MinLRRatio: 0.1, Clip: 1}
	c.RMRepair = RMRepair{Optim: Optim{Steps: 200, Batch: 32, Accum: 1, LR: 1e-3, Warmup: 10, MinLRRatio: 0.1, Clip: 1},
		ReplayRatio: 0.5, Anchor: 0.1, AnchorSize: 256, AnchorBatch: 32}
	c.PolicyRepair = PolicyRepair{Optim: Optim{Steps: 120, Batch: 16, Accum: 1, LR: 5e-4, Warmup: 5, MinLRRatio: 0.2, Clip: 1},
		Prompts: 16, Group: 4, UpdatesPerBatch: 2, MaxNewTokens: 40, Temperature: 1, ClipEps: 0.2,
		Unlikelihood: 0.5, KL: 0.05, KLEstimator: "k3", Replay: 1.0, ReplayBatch: 16, LookalikeRatio: 0.2}
	c.Joint.BT = 1
	return c
}

// LoadRunConfig reads a run config over the defaults and checks it.
func LoadRunConfig(path string) (*RunConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := DefaultRunConfig()
	if err := config.Decode(b, path, config.Run, &c); err != nil {
		return nil, err
	}
	config.RelativeTo(path, &c.Models.Policy, &c.Models.RM, &c.Models.Reference, &c.Data.Findings, &c.Data.SFT,
		&c.Data.Pairs, &c.Data.Replay, &c.Data.Benign, &c.Data.Lookalikes)
	if err := c.validate(path, b); err != nil {
		return nil, err
	}
	if _, _, err := c.Placement(path).Parse(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Placement is run.device and run.dtype of the config read from path ("":
// not read from a file), for placement's parsers.
func (c *RunConfig) Placement(path string) placement.Spec {
	return placement.Spec{Device: c.Run.Device, DType: c.Run.DType, File: path, DeviceKey: "run.device", DTypeKey: "run.dtype"}
}

// Validate checks values the TOML types cannot: every number finite and in
// range, with the same checks as every other loader of these tables
// (Optim.Validate, RMRepair.Validate, PolicyRepair.Validate). The first
// failure, in a fixed order, names the file, the line and the key.
func (c *RunConfig) Validate(path string) error { return c.validate(path, nil) }

// validate is Validate on the config's text data (nil: read path).
func (c *RunConfig) validate(path string, data []byte) error {
	return cfgcheck.Locate(path, data, c.check())
}

func (c *RunConfig) check() error {
	k := cfgcheck.New("")
	k.IntIn("run.keep_last", int64(c.Run.KeepLast), 1, cfgcheck.MaxCount)
	k.IntIn("run.checkpoint_every", c.Run.CheckpointEvery, 0, cfgcheck.MaxSteps)
	k.IntIn("run.max_nonfinite", int64(c.Run.MaxNonFinite), 0, cfgcheck.MaxSteps)
	k.Between("joint.bt", c.Joint.BT, 0, cfgcheck.MaxWeight)
	if err := k.Err(); err != nil {
		return err
	}
	for _, st := range []struct {
		table string
		err   error
	}{
		{"sft", c.SFT.Validate()},
		{"train_rm", c.TrainRM.Validate()},
		{"rm_repair", c.RMRepair.Validate()},
		{"policy_repair", c.PolicyRepair.Validate()},
		{"lora", c.LoRA.Validate()},
	} {
		if st.err != nil {
			return cfgcheck.Under(st.table, st.err)
		}
	}
	// grad_accum 0 would mean 1 to the trainer, but this file has always
	// asked for at least 1.
	for _, st := range []struct {
		table string
		o     Optim
	}{{"sft", c.SFT}, {"train_rm", c.TrainRM}, {"rm_repair", c.RMRepair.Optim}, {"policy_repair", c.PolicyRepair.Optim}} {
		if st.o.Accum < 1 {
			return &cfgcheck.Error{Key: st.table + ".grad_accum", Msg: fmt.Sprintf("%d is below 1", st.o.Accum)}
		}
	}
	return nil
}

// TOML renders the resolved config, written next to a run's outputs so that
// it can be rerun.
func (c *RunConfig) TOML() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ReadExamples reads {"prompt", "response"} JSONL.
func ReadExamples(path string) ([]Example, error) {
	type row struct {
		Prompt   string `json:"prompt"`
		Response string `json:"response"`
	}
	rows, err := readJSONL[row](path, func(r row) error {
		if r.Prompt == "" || r.Response == "" {
			return fmt.Errorf("prompt and response are required")
		}
		return nil
	})
	out := make([]Example, len(rows))
	for i, r := range rows {
		out[i] = Example{r.Prompt, r.Response}
	}
	return out, err
}

// ReadPairs reads {"prompt", "chosen", "rejected"} JSONL.
func ReadPairs(path string) ([]Pair, error) {
	type row struct {
		Prompt   string `json:"prompt"`
		Chosen   string `json:"chosen"`
		Rejected string `json:"rejected"`
	}
	rows, err := readJSONL[row](path, func(r row) error {
		if r.Prompt == "" || r.Chosen == "" || r.Rejected == "" {
			return fmt.Errorf("prompt, chosen and rejected are required")
		}
		return nil
	})
	out := make([]Pair, len(rows))
	for i, r := range rows {
		out[i] = Pair{r.Prompt, r.Chosen, r.Rejected}
	}
	return out, err
}

// ReadPrompts reads {"prompt"} JSONL.
func ReadPrompts(path string) ([]string, error) {
	type row struct {
		Prompt string `json:"prompt"`
	}
	rows, err := readJSONL[row](path, func(r row) error {
		if r.Prompt == "" {
			return fmt.Errorf("prompt is required")
		}
		return nil
	})
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Prompt
	}
	return out, err
}

// readJSONL reads one record per line; unknown fields are ignored (these
// files often carry extra columns), bad lines are errors naming file:line.
func readJSONL[T any](path string, check func(T) error) ([]T, error) {
	vs, _, err := jsonl.ReadFile(path, false, func(v *T) error { return check(*v) })
	return vs, err
}
