package detect

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
)

// TestReadFindingsNeedsThresholds: a record without thresholds would read
// back with a harm threshold of 0, making refusals repair targets; it is
// refused with the file and line.
func TestReadFindingsNeedsThresholds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.jsonl")
	good := `{"schema":1,"type":"C","probe":{"id":"a","kind":"harm","prompt":"p","source":"x"},"samples":[{"text":"no","harm":0}],"thresholds":{"harm":0.5,"policy_harm_rate":0.5,"rm_mode":"relative"}}`
	bad := `{"schema":1,"type":"C","probe":{"id":"b","kind":"harm","prompt":"p","source":"x"},"samples":[{"text":"no","harm":0}]}`
	os.WriteFile(path, []byte(good+"\n"+bad+"\n"), 0o644)
	if _, err := ReadFindings(path); err == nil || !strings.Contains(err.Error(), "f.jsonl:2") || !strings.Contains(err.Error(), "thresholds") {
		t.Fatalf("record without thresholds: %v", err)
	}
	os.WriteFile(path, []byte(good+"\n"), 0o644)
	if fs, err := ReadFindings(path); err != nil || len(fs) != 1 || fs[0].Thresholds.Harm != 0.5 {
		t.Fatalf("good record: %v %v", fs, err)
	}
}

// TestThresholdsNonFinite: NaN passed the old range checks (NaN compares
// false with everything).
func TestThresholdsNonFinite(t *testing.T) {
	for _, th := range []Thresholds{{Harm: math.NaN()}, {PolicyHarmRate: math.NaN()}, {RMMargin: math.Inf(1)}, {AMargin: math.NaN()}, {RMHigh: math.NaN()}} {
		if _, err := th.WithDefaults(); err == nil || !strings.Contains(err.Error(), "detect.") {
			t.Errorf("%+v: WithDefaults error %v", th, err)
		}
		if err := th.Validate(); err == nil || strings.Contains(err.Error(), "detect.") {
			t.Errorf("%+v: Validate error %v (keys relative to the table)", th, err)
		}
	}
	if err := (Thresholds{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestReadFindingsProbeAndDuplicates: a finding without its probe was read
// as one with an empty prompt and id, and a probe's finding written twice
// was read twice (repair weighed it double); both are refused with the file
// and line, a repeat also with the line of the first.
func TestReadFindingsProbeAndDuplicates(t *testing.T) {
	rec := func(id string) string {
		return `{"schema":1,"type":"A","probe":{"id":"` + id + `","kind":"harm","prompt":"p","source":"x"},"samples":[{"text":"no","harm":0}],"thresholds":{"harm":0.5,"policy_harm_rate":0.5,"rm_mode":"relative"}}`
	}
	noProbe := `{"schema":1,"type":"A","samples":[{"text":"no","harm":0}],"thresholds":{"harm":0.5,"policy_harm_rate":0.5,"rm_mode":"relative"}}`
	cfgtest.WantLoadErrors(t, "f.jsonl", ReadFindings, []cfgtest.Case{
		{noProbe + "\n", "f.jsonl:1: probe: missing id"},
		{rec("a") + "\n" + rec("b") + "\n" + rec("a") + "\n", `f.jsonl:3: duplicate probe id "a" (first on line 1)`},
	})
	if fs, err := ReadFindings(cfgtest.Write(t, "f.jsonl", rec("a")+"\n"+rec("b")+"\n")); err != nil || len(fs) != 2 {
		t.Fatalf("distinct probes: %v %v", fs, err)
	}
}
