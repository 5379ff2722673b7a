package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
)

type optim struct {
	Steps int64   `toml:"steps"`
	LR    float64 `toml:"lr"`
}

type runFile struct {
	Run struct {
		Out    string `toml:"out"`
		Device string `toml:"device"`
	} `toml:"run"`
	Models struct {
		Policy string `toml:"policy"`
		RM     string `toml:"rm"`
	} `toml:"models"`
	TrainRM optim `toml:"train_rm"`
	Joint   struct {
		BT float64 `toml:"bt"`
	} `toml:"joint"`
}

// TestDecodeRenamed: an old key is refused with its new name, file and
// line, each renamed key once (a renamed table once, at its first line), in
// the order of the lines, whatever the order of the table Renamed; a key
// renamed for another kind of config only is an ordinary unknown key.
func TestDecodeRenamed(t *testing.T) {
	decode := func(kind Kind) func(string) error {
		return func(text string) error {
			var v runFile
			return Decode([]byte(text), "r.toml", kind, &v)
		}
	}
	cfgtest.WantErrors(t, decode(Run), cfgtest.Whole, []cfgtest.Case{
		{"[run]\nout_dir = \"x\"\n", "r.toml:2: run.out_dir: renamed to run.out"},
		{"run.out_dir = \"x\"\n", "r.toml:1: run.out_dir: renamed to run.out"},
		{"joint_bt = 2.0\n", "r.toml:1: joint_bt: renamed to joint.bt"},
		// [models] rm is a model directory, not the old [rm] table.
		{"[models]\nrm = \"dir\"\n[rm]\nsteps = 1\n", "r.toml:3: rm: renamed to train_rm"},
		// redteam.seed moved to run.seed in the red-team config only.
		{"[redteam]\nseed = 1\n", "r.toml:1: redteam: unknown key"},
	})
	cfgtest.WantErrors(t, decode(Study), cfgtest.Whole, []cfgtest.Case{
		{"\n[rm]\nsteps = 3\nlr = 1.0\n", "r.toml:2: rm: renamed to train_rm"},
		{"rm = { steps = 3 }\n", "r.toml:1: rm: renamed to train_rm"},
		// Several: all of them, in the order of the lines.
		{"joint_bt = 1.0\n[study]\nout = \"o\"\n[rm]\nlr = 1.0\n[run]\nout_dir = \"x\"\n",
			"r.toml:1: joint_bt: renamed to joint.bt\nr.toml:3: study.out: renamed to run.out\n" +
				"r.toml:4: rm: renamed to train_rm\nr.toml:7: run.out_dir: renamed to run.out"},
	})
	cfgtest.WantErrors(t, decode(Redteam), cfgtest.Whole, []cfgtest.Case{
		{"[models]\npolicy = \"p\"\ndevice = \"cuda\"\n", "r.toml:3: models.device: renamed to run.device"},
	})
	var v runFile
	if err := Decode([]byte("[models]\nrm = \"dir\"\n[train_rm]\nsteps = 1\n[joint]\nbt = 2.0\n"), "r.toml", Run, &v); err != nil {
		t.Fatal(err)
	}
	if v.Models.RM != "dir" || v.TrainRM.Steps != 1 || v.Joint.BT != 2 {
		t.Fatalf("%+v", v)
	}
}

// TestDecodeStrictErrors: unknown keys and type errors name file, line and
// key.
func TestDecodeStrictErrors(t *testing.T) {
	cfgtest.WantErrors(t, func(text string) error {
		var v runFile
		err := DecodeStrict([]byte(text), "r.toml", &v)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: %T is not an *Error", text, err)
		}
		return err
	}, strings.HasPrefix, []cfgtest.Case{
		{"[run]\nout = \"x\"\nbogus = 1\n", "r.toml:3: run.bogus: unknown key"},
		{"[train_rm]\nsteps = \"three\"\n", "r.toml:2: train_rm.steps: cannot decode TOML string"},
		{"[run]\nout = \"x\n", "r.toml:2: (document): basic strings cannot have new lines"},
	})
}

// TestRenamedTable: every entry is well formed, and no new name is an old
// one (a rename never points at a refused key).
func TestRenamedTable(t *testing.T) {
	old := map[string]Kind{}
	for _, r := range Renamed {
		if r.Old == "" || r.New == "" || r.In == 0 || r.Old == r.New {
			t.Errorf("bad entry %+v", r)
		}
		old[r.Old] |= r.In
	}
	for _, r := range Renamed {
		if old[r.New]&r.In != 0 {
			t.Errorf("%s is renamed to %s, itself refused", r.Old, r.New)
		}
	}
}

func TestAt(t *testing.T) {
	data := []byte("[run]\nseed = 1\ndevice = \"gpu\"\n")
	if got := At("r.toml", data, "run.device", "bad %q", "gpu").Error(); got != `r.toml:3: run.device: bad "gpu"` {
		t.Fatal(got)
	}
	if got := At("r.toml", data, "run.dtype", "unset").Error(); got != "r.toml: run.dtype: unset" {
		t.Fatal(got)
	}
}
