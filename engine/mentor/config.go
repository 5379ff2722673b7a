package mentor

import (
	"os"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
)

// RunConfig is the discovery part of `ares redteam --config run.toml`. The
// command's full config embeds it (go-toml flattens embedded structs) next
// to the model sections, and decodes the file with world.DecodeStrict so
// unknown keys are rejected with file, line and key.
//
//	[run]      name, out_dir
//	[world]    library (path; empty: the embedded default)
//	[redteam]  budget, k, batch, seed, rm_scale, write_all
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

// RunSection names a run and its output directory.
type RunSection struct {
	Name   string `toml:"name"`
	OutDir string `toml:"out_dir"`
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
	if err := world.DecodeStrict(data, path, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(path, data); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the [redteam] and [detect] tables (Config.Validate and
// detect.Thresholds.Validate) of the config read from path, whose text is
// data (nil: read path); the first failure names the file, line and key.
func (c *RunConfig) Validate(path string, data []byte) error {
	err := cfgcheck.Under("redteam", c.Redteam.Validate())
	if err == nil {
		err = cfgcheck.Under("detect", c.Detect.Validate())
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
