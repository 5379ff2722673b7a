package train

import (
	"encoding/json"
	"math"
	"testing"
)

// TestMarshalMetricsNonFinite: NaN and infinities are written as null, so
// the line stays a JSON record instead of becoming empty.
func TestMarshalMetricsNonFinite(t *testing.T) {
	b, err := MarshalMetrics(map[string]any{"step": int64(3), "loss": math.NaN(), "grad_norm/p": math.Inf(1), "lr/p": 0.5, "x": float32(math.Inf(-1))})
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if back["loss"] != nil || back["grad_norm/p"] != nil || back["x"] != nil || back["lr/p"] != 0.5 || back["step"] != 3.0 {
		t.Fatalf("record %s", b)
	}
	if _, ok := back["loss"]; !ok {
		t.Fatalf("loss key dropped: %s", b)
	}
}
