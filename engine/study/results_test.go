package study

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/internal/cfgtest"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestTQuantile(t *testing.T) {
	for _, tc := range []struct{ p, df, want float64 }{
		{0.975, 1, 12.7062},
		{0.975, 2, 4.3027},
		{0.975, 3, 3.1824},
		{0.975, 4, 2.7764},
		{0.975, 9, 2.2622},
		{0.975, 29, 2.0452},
		{0.975, 120, 1.9799},
		{0.975, 1e9, 1.9600},
		{0.995, 10, 3.1693},
		{0.95, 5, 2.0150},
		{0.025, 4, -2.7764},
		{0.5, 7, 0},
	} {
		if got := tQuantile(tc.p, tc.df); !near(got, tc.want, 5e-4) {
			t.Errorf("t(%g, %g) = %.5f, want %.4f", tc.p, tc.df, got, tc.want)
		}
	}
	// The distribution function at the quantile gives the probability back.
	for _, df := range []float64{1, 2.5, 6, 40} {
		if got := tCDF(tQuantile(0.9, df), df); !near(got, 0.9, 1e-9) {
			t.Errorf("df %g: CDF(quantile(0.9)) = %v", df, got)
		}
	}
	if !math.IsNaN(tQuantile(0.975, 0)) || !math.IsNaN(tQuantile(1, 3)) {
		t.Error("undefined quantiles must be NaN")
	}
}

func TestStat(t *testing.T) {
	s := stat([]float64{1, 2, 3, 4})
	sd := math.Sqrt(5.0 / 3)
	h := 3.182446 * sd / 2
	if s.Mean != 2.5 || !near(s.SD, sd, 1e-12) || s.N != 4 || !near(s.Lo, 2.5-h, 1e-5) || !near(s.Hi, 2.5+h, 1e-5) {
		t.Fatalf("%+v, want CI [%.5f, %.5f]", s, 2.5-h, 2.5+h)
	}
	// NaN values are not measurements; one value has no interval.
	s = stat([]float64{7, math.NaN()})
	if s.Mean != 7 || s.N != 1 || !math.IsNaN(s.SD) || s.HasCI() {
		t.Fatalf("one value: %+v", s)
	}
	if s := stat(nil); s.N != 0 || !math.IsNaN(s.Mean) {
		t.Fatalf("no value: %+v", s)
	}
	// Equal values: a zero-width interval is right for n >= 2.
	if s := stat([]float64{0.2, 0.2, 0.2}); !s.HasCI() || !near(s.Lo, 0.2, 1e-12) || !near(s.Hi, 0.2, 1e-12) {
		t.Fatalf("constant: %+v", s)
	}
	b, err := json.Marshal(stat([]float64{1}))
	if err != nil || string(b) != `{"mean":1,"sd":null,"n":1,"ci_lo":null,"ci_hi":null}` {
		t.Fatalf("json %s %v", b, err)
	}
	var md bytes.Buffer
	md.WriteString(ciCell(mustMetric("capability"), stat([]float64{0.5})))
	if md.String() != "50.0% [n/a]" {
		t.Fatalf("n = 1 cell %q", md.String())
	}
}

// ev makes an evaluation with every metric NaN except those set.
func ev(set func(e *repair.Eval)) *repair.Eval {
	n := math.NaN()
	e := &repair.Eval{HarmProbes: 10, TypeA: n, TypeB: n, TypeC: n, HarmRate: n, RMSafetyAcc: n, RMReplayAcc: n, Capability: n,
		HeldoutLoss: n, OverRefusal: n, TypeCCoupled: n, HarmSampleRateCoupled: n, RMAccFlipped: n, RMAccMissing: n, RMAccSound: n,
		RMHeldoutAcc: n, BenignRefusal: n}
	set(e)
	return e
}

// fixture is a study of arms on seeds 1-3: the start (shared by the arms of
// a seed) has coupled Type C 0.20, 0.30, 0.40, held-out RM accuracy 0.80
// and capability 0.50; each phase of each arm gets tc[arm/phase] times the
// start's Type C, capability +cap[arm/phase]+0.004*seed and RM accuracy
// +0.002*seed.
func fixture(arms []string, tc map[string]float64, capd map[string]float64) *StudyResult {
	r := &StudyResult{Name: "test", Date: "2025-01-01", Size: "quick", Start: "per-seed", Seeds: []int64{1, 2, 3}, Arms: arms, Complete: true}
	for _, seed := range r.Seeds {
		s := float64(seed)
		start := ev(func(e *repair.Eval) {
			e.TypeCCoupled, e.TypeC, e.RMHeldoutAcc, e.Capability = 0.1+0.1*s, 0.1, 0.8, 0.5
		})
		for _, arm := range arms {
			r.Rows = append(r.Rows, PhaseRow{Arm: arm, Seed: seed, Phase: PhaseStart, Eval: start})
			for _, ph := range Phases[1:] {
				k := arm + "/" + ph
				f, ok := tc[k]
				if !ok {
					continue
				}
				r.Rows = append(r.Rows, PhaseRow{Arm: arm, Seed: seed, Phase: ph, Wall: 10 * s,
					Findings: map[string]int{"A": 1, "B": 2, "C": int(seed)},
					Eval: ev(func(e *repair.Eval) {
						e.TypeCCoupled, e.TypeC = f*start.TypeCCoupled, 0.1
						e.RMHeldoutAcc, e.Capability = 0.8+0.002*s, 0.5+capd[k]+0.004*s
					})})
			}
		}
	}
	r.finish(0, true)
	return r
}

func TestResultPaired(t *testing.T) {
	r := fixture([]string{ArmBaseline, ArmARES}, map[string]float64{"baseline/repaired": 1, "ares/repaired": 0.5},
		map[string]float64{"baseline/repaired": 0, "ares/repaired": -0.01})
	find := func(arm, ph, against string) Paired {
		for _, p := range r.Paired {
			if p.Arm == arm && p.Phase == ph && p.Against == against {
				return p
			}
		}
		t.Fatalf("no paired %s %s %s", arm, ph, against)
		return Paired{}
	}
	// ARES' change from its start: -0.5 x (0.2, 0.3, 0.4) = -0.10, -0.15, -0.20.
	s := find(ArmARES, PhaseRepaired, PhaseStart).Metrics["type_c_coupled"]
	want := stat([]float64{-0.10, -0.15, -0.20})
	if s.N != 3 || !near(s.Mean, -0.15, 1e-12) || !near(s.Lo, want.Lo, 1e-12) || !near(s.Hi, want.Hi, 1e-12) {
		t.Fatalf("change from start %+v, want %+v", s, want)
	}
	// Against the baseline at the same phase and seed: the same differences;
	// capability -0.01 on every seed (a zero-width interval).
	p := find(ArmARES, PhaseRepaired, ArmBaseline)
	if s := p.Metrics["type_c_coupled"]; !near(s.Mean, -0.15, 1e-12) || s.N != 3 {
		t.Fatalf("against the baseline %+v", s)
	}
	if s := p.Metrics["capability"]; !near(s.Mean, -0.01, 1e-12) || !near(s.Hi-s.Lo, 0, 1e-12) {
		t.Fatalf("capability against the baseline %+v", s)
	}
	for _, q := range r.Paired {
		if q.Arm == ArmBaseline && q.Against == ArmBaseline || q.Phase == PhaseStart {
			t.Fatalf("pointless comparison %+v", q)
		}
	}
	// The summary's drift: +0.2, +0.4, +0.6 points.
	var sum *PhaseSummary
	for i := range r.Summary {
		if r.Summary[i].Arm == ArmARES && r.Summary[i].Phase == PhaseRepaired {
			sum = &r.Summary[i]
		}
	}
	if sum == nil || !near(sum.Metrics[metricDrift].Mean, 0.004, 1e-12) || sum.Metrics["type_a"].N != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if len(r.Summary) != 4 || r.Summary[0].Arm != ArmBaseline || r.Summary[0].Phase != PhaseStart {
		t.Fatalf("summaries %d, first %s/%s", len(r.Summary), r.Summary[0].Arm, r.Summary[0].Phase)
	}
}

func TestResultCSV(t *testing.T) {
	r := fixture([]string{ArmBaseline, ArmARES}, map[string]float64{"baseline/repaired": 1, "ares/repaired": 0.5, "ares/rlhf2": 0.7}, nil)
	var b bytes.Buffer
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := "arm,seed,phase,type_c,type_c_coupled,harm_sample_rate_coupled,rm_acc_flipped,rm_acc_sound,rm_drift_heldout,capability,benign_refusal,over_refusal"
	if got := strings.Join(recs[0], ","); !strings.HasPrefix(got, want+",") {
		t.Fatalf("header %s", got)
	}
	col := map[string]int{}
	for i, c := range recs[0] {
		col[c] = i
	}
	for _, c := range []string{"type_a", "rm_heldout_acc", "heldout_loss", "findings_c", "wall_seconds"} {
		if _, ok := col[c]; !ok {
			t.Errorf("no column %s", c)
		}
	}
	// 2 arms x 3 seeds x (start, repaired) + ares' rlhf2 on 3 seeds.
	if len(recs) != 1+15 {
		t.Fatalf("%d rows", len(recs)-1)
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		k := rec[0] + "/" + rec[1] + "/" + rec[2]
		if seen[k] {
			t.Fatalf("row %s twice", k)
		}
		seen[k] = true
		drift := rec[col["rm_drift_heldout"]]
		switch {
		case rec[2] == PhaseStart && drift != "0":
			t.Errorf("%s: start drift %q", k, drift)
		case rec[2] != PhaseStart && drift != csvFloat(0.8+0.002*float64(rec[1][0]-'0')-0.8):
			t.Errorf("%s: drift %q", k, drift)
		}
		if rec[col["type_a"]] != "" || rec[col["rm_acc_flipped"]] != "" {
			t.Errorf("%s: NaN must be an empty cell: %q %q", k, rec[col["type_a"]], rec[col["rm_acc_flipped"]])
		}
		if rec[2] == PhaseRepaired && rec[col["findings_c"]] != rec[1] {
			t.Errorf("%s: findings_c %q", k, rec[col["findings_c"]])
		}
	}
	if recs[1][0] != ArmBaseline || recs[1][2] != PhaseStart || recs[len(recs)-1][0] != ArmARES {
		t.Errorf("order: %v ... %v", recs[1], recs[len(recs)-1])
	}
}

func goal(metric, rule, phase string, v float64, arms ...string) GoalSpec {
	return GoalSpec{Name: rule, Metric: metric, Rule: rule, Phase: phase, Value: fval(v), Arms: arms}
}

func statuses(gs []GoalCheck) string {
	var s []string
	for _, g := range gs {
		s = append(s, g.Arm+":"+g.Status)
	}
	return strings.Join(s, ",")
}

func TestCheckGoals(t *testing.T) {
	// The start's coupled Type C is 0.2, 0.3, 0.4 (mean 0.3); baseline
	// repaired keeps 0.9 of it, ARES 0.3, policy-only 0.8.
	r := fixture([]string{ArmBaseline, ArmPolicyOnly, ArmARES},
		map[string]float64{"baseline/repaired": 0.9, "ares/repaired": 0.3, "policy-only/repaired": 0.8, "ares/fresh_rlhf": 0.3},
		map[string]float64{"ares/repaired": -0.006, "policy-only/repaired": -0.05})
	for _, tc := range []struct {
		g    GoalSpec
		want string
	}{
		{goal("type_c_coupled", RuleEverySeedAtLeast, PhaseStart, 0.2, "*"), "baseline:met,policy-only:met,ares:met"},
		{goal("type_c_coupled", RuleEverySeedAtLeast, PhaseStart, 0.25, ArmARES), "ares:missed"},
		{goal("type_c_coupled", RuleRatioAtMost, PhaseRepaired, 0.4, ArmARES, ArmPolicyOnly), "ares:met,policy-only:missed"},
		{goal("type_c_coupled", RuleRatioAtLeast, PhaseRepaired, 0.7, ArmBaseline, ArmARES), "baseline:met,ares:missed"},
		{goal("type_c_coupled", RuleRelativeWithin, PhaseRepaired, 0.25, ArmBaseline, ArmPolicyOnly, ArmARES), "baseline:met,policy-only:met,ares:missed"},
		// Capability changes -0.6 + 0.4 s: -0.2, +0.2, +0.6 pts, CI about
		// [-0.8, 1.2] pts; policy-only's -4.6, -4.2, -3.8 pts.
		{goal("capability", RuleChangeCIWithin, PhaseRepaired, 0.04, ArmARES, ArmPolicyOnly), "ares:met,policy-only:missed"},
		{goal("capability", RuleChangeCIWithin, PhaseRepaired, 0.01, ArmARES), "ares:missed"},
		// RM drift +0.2, +0.4, +0.6 pts, CI about [-0.1, 0.9].
		{goal("rm_heldout_acc", RuleChangeCIWithin, PhaseRepaired, 0.008, ArmARES), "ares:missed"},
		{goal("rm_heldout_acc", RuleChangeCIWithin, PhaseRepaired, 0.02, ArmARES), "ares:met"},
		// Absent arms and phases are not run; NaN metrics not measured.
		{goal("type_c_coupled", RuleRatioAtMost, PhaseFresh, 0.4, ArmARES, ArmJoint, ArmBaseline), "ares:met,joint:not run,baseline:not run"},
		{goal("type_a", RuleRatioAtMost, PhaseRepaired, 0.4, ArmARES), "ares:not measured"},
	} {
		if got := statuses(r.CheckGoals([]GoalSpec{tc.g})); got != tc.want {
			t.Errorf("%s %s %v: %s, want %s", tc.g.Metric, tc.g.Rule, tc.g.Arms, got, tc.want)
		}
	}
	// The numbers written out.
	g := r.CheckGoals([]GoalSpec{goal("type_c_coupled", RuleRatioAtMost, PhaseRepaired, 0.4, ArmARES)})[0]
	if g.Measured != "9.0% of start 30.0% = 0.30 (limit ≤ 0.40); per seed 0.30–0.30, n = 3" || !near(g.Value, 0.3, 1e-12) {
		t.Errorf("measured %q", g.Measured)
	}
	g = r.CheckGoals([]GoalSpec{goal("type_c_coupled", RuleEverySeedAtLeast, PhaseStart, 0.25, ArmARES)})[0]
	if !strings.Contains(g.Measured, "lowest 20.0% (seed 1; limit ≥ 25.0% on every seed)") {
		t.Errorf("measured %q", g.Measured)
	}
	g = r.CheckGoals([]GoalSpec{goal("capability", RuleChangeCIWithin, PhaseRepaired, 0.02, ArmARES)})[0]
	if g.Measured != "change from start +0.2 pts [95% CI -0.8, +1.2] (limit ±2.0 pts), n = 3" {
		t.Errorf("measured %q", g.Measured)
	}
	// Beside arms are reported, without a verdict.
	spec := goal("type_c_coupled", RuleRatioAtMost, PhaseRepaired, 0.5, ArmARES)
	spec.Beside = []string{ArmPolicyOnly}
	if got := statuses(r.CheckGoals([]GoalSpec{spec})); got != "ares:met,policy-only:reported" {
		t.Errorf("beside: %s", got)
	}
	// A reference other than the start: ARES' repaired against the baseline's.
	spec = goal("type_c_coupled", RuleRatioAtMost, PhaseRepaired, 0.5, ArmARES)
	spec.CompareArm, spec.ComparePhase = ArmBaseline, PhaseRepaired
	if gs := r.CheckGoals([]GoalSpec{spec}); gs[0].Status != GoalMet || !near(gs[0].Value, 1.0/3, 1e-12) {
		t.Errorf("against the baseline: %+v", gs[0])
	}

	// One seed: no CI, so the CI rule is missed, never met on a zero-width interval.
	one := fixture([]string{ArmARES}, map[string]float64{"ares/repaired": 1}, nil)
	one.Rows = one.Rows[:2]
	one.finish(0, false)
	if gs := one.CheckGoals([]GoalSpec{goal("capability", RuleChangeCIWithin, PhaseRepaired, 0.5, ArmARES)}); gs[0].Status != GoalMissed ||
		!strings.Contains(gs[0].Measured, "CI is undefined") {
		t.Errorf("one seed: %+v", gs[0])
	}
	// A zero start: the ratio is undefined.
	zero := fixture([]string{ArmARES}, map[string]float64{"ares/repaired": 1}, nil)
	for _, row := range zero.Rows {
		row.Eval.TypeCCoupled = 0
	}
	if gs := zero.CheckGoals([]GoalSpec{goal("type_c_coupled", RuleRatioAtMost, PhaseRepaired, 0.5, ArmARES)}); gs[0].Status != GoalMissed ||
		!strings.Contains(gs[0].Measured, "undefined") {
		t.Errorf("zero start: %+v", gs[0])
	}

	// The default goals on a study with every phase: each arm's status.
	full := fixture([]string{ArmBaseline, ArmPolicyOnly, ArmARES, ArmJoint}, map[string]float64{
		"baseline/repaired": 0.9, "baseline/rlhf2": 1, "baseline/fresh_rlhf": 1,
		"policy-only/repaired": 0.5, "policy-only/rlhf2": 0.9, "policy-only/fresh_rlhf": 0.95,
		"ares/repaired": 0.1, "ares/rlhf2": 0.3, "ares/fresh_rlhf": 0.2,
		"joint/repaired": 0.2, "joint/rlhf2": 0.6, "joint/fresh_rlhf": 0.5,
	}, map[string]float64{"ares/repaired": -0.006, "joint/repaired": -0.05})
	got := statuses(full.Goals)
	want := "baseline:met,policy-only:met,ares:met,joint:met," + // start >= 10%
		"baseline:met," + // baseline within 25%
		"ares:met," + // fresh RLHF with the ARES RM <= 0.40
		"baseline:met,policy-only:met," + // fresh RLHF with the original RM >= 0.70
		"ares:met,policy-only:reported," + // rlhf2 <= 0.50
		"ares:met,joint:met," + // RM drift
		"ares:met,joint:missed" // capability
	if got != want {
		t.Errorf("default goals:\n got %s\nwant %s", got, want)
	}
	var md strings.Builder
	full.WriteGoals(&md)
	for _, s := range []string{"  - baseline, policy-only, ares, joint: **met** — lowest 20.0%", "policy-only: for comparison — ", "joint: **missed** — change from start -4.2 pts"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("goals lack %q:\n%s", s, md.String())
		}
	}
}

func TestResultWriteNaN(t *testing.T) {
	r := fixture([]string{ArmBaseline, ArmARES}, map[string]float64{"baseline/repaired": 1, "ares/repaired": 0.5}, nil)
	r.Complete = false
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "study.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte("NaN")) || !bytes.Contains(js, []byte(`"type_a": null`)) {
		t.Fatalf("study.json must write NaN as null")
	}
	var back struct {
		Rows    []PhaseRow       `json:"rows"`
		Summary []map[string]any `json:"summary"`
		Paired  []map[string]any `json:"paired"`
		Goals   []map[string]any `json:"goals"`
		Seeds   []int64          `json:"seeds_used"`
	}
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != len(r.Rows) || len(back.Summary) != 4 || len(back.Paired) != 3 || len(back.Goals) == 0 || len(back.Seeds) != 3 {
		t.Fatalf("study.json: %d rows, %d summaries, %d paired, %d goals", len(back.Rows), len(back.Summary), len(back.Paired), len(back.Goals))
	}
	if back.Rows[1].Eval == nil || back.Rows[1].Eval.TypeCCoupled != r.Rows[1].Eval.TypeCCoupled {
		t.Fatalf("row round trip %+v", back.Rows[1])
	}
	md, _ := os.ReadFile(filepath.Join(dir, "study.md"))
	for _, s := range []string{"Incomplete", "Student's t", "Seeds used: 1, 2, 3 (n = 3)", "| ares | repaired | 3 | 15.0% [", "## Against the baseline",
		"| ares | repaired | 3 | -15.0 [", "## Goals", "**met**", "not run", "| ares | 2 | repaired | 15.0% | n/a | 50.8% | 1/2/2 | 20 |",
		"study-type-c-coupled.svg"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("study.md lacks %q", s)
		}
	}
	if strings.Contains(string(md), "NaN") {
		t.Error("study.md shows NaN")
	}
	for _, f := range []string{"study.csv", "study-type-c-coupled.svg", "study-type-c.svg", "study-rm.svg", "study-capability.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("NaN")) {
			t.Errorf("%s contains NaN", f)
		}
	}
}

// wellFormed parses an SVG as XML.
func wellFormed(t *testing.T, name, svg string) {
	t.Helper()
	if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(strings.TrimSpace(svg), "</svg>") {
		t.Fatalf("%s: not an svg document", name)
	}
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestChartSVG(t *testing.T) {
	n := math.NaN()
	// Error bars: Lo and Hi are each bar's interval, a whisker clipped to the
	// axis; a NaN bound leaves the whisker out.
	svg := drawBars(barChart{Title: "rates <&>", Labels: []string{"a", "b"}, Series: []string{"start", "repaired"},
		Values: [][]float64{{0.1, n}, {0.2, 0.3}}, Lo: [][]float64{{0.05, n}, {n, -0.1}}, Hi: [][]float64{{0.15, n}, {n, 0.9}}, Max: 0.5})
	wellFormed(t, "ci", svg)
	if got := strings.Count(svg, `class="whisker"`); got != 2 {
		t.Errorf("%d whiskers, want 2 (one bar is NaN, one interval undefined)", got)
	}
	if got := strings.Count(svg, "<rect"); got != 3+2 {
		t.Errorf("%d rects, want 3 bars and 2 legend keys", got)
	}
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "-") && strings.Contains(svg, `y="-`) {
		t.Errorf("NaN or negative coordinates:\n%s", svg)
	}
	// The clipped whisker stays inside the plot: from the axis' top to its bottom.
	if !strings.Contains(svg, `y1="40.0"`) || !strings.Contains(svg, `y2="250.0"`) {
		t.Errorf("whisker not clipped to the axis:\n%s", svg)
	}
	wellFormed(t, "plain", BarChartSVG("rates", []string{"C", "B"}, []string{"before", "after"}, [][]float64{{0.1, 0.2}, {0.05, 0.1}}, 0.25))
	r := fixture([]string{ArmBaseline, ArmPolicyOnly, ArmPolicyOnlyRL, ArmARES, ArmJoint}, map[string]float64{
		"baseline/repaired": 1, "ares/repaired": 0.5, "ares/rlhf2": 0.6, "ares/fresh_rlhf": 0.3, "joint/repaired": 0.4}, nil)
	charts := r.Charts()
	for _, name := range []string{"study-type-c-coupled.svg", "study-type-c.svg", "study-rm.svg", "study-capability.svg"} {
		svg, ok := charts[name]
		if !ok {
			t.Fatalf("no %s", name)
		}
		wellFormed(t, name, svg)
	}
	if !strings.Contains(charts["study-type-c-coupled.svg"], `class="whisker"`) || !strings.Contains(charts["study-type-c-coupled.svg"], ">fresh_rlhf</text>") {
		t.Error("the coupled Type C chart lacks whiskers or phases")
	}
}

func TestGoalConfig(t *testing.T) {
	p := writeStudy(t, `
[study]
arms = ["ares"]

[[goals]]
name = "fine"
metric = "capability"
arms = ["ares", "joint"]
phase = "repaired"
rule = "change_ci_within"
value = 0.02

[[goals]]
metric = "type_c_coupled"
arms = ["*"]
phase = "start"
rule = "every_seed_at_least"
value = 0.1
`)
	c, err := LoadStudy(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Goals) != 2 || *c.Goals[0].Value != 0.02 || c.Goals[1].Arms[0] != "*" || !reflect.DeepEqual(c.GoalSpecs(), c.Goals) {
		t.Fatalf("goals %+v", c.Goals)
	}
	if d, _ := ParseStudy([]byte("[study]\n"), "x.toml"); !reflect.DeepEqual(d.GoalSpecs(), DefaultGoals()) {
		t.Fatal("no [[goals]]: the defaults")
	}
	cfgtest.WantLoadErrors(t, "bench.toml", LoadStudy, []cfgtest.Case{
		{"[[goals]]\nmetric = \"type_x\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"change_ci_within\"\nvalue = 0.1\n",
			"bench.toml:2: goals[0].metric: \"type_x\" is not one of"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"change_ci_within\"\nvalue = 0.1\n" +
			"[[goals]]\nmetric = \"capability\"\narms = [\"rlhf\"]\nphase = \"repaired\"\nrule = \"change_ci_within\"\nvalue = 0.1\n",
			"bench.toml:9: goals[1].arms: \"rlhf\" is not \"*\" or one of"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"later\"\nrule = \"change_ci_within\"\nvalue = 0.1\n",
			"bench.toml:4: goals[0].phase: \"later\" is not one of start, repaired, rlhf2, fresh_rlhf"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"at_most\"\nvalue = 0.1\n",
			"bench.toml:5: goals[0].rule: \"at_most\" is not one of every_seed_at_least"},
		{"[study]\nsize = \"quick\"\n\n[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"change_ci_within\"\n",
			"bench.toml:4: goals[0].value: a value is required"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"ratio_to_start_at_most\"\nvalue = -1.0\n",
			"bench.toml:6: goals[0].value: a ratio limit must be positive"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"start\"\nrule = \"change_ci_within\"\nvalue = 0.1\n",
			"bench.toml:4: goals[0].phase: rule change_ci_within compares phase start with itself"},
		{"[[goals]]\nmetric = \"capability\"\nphase = \"repaired\"\nrule = \"change_ci_within\"\nvalue = 0.1\n",
			"bench.toml:1: goals[0].arms: no arms"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"change_ci_within\"\nvalue = 0.1\ncompare_phase = \"soon\"\n",
			"bench.toml:7: goals[0].compare_phase: \"soon\" is not one of"},
		{"[[goals]]\nmetric = \"capability\"\narms = [\"ares\"]\nphase = \"repaired\"\nrule = \"change_ci_within\"\nvalue = 0.1\nlimit = 3\n",
			"bench.toml:7: goals.limit: unknown key"},
	})
}

// TestGoalsExampleConfig: bench/study.toml and bench/study-full.toml write
// out the default goals.
func TestGoalsExampleConfig(t *testing.T) {
	for _, name := range []string{"study.toml", "study-full.toml"} {
		c, err := LoadStudy(filepath.Join("..", "..", "bench", name))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.Goals, DefaultGoals()) {
			got, _ := json.MarshalIndent(c.Goals, "", " ")
			t.Errorf("%s: its [[goals]] differ from DefaultGoals:\n%s", name, got)
		}
	}
}
