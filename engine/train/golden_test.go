package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/torch"
)

// Golden training checkpoints: a tiny run (one float32 group of two
// parameters, AdamW, three steps) checkpointed by the trainer of a given
// checkpoint format version is committed under
// testdata/golden-train-v<N>/. Every later build must resume it into a
// Trainer with exactly the recorded parameters, AdamW moments, step counts
// and caller state. Regenerate the current version's deliberately with
//
//	ARES_WRITE_GOLDEN=1 ARES_NUM_THREADS=1 go test ./engine/train/ -run TestWriteGoldenTrain -v
//
// and paste the values it logs into goldenTrainWant if they changed (they
// must not for a format-only change).

const goldenTrainEnv = "ARES_WRITE_GOLDEN"

// goldenTrainVersions are the checkpoint format versions with a committed
// golden training checkpoint.
var goldenTrainVersions = []int{1, 2}

const (
	goldenTrainSteps  = 3
	goldenTrainState  = `{"epoch":1,"offset":48}`
	goldenTrainConfig = "[train]\nlr = 0.05\nseed = 7\n"
)

// goldenGroup is the golden run's parameter group: w (2x2) and b (2),
// float32, starting from fixed values.
func goldenGroup() *Group {
	w := torch.FromSlice([]float32{0.5, -0.25, 0.125, 1}, 2, 2).SetRequiresGrad(true)
	b := torch.FromSlice([]float32{0, 0.1}, 2).SetRequiresGrad(true)
	return NewGroup("g", []string{"w", "b"}, []*torch.Tensor{w, b},
		Schedule{LR: 0.05, Warmup: 1, Total: 10, MinRatio: 0.1}, 0.01, 1)
}

func closeGroup(g *Group) {
	g.Opt.Close()
	for _, p := range g.Params {
		p.Close()
	}
}

// goldenStep fits y = x·A + c on a fixed batch that depends on the step only.
func goldenStep(g *Group) StepFunc {
	return func(s *torch.Scope, step int64, micro int, tm *Timer) (Micro, error) {
		xs := make([]float32, 4*2)
		ys := make([]float32, 4*2)
		for i := range 4 {
			a := float32(i+1) * 0.25
			c := float32(step+1) * 0.5
			xs[2*i], xs[2*i+1] = a, c-a
			ys[2*i], ys[2*i+1] = 2*a-c, a+0.5*c+1
		}
		x := s.Own(torch.FromSlice(xs, 4, 2))
		y := s.Own(torch.FromSlice(ys, 4, 2))
		loss := x.MatMul(g.Params[0]).Add(g.Params[1]).Sub(y).Square().Mean()
		return Micro{Loss: loss}, nil
	}
}

// goldenState is every tensor the test compares, by checkpoint name, as
// float32 bit patterns.
func goldenState(t *testing.T, g *Group) map[string][]uint32 {
	out := map[string][]uint32{}
	add := func(name string, x *torch.Tensor) {
		var fs []float32
		if err := torch.Try(func() { fs = x.Float32s() }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		bits := make([]uint32, len(fs))
		for i, f := range fs {
			bits[i] = math.Float32bits(f)
		}
		out[name] = bits
	}
	for i, p := range g.Params {
		add(g.Names[i], p)
	}
	for k, x := range g.Opt.State() {
		add("adamw/"+k, x)
	}
	return out
}

// TestWriteGoldenTrain runs the golden training run and writes its
// checkpoint for the current format version. Only with ARES_WRITE_GOLDEN=1.
func TestWriteGoldenTrain(t *testing.T) {
	if os.Getenv(goldenTrainEnv) != "1" {
		t.Skip("set " + goldenTrainEnv + "=1 to rewrite the golden training checkpoint")
	}
	dir := filepath.Join("testdata", fmt.Sprintf("golden-train-v%d", checkpoints.FormatVersion))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	mgr, err := checkpoints.NewManager(dir, &checkpoints.ManagerOptions{Writer: checkpoints.Options{Workers: 1, ChunkSize: checkpoints.MinChunkSize}})
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	g := goldenGroup()
	defer closeGroup(g)
	tr := &Trainer{Cfg: Config{Steps: goldenTrainSteps, Accum: 1}, Groups: []*Group{g}, Manager: mgr,
		Blobs: map[string][]byte{checkpoints.BlobConfig: []byte(goldenTrainConfig)},
		State: json.RawMessage(goldenTrainState)}
	if err := tr.Run(goldenStep(g)); err != nil {
		t.Fatal(err)
	}
	st := goldenState(t, g)
	var b bytes.Buffer
	fmt.Fprintf(&b, "wrote %s (adam steps %d); values:\n", dir, g.Opt.StepCount)
	for _, k := range slices.Sorted(maps.Keys(st)) {
		fmt.Fprintf(&b, "\t%q: {", k)
		for i, v := range st[k] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%#08x", v)
		}
		b.WriteString("},\n")
	}
	t.Log(b.String())
}

// goldenTrainWant is the state after the golden run's three steps, as
// float32 bits (written by TestWriteGoldenTrain at format version 1).
var goldenTrainWant = map[string][]uint32{
	"adamw/0.exp_avg":    {0x3a647461, 0xbe108406, 0x3d34dd48, 0xbd5886a4},
	"adamw/0.exp_avg_sq": {0x3836eed0, 0x3a5a159f, 0x38e2f7b5, 0x399849e6},
	"adamw/1.exp_avg":    {0x3cbcef1e, 0xbe47af38},
	"adamw/1.exp_avg_sq": {0x39039df1, 0x3ad15a9c},
	"b":                  {0x3d3834af, 0x3e7dae08},
	"w":                  {0x3f1528db, 0xbdd010fe, 0xbc8a1cfe, 0x3f7d1e37},
}

// TestGoldenTrainResume resumes a fresh Trainer from every committed golden
// training checkpoint and checks the restored state bit for bit.
func TestGoldenTrainResume(t *testing.T) {
	for _, v := range goldenTrainVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			src := filepath.Join("testdata", fmt.Sprintf("golden-train-v%d", v))
			if _, err := os.Stat(src); err != nil {
				t.Fatalf("golden training checkpoint of format version %d is missing: %v", v, err)
			}
			// Resume from a copy: the manager may tidy its run directory,
			// and testdata must stay as committed.
			run := filepath.Join(t.TempDir(), "run")
			if err := os.CopyFS(run, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			mgr, err := checkpoints.NewManager(run, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer mgr.Close()
			g := goldenGroup()
			defer closeGroup(g)
			tr := &Trainer{Groups: []*Group{g}, Manager: mgr}
			ok, err := tr.Resume()
			if err != nil || !ok {
				t.Fatalf("resume from %s: ok=%v err=%v", src, ok, err)
			}
			if tr.Step != goldenTrainSteps || g.Opt.StepCount != goldenTrainSteps || tr.NonFiniteSeen != 0 {
				t.Errorf("%s: step %d, adam steps %d, non-finite %d; want %d, %d, 0", src, tr.Step, g.Opt.StepCount, tr.NonFiniteSeen, goldenTrainSteps, goldenTrainSteps)
			}
			var state bytes.Buffer
			if err := json.Compact(&state, tr.State); err != nil || state.String() != goldenTrainState {
				t.Errorf("%s: caller state %s (%v), want %s", src, tr.State, err, goldenTrainState)
			}
			got := goldenState(t, g)
			if len(got) != len(goldenTrainWant) {
				t.Errorf("%s: %d tensors restored, want %d", src, len(got), len(goldenTrainWant))
			}
			for k, want := range goldenTrainWant {
				if fmt.Sprint(got[k]) != fmt.Sprint(want) {
					t.Errorf("%s: %s restored as %#x, want %#x", src, k, got[k], want)
				}
			}
			// The committed checkpoint also carries the config blob.
			r, _, err := mgr.OpenLatest(true)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if blob, err := r.Blob(checkpoints.BlobConfig); err != nil || string(blob) != goldenTrainConfig {
				t.Errorf("%s: config blob %q (%v)", src, blob, err)
			}
		})
	}
}
