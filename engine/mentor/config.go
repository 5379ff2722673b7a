package mentor

import (
	"os"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
	"github.com/ares-rlhf/ares/internal/config"
)

// RunConfig is the discovery part of `ares redteam --config run.toml`. The
// command's full config embeds it (go-toml flattens embedded structs) next
// to the model sections, and decodes the file with config.Decode so unknown
// and renamed keys are rejected with file, line and key (docs/config.md).
//
//	[run]      name, out, seed, device, dtype, threads
//	[world]    library (path; empty: the embedded default)
//	[redteam]  budget, k, batch, rm_scale, write_all (the seed is run.seed)
//	[redteam.sampler]  kind, warmup_rounds, eta, cap, max_weight, broadcast, explore, mutate
//	[detect]   harm, policy_harm_rate, rm_mode, rm_high, rm_margin, a_margin
//	[judge]    kind, model, [judge.http] ..., [judge.command] ...
type RunConfig struct {
	Run     RunSection        `toml:"run"`
	World   WorldSection      `toml:"world"`
	Redteam Config            `toml:"redteam"`
	Detect  detect.Thresholds `toml:"detect"`
	Judge   judge.Config      `toml:"judge"`
}

// RunSection is the [run] table of `ares redteam`: the run's name, output
// directory and seed (of the sampler and the policy's sampling), and where
// the command puts the models (read by the command that loads them).
type RunSection struct {
	Name string `toml:"name"`
	Out  string `toml:"out"`
	Seed int64  `toml:"seed"`
	// Device ("cpu", "cuda", "cuda:N") and DType ("float32", "bfloat16",
	// "float16") of both models; Threads is libtorch's intra-op thread
	// count (0: its default).
	Device  string `toml:"device"`
	DType   string `toml:"dtype"`
	Threads int    `toml:"threads"`
}

// WorldSection selects the component library.
type WorldSection struct {
	// Library is a TOML component library; empty means the embedded default.
	Library string `toml:"library"`
}

// LoadRunConfig reads a run config that holds only the discovery sections.
func LoadRunConfig(path string) (*RunConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c RunConfig
	if err := c.Decode(data, path, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(path, data); err != nil {
		return nil, err
	}
	return &c, nil
}

// Decode reads the TOML text data of the file path into full, c itself or
// a config that embeds c (the command's, with its model tables), with
// config.Decode; then run.seed becomes the red-teaming seed.
func (c *RunConfig) Decode(data []byte, path string, full any) error {
	if err := config.Decode(data, path, config.Redteam, full); err != nil {
		return err
	}
	c.Redteam.Seed = c.Run.Seed
	return nil
}

// Validate checks the [redteam], [detect] and [judge] tables
// (Config.Validate, detect.Thresholds.Validate, judge.Config.Validate) of the
// config read from path, whose text is data (nil: read path); the first
// failure names the file, line and key.
func (c *RunConfig) Validate(path string, data []byte) error {
	err := cfgcheck.Under("redteam", c.Redteam.Validate())
	if err == nil {
		err = cfgcheck.Under("detect", c.Detect.Validate())
	}
	if err == nil {
		err = c.Judge.Validate()
	}
	return cfgcheck.Locate(path, data, err)
}

// Library loads the configured component library.
func (c *RunConfig) Library() (*world.Library, error) {
	if c.World.Library == "" {
		return world.Default(), nil
	}
	return world.LoadFile(c.World.Library)
}
