package study

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgtest"
	"github.com/ares-rlhf/ares/tokenizer"

	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/torch"
)

func writeStudy(t *testing.T, text string) string {
	t.Helper()
	return cfgtest.Write(t, "bench.toml", text)
}

func TestStudyConfigDefaultsAndOverrides(t *testing.T) {
	p := writeStudy(t, `
[run]
out = "x"

[study]
size = "quick"
arms = ["ares", "policy-only"]

[data]
harm = 300

[sft]
steps = 7

[policy_repair]
kl = 0.2
`)
	c, err := LoadStudy(p)
	if err != nil {
		t.Fatal(err)
	}
	q := synth.DefaultConfig(true)
	if got := c.Study.Seeds; len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("default seeds %v", got)
	}
	if c.Study.Start != "per-seed" || c.Run.Out != "x" || len(c.Study.Arms) != 2 {
		t.Fatalf("study section %+v", c.Study)
	}
	if c.SFT.Steps != 7 || c.SFT.LR != q.SFT.LR || c.SFT.Batch != q.SFT.Batch {
		t.Fatalf("sft override lost the other defaults: %+v", c.SFT)
	}
	if c.PolicyRepair.KL != 0.2 || c.PolicyRepair.Steps != q.PolicyRepair.Steps {
		t.Fatalf("policy_repair %+v", c.PolicyRepair)
	}
	if c.Model != q.Model {
		t.Fatalf("model size %+v, want the quick size", c.Model)
	}
	if o := c.dataOptions(); o.Harm != 300 || o.Benign != q.Data.Benign {
		t.Fatalf("data %+v", o)
	}
	full, err := ParseStudy([]byte("[study]\nsize = \"full\"\nseeds = [4, 5, 6]\n"), "full.toml")
	if err != nil {
		t.Fatal(err)
	}
	if full.Model != synth.DefaultConfig(false).Model || full.Study.Seeds[0] != 4 {
		t.Fatalf("full size %+v %v", full.Model, full.Study.Seeds)
	}
}

func TestStudyConfigRejects(t *testing.T) {
	cfgtest.WantLoadErrors(t, "bench.toml", LoadStudy, []cfgtest.Case{
		{"[study]\nsize = \"quick\"\n\n[policy_repair]\nsteps = 3\nklx = 1\n", "bench.toml:6: policy_repair.klx: unknown key"},
		{"[study]\nnmae = \"x\"\n", "bench.toml:2: study.nmae: unknown key"},
		{"seed = 3\n", "bench.toml:1: seed: the study sets the seed"},
		{"[redteam]\nbudget = 10\nseed = 3\n", "bench.toml:3: redteam.seed:"},
		{"[study]\nsize = \"huge\"\n", "bench.toml:2: study.size: \"huge\" is not quick or full"},
		{"[study]\narms = [\"ares\", \"rlhf\"]\n", "study.arms: \"rlhf\" is not one of"},
		{"[study]\nseeds = [1, 1]\n", "study.seeds: seed 1 is listed twice"},
		{"[judge]\nkind = \"gpt\"\n", "judge.kind: \"gpt\" is not one of oracle, classifier, http, command"},
		{"[run]\ndtype = \"int8\"\n", "bench.toml:2: run.dtype: \"int8\" is not float32, bfloat16 or float16"},
		{"[run]\ndevice = \"tpu\"\n", "bench.toml:2: run.device: bad device \"tpu\""},
		// Renamed keys are refused with their new names.
		{"[study]\nsize = \"quick\"\nout = \"x\"\n", "bench.toml:3: study.out: renamed to run.out"},
		{"[study]\ndevice = \"cuda\"\n", "bench.toml:2: study.device: renamed to run.device"},
		{"[study]\nname = \"n\"\n", "bench.toml:2: study.name: renamed to run.name"},
		{"[rm]\nsteps = 3\n", "bench.toml:1: rm: renamed to train_rm"},
		{"joint_bt = 1.0\n", "bench.toml:1: joint_bt: renamed to joint.bt"},
		{"[models]\npolicy = \"p\"\n", "models.policy and models.rm go together"},
		{"[models]\npolicy = \"p\"\nrm = \"r\"\n[study]\nstart = \"per-seed\"\n", "study.start: per-seed starts are trained by the study"},
	})
}

// TestRunStudyTiny runs the study end to end at the tiny size: 2 seeds x 2
// arms, per-seed starts (shared under -short, to halve the training).
func TestRunStudyTiny(t *testing.T) {
	out := t.TempDir()
	c := DefaultStudy("quick")
	c.Config = tinyConfig()
	c.Study.Seeds = []int64{1, 2}
	c.Study.Arms = []string{ArmPolicyOnly, ArmARES}
	c.Study.Start = "per-seed"
	if testing.Short() {
		c.Study.Start = "shared"
	}
	c.Run.Out = out
	base := torch.LiveTensors()
	res, err := RunStudy(context.Background(), &c, synth.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if got := torch.LiveTensors(); got != base {
		t.Fatalf("live tensors %d after the study, %d before", got, base)
	}
	phases := map[string]bool{}
	for _, r := range res.Rows {
		phases[r.Phase] = true
	}
	if !res.Complete || !phases[PhaseStart] || !phases[PhaseRepaired] || len(res.Rows) != 4*len(phases) || len(res.Summary) != 2*len(phases) {
		t.Fatalf("result: complete %v, %d rows, %d summaries", res.Complete, len(res.Rows), len(res.Summary))
	}
	for _, f := range []string{"study.md", "study.csv", "study.json", "study-type-c-coupled.svg", "study-type-c.svg", "study-rm.svg", "study-capability.svg",
		"seed1/arms/ares-seed1/findings.jsonl", "seed2/arms/policy-only-seed2/findings.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	fh, err := os.Open(filepath.Join(out, "study.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(fh).ReadAll()
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(res.Rows) || strings.Join(recs[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("csv: %d records, header %v", len(recs), recs[0])
	}
	got := map[string]bool{}
	for _, r := range recs[1:] {
		got[r[0]+"/"+r[1]] = true
	}
	for _, k := range []string{"policy-only/1", "ares/1", "policy-only/2", "ares/2"} {
		if !got[k] {
			t.Errorf("csv lacks row %s", k)
		}
	}
	// The seeds share one start in shared mode, and have their own otherwise.
	starts := map[int64]*repair.Eval{}
	for _, r := range res.Rows {
		if r.Phase != PhaseStart {
			continue
		}
		if e, ok := starts[r.Seed]; ok && e != r.Eval {
			t.Fatal("the arms of one seed must share its start evaluation")
		}
		starts[r.Seed] = r.Eval
	}
	if len(starts) != 2 {
		t.Fatal("the arms of one seed must share its before-evaluation")
	}
	if c.Study.Start == "per-seed" && len(res.StartWall) != 2 || c.Study.Start == "shared" && len(res.StartWall) != 1 {
		t.Fatalf("%s: %d starts built", c.Study.Start, len(res.StartWall))
	}
	// The goal checks follow from the measured numbers.
	want := res.CheckGoals(DefaultGoals())
	if len(res.Goals) != len(want) {
		t.Fatalf("goals %d, want %d", len(res.Goals), len(want))
	}
	for i := range want {
		if res.Goals[i].Status != want[i].Status || res.Goals[i].Measured != want[i].Measured {
			t.Fatalf("goal %d: %+v, want %+v", i, res.Goals[i], want[i])
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "study.md"))
	for _, s := range []string{"| policy-only | start |", "| ares | repaired |", "## Goals", want[0].Measured, "seeds 1, 2"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("study.md lacks %q", s)
		}
	}
	var js struct {
		Rows    []PhaseRow       `json:"rows"`
		Summary []map[string]any `json:"summary"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "study.json"))
	if err := json.Unmarshal(b, &js); err != nil || len(js.Rows) != len(res.Rows) || len(js.Summary) != len(res.Summary) {
		t.Fatalf("study.json: %v, %d rows", err, len(js.Rows))
	}
}

// exampleStudy parses bench/<name>, returning its text and path too.
func exampleStudy(t *testing.T, name string) (c *Study, raw []byte, path string) {
	t.Helper()
	path = filepath.Join("..", "..", "bench", name)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, err = ParseStudy(raw, path); err != nil {
		t.Fatal(err)
	}
	return c, raw, path
}

// TestStudyExampleConfig parses bench/study.toml as shipped, and with every
// optional `#key = value` line uncommented: the documented values must be
// the defaults, so uncommenting them changes nothing.
func TestStudyExampleConfig(t *testing.T) {
	c, raw, path := exampleStudy(t, "study.toml")
	if c.Study.Size != "quick" || len(c.Study.Seeds) < 5 || len(c.Study.Arms) != len(Arms) || len(c.Study.Phases) != len(Phases) {
		t.Fatalf("example: %+v", c.Study)
	}
	re := regexp.MustCompile(`(?m)^#(\[|[a-z_]+ = )`)
	all := re.ReplaceAll(raw, []byte("$1"))
	if bytes.Equal(all, raw) {
		t.Fatal("no optional keys found")
	}
	u, err := ParseStudy(all, path+" (uncommented)")
	if err != nil {
		t.Fatal(err)
	}
	if u.dataOptions() != c.dataOptions() {
		t.Errorf("[data] documents %+v, the defaults are %+v", u.dataOptions(), c.dataOptions())
	}
	got, want := u.Config, c.Config
	for _, x := range []*synth.Config{&got, &want} {
		if x.Thresholds, err = x.Thresholds.WithDefaults(); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("documented values differ from the defaults:\n got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(u.Study, c.Study) {
		t.Errorf("documented [study] values differ from the defaults:\n got %+v\nwant %+v", u.Study, c.Study)
	}
	if !reflect.DeepEqual(u.Run, c.Run) {
		t.Errorf("documented [run] values differ from the defaults:\n got %+v\nwant %+v", u.Run, c.Run)
	}
	// The study runs at the demo's size: one seed of its ARES arm is `ares demo`.
	got, want = c.Config, synth.DefaultConfig(false)
	got.Data = c.dataOptions()
	got.Seed, want.Seed, got.RedTeam.Seed, want.RedTeam.Seed = 0, 0, 0, 0
	for _, x := range []*synth.Config{&got, &want} {
		if x.Thresholds, err = x.Thresholds.WithDefaults(); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bench/study.toml is not the demo's size:\n got %+v\nwant %+v", got, want)
	}
}

// TestStudyRealExample parses examples/study-real.toml, the README's
// complete real-model config.
func TestStudyRealExample(t *testing.T) {
	c, err := LoadStudy(filepath.Join("..", "..", "examples", "study-real.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// Its device is CUDA: only the spelling is checked here.
	_, dt, err := c.placementSpec().Parse()
	if err != nil || dt != torch.BFloat16 || c.Judge.Kind != "http" || c.Study.Start != "shared" || c.Probes.Redteam == "" ||
		c.StartRLHF.LR != c.PolicyRepair.LR || len(c.Study.Arms) != len(Arms) {
		t.Fatalf("example: %v %v %+v %+v", err, dt, c.Judge, c.Study)
	}
}

// savedModels trains c's tokenizer on c's world and saves untrained policy
// and RM directories under a temporary directory: a stand-in for a lab's
// own models.
func savedModels(t *testing.T, c synth.Config) (*synth.World, *tokenizer.Tokenizer, StudyModels) {
	t.Helper()
	w := synth.BuildWorld(world.Default(), c)
	tok, err := w.TrainTokenizer(c.Model.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := c.Model.Config(tok)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ms := StudyModels{Policy: filepath.Join(dir, "policy"), RM: filepath.Join(dir, "rm")}
	for _, k := range []struct {
		kind model.Kind
		dir  string
	}{{model.CausalLM, ms.Policy}, {model.Reward, ms.RM}} {
		m, err := model.Init(mc, k.kind, 1, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = m.Save(k.dir, k.kind, tok)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return w, tok, ms
}

// TestStudyModelsAndProbes checks the parts of the real-model path that
// run: a start from existing model directories, and a held-out probe file.
func TestStudyModelsAndProbes(t *testing.T) {
	c := tinyConfig()
	w, tok, ms := savedModels(t, c)
	st, err := startFromModels(world.Default(), c, 5, ms)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cfg.Seed != 5 || len(st.World.Eval) == 0 || st.Tok.VocabSize() != tok.VocabSize() {
		t.Fatalf("start: seed %d, %d eval probes", st.Cfg.Seed, len(st.World.Eval))
	}
	m, err := st.LoadModels(5)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := startFromModels(world.Default(), c, 5, StudyModels{Policy: filepath.Join(t.TempDir(), "none"), RM: ms.RM}); err == nil ||
		!strings.Contains(err.Error(), "models.policy") {
		t.Fatalf("missing policy directory: %v", err)
	}
	cfg, err := ParseStudy([]byte("[models]\npolicy = \"p\"\nrm = \"r\"\n"), "m.toml")
	if err != nil || cfg.Study.Start != "shared" {
		t.Fatalf("[models] makes the start shared: %v %+v", err, cfg)
	}

	// Held-out probes from a file: world probes are accepted; a probe
	// without y_safe, or from another source (which the oracle cannot
	// judge), is refused with the reason.
	write := func(ps []probes.Probe) *Study {
		p := filepath.Join(t.TempDir(), "eval.jsonl")
		if err := probes.WriteFile(p, ps); err != nil {
			t.Fatal(err)
		}
		return &Study{Probes: StudyProbes{Eval: p}}
	}
	ps := append([]probes.Probe(nil), w.Eval...)
	got, err := write(ps).evalProbes()
	if err != nil || len(got) != len(ps) {
		t.Fatalf("world probes: %v, %d of %d", err, len(got), len(ps))
	}
	for i := range ps {
		if ps[i].Kind == probes.KindHarm {
			bad := append([]probes.Probe(nil), ps...)
			bad[i].YSafe = ""
			if _, err := write(bad).evalProbes(); err == nil || !strings.Contains(err.Error(), "y_safe") {
				t.Fatalf("no y_safe: %v", err)
			}
			bad[i].YSafe, bad[i].Source = ps[i].YSafe, "harmbench"
			if _, err := write(bad).evalProbes(); err == nil || !strings.Contains(err.Error(), "oracle judge") {
				t.Fatalf("foreign source: %v", err)
			}
			break
		}
	}
}

// TestStudyLoRAConfig: bench/study-lora.toml is bench/study.toml's study on
// the same seeds with the ares and ares-lora arms, and its [lora] tables are
// the defaults.
func TestStudyLoRAConfig(t *testing.T) {
	full, _, _ := exampleStudy(t, "study.toml")
	lora, _, _ := exampleStudy(t, "study-lora.toml")
	if !slices.Equal(lora.Study.Arms, []string{ArmARES, ArmARESLoRA}) || !slices.Equal(lora.Study.Seeds, full.Study.Seeds) {
		t.Fatalf("study-lora.toml runs %v on %v", lora.Study.Arms, lora.Study.Seeds)
	}
	if !reflect.DeepEqual(lora.Config, full.Config) {
		t.Errorf("study-lora.toml sizes the study differently from study.toml:\n%+v\n%+v", lora.Config, full.Config)
	}
}
