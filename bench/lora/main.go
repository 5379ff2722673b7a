// Command lora benchmarks one policy-repair step (repair.RepairPolicy: Dr.
// GRPO generation, RM scoring, old and reference log-probabilities, one
// update) on a Qwen2.5-0.5B-shaped policy with random weights, full
// fine-tuning against LoRA adapters, for peak resident memory and time:
//
//	ARES_NUM_THREADS=1 go run ./bench/lora [-runs 3] [-steps 1] [-threads 1] [-probe] [-out bench/results/lora-cpu.md]
//
// The parent runs each arm in a child process of its own (the same binary
// with -child full|lora), one child at a time, arms alternating, and reports
// medians. Each child does one warm-up step and then -steps timed steps, and
// reports its phases (from the metrics JSONL) and its peak RSS (VmHWM). The
// trained state's size (parameters, gradients, AdamW moments of what is
// trained, and the reference copy) is also computed analytically.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/child"
	"github.com/ares-rlhf/ares/bench/internal/measure"
	"github.com/ares-rlhf/ares/bench/internal/policystep"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/torch"
)

// Qwen2.5-0.5B's shape (its config.json's keys); the RM is the same family,
// hidden size and vocabulary with 2 layers. The token ids of the end of turn
// and the padding come from the synthetic world's tokenizer.
const (
	policyConfig = `{"model_type":"qwen2","vocab_size":151936,"hidden_size":896,"num_hidden_layers":24,
"num_attention_heads":14,"num_key_value_heads":2,"intermediate_size":4864,"max_position_embeddings":32768,
"rms_norm_eps":1e-6,"rope_theta":1000000,"tie_word_embeddings":true,"eos_token_id":%d,"pad_token_id":%d}`
	rmLayers = 2
)

// The LoRA arm's adapters: r 16, alpha 32, every projection of the blocks.
var loraCfg = model.LoRA{R: 16, Alpha: 32, TargetModules: []string{"all-linear"}}

// childOut is what a child prints as its last line of stdout.
type childOut struct {
	Arm          string             `json:"arm"`
	Threads      int                `json:"threads"`
	Phases       map[string]float64 `json:"phases"` // seconds per timed step (mean)
	TimedSteps   int                `json:"timed_steps"`
	TokVocab     int                `json:"tokenizer_vocab"`
	StepCPU      float64            `json:"step_cpu_s"` // CPU seconds (user + system) per timed step
	ResponseLen  float64            `json:"response_len"`
	SetupSec     float64            `json:"setup_s"`
	RSSSetup     int64              `json:"rss_setup_bytes"` // VmRSS once the models are built, before the first step
	SetupHWM     int64              `json:"setup_hwm_bytes"` // VmHWM of the set-up (then reset)
	VmHWM        int64              `json:"vmhwm_bytes"`     // peak RSS of the steps (VmHWM reset after set-up)
	PolicyParams int64              `json:"policy_params"`
	Trained      int64              `json:"trained_params"`
	RefParams    int64              `json:"ref_params"` // a second copy's parameters (0: the policy with adapters off)
	RMParams     int64              `json:"rm_params"`
	// Probe mode: seconds of one forward+backward per thread count.
	Probe map[string][]float64 `json:"probe,omitempty"`
}

type opts struct {
	runs, steps, threads int
	probe                bool
	out                  string
	prompts, group       int
	maxNew, replay       int
}

func main() {
	var o opts
	childArg := flag.String("child", "", "internal: run one arm (full, lora) or the thread probe (probe) in this process")
	flag.IntVar(&o.runs, "runs", 3, "child runs per arm (arms alternate)")
	flag.IntVar(&o.steps, "steps", 1, "timed policy-repair steps per child, after one warm-up step")
	flag.IntVar(&o.threads, "threads", envThreads(), "libtorch intra-op threads (default ARES_NUM_THREADS, else 1)")
	flag.BoolVar(&o.probe, "probe", false, "first time one forward+backward of the LoRA policy with 1 and 2 threads")
	flag.StringVar(&o.out, "out", "", "also write the markdown report here")
	flag.IntVar(&o.prompts, "prompts", 2, "prompts per rollout batch")
	flag.IntVar(&o.group, "group", 2, "samples per prompt")
	flag.IntVar(&o.maxNew, "max-new", 16, "most new tokens per sample")
	flag.IntVar(&o.replay, "replay-batch", 2, "benign replay examples per update")
	flag.Parse()
	var err error
	switch *childArg {
	case "":
		err = parent(o)
	case "probe":
		err = probeChild()
	case "full", "lora":
		err = armChild(*childArg, o)
	default:
		err = fmt.Errorf("-child %q: want full, lora or probe", *childArg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lora bench:", err)
		os.Exit(1)
	}
}

func envThreads() int {
	if v, err := strconv.Atoi(os.Getenv("ARES_NUM_THREADS")); err == nil && v > 0 {
		return v
	}
	return 1
}

func numel(ps []model.Param) int64 {
	var n int64
	for _, p := range ps {
		n += p.T.Numel()
	}
	return n
}

// setupWorld builds the synthetic data, its tokenizer and codec, the
// configs, and the policy: random weights of pcfg (seed 1), steered to the
// tokenizer's ids (steer).
func setupWorld() (pd repair.PolicyData, codec *repair.Codec, pcfg, rcfg *model.Config, pol *model.Transformer, err error) {
	if pd, codec, err = policystep.Data(); err != nil {
		return
	}
	js := fmt.Sprintf(policyConfig, codec.End, codec.Pad)
	if pcfg, err = model.ParseConfig([]byte(js)); err != nil {
		return
	}
	if rcfg, err = model.ParseConfig([]byte(strings.Replace(js, `"num_hidden_layers":24`, fmt.Sprintf(`"num_hidden_layers":%d`, rmLayers), 1))); err != nil {
		return
	}
	if pol, err = model.Init(pcfg, model.CausalLM, 1, model.Options{}); err != nil {
		return
	}
	if err = steer(pol, codec.Tok.VocabSize()); err != nil {
		pol.Close()
		pol = nil
	}
	return
}

// steerBy is what steer writes into the embeddings' first component.
const steerBy = 20

// steer sets the first component of every embedding row to +steerBy for the
// tokenizer's ids [0, vocab) and to -steerBy for the others. The residual
// stream then carries a large positive first component (about 8 after the
// final norm), and since the policy's embeddings are tied, the logits of the
// tokenizer's ids move up and those of the other ~150k ids down by far more
// than the spread of the random logits (std ~0.6): the random policy then
// samples nearly uniformly among ids the tokenizer can decode. Without this
// it samples ids beyond the tokenizer's small vocabulary, which the text
// round trip of a rollout drops, and the update would see responses of about
// one token instead of max_new_tokens. The work per token is unchanged.
func steer(m *model.Transformer, vocab int) error {
	for _, p := range m.Params() {
		if !strings.HasSuffix(p.Name, "embed_tokens.weight") {
			continue
		}
		col := make([]float32, p.T.Size(0))
		for i := range col {
			col[i] = -steerBy
			if i < vocab {
				col[i] = steerBy
			}
		}
		return torch.Try(func() {
			src := torch.FromSlice(col, int64(len(col)), 1)
			defer src.Close()
			p.T.CopyInto(1, 0, src)
		})
	}
	return fmt.Errorf("steer: no embed_tokens.weight")
}

func armChild(arm string, o opts) error {
	if err := torch.SetNumThreads(o.threads); err != nil {
		return err
	}
	t0 := time.Now()
	pd, codec, pcfg, rcfg, pol, err := setupWorld()
	if err != nil {
		return err
	}
	defer pol.Close()
	vocab := codec.Tok.VocabSize()
	rm, err := model.Init(rcfg, model.Reward, 2, model.Options{})
	if err != nil {
		return err
	}
	defer rm.Close()
	po := synth.DefaultConfig(false).PolicyRepair
	po.Prompts, po.Group, po.MaxNewTokens, po.ReplayBatch = o.prompts, o.group, o.maxNew, o.replay
	po.UpdatesPerBatch = 1
	po.Steps = int64(1 + o.steps)
	po.Warmup = 0
	ref := pol
	var refParams int64
	if arm == "lora" {
		if err := pol.AddLoRA(loraCfg, 17); err != nil {
			return err
		}
		po.LR *= synth.DefaultConfig(false).LoRA.LRScale
	} else {
		// The frozen reference: a second copy of the same weights.
		if ref, err = model.Init(pcfg, model.CausalLM, 1, model.Options{}); err != nil {
			return err
		}
		defer ref.Close()
		if err := steer(ref, vocab); err != nil {
			return err
		}
		refParams = ref.NumParams()
	}
	res := childOut{Arm: arm, Threads: torch.NumThreads(), TimedSteps: o.steps, TokVocab: vocab, SetupSec: time.Since(t0).Seconds(),
		RSSSetup: child.Status("VmRSS"), PolicyParams: pol.NumParams(), Trained: numel(pol.Trainable()),
		RefParams: refParams, RMParams: rm.NumParams(), SetupHWM: child.Status("VmHWM")}
	if err := child.ResetPeak(); err != nil {
		return err
	}
	metrics := &cpuClock{last: measure.CPUSeconds()}
	if _, err := repair.RepairPolicy(pol, ref, rm, codec, pd, po, nil, 7, repair.RunIO{Metrics: metrics, Progress: os.Stderr, Label: arm}); err != nil {
		return err
	}
	if len(metrics.steps) > 1 {
		for _, c := range metrics.steps[1:] {
			res.StepCPU += c
		}
		res.StepCPU /= float64(len(metrics.steps) - 1)
	}
	fmt.Fprintln(os.Stderr)
	if res.Phases, res.ResponseLen, err = policystep.Times(&metrics.Buffer, 1); err != nil {
		return err
	}
	res.VmHWM = child.Status("VmHWM")
	return child.Report(res)
}

// cpuClock is the metrics writer: the trainer writes one line after each
// step, so the process's CPU time between writes is each step's CPU time
// (user + system), which other work on the machine disturbs less than the
// wall time.
type cpuClock struct {
	bytes.Buffer
	last  float64
	steps []float64
}

func (c *cpuClock) Write(p []byte) (int, error) {
	now := measure.CPUSeconds()
	c.steps = append(c.steps, now-c.last)
	c.last = now
	return c.Buffer.Write(p)
}

// probeChild times one forward+backward of the LoRA policy on 4 sequences
// of 36 tokens with 1 and 2 intra-op threads, alternating, three times each
// after a warm-up.
func probeChild() error {
	_, codec, _, _, pol, err := setupWorld()
	if err != nil {
		return err
	}
	defer pol.Close()
	if err := pol.AddLoRA(loraCfg, 17); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	seqs := make([][]int, 4)
	for i := range seqs {
		for range 36 {
			seqs[i] = append(seqs[i], r.IntN(4000)+10)
		}
	}
	res := childOut{Arm: "probe", Probe: map[string][]float64{}}
	once := func() (float64, error) {
		t0 := time.Now()
		err := torch.Try(func() {
			s := torch.NewScope()
			defer s.Close()
			b, e := pol.NewBatch(s, seqs, codec.Pad)
			if e != nil {
				panic(&torch.Error{Op: "probe", Code: torch.CodeInvalid, Msg: e.Error()})
			}
			pol.TokenLogProbs(b).Mean().Backward()
		})
		return time.Since(t0).Seconds(), err
	}
	for i, th := range []int{1, 2, 1, 2, 1, 2, 1, 2} {
		if err := torch.SetNumThreads(th); err != nil {
			return err
		}
		sec, err := once()
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "probe: %d threads: %.2f s\n", th, sec)
		if i >= 2 {
			k := strconv.Itoa(th)
			res.Probe[k] = append(res.Probe[k], sec)
		}
	}
	return child.Report(res)
}

// runResult is one child's report with the parent's view of it.
type runResult struct {
	childOut
	Wall   float64 // the child's whole wall time, set-up included
	MaxRSS int64   // getrusage of the child: ru_maxrss, bytes
}

func runChild(args ...string) (runResult, error) {
	var r runResult
	st, err := child.Run(&r.childOut, args...)
	r.Wall, r.MaxRSS = st.Wall.Seconds(), st.MaxRSS
	return r, err
}

func secs(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}

func gb(b float64) string { return fmt.Sprintf("%.2f", b/1e9) }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func parent(o opts) error {
	date := time.Now().UTC().Format("2006-01-02")
	loadBefore := loadAvg()
	var probe *runResult
	if o.probe {
		p, err := runChild("-child", "probe")
		if err != nil {
			return err
		}
		probe = &p
	}
	args := func(arm string) []string {
		return []string{"-child", arm, "-threads", strconv.Itoa(o.threads), "-steps", strconv.Itoa(o.steps),
			"-prompts", strconv.Itoa(o.prompts), "-group", strconv.Itoa(o.group), "-max-new", strconv.Itoa(o.maxNew),
			"-replay-batch", strconv.Itoa(o.replay)}
	}
	res := map[string][]runResult{}
	arms := []string{"full", "lora"}
	for i := range o.runs {
		order := arms
		if i%2 == 1 {
			order = []string{"lora", "full"}
		}
		for _, arm := range order {
			fmt.Fprintf(os.Stderr, "run %d/%d: %s (load %s)\n", i+1, o.runs, arm, loadAvg())
			r, err := runChild(args(arm)...)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "  %s: step %.2f s (%.2f CPU s), VmHWM set-up %s GB, steps %s GB, ru_maxrss %s GB\n", arm, r.Phases["step"], r.StepCPU, gb(float64(r.SetupHWM)), gb(float64(r.VmHWM)), gb(float64(r.MaxRSS)))
			res[arm] = append(res[arm], r)
		}
	}
	loadAfter := loadAvg()
	info, _ := torch.Describe()

	med := func(arm string, f func(r runResult) float64) float64 {
		var xs []float64
		for _, r := range res[arm] {
			xs = append(xs, f(r))
		}
		return measure.Median(xs)
	}
	all := func(arm string, f func(r runResult) float64, format string) string {
		var s []string
		for _, r := range res[arm] {
			s = append(s, fmt.Sprintf(format, f(r)))
		}
		return strings.Join(s, ", ")
	}
	f, l := res["full"][0], res["lora"][0]
	const bpp = 4 // float32
	// Trained state: parameters + gradients + AdamW's two moments (no
	// masters in float32) of what is trained, and the reference copy.
	trainedFull := float64(4 * bpp * f.Trained)
	refFull := float64(bpp * f.RefParams)
	frozenFull := float64(bpp * (f.PolicyParams - f.Trained))
	trainedLoRA := float64(4 * bpp * l.Trained)
	refLoRA := float64(bpp * l.RefParams)
	frozenLoRA := float64(bpp * (l.PolicyParams)) // the base, frozen, also the reference
	rmBytes := float64(bpp * f.RMParams)
	stateFull := trainedFull + refFull + frozenFull
	stateLoRA := trainedLoRA + refLoRA + frozenLoRA

	var md bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&md, format, a...) }
	w("# One policy-repair step on a Qwen2.5-0.5B-shaped policy: full fine-tuning against LoRA (CPU)\n\n")
	w("Measured %s on %s, %d cores, libtorch %s (compiled against %s), %d intra-op thread(s) (OpenBLAS %s), float32. ",
		date, measure.CPUModel(), runtime.NumCPU(), info.RuntimeVersion, info.CompiledVersion, o.threads, info.OpenBLASBuild)
	w("Load average before / after the runs: %s / %s (other work shared the machine's 2 cores, so the times carry its noise).\n\n", loadBefore, loadAfter)
	w("Reproduce: `ARES_NUM_THREADS=%d go run ./bench/lora -runs %d -steps %d -threads %d%s -out bench/results/lora-cpu.md`\n\n",
		o.threads, o.runs, o.steps, o.threads, map[bool]string{true: " -probe", false: ""}[o.probe])
	w("## Set-up\n\n")
	w("- **Policy**: `model_type` qwen2, hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, vocab 151936, tied embeddings, q/k/v biases; random weights (`model.Init`, normal std 0.02), float32: %d parameters (%s GB).\n", f.PolicyParams, gb(float64(bpp*f.PolicyParams)))
	w("- **Sampling from random weights**: the synthetic world's BPE has only %d ids, and a rollout goes through text (decode, re-encode), so ids beyond it would vanish and responses shrink to ~1 token. The policy's embedding rows therefore get their first component set to +%d for the tokenizer's ids and -%d for the others (`steer`): with tied embeddings the policy then samples nearly uniformly among decodable ids. Shapes and work per token are unchanged.\n", l.TokVocab, steerBy, steerBy)
	w("- **RM** (frozen in both arms): the same family, hidden size and vocabulary with %d layers and a scalar head, random weights: %d parameters (%s GB). Most of it is the 151936 x 896 embedding.\n", rmLayers, f.RMParams, gb(rmBytes))
	w("- **Full arm**: every policy parameter trained (AdamW), the KL reference a second frozen copy of the same weights.\n")
	w("- **LoRA arm**: `AddLoRA(r=%d, lora_alpha=%g, target_modules=[\"all-linear\"])` (q, k, v, o, gate, up, down of every block; dropout 0), %d adapter parameters trained; the reference is the policy with its adapters off (`ref == pol`), so the base is held once. Learning rate x%g (the demo's LoRA `lr_scale`; it does not change the work).\n",
		loraCfg.R, loraCfg.Alpha, l.Trained, synth.DefaultConfig(false).LoRA.LRScale)
	w("- **Step** (`repair.RepairPolicy`, the engine's own code, timed from its per-phase metrics): %d prompts x %d samples, at most %d new tokens (mean response %.1f tokens after the rollout's text round trip, end of turn included), RM scoring, old and reference log-probabilities, then 1 update: clipped Dr. GRPO + k3 KL + unlikelihood on %d harmful responses + replay LM loss on %d benign examples, backward, clip, AdamW. Prompts and replay data are the synthetic world's (its BPE's ids fall inside the 151936 vocabulary).\n",
		o.prompts, o.group, o.maxNew, l.ResponseLen, o.prompts, o.replay)
	w("- **Method**: each run is a fresh child process (this binary re-executed with `-child full|lora`), one at a time, arms alternating (full, lora, lora, full, ...), %d runs per arm. A child builds the models, does 1 warm-up step, then %d timed step(s) (their mean); it reads VmHWM from /proc/self/status once the models (and the full arm's reference) are built, resets it (`echo 5 > /proc/self/clear_refs`) and reads it again at its end; the child's peak RSS is the larger of the two, and the parent also reads the child's `ru_maxrss`. Each step's CPU time (user + system) comes from getrusage between the trainer's metric lines. Medians over the runs.\n\n",
		o.runs, o.steps)

	w("## Results (median of %d runs per arm)\n\n", o.runs)
	w("| | full fine-tuning | LoRA r=16 all-linear | full / LoRA |\n|---|---:|---:|---:|\n")
	for _, k := range policystep.Phases {
		label := k
		if k == "step" {
			label = "**whole step**"
		}
		fv := med("full", func(r runResult) float64 { return r.Phases[k] })
		lv := med("lora", func(r runResult) float64 { return r.Phases[k] })
		w("| %s, s | %.2f | %.2f | %.2fx |\n", label, fv, lv, fv/lv)
	}
	cpuF := med("full", func(r runResult) float64 { return r.StepCPU })
	cpuL := med("lora", func(r runResult) float64 { return r.StepCPU })
	w("| whole step, CPU s (user + system) | %.2f | %.2f | %.2fx |\n", cpuF, cpuL, cpuF/cpuL)
	peak := func(r runResult) float64 { return float64(max(r.VmHWM, r.SetupHWM)) }
	pkF, pkL := med("full", peak), med("lora", peak)
	hwmF := med("full", func(r runResult) float64 { return float64(r.VmHWM) })
	hwmL := med("lora", func(r runResult) float64 { return float64(r.VmHWM) })
	setF := med("full", func(r runResult) float64 { return float64(r.RSSSetup) })
	setL := med("lora", func(r runResult) float64 { return float64(r.RSSSetup) })
	w("| **peak RSS of the child**, GB | %s | %s | %.2fx |\n", gb(pkF), gb(pkL), pkF/pkL)
	w("| RSS after set-up (models built), GB | %s | %s | %.2fx |\n", gb(setF), gb(setL), setF/setL)
	w("| peak RSS of the steps - RSS after set-up, GB | %s | %s | %.2fx |\n", gb(hwmF-setF), gb(hwmL-setL), (hwmF-setF)/(hwmL-setL))
	w("| child wall time (set-up + %d steps), s | %.1f | %.1f | %.2fx |\n\n", 1+o.steps,
		med("full", func(r runResult) float64 { return r.Wall }), med("lora", func(r runResult) float64 { return r.Wall }),
		med("full", func(r runResult) float64 { return r.Wall })/med("lora", func(r runResult) float64 { return r.Wall }))

	w("## Trained state, analytically (float32, 4 bytes a value)\n\n")
	w("| bytes | full fine-tuning | LoRA r=16 all-linear |\n|---|---:|---:|\n")
	w("| trained parameters | %d values, %s GB | %d values, %s GB |\n", f.Trained, gb(float64(bpp*f.Trained)), l.Trained, gb(float64(bpp*l.Trained)))
	w("| their gradients | %s GB | %s GB |\n", gb(float64(bpp*f.Trained)), gb(float64(bpp*l.Trained)))
	w("| AdamW moments (m, v; no masters in float32) | %s GB | %s GB |\n", gb(float64(2*bpp*f.Trained)), gb(float64(2*bpp*l.Trained)))
	w("| **trained state** (parameters + gradients + moments) | %s GB | %s GB (%.0fx less) |\n", gb(trainedFull), gb(trainedLoRA), trainedFull/trainedLoRA)
	w("| reference copy | %s GB | 0 (the base with adapters off) |\n", gb(refFull))
	w("| frozen base weights | %s | %s GB |\n", gb(frozenFull), gb(frozenLoRA))
	w("| **policy side in all** (trained state + reference + frozen base) | %s GB | %s GB (%.2fx less) |\n", gb(stateFull), gb(stateLoRA), stateFull/stateLoRA)
	w("| frozen RM (both arms) | %s GB | %s GB |\n\n", gb(rmBytes), gb(rmBytes))

	w("## All runs\n\n| | full fine-tuning | LoRA r=16 all-linear |\n|---|---|---|\n")
	for _, k := range policystep.Phases {
		w("| %s, s | %s | %s |\n", k, all("full", func(r runResult) float64 { return r.Phases[k] }, "%.2f"), all("lora", func(r runResult) float64 { return r.Phases[k] }, "%.2f"))
	}
	w("| whole step, CPU s | %s | %s |\n", all("full", func(r runResult) float64 { return r.StepCPU }, "%.2f"), all("lora", func(r runResult) float64 { return r.StepCPU }, "%.2f"))
	w("| VmHWM of the set-up, GB | %s | %s |\n", all("full", func(r runResult) float64 { return float64(r.SetupHWM) / 1e9 }, "%.2f"), all("lora", func(r runResult) float64 { return float64(r.SetupHWM) / 1e9 }, "%.2f"))
	w("| VmHWM of the steps (reset after set-up), GB | %s | %s |\n", all("full", func(r runResult) float64 { return float64(r.VmHWM) / 1e9 }, "%.2f"), all("lora", func(r runResult) float64 { return float64(r.VmHWM) / 1e9 }, "%.2f"))
	w("| ru_maxrss (parent's view; the reset lowers it too), GB | %s | %s |\n", all("full", func(r runResult) float64 { return float64(r.MaxRSS) / 1e9 }, "%.2f"), all("lora", func(r runResult) float64 { return float64(r.MaxRSS) / 1e9 }, "%.2f"))
	w("| RSS after set-up, GB | %s | %s |\n", all("full", func(r runResult) float64 { return float64(r.RSSSetup) / 1e9 }, "%.2f"), all("lora", func(r runResult) float64 { return float64(r.RSSSetup) / 1e9 }, "%.2f"))
	w("| set-up, s | %s | %s |\n", all("full", func(r runResult) float64 { return r.SetupSec }, "%.1f"), all("lora", func(r runResult) float64 { return r.SetupSec }, "%.1f"))
	w("| child wall, s | %s | %s |\n\n", all("full", func(r runResult) float64 { return r.Wall }, "%.1f"), all("lora", func(r runResult) float64 { return r.Wall }, "%.1f"))
	if probe != nil {
		w("## Threads\n\nOne forward + backward of the LoRA policy on 4 x 36 tokens in one process, thread counts alternating after a warm-up: 1 thread %s s, 2 threads %s s (median %.2f against %.2f), so the runs use 1 thread.\n\n",
			secs(probe.Probe["1"]), secs(probe.Probe["2"]), measure.Median(probe.Probe["1"]), measure.Median(probe.Probe["2"]))
	}
	os.Stdout.Write(md.Bytes())
	if o.out != "" {
		return os.WriteFile(o.out, md.Bytes(), 0o644)
	}
	return nil
}
