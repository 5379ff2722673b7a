package repair

import (
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
)

// TestRunConfigRenamedAndPlacement: keys of the other configs' older names
// are refused with the new name, and a bad device or dtype names the file,
// line and key (docs/config.md).
func TestRunConfigRenamedAndPlacement(t *testing.T) {
	cfgtest.WantLoadErrors(t, "r.toml", LoadRunConfig, []cfgtest.Case{
		{"[run]\nseed = 1\nout_dir = \"o\"\n", "r.toml:3: run.out_dir: renamed to run.out"},
		{"[rm]\nsteps = 3\n", "r.toml:1: rm: renamed to train_rm"},
		{"joint_bt = 2.0\n", "r.toml:1: joint_bt: renamed to joint.bt"},
		{"[models]\ndtype = \"bfloat16\"\n", "r.toml:2: models.dtype: renamed to run.dtype"},
		{"[run]\nseed = 1\ndevice = \"gpu\"\n", "r.toml:3: run.device: bad device \"gpu\""},
		{"[run]\ndtype = \"int8\"\n", "r.toml:2: run.dtype: \"int8\" is not float32, bfloat16 or float16"},
	})
	// cuda:9 is spelled right: the loader accepts it, and the machine check
	// (placement's Resolve, at the command's start) refuses it.
	path := cfgtest.Write(t, "r.toml", "[run]\ndevice = \"cuda:9\"\n")
	c, err := LoadRunConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Placement(path).Resolve(); err == nil || !strings.Contains(err.Error(), "r.toml:2: run.device: cuda:9: no ") {
		t.Errorf("cuda:9: %v", err)
	}
}
