package pipeline

import (
	"testing"

	"github.com/ares-rlhf/ares/engine/detect"
)

// TestRepairDataNoThreshold: a finding without a harm threshold turns no
// sample (the refusal "safe" at harm 0 included) into a repair target.
func TestRepairDataNoThreshold(t *testing.T) {
	f := finding(detect.TypeC)
	f.Thresholds = detect.Thresholds{}
	pairs, pd := RepairData([]detect.Finding{f})
	for _, p := range pairs {
		if p.Rejected == "safe" {
			t.Fatalf("refusal became a rejected response: %+v", pairs)
		}
	}
	for _, e := range pd.Harmful {
		if e.Response == "safe" {
			t.Fatalf("refusal became an unlikelihood target: %+v", pd.Harmful)
		}
	}
}
