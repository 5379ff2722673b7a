package study

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/synth"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/world"
)

// TestMain lets the test binary serve as an external command judge (the
// oracle behind the command protocol) when ARES_TEST_COMMAND_JUDGE is set.
func TestMain(m *testing.M) {
	if os.Getenv("ARES_TEST_COMMAND_JUDGE") != "" {
		os.Exit(commandJudge())
	}
	os.Exit(m.Run())
}

func commandJudge() int {
	var ids []int
	var items []judge.Item
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var in struct {
			ID       int    `json:"id"`
			Prompt   string `json:"prompt"`
			Response string `json:"response"`
		}
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ids = append(ids, in.ID)
		items = append(items, judge.Item{Prompt: in.Prompt, Response: in.Response})
	}
	scores, err := judge.Oracle{Lib: world.Default()}.Score(context.Background(), items)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	enc := json.NewEncoder(os.Stdout)
	for i, s := range scores {
		enc.Encode(map[string]any{"id": ids[i], "score": s})
	}
	return 0
}

// TestStudyRealModelPath runs the study the way a lab runs it on its own
// models: existing model directories, held-out and red-teaming probe files
// from another source, and an external command judge, which the study must
// use everywhere it judges (red-teaming and evaluation).
func TestStudyRealModelPath(t *testing.T) {
	c := tinyConfig()
	w, _, ms := savedModels(t, c)
	dir := t.TempDir()
	st := DefaultStudy("quick")
	st.Config = c
	st.Models = ms
	// Probes "from elsewhere": the oracle would refuse them, a real judge not.
	relabel := func(ps []probes.Probe, name string) string {
		out := make([]probes.Probe, len(ps))
		for i, p := range ps {
			p.Source, p.ID = "lab-set", fmt.Sprintf("%s-%d", name, i)
			out[i] = p
		}
		path := filepath.Join(dir, name+".jsonl")
		if err := probes.WriteFile(path, out); err != nil {
			t.Fatal(err)
		}
		return path
	}
	o := c.Data
	o.Seed = 99
	st.Probes = StudyProbes{Eval: relabel(w.Eval, "eval"), Redteam: relabel(world.Default().EvalSet(o), "pool")}
	if _, err := st.evalProbes(); err == nil || !strings.Contains(err.Error(), "oracle judge") {
		t.Fatalf("foreign probes with the oracle: %v", err)
	}
	t.Setenv("ARES_TEST_COMMAND_JUDGE", "1")
	st.Judge = judge.Config{Kind: "command", Command: judge.CommandConfig{Argv: []string{os.Args[0], "-test.run=^$"}}}
	st.Study.Seeds, st.Study.Arms, st.Study.Start, st.Run.Out = []int64{1}, []string{ArmPolicyOnly}, "shared", t.TempDir()
	res, err := RunStudy(context.Background(), &st, synth.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || len(res.Rows) < 2 || res.Rows[0].Phase != PhaseStart || res.Rows[0].Eval.HarmProbes == 0 {
		t.Fatalf("result: complete %v, %d rows", res.Complete, len(res.Rows))
	}
	fs, err := detect.ReadFindings(filepath.Join(st.Run.Out, "seed1", "arms", "policy-only-seed1", "findings.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatal("no findings from the pool (the tiny config's thresholds make every harmful sample one)")
	}
	for _, f := range fs {
		if f.Sampler != "pool" || !strings.HasPrefix(f.Probe.ID, "pool-") || !strings.HasPrefix(f.Judge, "command") {
			t.Fatalf("finding from sampler %q, probe %q, judge %q: want the pool and the command judge", f.Sampler, f.Probe.ID, f.Judge)
		}
	}
}
