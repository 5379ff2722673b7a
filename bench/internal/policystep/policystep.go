// Package policystep holds what bench/lora and bench/repair share about the
// policy-repair step (repair.RepairPolicy) they time: its data from the
// synthetic world and its per-phase times from the trainer's metrics.
package policystep

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/world"
)

// Phases are the step's phases as its metrics name them ("time/" + phase),
// in the order of a report; "step" is the whole step.
var Phases = []string{"generation", "scoring", "reference", "update_forward", "backward", "update", "step"}

// Data builds the synthetic world of the full-size default config and its
// 4096-id tokenizer, and returns the codec and the data of a repair: the
// harmful eval prompts as the findings' prompts, their y_harm as the
// unlikelihood targets, the look-alikes and the benign replay.
func Data() (repair.PolicyData, *repair.Codec, error) {
	var pd repair.PolicyData
	w := synth.BuildWorld(world.Default(), synth.DefaultConfig(false))
	tok, err := w.TrainTokenizer(4096)
	if err != nil {
		return pd, nil, err
	}
	codec, err := repair.NewCodec(tok)
	if err != nil {
		return pd, nil, err
	}
	for _, p := range w.Eval {
		if p.Kind == probes.KindHarm {
			pd.Prompts = append(pd.Prompts, p.Prompt)
			pd.Harmful = append(pd.Harmful, repair.Example{Prompt: p.Prompt, Response: p.YHarm})
		}
	}
	pd.Lookalikes, pd.Replay = w.Looks, w.Benign
	return pd, codec, nil
}

// Times reads the step's metrics (one JSON line per optimizer step, updates
// steps per rollout batch) and returns each phase's seconds per rollout
// batch and the mean response length, over the batches after the first (a
// warm-up).
func Times(r io.Reader, updates int) (map[string]float64, float64, error) {
	sum := map[string]float64{}
	var lens float64
	n := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for i := 0; sc.Scan(); i++ {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, 0, err
		}
		if i < updates {
			continue // warm-up batch
		}
		for _, k := range Phases {
			if v, ok := rec["time/"+k].(float64); ok {
				sum[k] += v
			}
		}
		if v, ok := rec["response_len"].(float64); ok {
			lens += v
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if n == 0 || n%updates != 0 {
		return nil, 0, fmt.Errorf("metrics: %d timed steps, not whole rollout batches of %d", n, updates)
	}
	nb := float64(n / updates)
	for k := range sum {
		sum[k] /= nb
	}
	return sum, lens / float64(n), nil
}
