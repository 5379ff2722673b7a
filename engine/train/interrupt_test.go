package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/torch"
)

// cancelAt wraps a step function so that it cancels ctx with cause while
// computing step at (the step itself still completes).
func cancelAt(f StepFunc, at int64, cancel context.CancelCauseFunc, cause error) StepFunc {
	return func(s *torch.Scope, step int64, micro int, tm *Timer) (Micro, error) {
		if step == at && micro == 0 {
			cancel(cause)
		}
		return f(s, step, micro, tm)
	}
}

// metricSteps returns the "step" of every line of a metrics file.
func metricSteps(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		var rec struct{ Step int64 }
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%s:%d: %v (%q)", path, i+1, err, line)
		}
		steps = append(steps, rec.Step)
	}
	return steps
}

func wantSteps(t *testing.T, got []int64, n int64) {
	t.Helper()
	if int64(len(got)) != n {
		t.Fatalf("metrics steps %v, want 0..%d once each", got, n-1)
	}
	for i, s := range got {
		if s != int64(i) {
			t.Fatalf("metrics steps %v, want 0..%d once each", got, n-1)
		}
	}
}

// TestInterruptThenResumeEqualsUninterrupted: a run whose context is
// cancelled during step 4 finishes that step, checkpoints step 5 (no
// periodic checkpoint is due) and returns an *Interrupted error that wraps
// context.Canceled and the cause and names the checkpoint; a fresh trainer
// resumed from it ends bit-identical to an uninterrupted run, and the
// metrics file holds every step once.
func TestInterruptThenResumeEqualsUninterrupted(t *testing.T) {
	const steps = 12
	a := newRegression()
	defer a.close()
	ga := a.group(steps)
	defer ga.Opt.Close()
	if err := (&Trainer{Cfg: Config{Steps: steps, Accum: 2}, Groups: []*Group{ga}}).Run(a.step(nil)); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	mgr, mf := newManager(t, dir), openMetrics(t, dir, "metrics.jsonl")
	b := newRegression()
	gb := b.group(steps)
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("test signal")
	trb := &Trainer{Cfg: Config{Steps: steps, Accum: 2, CheckpointEvery: 100, Label: "reg"}, Groups: []*Group{gb}, Manager: mgr, Metrics: mf, Ctx: ctx}
	err := trb.Run(cancelAt(b.step(nil), 4, cancel, cause))
	var ie *Interrupted
	if !errors.As(err, &ie) || !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("want an Interrupted error wrapping context.Canceled and the cause, got %v", err)
	}
	wantDir := filepath.Join(mgr.Dir(), checkpoints.CheckpointName(5))
	if ie.Step != 5 || ie.Steps != steps || ie.Dir != wantDir || ie.Label != "reg" || gb.Opt.StepCount != 5 {
		t.Fatalf("interrupted at %d/%d in %q (want %q), adam %d", ie.Step, ie.Steps, ie.Dir, wantDir, gb.Opt.StepCount)
	}
	if msg := err.Error(); !strings.Contains(msg, "after step 5 of 12") || !strings.Contains(msg, wantDir) || !strings.Contains(msg, "test signal") {
		t.Fatalf("message %q", msg)
	}
	gb.Opt.Close()
	b.close()

	c := newRegression()
	defer c.close()
	gc := c.group(steps)
	defer gc.Opt.Close()
	trc := &Trainer{Cfg: Config{Steps: steps, Accum: 2, CheckpointEvery: 100}, Groups: []*Group{gc}, Manager: mgr, Metrics: mf}
	if ok, err := trc.Resume(); !ok || err != nil || trc.Step != 5 {
		t.Fatalf("resume: ok=%v err=%v step=%d", ok, err, trc.Step)
	}
	// A context cancelled before the first step stops at once; the
	// checkpoint resumed from is the one reported, not written again.
	done, stop := context.WithCancel(context.Background())
	stop()
	trc.Ctx = done
	if err := trc.Run(c.step(nil)); !errors.As(err, &ie) || ie.Step != 5 || ie.Dir != wantDir || trc.Step != 5 {
		t.Fatalf("cancelled before the first step: %v", err)
	}
	// Cancelled during the last step: the run is complete, no error.
	ctx, cancel = context.WithCancelCause(context.Background())
	trc.Ctx = ctx
	if err := trc.Run(cancelAt(c.step(nil), steps-1, cancel, cause)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(params(a), params(c)) {
		t.Fatal("interrupted and resumed run differs from the uninterrupted one")
	}
	wantSteps(t, metricSteps(t, mf.Path()), steps)
}

// TestResumeTruncatesMetrics: a run that failed at step 7 after a checkpoint
// at step 6 (and a torn last line) leaves records of steps 6 and 7; resume
// removes them, so that the finished file has every step once.
func TestResumeTruncatesMetrics(t *testing.T) {
	const steps = 12
	dir := t.TempDir()
	mgr, mf := newManager(t, dir), openMetrics(t, dir, "m.jsonl")
	r := newRegression()
	defer r.close()
	g := r.group(steps)
	defer g.Opt.Close()
	crash := errors.New("crash")
	base := r.step(nil)
	tr := &Trainer{Cfg: Config{Steps: steps, CheckpointEvery: 3}, Groups: []*Group{g}, Manager: mgr, Metrics: mf}
	err := tr.Run(func(s *torch.Scope, step int64, micro int, tm *Timer) (Micro, error) {
		if step == 8 {
			return Micro{}, crash
		}
		return base(s, step, micro, tm)
	})
	if !errors.Is(err, crash) {
		t.Fatalf("want the crash, got %v", err)
	}
	wantSteps(t, metricSteps(t, mf.Path()), 8)
	mf.Write([]byte(`{"step":8,"lo`))

	r2 := newRegression()
	defer r2.close()
	g2 := r2.group(steps)
	defer g2.Opt.Close()
	tr2 := &Trainer{Cfg: Config{Steps: steps, CheckpointEvery: 3}, Groups: []*Group{g2}, Manager: mgr, Metrics: mf}
	if ok, err := tr2.Resume(); !ok || err != nil || tr2.Step != 6 {
		t.Fatalf("resume: ok=%v err=%v step=%d", ok, err, tr2.Step)
	}
	wantSteps(t, metricSteps(t, mf.Path()), 6)
	if err := tr2.Run(r2.step(nil)); err != nil {
		t.Fatal(err)
	}
	wantSteps(t, metricSteps(t, mf.Path()), steps)
}

func TestTruncateMetricsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.jsonl")
	if err := TruncateMetrics(p, 3); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	in := "{\"step\":0,\"loss\":1}\nnot json\n{\"note\":\"no step\"}\n{\"step\":2,\"loss\":null}\n{\"step\":3}\n{\"step\":1}\n{\"step\":4}\n{\"step\":2}"
	if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := TruncateMetrics(p, 3); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	want := "{\"step\":0,\"loss\":1}\nnot json\n{\"note\":\"no step\"}\n{\"step\":2,\"loss\":null}\n{\"step\":1}\n{\"step\":2}\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	os.WriteFile(p, []byte("{\"step\":0}\n{\"step\":1,\"lo"), 0o644)
	TruncateMetrics(p, 5)
	if got, _ := os.ReadFile(p); string(got) != "{\"step\":0}\n" {
		t.Fatalf("torn line kept: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// saveRegression writes a 3-step checkpoint of a regression of dt with the
// given config blob and returns its manager.
func saveRegression(t *testing.T, dt torch.DType, config string) *checkpoints.Manager {
	t.Helper()
	mgr := newManager(t, t.TempDir())
	r := newRegressionOf(dt)
	defer r.close()
	g := r.group(10)
	defer g.Opt.Close()
	tr := &Trainer{Cfg: Config{Steps: 10, StopAfter: 3}, Groups: []*Group{g}, Manager: mgr,
		Blobs: map[string][]byte{checkpoints.BlobConfig: []byte(config)}}
	if err := tr.Run(r.step(nil)); err != nil {
		t.Fatal(err)
	}
	return mgr
}

// TestResumeChecksDTypes: a checkpoint of float32 tensors does not load into
// a float64 model; the error names the checkpoint, the tensor and both
// dtypes, and nothing was loaded.
func TestResumeChecksDTypes(t *testing.T) {
	mgr := saveRegression(t, torch.Float32, "")
	r := newRegressionOf(torch.Float64)
	defer r.close()
	g := r.group(10)
	defer g.Opt.Close()
	before := params(r)
	tr := &Trainer{Groups: []*Group{g}, Manager: mgr}
	_, err := tr.Resume()
	dir := filepath.Join(mgr.Dir(), checkpoints.CheckpointName(3))
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), `tensor "reg/w" is F32 in the checkpoint, the model's is F64`) {
		t.Fatalf("want a dtype error naming %s and reg/w, got %v", dir, err)
	}
	if !bytes.Equal(before, params(r)) || tr.Step != 0 {
		t.Fatal("a refused checkpoint was partly loaded")
	}
}

// TestResumeRefusesChangedConfig: a checkpoint written with another config is
// refused, naming every changed key (the free ones aside), unless
// ForceConfig.
func TestResumeRefusesChangedConfig(t *testing.T) {
	saved := "[run]\nseed = 1\nout = \"a\"\nkeep_last = 3\n\n[sft]\nlr = 0.1\nsteps = 10\n\n[lora.policy]\nr = 4\n"
	mgr := saveRegression(t, torch.Float32, saved)
	try := func(config string, force bool) error {
		r := newRegression()
		defer r.close()
		g := r.group(10)
		defer g.Opt.Close()
		tr := &Trainer{Groups: []*Group{g}, Manager: mgr, ForceConfig: force, Blobs: map[string][]byte{checkpoints.BlobConfig: []byte(config)}}
		ok, err := tr.Resume()
		if err == nil && (!ok || tr.Step != 3) {
			return fmt.Errorf("resumed at %d (ok=%v)", tr.Step, ok)
		}
		return err
	}
	// Only free keys changed (and the same values written differently).
	if err := try("[run]\nout = \"b\"\nseed = 1\nkeep_last = 9\ncheckpoint_every = 2\n[sft]\nsteps = 10\nlr = 1e-1\n[lora]\npolicy = {r = 4}\n", false); err != nil {
		t.Fatalf("free keys: %v", err)
	}
	changed := "[run]\nseed = 2\nout = \"b\"\n\n[sft]\nlr = 0.1\nsteps = 10\nwarmup = 2\n\n[lora.policy]\nr = 8\n"
	err := try(changed, false)
	var ce *ConfigChangedError
	if !errors.As(err, &ce) {
		t.Fatalf("want ConfigChangedError, got %v", err)
	}
	var keys []string
	for _, c := range ce.Changes {
		keys = append(keys, c.Key)
	}
	if strings.Join(keys, " ") != "lora.policy.r run.seed sft.warmup" {
		t.Fatalf("changed keys %v", keys)
	}
	msg := err.Error()
	for _, s := range []string{mgr.Dir(), "run.seed (1 in the checkpoint, 2 now)", "sft.warmup (unset in the checkpoint, 2 now)", "lora.policy.r (4 in the checkpoint, 8 now)", "--force"} {
		if !strings.Contains(msg, s) {
			t.Fatalf("message lacks %q: %s", s, msg)
		}
	}
	if strings.Contains(msg, "run.out") {
		t.Fatalf("run.out may change: %s", msg)
	}
	if err := try(changed, true); err != nil {
		t.Fatalf("ForceConfig: %v", err)
	}
	if err := try("[sft\n", false); err == nil || !strings.Contains(err.Error(), "current config") {
		t.Fatalf("bad TOML: %v", err)
	}
}

// pairDP is an in-process data-parallel job of two ranks for tests: the
// ranks exchange their scalars; gradients are not reduced (both ranks
// compute the same batch).
type pairDP struct {
	rank int
	h    *pairHub
}

type pairHub struct {
	mu     sync.Mutex
	cond   *sync.Cond
	gen, n int
	vals   [2][]float64
	result [2][]float64
}

func newPair() [2]*pairDP {
	h := &pairHub{}
	h.cond = sync.NewCond(&h.mu)
	return [2]*pairDP{{0, h}, {1, h}}
}

func (h *pairHub) exchange(rank int, v []float64) [2][]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	gen := h.gen
	h.vals[rank] = v
	if h.n++; h.n == 2 {
		h.result, h.n = h.vals, 0
		h.gen++
		h.cond.Broadcast()
	} else {
		for gen == h.gen {
			h.cond.Wait()
		}
	}
	return h.result
}

func (d *pairDP) Rank() int                                   { return d.rank }
func (d *pairDP) Size() int                                   { return 2 }
func (d *pairDP) IsMain() bool                                { return d.rank == 0 }
func (d *pairDP) AllReduceGrads(params []*torch.Tensor) error { return nil }
func (d *pairDP) Barrier() error                              { d.h.exchange(d.rank, nil); return nil }
func (d *pairDP) MeanScalars(xs ...float64) ([]float64, error) {
	r := d.h.exchange(d.rank, xs)
	if len(r[0]) != len(r[1]) {
		return nil, fmt.Errorf("ranks passed %d and %d scalars", len(r[0]), len(r[1]))
	}
	out := make([]float64, len(xs))
	for i := range out {
		out[i] = (r[0][i] + r[1][i]) / 2
	}
	return out, nil
}

// TestInterruptDataParallel: when only rank 1's context is cancelled (during
// step 3), both ranks stop after step 3, rank 0 writes the one checkpoint
// (step 4) and both return an Interrupted error wrapping context.Canceled.
func TestInterruptDataParallel(t *testing.T) {
	mgr := newManager(t, t.TempDir())
	dps := newPair()
	ctx1, cancel1 := context.WithCancelCause(context.Background())
	defer cancel1(nil)
	var errs [2]error
	var wg sync.WaitGroup
	for rank := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newRegression()
			defer r.close()
			g := r.group(10)
			defer g.Opt.Close()
			tr := &Trainer{Cfg: Config{Steps: 10, CheckpointEvery: 100}, Groups: []*Group{g}, DP: dps[rank]}
			step := r.step(nil)
			if rank == 0 {
				tr.Manager = mgr
			} else {
				tr.Ctx = ctx1
				step = cancelAt(step, 3, cancel1, errors.New("SIGTERM"))
			}
			errs[rank] = tr.Run(step)
		}()
	}
	wg.Wait()
	for rank, err := range errs {
		var ie *Interrupted
		if !errors.As(err, &ie) || ie.Step != 4 || !errors.Is(err, context.Canceled) {
			t.Fatalf("rank %d: %v", rank, err)
		}
		if (ie.Dir != "") != (rank == 0) {
			t.Fatalf("rank %d reports checkpoint %q", rank, ie.Dir)
		}
	}
	if !strings.Contains(errs[0].Error(), "another rank") || !strings.Contains(errs[1].Error(), "SIGTERM") {
		t.Fatalf("causes: %v / %v", errs[0], errs[1])
	}
	es, err := mgr.List()
	if err != nil || len(es) != 1 || es[0].Step != 4 {
		t.Fatalf("checkpoints %v %v", es, err)
	}
}
