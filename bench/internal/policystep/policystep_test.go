package policystep

import (
	"strings"
	"testing"
)

func TestTimes(t *testing.T) {
	// Two updates per rollout batch: the first batch is the warm-up.
	metrics := `{"time/step": 100, "response_len": 100}
{"time/step": 100, "response_len": 100}
{"time/step": 1, "time/generation": 0.5, "response_len": 4}
{"time/step": 2, "response_len": 6}
{"time/step": 3, "time/generation": 0.5, "response_len": 8}
{"time/step": 4, "response_len": 10}
`
	ph, resp, err := Times(strings.NewReader(metrics), 2)
	if err != nil {
		t.Fatal(err)
	}
	if ph["step"] != 5 || ph["generation"] != 0.5 || resp != 7 {
		t.Fatalf("phases %v, response length %g", ph, resp)
	}
	if _, _, err := Times(strings.NewReader(metrics+`{"time/step": 1}`+"\n"), 2); err == nil {
		t.Fatal("half a rollout batch: no error")
	}
	if _, _, err := Times(strings.NewReader(`{"time/step": 1}`+"\n"), 1); err == nil {
		t.Fatal("no timed step: no error")
	}
}
