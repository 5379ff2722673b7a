package train

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/torch"
)

func TestSchedule(t *testing.T) {
	s := Schedule{LR: 1, Warmup: 4, Total: 14, MinRatio: 0.1}
	if s.At(0) != 0.25 || s.At(3) != 1 {
		t.Fatalf("warm-up: %v %v", s.At(0), s.At(3))
	}
	if math.Abs(s.At(9)-0.55) > 1e-12 || math.Abs(s.At(14)-0.1) > 1e-12 || math.Abs(s.At(100)-0.1) > 1e-12 {
		t.Fatalf("cosine: %v %v %v", s.At(9), s.At(14), s.At(100))
	}
}

// regression is y = x·w + b fitted to a known function, with a step function
// that draws its batch from (seed, step) only.
type regression struct {
	w, b *torch.Tensor
	dt   torch.DType
}

func newRegression() *regression { return newRegressionOf(torch.Float32) }

// newRegressionOf keeps the weights (and computes) in dt.
func newRegressionOf(dt torch.DType) *regression {
	w := torch.Zeros([]int64{3, 1}, dt, torch.CPU).SetRequiresGrad(true)
	b := torch.Zeros([]int64{1}, dt, torch.CPU).SetRequiresGrad(true)
	return &regression{w, b, dt}
}

func (r *regression) group(steps int64) *Group {
	return NewGroup("reg", []string{"w", "b"}, []*torch.Tensor{r.w, r.b}, Schedule{LR: 0.05, Warmup: 2, Total: steps, MinRatio: 0.1}, 0.01, 1)
}

func (r *regression) close() { r.w.Close(); r.b.Close() }

// step returns a step function; poison makes the listed steps' loss NaN.
func (r *regression) step(poison map[int64]bool) StepFunc {
	return func(s *torch.Scope, step int64, micro int, tm *Timer) (Micro, error) {
		rng := rand.New(rand.NewSource(step*131 + int64(micro)))
		xs := make([]float32, 16*3)
		ys := make([]float32, 16)
		for i := 0; i < 16; i++ {
			a, b, c := rng.Float32(), rng.Float32(), rng.Float32()
			xs[i*3], xs[i*3+1], xs[i*3+2] = a, b, c
			ys[i] = 2*a - b + 0.5*c + 0.3
		}
		var loss *torch.Tensor
		tm.Phase("forward", func() {
			x := s.Own(torch.FromSlice(xs, 16, 3)).To(r.dt)
			y := s.Own(torch.FromSlice(ys, 16, 1)).To(r.dt)
			loss = x.MatMul(r.w).Add(r.b).Sub(y).Square().Mean()
			if poison[step] {
				loss = loss.MulScalar(math.NaN())
			}
		})
		return Micro{Loss: loss, Metrics: map[string]float64{"accuracy": 1}}, nil
	}
}

// newManager makes a checkpoint manager of dir/ckpt.
func newManager(t *testing.T, dir string) *checkpoints.Manager {
	t.Helper()
	mgr, err := checkpoints.NewManager(filepath.Join(dir, "ckpt"), &checkpoints.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// openMetrics opens the metrics file dir/name, closed when t ends.
func openMetrics(t *testing.T, dir, name string) *MetricsFile {
	t.Helper()
	mf, err := OpenMetrics(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mf.Close() })
	return mf
}

func params(r *regression) []byte {
	var b []byte
	torch.Try(func() { b = append(r.w.Bytes(), r.b.Bytes()...) })
	return b
}

func TestResumeEqualsUninterrupted(t *testing.T) {
	for _, dt := range []torch.DType{torch.Float32, torch.BFloat16} {
		t.Run(dt.String(), func(t *testing.T) { testResume(t, dt) })
	}
}

// testResume: with bf16 weights, the float32 master weights are part of the
// optimizer state, so the resumed run continues from the same masters.
func testResume(t *testing.T, dt torch.DType) {
	const steps = 12
	// Uninterrupted.
	a := newRegressionOf(dt)
	defer a.close()
	ga := a.group(steps)
	defer ga.Opt.Close()
	tra := &Trainer{Cfg: Config{Steps: steps, Accum: 2}, Groups: []*Group{ga}}
	if err := tra.Run(a.step(nil)); err != nil {
		t.Fatal(err)
	}
	// Interrupted at step 5 (checkpoint every 5), then resumed in a fresh trainer.
	mgr := newManager(t, t.TempDir())
	b := newRegressionOf(dt)
	gb := b.group(steps)
	trb := &Trainer{Cfg: Config{Steps: 5, Accum: 2, CheckpointEvery: 5}, Groups: []*Group{gb}, Manager: mgr,
		Blobs: map[string][]byte{"config.toml": []byte("seed = 1\n")}}
	if err := trb.Run(b.step(nil)); err != nil {
		t.Fatal(err)
	}
	gb.Opt.Close()
	b.close()

	c := newRegressionOf(dt)
	defer c.close()
	gc := c.group(steps)
	defer gc.Opt.Close()
	var metrics bytes.Buffer
	trc := &Trainer{Cfg: Config{Steps: steps, Accum: 2, CheckpointEvery: 5}, Groups: []*Group{gc}, Manager: mgr, Metrics: &metrics,
		Blobs: map[string][]byte{"config.toml": []byte("seed = 1\n")}}
	ok, err := trc.Resume()
	if err != nil || !ok || trc.Step != 5 || gc.Opt.StepCount != 5 {
		t.Fatalf("resume: ok=%v err=%v step=%d adam=%d", ok, err, trc.Step, gc.Opt.StepCount)
	}
	if err := trc.Run(c.step(nil)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(params(a), params(c)) {
		t.Fatal("resumed run differs from the uninterrupted one")
	}
	if dt == torch.BFloat16 {
		var ma, mc []byte
		torch.Try(func() {
			ma = append(ga.Opt.Master(0).Bytes(), ga.Opt.Master(1).Bytes()...)
			mc = append(gc.Opt.Master(0).Bytes(), gc.Opt.Master(1).Bytes()...)
		})
		if len(ma) == 0 || !bytes.Equal(ma, mc) {
			t.Fatal("resumed master weights differ from the uninterrupted run's")
		}
	}
	if n := bytes.Count(metrics.Bytes(), []byte("\n")); n != steps-5 {
		t.Fatalf("%d metric lines", n)
	}
	if !bytes.Contains(metrics.Bytes(), []byte(`"time/forward"`)) || !bytes.Contains(metrics.Bytes(), []byte(`"lr/reg"`)) {
		t.Fatalf("metrics lack phases or lr: %s", metrics.String())
	}
	r, _, err := mgr.OpenLatest(true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if blob, err := r.Blob("config.toml"); err != nil || string(blob) != "seed = 1\n" {
		t.Fatalf("config blob: %q %v", blob, err)
	}
}

func TestNonFiniteStepsSkippedThenStop(t *testing.T) {
	r := newRegression()
	defer r.close()
	g := r.group(20)
	defer g.Opt.Close()
	dir := t.TempDir()
	mgr, _ := checkpoints.NewManager(dir, &checkpoints.ManagerOptions{})
	// Two isolated bad steps are skipped and counted.
	tr := &Trainer{Cfg: Config{Steps: 6, MaxNonFinite: 3, CheckpointEvery: 3}, Groups: []*Group{g}, Manager: mgr}
	before := params(r)
	if err := tr.Run(r.step(map[int64]bool{1: true, 4: true})); err != nil {
		t.Fatal(err)
	}
	if tr.NonFiniteSeen != 2 || g.Opt.StepCount != 4 || bytes.Equal(before, params(r)) {
		t.Fatalf("skipped %d, adam steps %d", tr.NonFiniteSeen, g.Opt.StepCount)
	}
	good := params(r)
	// Three in a row stop the run; the last checkpoint is intact and equals
	// the state before the bad steps.
	tr.Cfg.Steps = 20
	err := tr.Run(r.step(map[int64]bool{6: true, 7: true, 8: true}))
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("want ErrNonFinite, got %v", err)
	}
	if !bytes.Equal(good, params(r)) {
		t.Fatal("non-finite steps changed the parameters")
	}
	r2 := newRegression()
	defer r2.close()
	g2 := r2.group(20)
	defer g2.Opt.Close()
	tr2 := &Trainer{Groups: []*Group{g2}, Manager: mgr}
	if ok, err := tr2.Resume(); !ok || err != nil || tr2.Step != 6 || !bytes.Equal(params(r2), good) {
		t.Fatalf("last good checkpoint: ok=%v err=%v step=%d", ok, err, tr2.Step)
	}
}
