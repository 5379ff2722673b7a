package mentor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/world"
)

var outputFiles = []string{"findings.jsonl", "findings.state.json", "summary.json", "report.md", "heatmap_c.svg"}

func simRunConfig(dir, kind string, budget int) *RunConfig {
	c := &RunConfig{}
	c.Run.Name, c.Run.Out = "sim", dir
	c.Redteam = Config{Budget: budget, K: 4, Batch: 20, Seed: 7, Sampler: SamplerConfig{Kind: kind, WarmupRounds: 2}}
	return c
}

// cancellingPolicy is the simulated policy that cancels the run inside its
// sampling call number `at` (1-based), after drawing that call's samples:
// an interruption in the middle of a round, with the policy's random state
// already moved on.
type cancellingPolicy struct {
	*SimulatedPolicy
	at, calls int
	cancel    context.CancelFunc
}

func (p *cancellingPolicy) Sample(ctx context.Context, prompts []string, k int) ([][]string, error) {
	p.calls++
	out, err := p.SimulatedPolicy.Sample(ctx, prompts, k)
	if p.calls == p.at {
		p.cancel()
		return nil, ctx.Err()
	}
	return out, err
}

func discoverSim(t *testing.T, ctx context.Context, c *RunConfig, pol Policy, resume bool) (*Result, error) {
	t.Helper()
	lib := world.Default()
	if pol == nil {
		pol = NewSimulatedPolicy(lib, nil, 11)
	}
	res, _, err := DiscoverWith(ctx, c, DiscoverOptions{Policy: pol, RM: NewSimulatedRM(lib, nil, 11), Resume: resume})
	return res, err
}

func sameOutputs(t *testing.T, want, got string) {
	t.Helper()
	for _, f := range outputFiles {
		a, err := os.ReadFile(filepath.Join(want, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(got, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the uninterrupted run and the resumed one (%d and %d bytes)", f, len(a), len(b))
		}
	}
}

// TestResumeEqualsUninterrupted interrupts red-team runs of every sampler
// (the simulated policy and RM) in the middle of a round, by cancelling
// the context, and by a budget cut; the resumed runs' findings, state,
// summary, report and heatmap equal an uninterrupted run's byte for byte.
func TestResumeEqualsUninterrupted(t *testing.T) {
	lib := world.Default()
	for _, kind := range []string{"uniform", "hierarchical", "qd"} {
		t.Run(kind, func(t *testing.T) {
			root := t.TempDir()
			full := filepath.Join(root, "full")
			ref, err := discoverSim(t, context.Background(), simRunConfig(full, kind, 800), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if ref.Rollouts != 800 || ref.Rounds != 10 || len(ref.Findings) == 0 {
				t.Fatalf("reference run: %d rollouts, %d rounds, %d findings", ref.Rollouts, ref.Rounds, len(ref.Findings))
			}
			if err := CheckFindings(filepath.Join(full, "findings.jsonl")); err != nil {
				t.Fatalf("complete run refused: %v", err)
			}

			// Cancelled in round 4 (0-based 3), then again in the resumed
			// run's round 7; each interruption leaves the state of the
			// last completed round.
			dir := filepath.Join(root, "cancelled")
			ctx, cancel := context.WithCancel(context.Background())
			pol := &cancellingPolicy{SimulatedPolicy: NewSimulatedPolicy(lib, nil, 11), at: 4, cancel: cancel}
			_, err = discoverSim(t, ctx, simRunConfig(dir, kind, 800), pol, false)
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted at rollout 240 of 800") {
				t.Fatalf("cancelled run: %v", err)
			}
			fpath := filepath.Join(dir, "findings.jsonl")
			st, err := ReadState(StatePath(fpath))
			if err != nil || st.Status != StatusInterrupted || st.Rollouts != 240 || st.Round != 3 {
				t.Fatalf("state after cancel: %+v, %v", st, err)
			}
			if err := CheckFindings(fpath); err == nil || !strings.Contains(err.Error(), "interrupted at rollout 240 of 800") {
				t.Fatalf("CheckFindings on an interrupted run: %v", err)
			}
			// A round that was being written when the process died: the
			// resumed run cuts it off.
			f, _ := os.OpenFile(fpath, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(`{"schema":1,"run":"sim","round":3,"type":"C","probe":{"id":"half-writ`)
			f.Close()

			ctx, cancel = context.WithCancel(context.Background())
			pol = &cancellingPolicy{SimulatedPolicy: NewSimulatedPolicy(lib, nil, 99), at: 4, cancel: cancel}
			if _, err = discoverSim(t, ctx, simRunConfig(dir, kind, 800), pol, true); !errors.Is(err, context.Canceled) ||
				!strings.Contains(err.Error(), "interrupted at rollout 480 of 800") {
				t.Fatalf("second cancel: %v", err)
			}
			res, err := discoverSim(t, context.Background(), simRunConfig(dir, kind, 800), NewSimulatedPolicy(lib, nil, 12345), true)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rollouts != ref.Rollouts || res.Rounds != ref.Rounds || len(res.Findings) != len(ref.Findings) {
				t.Fatalf("resumed: %d rollouts %d rounds %d findings; uninterrupted %d %d %d", res.Rollouts, res.Rounds, len(res.Findings),
					ref.Rollouts, ref.Rounds, len(ref.Findings))
			}
			sameOutputs(t, full, dir)
			if _, err := detect.ReadFindings(fpath); err != nil {
				t.Fatal(err)
			}

			// A budget cut at a round boundary, then the full budget.
			cut := filepath.Join(root, "cut")
			if _, err := discoverSim(t, context.Background(), simRunConfig(cut, kind, 400), nil, false); err != nil {
				t.Fatal(err)
			}
			if _, err := discoverSim(t, context.Background(), simRunConfig(cut, kind, 800), NewSimulatedPolicy(lib, nil, 3), true); err != nil {
				t.Fatal(err)
			}
			sameOutputs(t, full, cut)
		})
	}
}

func TestResumeRefusesAnotherRunOrAChangedFile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "out")
	if _, err := discoverSim(t, context.Background(), simRunConfig(dir, "hierarchical", 160), nil, true); err == nil || !strings.Contains(err.Error(), "no state file") {
		t.Fatalf("resume without a state: %v", err)
	}
	if _, err := discoverSim(t, context.Background(), simRunConfig(dir, "hierarchical", 160), nil, false); err != nil {
		t.Fatal(err)
	}
	c := simRunConfig(dir, "hierarchical", 320)
	c.Redteam.K = 2
	if _, err := discoverSim(t, context.Background(), c, nil, true); err == nil || !strings.Contains(err.Error(), "k was 4, is 2") {
		t.Fatalf("changed k: %v", err)
	}
	c = simRunConfig(dir, "qd", 320)
	if _, err := discoverSim(t, context.Background(), c, nil, true); err == nil || !strings.Contains(err.Error(), "sampler was") {
		t.Fatalf("changed sampler: %v", err)
	}
	// A policy that cannot carry its state over cannot resume a run whose
	// policy did.
	if _, err := discoverSim(t, context.Background(), simRunConfig(dir, "hierarchical", 320), failingPolicy{}, true); err == nil ||
		!strings.Contains(err.Error(), "cannot restore it") {
		t.Fatalf("stateless policy: %v", err)
	}
	fpath := filepath.Join(dir, "findings.jsonl")
	b, _ := os.ReadFile(fpath)
	os.WriteFile(fpath, bytes.Replace(b, []byte(`"type":"C"`), []byte(`"type":"B"`), 1), 0o644)
	if _, err := discoverSim(t, context.Background(), simRunConfig(dir, "hierarchical", 320), nil, true); err == nil || !strings.Contains(err.Error(), "the file was changed") {
		t.Fatalf("changed findings: %v", err)
	}
	os.WriteFile(fpath, b[:len(b)/2], 0o644)
	if _, err := discoverSim(t, context.Background(), simRunConfig(dir, "hierarchical", 320), nil, true); err == nil || !strings.Contains(err.Error(), "fewer than") {
		t.Fatalf("truncated findings: %v", err)
	}
	// A failed run (not a cancellation) is marked failed.
	dir2 := filepath.Join(root, "failed")
	lib := world.Default()
	pol := &nthFails{SimulatedPolicy: NewSimulatedPolicy(lib, nil, 11), at: 3}
	if _, err := discoverSim(t, context.Background(), simRunConfig(dir2, "uniform", 800), pol, false); err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Fatalf("failing run: %v", err)
	}
	if err := CheckFindings(filepath.Join(dir2, "findings.jsonl")); err == nil || !strings.Contains(err.Error(), "failed at rollout 160 of 800") ||
		!strings.Contains(err.Error(), "device lost") {
		t.Fatalf("CheckFindings: %v", err)
	}
}

type nthFails struct {
	*SimulatedPolicy
	at, calls int
}

func (p *nthFails) Sample(ctx context.Context, prompts []string, k int) ([][]string, error) {
	if p.calls++; p.calls == p.at {
		return nil, errors.New("device lost")
	}
	return p.SimulatedPolicy.Sample(ctx, prompts, k)
}

// shortContext is the simulated policy with a context that holds prompts
// of at most max bytes.
type shortContext struct {
	*SimulatedPolicy
	max int
}

func (p shortContext) CheckPrompt(prompt string) error {
	if len(prompt) > p.max {
		return fmt.Errorf("prompt of %d bytes is longer than the context (%d)", len(prompt), p.max)
	}
	return nil
}

func (p shortContext) Sample(ctx context.Context, prompts []string, k int) ([][]string, error) {
	for i, pr := range prompts {
		if len(pr) > p.max {
			return nil, fmt.Errorf("prompt %d exceeds the model's context", i)
		}
	}
	return p.SimulatedPolicy.Sample(ctx, prompts, k)
}

func TestLongProbesAreSkippedAndRecorded(t *testing.T) {
	lib := world.Default()
	dir := t.TempDir()
	c := simRunConfig(dir, "hierarchical", 400)
	pol := shortContext{NewSimulatedPolicy(lib, nil, 1), 110}
	res, _, err := DiscoverWith(context.Background(), c, DiscoverOptions{Policy: pol, RM: NewSimulatedRM(lib, nil, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) == 0 || res.Rollouts != 400 {
		t.Fatalf("%d skipped, %d rollouts", len(res.Skipped), res.Rollouts)
	}
	skipped := map[string]bool{}
	for _, s := range res.Skipped {
		if s.ID == "" || !strings.Contains(s.Reason, "longer than the context") {
			t.Fatalf("skip record %+v", s)
		}
		skipped[s.ID] = true
	}
	for _, f := range res.Findings {
		if skipped[f.Probe.ID] {
			t.Fatalf("skipped probe %s has a finding", f.Probe.ID)
		}
	}
	sum, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if !strings.Contains(string(sum), fmt.Sprintf(`"skipped_probes": %d`, len(res.Skipped))) || !strings.Contains(string(sum), res.Skipped[0].ID) {
		t.Fatalf("summary does not list the skipped probes:\n%s", sum)
	}
	// Every probe too long: the run stops with an error, not an endless loop.
	c = simRunConfig(t.TempDir(), "uniform", 400)
	_, _, err = DiscoverWith(context.Background(), c, DiscoverOptions{Policy: shortContext{NewSimulatedPolicy(lib, nil, 1), 5}, RM: NewSimulatedRM(lib, nil, 1)})
	if err == nil || !strings.Contains(err.Error(), "every probe of the last 10 rounds was skipped") {
		t.Fatalf("all skipped: %v", err)
	}
}

type nanRM struct{ *SimulatedRM }

func (m nanRM) Score(ctx context.Context, p, r []string) ([]float64, error) {
	s, err := m.SimulatedRM.Score(ctx, p, r)
	if len(s) > 5 {
		s[5] = math.NaN()
	}
	return s, err
}

type nanJudge struct{}

func (nanJudge) Name() string { return "nan" }
func (nanJudge) Score(_ context.Context, items []judge.Item) ([]float64, error) {
	out := make([]float64, len(items))
	out[len(out)-1] = math.NaN()
	return out, nil
}

// TestNaNScoresAreNamed: a NaN from the RM or the judge is an error naming
// the model and the probe, not encoding/json's "unsupported value: NaN".
func TestNaNScoresAreNamed(t *testing.T) {
	lib := world.Default()
	d, _ := simDeps(lib)(1)
	d.RM = nanRM{NewSimulatedRM(lib, nil, 1)}
	if _, err := RedTeam(context.Background(), Config{Budget: 40, K: 4, Batch: 5}, detect.Thresholds{}, d); err == nil ||
		!strings.Contains(err.Error(), "reward model: the score of probe ") || !strings.Contains(err.Error(), "policy sample 1 is NaN") {
		t.Fatalf("NaN RM: %v", err)
	}
	d, _ = simDeps(lib)(1)
	d.Judge = nanJudge{}
	if _, err := RedTeam(context.Background(), Config{Budget: 40, K: 4, Batch: 5}, detect.Thresholds{}, d); err == nil ||
		!strings.Contains(err.Error(), "judge nan: the harm score of probe ") || !strings.Contains(err.Error(), "sample 3 (item 19) is NaN") {
		t.Fatalf("NaN judge: %v", err)
	}
	v := map[string]any{"comparison": []detect.SamplerStat{{Sampler: "qd", SD: math.NaN()}}}
	if _, err := marshalJSON("summary", v); err == nil || !strings.Contains(err.Error(), "summary.comparison[0].") || !strings.Contains(err.Error(), "is NaN") {
		t.Fatalf("marshal: %v", err)
	}
	f := &detect.Finding{Samples: []detect.Sample{{RM: math.Inf(1)}}}
	var buf bytes.Buffer
	w := detect.NewWriter(&buf)
	if err := findingErr(f, w.Write(f)); err == nil || !strings.Contains(err.Error(), "finding.samples[0].rm is +Inf") {
		t.Fatalf("finding: %v", err)
	}
}
