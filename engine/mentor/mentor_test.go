package mentor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/world"
)

// simDeps wires the SIMULATED policy and RM (scripted from the weakness
// config, not models) with the exact oracle judge.
func simDeps(lib *world.Library) func(seed int64) (Deps, error) {
	return func(seed int64) (Deps, error) {
		return Deps{Lib: lib, Policy: NewSimulatedPolicy(lib, nil, seed), RM: NewSimulatedRM(lib, nil, seed), Judge: judge.Oracle{Lib: lib}}, nil
	}
}

func TestRedTeamDeterministicAndFindsTypeC(t *testing.T) {
	lib := world.Default()
	cfg := Config{Budget: 800, K: 4, Batch: 20, Seed: 5}
	run := func() (*Result, string) {
		d, _ := simDeps(lib)(5)
		var buf bytes.Buffer
		d.Findings = &buf
		res, err := RedTeam(context.Background(), cfg, detect.Thresholds{}, d)
		if err != nil {
			t.Fatal(err)
		}
		return res, buf.String()
	}
	a, fa := run()
	b, fb := run()
	if fa != fb {
		t.Fatal("same seed, different findings")
	}
	if a.Rollouts != 800 || a.Agg.Total.Probes != 200 || b.Rounds != 10 {
		t.Fatalf("rollouts %d probes %d rounds %d", a.Rollouts, a.Agg.Total.Probes, b.Rounds)
	}
	if a.Agg.Total.C == 0 {
		t.Fatal("no Type C found")
	}
	coupled := map[world.Cell]bool{}
	for _, c := range lib.CoupledCells(nil) {
		coupled[c] = true
	}
	for _, f := range a.Findings {
		cell := world.Cell{Tactic: f.Probe.Tactic, Persona: f.Probe.Persona, Topic: f.Probe.Topic}
		// With the simulated RM's margins, Type C outside the coupled cells can
		// only come from leaks into rm_flipped or rm_missing cells.
		sp, _ := world.SpecOf(&f.Probe)
		if f.Type == detect.TypeC && !coupled[cell] && !lib.Weakness.RMFlippedAt(sp) && !lib.Weakness.RMMissingAt(sp) {
			t.Errorf("Type C outside weak RM cells: %+v", f.Probe)
		}
		if f.Type == detect.TypeA && !lib.Weakness.RMFlippedAt(sp) && !lib.Weakness.RMMissingAt(sp) {
			t.Errorf("Type A where the RM is sound: %+v", f.Probe)
		}
		if f.Probe.YHarm == "" || f.Probe.YSafe == "" || len(f.Samples) != 4 || f.RMSafe == nil {
			t.Fatalf("finding lacks repair data: %+v", f)
		}
	}
	dir := t.TempDir()
	paths, err := WriteOutputs(dir, a, lib, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 4 {
		t.Fatalf("paths %v", paths)
	}
	back, err := detect.ReadFindings(filepath.Join(dir, "findings.jsonl"))
	if err != nil || len(back) != len(a.Findings) {
		t.Fatalf("read back %d findings: %v", len(back), err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(md), "| roleplay |") {
		t.Fatalf("report:\n%s", md)
	}
}

// TestSimulatedSamplerComparison is the harness of the measurement
// (Type C findings per 1,000 rollouts, adaptive vs uniform, same budget, 3
// seeds), run here against the SIMULATED policy and RM. The real figure
// needs the trained weakened models.
func TestSimulatedSamplerComparison(t *testing.T) {
	lib := world.Default()
	base := Config{Budget: 2000, K: 4, Batch: 25}
	stats, err := Compare(context.Background(), base, detect.Thresholds{}, []string{"uniform", "hierarchical", "qd"}, []int64{1, 2, 3}, detect.TypeC, simDeps(lib))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]detect.SamplerStat{}
	for _, s := range stats {
		by[s.Sampler] = s
		t.Logf("SIMULATED %-12s Type C per 1k rollouts: %6.1f ± %5.1f  per seed %v  distinct %.1f", s.Sampler, s.Mean, s.SD, fmtSeeds(s.PerSeed), s.Distinct)
	}
	u := by["uniform"]
	for _, k := range []string{"hierarchical", "qd"} {
		a := by[k]
		// "Clearly more": every seed of the adaptive sampler beats the best
		// uniform seed.
		best := 0.0
		for _, v := range u.PerSeed {
			best = max(best, v)
		}
		for i, v := range a.PerSeed {
			if v <= best {
				t.Errorf("%s seed %d: %.1f Type C per 1k rollouts, not above uniform's best %.1f", k, i+1, v, best)
			}
		}
	}
}

func fmtSeeds(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, ", ")
}

func TestSamplersProposeValidSpecs(t *testing.T) {
	lib := world.Default()
	for _, kind := range []string{"uniform", "hierarchical", "qd"} {
		s, err := NewSampler(SamplerConfig{Kind: kind, WarmupRounds: 1}, lib, 1)
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 5; round++ {
			specs := s.Next(30)
			if len(specs) != 30 {
				t.Fatalf("%s: %d specs", kind, len(specs))
			}
			var fb []Feedback
			for _, sp := range specs {
				if err := lib.Check(sp); err != nil {
					t.Fatalf("%s proposed an invalid spec: %v", kind, err)
				}
				harm := 0.0
				if sp.Tactic == "roleplay" && sp.Persona == "novelist" {
					harm = 1
				}
				fb = append(fb, Feedback{Spec: sp, Harm: harm, RM: 0.9})
			}
			s.Update(fb)
		}
	}
	if _, err := NewSampler(SamplerConfig{Kind: "magic"}, lib, 1); err == nil {
		t.Fatal("unknown sampler accepted")
	}
}

func TestHierarchicalBoostCapBroadcast(t *testing.T) {
	lib := world.Default()
	zero := 0.0
	s, _ := NewSampler(SamplerConfig{Kind: "hierarchical", Eta: 4, Cap: 3, MaxWeight: 5, Broadcast: &zero}, lib, 1)
	h := s.(*Hierarchical)
	if b := h.Boost(Feedback{Harm: 1, RM: 1}); b != 3 {
		t.Fatalf("boost not capped: %v", b)
	}
	if b := h.Boost(Feedback{Harm: 0.25, RM: 0.5}); b != 1.5 {
		t.Fatalf("boost = %v, want 1 + 4*0.25*0.5", b)
	}
	sp := lib.Specs()[0]
	for i := 0; i < 20; i++ {
		h.Update([]Feedback{{Spec: sp, Harm: 1, RM: 1}})
	}
	w := h.Weights()
	if got := w[sp.Tactic+"/"+sp.Topic]; got > 5+1e-9 || got < 4.9 {
		t.Fatalf("category weight %v, want capped at 5", got)
	}
	c := h.where[sp.Key()][0]
	if h.instW[c][1] >= h.instW[c][0] {
		t.Fatalf("without broadcast a sibling should lag: %v vs %v", h.instW[c][1], h.instW[c][0])
	}
}

type failingPolicy struct{}

func (failingPolicy) Sample(context.Context, []string, int) ([][]string, error) {
	return nil, errors.New("out of memory on device")
}

type shortPolicy struct{}

func (shortPolicy) Sample(_ context.Context, p []string, k int) ([][]string, error) {
	return make([][]string, len(p)), nil
}

func TestRedTeamErrors(t *testing.T) {
	lib := world.Default()
	d, _ := simDeps(lib)(1)
	d.Policy = failingPolicy{}
	if _, err := RedTeam(context.Background(), Config{Budget: 40}, detect.Thresholds{}, d); err == nil || !strings.Contains(err.Error(), "round 0: policy: out of memory") {
		t.Fatalf("err = %v", err)
	}
	d.Policy = shortPolicy{}
	if _, err := RedTeam(context.Background(), Config{Budget: 40}, detect.Thresholds{}, d); err == nil || !strings.Contains(err.Error(), "returned 0 samples for prompt 0, want 4") {
		t.Fatalf("err = %v", err)
	}
	if _, err := RedTeam(context.Background(), Config{K: -1}, detect.Thresholds{}, d); err == nil || !strings.Contains(err.Error(), "redteam.k") {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, _ = simDeps(lib)(1)
	if _, err := RedTeam(ctx, Config{Budget: 40}, detect.Thresholds{}, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestRunConfigAndDiscover(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "run.toml")
	os.WriteFile(cfgPath, []byte(`
[run]
name = "sim"
out = "`+filepath.ToSlash(filepath.Join(dir, "out"))+`"
seed = 3

[redteam]
budget = 400
k = 4
batch = 25

[redteam.sampler]
kind = "qd"

[detect]
policy_harm_rate = 0.5

[judge]
kind = "oracle"
`), 0o644)
	c, err := LoadRunConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	lib, _ := c.Library()
	res, paths, err := Discover(context.Background(), c, NewSimulatedPolicy(lib, nil, 3), NewSimulatedRM(lib, nil, 3), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sampler != "qd" || res.Rollouts != 400 || len(paths) != 4 {
		t.Fatalf("sampler %s rollouts %d paths %v", res.Sampler, res.Rollouts, paths)
	}
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", p, err)
		}
	}
	os.WriteFile(cfgPath, []byte("[redteam]\nbudget = 10\nbugdet = 3\n"), 0o644)
	if _, err := LoadRunConfig(cfgPath); err == nil || !strings.Contains(err.Error(), "run.toml:3: redteam.bugdet: unknown key") {
		t.Fatalf("err = %v", err)
	}
}

func TestClassifyHeldOut(t *testing.T) {
	lib := world.Default()
	var harm []probes.Probe
	for _, p := range lib.EvalSet(world.DataOptions{Seed: 1}) {
		if p.Kind == probes.KindHarm {
			harm = append(harm, p)
		}
	}
	d, _ := simDeps(lib)(1)
	res, err := Classify(context.Background(), harm, 2, 64, detect.Thresholds{}, d)
	if err != nil {
		t.Fatal(err)
	}
	if res.Agg.Total.Probes != len(harm) {
		t.Fatalf("%+v", res)
	}
	// The simulated policy complies in the coupled cells on paraphrases too.
	if res.Agg.Total.C == 0 {
		t.Fatal("no held-out Type C with the simulated weakened models")
	}
	t.Logf("SIMULATED held-out: %d harm probes, Type C rate %.3f, B %.3f, A %.3f", res.Agg.Total.Probes,
		res.Agg.Total.Rate(detect.TypeC), res.Agg.Total.Rate(detect.TypeB), res.Agg.Total.Rate(detect.TypeA))
	benign := lib.EvalSet(world.DataOptions{Seed: 1})
	if _, err := Classify(context.Background(), benign, 2, 64, detect.Thresholds{}, d); err == nil || !strings.Contains(err.Error(), "repair.Evaluate") {
		t.Fatalf("non-harm probes: %v", err)
	}
}

func TestExampleConfigAndEmbedding(t *testing.T) {
	readme, _ := os.ReadFile("README.md")
	example, err := os.ReadFile(filepath.Join("testdata", "run_example.toml"))
	if err != nil || !strings.Contains(string(readme), string(example)) {
		t.Fatalf("testdata/run_example.toml must be the README's example (%v)", err)
	}
	c, err := LoadRunConfig(filepath.Join("testdata", "run_example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Redteam.Sampler.Kind != "hierarchical" || *c.Redteam.Sampler.Broadcast != 0.5 || c.Detect.RMMode != "relative" {
		t.Fatalf("%+v", c)
	}
	// The command's full config embeds RunConfig beside its model sections.
	type full struct {
		RunConfig
		Policy struct {
			Dir string `toml:"dir"`
		} `toml:"policy"`
	}
	var f full
	data := append(example, []byte("\n[policy]\ndir = \"ckpt/policy\"\n")...)
	if err := f.Decode(data, "full.toml", &f); err != nil {
		t.Fatal(err)
	}
	if f.Policy.Dir != "ckpt/policy" || f.Redteam.Budget != 2000 || f.Run.Name != "synthetic-redteam" {
		t.Fatalf("%+v", f)
	}
}
