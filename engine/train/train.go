// Package train is the engine's training loop: AdamW with warm-up then cosine
// learning rate, gradient accumulation, global-norm clipping, skipping of
// non-finite steps (and a clear stop after too many in a row), periodic
// atomic checkpoints of the whole state (parameters, optimizer moments, step,
// data position, config, tokenizer) and exact resume, metrics as JSONL, a
// progress line, and per-phase timing.
//
// Interruption: a run takes a context (Trainer.Ctx). When it is cancelled the
// loop finishes the optimizer step in progress, writes a checkpoint of that
// step and returns an *Interrupted error (which wraps context.Canceled and
// the context's cause); resuming from that checkpoint continues exactly as an
// uninterrupted run would. Resume refuses a checkpoint whose tensors differ
// in name, shape or dtype from the model, or whose config differs from the
// current one (unless ForceConfig), and cuts the metrics file back to the
// resumed step so that no step is logged twice.
//
// Determinism: the loop keeps no hidden random state. A step's data and its
// sampling randomness are derived from (seed, step) by the caller's step
// function, so a resumed run makes the same updates as an uninterrupted one.
package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/jsonl"
	"github.com/ares-rlhf/ares/internal/progress"
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
	Progress  io.Writer // nil: no progress display (see internal/progress)
	Label     string    // shown in the progress display
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
	// Ctx interrupts the run when it is cancelled (nil: never). The loop
	// stops at the next step boundary, checkpoints that step and returns an
	// *Interrupted error. In a data-parallel run the ranks agree on the step
	// to stop after (a cancelled context on any rank stops every rank after
	// the same step), so that they stay in step and save one checkpoint.
	Ctx context.Context
	// ForceConfig lets Resume continue from a checkpoint whose config blob
	// (checkpoints.BlobConfig) differs from Blobs' (see CheckResumeConfig).
	ForceConfig bool

	Step          int64 // next step to run
	NonFiniteRun  int
	NonFiniteSeen int64

	// hasSaved says that a checkpoint of step savedStep exists (written by
	// Save or resumed from), in directory saved ("" on a data-parallel rank
	// that does not write).
	hasSaved  bool
	saved     string
	savedStep int64
}

// Interrupted is the error of a run stopped by its context. It wraps the
// context's error (context.Canceled or context.DeadlineExceeded) and its
// cause (context.Cause), so errors.Is works with either.
type Interrupted struct {
	Label string // the run's label (Config.Label)
	Step  int64  // steps done: the step a resume continues from
	Steps int64  // the run's total steps
	// Dir is the checkpoint directory holding step Step ("" when this
	// process wrote none: no manager, or a data-parallel rank other than 0).
	Dir string
	// SaveErr is why the interrupted step's checkpoint could not be written.
	SaveErr error
	Cause   error // context.Cause of the run's context
	ctxErr  error
}

func (e *Interrupted) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "interrupted after step %d of %d", e.Step, e.Steps)
	switch {
	case e.SaveErr != nil:
		fmt.Fprintf(&b, "; its checkpoint could not be saved: %v", e.SaveErr)
	case e.Dir != "":
		fmt.Fprintf(&b, "; checkpoint of step %d in %s", e.Step, e.Dir)
	default:
		b.WriteString("; no checkpoint written by this process")
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, ": %v", e.Cause)
	}
	return b.String()
}

func (e *Interrupted) Unwrap() []error {
	var out []error
	for _, err := range []error{e.ctxErr, e.Cause, e.SaveErr} {
		if err != nil && !(len(out) > 0 && err == out[len(out)-1]) {
			out = append(out, err)
		}
	}
	return out
}

// errPeerInterrupted is the cause on a data-parallel rank whose own context
// is live when another rank was interrupted.
var errPeerInterrupted = fmt.Errorf("another rank of the data-parallel job was interrupted: %w", context.Canceled)

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
	ctx := tr.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	bar := progress.New(tr.Cfg.Progress, progress.Options{Label: tr.Cfg.Label, Total: tr.Cfg.Steps, Start: tr.Step, Unit: "step"})
	// A run that stops early (an error, an interrupt) leaves the display
	// where it was; the command's next message ends its line.
	var metrics *jsonl.Writer
	if tr.Metrics != nil {
		metrics = jsonl.NewWriter(tr.Metrics)
		metrics.SetMarshal(func(v any) ([]byte, error) { return MarshalMetrics(v.(map[string]any)) })
	}
	end := tr.Cfg.Steps
	if tr.Cfg.StopAfter > 0 && tr.Cfg.StopAfter < end {
		end = tr.Cfg.StopAfter
	}
	for tr.Step < end {
		// One process checks its context before each step. Data-parallel
		// ranks decide together, after the step (see oneStep), because a
		// signal reaches each rank at a different moment.
		if tr.DP == nil && ctx.Err() != nil {
			return tr.interrupt(ctx)
		}
		rec, err := tr.oneStep(ctx, step)
		if err != nil {
			return err
		}
		stop := false
		if v, ok := rec[interruptKey]; ok {
			stop = v.(float64) > 0
			delete(rec, interruptKey)
		}
		if metrics != nil {
			if err := metrics.Write(rec); err != nil {
				if re, ok := err.(*jsonl.RecordError); ok {
					err = fmt.Errorf("metrics of step %d: %w", tr.Step, re.Err)
				}
				return err
			}
		}
		if bar != nil {
			bar.Update(tr.Step+1, progressDetail(rec))
		}
		tr.Step++
		if tr.saves() && tr.Cfg.CheckpointEvery > 0 && tr.Step%tr.Cfg.CheckpointEvery == 0 && tr.Step < end {
			if _, err := tr.Save(); err != nil {
				return err
			}
		}
		if stop && tr.Step < end {
			return tr.interrupt(ctx)
		}
	}
	bar.Finish()
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

// interrupt ends a run stopped by its context at a step boundary: it
// checkpoints the current step (unless that checkpoint exists already: a
// periodic save or the one resumed from) and returns the *Interrupted error.
func (tr *Trainer) interrupt(ctx context.Context) error {
	ie := &Interrupted{Label: tr.Cfg.Label, Step: tr.Step, Steps: tr.Cfg.Steps, ctxErr: ctx.Err(), Cause: context.Cause(ctx)}
	if ie.ctxErr == nil { // a data-parallel peer was interrupted, not this rank
		ie.ctxErr, ie.Cause = nil, errPeerInterrupted
	}
	if !tr.saves() {
		return ie
	}
	if tr.hasSaved && tr.savedStep == tr.Step {
		ie.Dir = tr.saved
		return ie
	}
	ie.Dir, ie.SaveErr = tr.Save()
	return ie
}

// interruptKey carries, in a data-parallel step's metrics, whether a rank's
// context was cancelled; the all-reduce makes it the same on every rank.
const interruptKey = "_interrupted"

func (tr *Trainer) oneStep(ctx context.Context, step StepFunc) (map[string]any, error) {
	timer := &Timer{phases: map[string]time.Duration{}}
	t0 := time.Now()
	sums := map[string]float64{}
	var lossSum float64
	finite := true
	if err := tr.zeroGrad(); err != nil {
		return nil, fmt.Errorf("step %d: %w", tr.Step, err)
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
		rec[interruptKey] = 0.0
		if ctx.Err() != nil {
			rec[interruptKey] = 1.0
		}
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
	if err := tr.zeroGrad(); err != nil {
		return nil, fmt.Errorf("step %d: %w", tr.Step, err)
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

// zeroGrad drops every group's gradients; a failure is an error, not a
// panic out of the step.
func (tr *Trainer) zeroGrad() error {
	return torch.Try(func() {
		for _, g := range tr.Groups {
			g.Opt.ZeroGrad()
		}
	})
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

// progressDetail is a step's metrics as the progress display shows them.
func progressDetail(rec map[string]any) string {
	d := fmt.Sprintf("loss %.4f", rec["loss"])
	for _, k := range []string{"reward", "accuracy"} {
		if v, ok := rec[k]; ok {
			d += fmt.Sprintf(" %s %.3f", k, v)
		}
	}
	return d
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
	var dir string
	var err error
	if tr.DP == nil {
		dir, err = tr.save()
	} else {
		if tr.DP.IsMain() && tr.Manager != nil {
			dir, err = tr.save()
		}
		if berr := tr.DP.Barrier(); err == nil {
			err = berr
		}
	}
	if err == nil {
		tr.hasSaved, tr.saved, tr.savedStep = true, dir, tr.Step
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
			for _, c := range g.checkpointTensors() {
				if err := addTensor(w, c.name, c.group, c.t); err != nil {
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

// ckptTensor is one tensor of a group as a checkpoint holds it.
type ckptTensor struct {
	name  string // the checkpoint entry's name
	group string // checkpoints.GroupModel or checkpoints.GroupOptim
	t     *torch.Tensor
}

// checkpointTensors lists g's tensors in the order save writes them: the
// parameters (g.Name/parameter name), then the optimizer state sorted by key
// (g.Name/adamw/key).
func (g *Group) checkpointTensors() []ckptTensor {
	out := make([]ckptTensor, 0, len(g.Params))
	for i, p := range g.Params {
		out = append(out, ckptTensor{g.Name + "/" + g.Names[i], checkpoints.GroupModel, p})
	}
	st := g.Opt.State()
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, ckptTensor{g.Name + "/adamw/" + k, checkpoints.GroupOptim, st[k]})
	}
	return out
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
//
// Nothing is loaded unless the whole checkpoint fits: every tensor present
// with the model's shape and dtype, an optimizer step count for every group,
// and, unless ForceConfig, the same config as Blobs' (CheckResumeConfig).
// Then the metrics writer, when it can be cut (a MetricsTruncater such as a
// *MetricsFile), loses the records of the steps the resumed run will log
// again: those of the resumed step and later (all of them when there is no
// checkpoint, since the run then starts at step 0).
func (tr *Trainer) Resume() (bool, error) {
	r, skipped, err := tr.Manager.OpenLatest(true)
	if err != nil {
		return false, err
	}
	if r == nil {
		return false, tr.truncateMetrics(0)
	}
	defer r.Close()
	for _, e := range skipped {
		fmt.Fprintf(os.Stderr, "resume: skipped a damaged checkpoint: %v\n", e)
	}
	var st state
	if err := json.Unmarshal(r.Manifest().DataPosition, &st); err != nil {
		return false, fmt.Errorf("%s: data position: %w", r.Dir(), err)
	}
	if !tr.ForceConfig {
		if err := tr.checkConfig(r); err != nil {
			return false, err
		}
	}
	var loads []ckptTensor
	for _, g := range tr.Groups {
		loads = append(loads, g.checkpointTensors()...)
		if _, ok := st.AdamSteps[g.Name]; !ok {
			return false, fmt.Errorf("%s: no optimizer step count for %q", r.Dir(), g.Name)
		}
	}
	for _, l := range loads {
		if err := checkEntry(r, l.name, l.t); err != nil {
			return false, err
		}
	}
	for _, l := range loads {
		if err := loadInto(r, l.name, l.t); err != nil {
			return false, err
		}
	}
	for _, g := range tr.Groups {
		g.Opt.StepCount = st.AdamSteps[g.Name]
	}
	tr.Step, tr.NonFiniteSeen, tr.State = st.Step, st.NonFiniteSeen, st.User
	tr.hasSaved, tr.saved, tr.savedStep = true, r.Dir(), st.Step
	return true, tr.truncateMetrics(st.Step)
}

// checkConfig compares the checkpoint's config blob with the current one
// (both present) and refuses a change (CheckResumeConfig).
func (tr *Trainer) checkConfig(r *checkpoints.Reader) error {
	cur, ok := tr.Blobs[checkpoints.BlobConfig]
	if !ok {
		return nil
	}
	has := false
	for _, n := range r.Blobs() {
		has = has || n == checkpoints.BlobConfig
	}
	if !has {
		return nil // written without a config: nothing to compare
	}
	saved, err := r.Blob(checkpoints.BlobConfig)
	if err != nil {
		return err
	}
	return CheckResumeConfig(r.Dir(), saved, cur)
}

func (tr *Trainer) truncateMetrics(step int64) error {
	if t, ok := tr.Metrics.(MetricsTruncater); ok {
		return t.TruncateMetrics(step)
	}
	return nil
}

// checkEntry checks that the checkpoint has tensor name with t's dtype and
// shape.
func checkEntry(r *checkpoints.Reader, name string, t *torch.Tensor) error {
	e, ok := r.Entry(name)
	if !ok {
		return fmt.Errorf("%s: checkpoint has no tensor %q", r.Dir(), name)
	}
	want, ok := ckptDTypes[t.DType()]
	if !ok {
		return fmt.Errorf("%s: tensor %q: the model's dtype %v cannot be checkpointed", r.Dir(), name, t.DType())
	}
	if e.DType != want {
		return fmt.Errorf("%s: tensor %q is %s in the checkpoint, the model's is %s (%v)", r.Dir(), name, e.DType, want, t.DType())
	}
	if !slices.Equal(e.Shape, t.Shape()) {
		return fmt.Errorf("%s: tensor %q has shape %v, the model has %v", r.Dir(), name, e.Shape, t.Shape())
	}
	return nil
}

// loadInto copies tensor name of the checkpoint into t (checked by
// checkEntry).
func loadInto(r *checkpoints.Reader, name string, t *torch.Tensor) error {
	if err := checkEntry(r, name, t); err != nil {
		return err
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
