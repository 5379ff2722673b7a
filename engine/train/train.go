// Package train is the engine's training loop: AdamW with warm-up then cosine
// learning rate, gradient accumulation, global-norm clipping, skipping of
// non-finite steps (and a clear stop after too many in a row), periodic
// atomic checkpoints of the whole state (parameters, optimizer moments, step,
// data position, config, tokenizer) and exact resume, metrics as JSONL, a
// progress line, and per-phase timing.
//
// Determinism: the loop keeps no hidden random state. A step's data and its
// sampling randomness are derived from (seed, step) by the caller's step
// function, so a resumed run makes the same updates as an uninterrupted one.
package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/torch"
)

// Schedule is linear warm-up to LR, then cosine decay to MinRatio·LR at Total.
type Schedule struct {
	LR       float64
	Warmup   int64
	Total    int64
	MinRatio float64
}

// At is the learning rate of step (0-based).
func (s Schedule) At(step int64) float64 {
	if s.Warmup > 0 && step < s.Warmup {
		return s.LR * float64(step+1) / float64(s.Warmup)
	}
	if s.Total <= s.Warmup {
		return s.LR
	}
	p := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	p = math.Min(math.Max(p, 0), 1)
	min := s.MinRatio * s.LR
	return min + (s.LR-min)*0.5*(1+math.Cos(math.Pi*p))
}

// Group is one model's parameters with their optimizer and schedule. In
// joint mode a step updates several groups, each with its own optimizer.
type Group struct {
	Name   string
	Names  []string // parameter names, for checkpoints
	Params []*torch.Tensor
	Opt    *torch.AdamW
	Sched  Schedule
	Clip   float64 // global-norm clip (0: off)
}

// NewGroup makes a group with an AdamW optimizer over params.
func NewGroup(name string, names []string, params []*torch.Tensor, sched Schedule, weightDecay, clip float64) *Group {
	return &Group{Name: name, Names: names, Params: params, Opt: torch.NewAdamW(params, sched.LR, weightDecay), Sched: sched, Clip: clip}
}

// Config controls the loop.
type Config struct {
	Steps           int64 // optimizer steps in total
	Accum           int   // micro-batches per optimizer step
	MaxNonFinite    int   // consecutive non-finite steps that stop the run
	CheckpointEvery int64 // 0: only at the end
	KeepLast        int
	// StopAfter, when positive, ends the run (with a checkpoint) once this
	// many steps are done, without changing the schedule: a later resume
	// continues exactly where it stopped.
	StopAfter int64
	Progress  io.Writer // nil: no progress line
	Label     string    // shown in the progress line
}

// Micro is what a step function returns for one micro-batch: the loss to
// differentiate (a scalar in the caller's scope) and metrics to log.
type Micro struct {
	Loss    *torch.Tensor
	Metrics map[string]float64
}

// StepFunc computes one micro-batch of step. It must derive any randomness
// from step and micro so that resume is exact; phase timings go in t.
type StepFunc func(s *torch.Scope, step int64, micro int, t *Timer) (Micro, error)

// Timer accumulates per-phase wall time within a step.
type Timer struct{ phases map[string]time.Duration }

// Phase runs f and adds its wall time to phase name.
func (t *Timer) Phase(name string, f func()) {
	t0 := time.Now()
	f()
	t.phases[name] += time.Since(t0)
}

// DataParallel is what the loop needs from a data-parallel job (package
// dist implements it over c10d): gradients averaged across ranks after the
// backward pass, metrics averaged for logging, and one rank that writes.
// Every rank computes the same global batch's share (the step function
// shards by Rank and Size), so that the averaged gradients are the global
// batch's gradients.
type DataParallel interface {
	Rank() int
	Size() int
	IsMain() bool
	AllReduceGrads(params []*torch.Tensor) error
	MeanScalars(xs ...float64) ([]float64, error)
	Barrier() error
}

// Trainer runs the loop.
type Trainer struct {
	Cfg     Config
	Groups  []*Group
	Manager *checkpoints.Manager // nil: no checkpoints
	Metrics io.Writer            // JSONL, nil: none
	// Blobs are saved with every checkpoint (config TOML, tokenizer, ...).
	Blobs map[string][]byte
	// State is the caller's own resumable state (e.g. data-epoch counters),
	// saved as the data position.
	State json.RawMessage
	// DP makes the run data-parallel (nil: one process).
	DP DataParallel

	Step          int64 // next step to run
	NonFiniteRun  int
	NonFiniteSeen int64

	lastProgress time.Time
}

// ErrNonFinite is returned when too many consecutive steps were non-finite.
var ErrNonFinite = errors.New("too many consecutive non-finite steps")

// Run trains until Cfg.Steps, checkpointing along the way and at the end.
func (tr *Trainer) Run(step StepFunc) error {
	// libtorch numbers autograd nodes with a thread-local counter and orders
	// the backward pass by it; if the goroutine moved between OS threads
	// while building a graph, gradients that sum several contributions would
	// be added in a different order from run to run. One OS thread per run
	// keeps training bit-for-bit deterministic.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if tr.Cfg.Accum <= 0 {
		tr.Cfg.Accum = 1
	}
	if tr.Cfg.MaxNonFinite <= 0 {
		tr.Cfg.MaxNonFinite = 10
	}
	start := time.Now()
	startStep := tr.Step
	end := tr.Cfg.Steps
	if tr.Cfg.StopAfter > 0 && tr.Cfg.StopAfter < end {
		end = tr.Cfg.StopAfter
	}
	for tr.Step < end {
		rec, err := tr.oneStep(step)
		if err != nil {
			return err
		}
		if tr.Metrics != nil {
			b, err := MarshalMetrics(rec)
			if err != nil {
				return fmt.Errorf("metrics of step %d: %w", tr.Step, err)
			}
			if _, err := tr.Metrics.Write(append(b, '\n')); err != nil {
				return err
			}
		}
		tr.progress(rec, start, startStep)
		tr.Step++
		if tr.saves() && tr.Cfg.CheckpointEvery > 0 && tr.Step%tr.Cfg.CheckpointEvery == 0 && tr.Step < end {
			if _, err := tr.Save(); err != nil {
				return err
			}
		}
	}
	if tr.Cfg.Progress != nil {
		fmt.Fprintln(tr.Cfg.Progress)
	}
	if tr.saves() {
		if _, err := tr.Save(); err != nil {
			return err
		}
	}
	return nil
}

// saves reports whether this run checkpoints. In a data-parallel run every
// rank takes part (rank 0 writes, the others wait at a barrier), whether or
// not it has a manager, so that the ranks stay in step.
func (tr *Trainer) saves() bool { return tr.Manager != nil || tr.DP != nil && tr.DP.Size() > 1 }

func (tr *Trainer) oneStep(step StepFunc) (map[string]any, error) {
	timer := &Timer{phases: map[string]time.Duration{}}
	t0 := time.Now()
	sums := map[string]float64{}
	var lossSum float64
	finite := true
	for _, g := range tr.Groups {
		g.Opt.ZeroGrad()
	}
	for mi := 0; mi < tr.Cfg.Accum; mi++ {
		var err error
		terr := torch.Try(func() {
			s := torch.NewScope()
			defer s.Close()
			var m Micro
			m, err = step(s, tr.Step, mi, timer)
			if err != nil || m.Loss == nil {
				return
			}
			l := m.Loss.Item()
			lossSum += l
			for k, v := range m.Metrics {
				sums[k] += v
			}
			if math.IsNaN(l) || math.IsInf(l, 0) {
				finite = false
				if tr.DP == nil {
					return
				}
				// Data-parallel ranks still backpropagate, so that every rank
				// takes part in the all-reduce; the non-finite gradients then
				// make every rank skip the step together.
			}
			timer.Phase("backward", func() { m.Loss.DivScalar(float64(tr.Cfg.Accum)).Backward() })
		})
		if err == nil {
			err = terr
		}
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", tr.Step, err)
		}
	}
	rec := map[string]any{"step": tr.Step, "loss": lossSum / float64(tr.Cfg.Accum)}
	for k, v := range sums {
		rec[k] = v / float64(tr.Cfg.Accum)
	}
	if tr.DP != nil {
		if err := tr.reduce(rec); err != nil {
			return nil, fmt.Errorf("step %d: %w", tr.Step, err)
		}
		// A non-finite loss on any rank makes every rank skip the step.
		if l := rec["loss"].(float64); math.IsNaN(l) || math.IsInf(l, 0) {
			finite = false
		}
	}
	err := torch.Try(func() {
		timer.Phase("update", func() {
			norms := make([]float64, len(tr.Groups))
			for i, g := range tr.Groups {
				norms[i] = torch.ClipGradNorm(g.Params, g.Clip)
				rec["grad_norm/"+g.Name] = norms[i]
				if math.IsNaN(norms[i]) || math.IsInf(norms[i], 0) {
					finite = false
				}
			}
			if !finite {
				return
			}
			for _, g := range tr.Groups {
				g.Opt.LR = g.Sched.At(tr.Step)
				rec["lr/"+g.Name] = g.Opt.LR
				g.Opt.Step()
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("step %d: %w", tr.Step, err)
	}
	for _, g := range tr.Groups {
		g.Opt.ZeroGrad()
	}
	if !finite {
		tr.NonFiniteRun++
		tr.NonFiniteSeen++
		rec["skipped"] = true
		if tr.NonFiniteRun >= tr.Cfg.MaxNonFinite {
			return nil, fmt.Errorf("step %d: %w (%d in a row; the last good checkpoint is kept)", tr.Step, ErrNonFinite, tr.NonFiniteRun)
		}
	} else {
		tr.NonFiniteRun = 0
	}
	rec["nonfinite_total"] = tr.NonFiniteSeen
	for k, v := range timer.phases {
		rec["time/"+k] = v.Seconds()
	}
	rec["time/step"] = time.Since(t0).Seconds()
	return rec, nil
}

// MarshalMetrics encodes one metrics record as a JSON object. JSON has no
// NaN or infinity: non-finite numbers (a diverged loss, a skipped step's
// gradient norm) are written as null, so the line stays a record.
func MarshalMetrics(rec map[string]any) ([]byte, error) {
	out := make(map[string]any, len(rec))
	for k, v := range rec {
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v = nil
			}
		case float32:
			if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
				v = nil
			}
		}
		out[k] = v
	}
	return json.Marshal(out)
}

func (tr *Trainer) progress(rec map[string]any, start time.Time, startStep int64) {
	if tr.Cfg.Progress == nil {
		return
	}
	done := tr.Step + 1
	// At most a few updates a second, so that logs stay readable.
	if done < tr.Cfg.Steps && time.Since(tr.lastProgress) < 250*time.Millisecond {
		return
	}
	tr.lastProgress = time.Now()
	frac := float64(done) / float64(tr.Cfg.Steps)
	width := 24
	bar := strings.Repeat("#", int(frac*float64(width))) + strings.Repeat(".", width-int(frac*float64(width)))
	perStep := time.Since(start).Seconds() / float64(done-startStep)
	extra := ""
	for _, k := range []string{"reward", "accuracy"} {
		if v, ok := rec[k]; ok {
			extra += fmt.Sprintf(" %s %.3f", k, v)
		}
	}
	fmt.Fprintf(tr.Cfg.Progress, "\r%-12s [%s] %d/%d loss %.4f%s %.2fs/step ", tr.Cfg.Label, bar, done, tr.Cfg.Steps, rec["loss"], extra, perStep)
}

// reduce all-reduces the gradients of every group and averages the metrics
// (the loss among them) across ranks.
func (tr *Trainer) reduce(rec map[string]any) error {
	t0 := time.Now()
	for _, g := range tr.Groups {
		if err := tr.DP.AllReduceGrads(g.Params); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(rec))
	vals := make([]float64, 0, len(rec))
	for k, v := range rec {
		if _, ok := v.(float64); ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // every rank must pass the values in the same order
	for _, k := range keys {
		vals = append(vals, rec[k].(float64))
	}
	mean, err := tr.DP.MeanScalars(vals...)
	if err != nil {
		return err
	}
	for i, k := range keys {
		rec[k] = mean[i]
	}
	rec["time/allreduce"] = time.Since(t0).Seconds()
	rec["world_size"] = tr.DP.Size()
	return nil
}

// state is what a checkpoint records besides tensors.
type state struct {
	Step          int64            `json:"step"`
	NonFiniteSeen int64            `json:"nonfinite_seen"`
	AdamSteps     map[string]int64 `json:"adam_steps"`
	User          json.RawMessage  `json:"user,omitempty"`
}

// Save writes a checkpoint of the current state and returns its directory.
// In a data-parallel run only the main rank writes (the state is the same on
// every rank) and the others wait for it.
func (tr *Trainer) Save() (string, error) {
	if tr.DP == nil {
		return tr.save()
	}
	var dir string
	var err error
	if tr.DP.IsMain() && tr.Manager != nil {
		dir, err = tr.save()
	}
	if berr := tr.DP.Barrier(); err == nil {
		err = berr
	}
	return dir, err
}

func (tr *Trainer) save() (string, error) {
	st := state{Step: tr.Step, NonFiniteSeen: tr.NonFiniteSeen, AdamSteps: map[string]int64{}, User: tr.State}
	for _, g := range tr.Groups {
		st.AdamSteps[g.Name] = g.Opt.StepCount
	}
	pos, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	return tr.Manager.Save(tr.Step, func(w *checkpoints.Writer) error {
		w.SetDataPosition(pos)
		for _, g := range tr.Groups {
			for i, p := range g.Params {
				if err := addTensor(w, g.Name+"/"+g.Names[i], checkpoints.GroupModel, p); err != nil {
					return err
				}
			}
			st := g.Opt.State()
			keys := make([]string, 0, len(st))
			for k := range st {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := addTensor(w, g.Name+"/adamw/"+k, checkpoints.GroupOptim, st[k]); err != nil {
					return err
				}
			}
		}
		names := make([]string, 0, len(tr.Blobs))
		for n := range tr.Blobs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := w.AddBlob(n, tr.Blobs[n]); err != nil {
				return err
			}
		}
		return nil
	})
}

var ckptDTypes = map[torch.DType]checkpoints.DType{
	torch.Float32: "F32", torch.Float64: "F64", torch.Float16: "F16", torch.BFloat16: "BF16",
	torch.Int64: "I64", torch.Int32: "I32", torch.Uint8: "U8", torch.Bool: "BOOL",
}

func addTensor(w *checkpoints.Writer, name, group string, t *torch.Tensor) error {
	var b []byte
	if err := torch.Try(func() { b = t.Bytes() }); err != nil {
		return fmt.Errorf("tensor %s: %w", name, err)
	}
	dt, ok := ckptDTypes[t.DType()]
	if !ok {
		return fmt.Errorf("tensor %s: dtype %v cannot be checkpointed", name, t.DType())
	}
	return w.AddTensor(checkpoints.TensorInfo{Name: name, Group: group, DType: dt, Shape: t.Shape()}, b)
}

// Resume loads the newest complete checkpoint of the manager's directory into
// the groups (parameters and optimizer state, in place) and the trainer's
// counters. It returns false when there is none.
func (tr *Trainer) Resume() (bool, error) {
	r, skipped, err := tr.Manager.OpenLatest(true)
	if err != nil {
		return false, err
	}
	if r == nil {
		return false, nil
	}
	defer r.Close()
	for _, e := range skipped {
		fmt.Fprintf(os.Stderr, "resume: skipped a damaged checkpoint: %v\n", e)
	}
	var st state
	if err := json.Unmarshal(r.Manifest().DataPosition, &st); err != nil {
		return false, fmt.Errorf("%s: data position: %w", r.Dir(), err)
	}
	for _, g := range tr.Groups {
		for i, p := range g.Params {
			if err := loadInto(r, g.Name+"/"+g.Names[i], p); err != nil {
				return false, err
			}
		}
		for k, t := range g.Opt.State() {
			if err := loadInto(r, g.Name+"/adamw/"+k, t); err != nil {
				return false, err
			}
		}
		n, ok := st.AdamSteps[g.Name]
		if !ok {
			return false, fmt.Errorf("%s: no optimizer step count for %q", r.Dir(), g.Name)
		}
		g.Opt.StepCount = n
	}
	tr.Step, tr.NonFiniteSeen, tr.State = st.Step, st.NonFiniteSeen, st.User
	return true, nil
}

func loadInto(r *checkpoints.Reader, name string, t *torch.Tensor) error {
	e, ok := r.Entry(name)
	if !ok {
		return fmt.Errorf("%s: checkpoint has no tensor %q", r.Dir(), name)
	}
	if !equal(e.Shape, t.Shape()) {
		return fmt.Errorf("%s: tensor %q has shape %v, the model has %v", r.Dir(), name, e.Shape, t.Shape())
	}
	b, err := r.ReadTensorAlloc(name)
	if err != nil {
		return err
	}
	return torch.Try(func() {
		src := torch.FromBytes(b, t.DType(), t.Shape(), t.Device())
		defer src.Close()
		t.CopyInto(0, 0, src)
	})
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// OpenMetrics opens (appending) a metrics JSONL file in dir.
func OpenMetrics(dir, name string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
}
