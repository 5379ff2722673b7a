package repair

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunConfigRenamedAndPlacement: keys of the other configs' older names
// are refused with the new name, and a bad device or dtype names the file,
// line and key (docs/config.md).
func TestRunConfigRenamedAndPlacement(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[run]\nseed = 1\nout_dir = \"o\"\n", "r.toml:3: run.out_dir: renamed to run.out"},
		{"[rm]\nsteps = 3\n", "r.toml:1: rm: renamed to train_rm"},
		{"joint_bt = 2.0\n", "r.toml:1: joint_bt: renamed to joint.bt"},
		{"[models]\ndtype = \"bfloat16\"\n", "r.toml:2: models.dtype: renamed to run.dtype"},
		{"[run]\nseed = 1\ndevice = \"gpu\"\n", "r.toml:3: run.device: bad device \"gpu\""},
		{"[run]\ndtype = \"int8\"\n", "r.toml:2: run.dtype: \"int8\" is not float32, bfloat16 or float16"},
	} {
		path := filepath.Join(t.TempDir(), "r.toml")
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadRunConfig(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
	// cuda:9 is spelled right: the loader accepts it, and the machine check
	// (placement's Resolve, at the command's start) refuses it.
	path := filepath.Join(t.TempDir(), "r.toml")
	os.WriteFile(path, []byte("[run]\ndevice = \"cuda:9\"\n"), 0o644)
	c, err := LoadRunConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Placement(path).Resolve(); err == nil || !strings.Contains(err.Error(), "r.toml:2: run.device: cuda:9: no ") {
		t.Errorf("cuda:9: %v", err)
	}
}
