// Command vocab measures one policy-repair-like step of a model with a large
// vocabulary through the model's two token log-probability paths:
//
//	plain  model.TokenLogProbsPlain: full [B, L-1, V] logits, log-softmax, gather
//	fused  model.TokenLogProbsFused: torch.TokenLogProbs over vocabulary chunks
//	       (online log-sum-exp; the backward recomputes each chunk's logits)
//
// and reports time and peak resident memory of each:
//
//	go run ./bench/vocab [-vocab 151936] [-hidden 896] [-layers 1] [-batch 4]
//	    [-seqlen 64] [-chunks 0,8192] [-runs 3] [-iters 3] [-threads 1] [-out FILE]
//
// The model is Qwen2-0.5B-shaped (hidden 896, 14 heads, 2 KV heads, MLP 4864,
// head tied to the embeddings) with random weights and -layers layers: only
// the head depends on the vocabulary. A step is what a policy update does
// (engine/repair/policy.go): forward of B sequences of L tokens through the
// final norm, token log-probabilities, Dr. GRPO + k3 KL + unlikelihood + LM
// replay composed by loss.Weighted, backward into every parameter. fwd is
// the same log-probabilities without autograd (the old and reference
// log-probabilities of a rollout).
//
// Each (mode, variant) runs -runs times, each run in its own child process
// (the binary re-executes itself), so that peak memory is that run's alone;
// the report gives the median over the runs of: the median step time over
// -iters steps after one warm-up, the child's peak resident set (getrusage
// ru_maxrss: weights, gradients and the step together), and the step's peak
// growth (VmHWM over VmRSS once the model exists, reset through
// /proc/self/clear_refs, over the warm-up and the timed steps; it includes
// the parameters' gradients, which ZeroGrad drops before every step).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/child"
	"github.com/ares-rlhf/ares/bench/internal/measure"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair/loss"
	"github.com/ares-rlhf/ares/engine/torch"
)

type config struct {
	Vocab   int    `json:"vocab"`
	Hidden  int    `json:"hidden"`
	Layers  int    `json:"layers"`
	Batch   int    `json:"batch"`
	SeqLen  int    `json:"seqlen"`
	Chunk   int64  `json:"chunk"` // fused: vocabulary rows per chunk (0: model's default)
	Iters   int    `json:"iters"`
	Threads int    `json:"threads"`
	Mode    string `json:"mode"`    // step | fwd
	Variant string `json:"variant"` // plain | fused
}

type result struct {
	Ms        float64 `json:"ms"`
	CPUMs     float64 `json:"cpu_ms"`    // CPU time (user + sys) of the stepping thread
	StepPeak  int64   `json:"step_peak"` // bytes
	ChildPeak int64   `json:"child_peak"`
	Calls     int64   `json:"calls"` // native calls per step
	Check     float64 `json:"check"` // the loss (step) or sum of log-probs (fwd)
}

func main() {
	var c config
	flag.IntVar(&c.Vocab, "vocab", 151936, "vocabulary size (Qwen2: 151936)")
	flag.IntVar(&c.Hidden, "hidden", 896, "hidden size (Qwen2-0.5B: 896; heads are hidden/64, at least 2)")
	flag.IntVar(&c.Layers, "layers", 1, "decoder layers")
	flag.IntVar(&c.Batch, "batch", 4, "sequences per step")
	flag.IntVar(&c.SeqLen, "seqlen", 64, "tokens per sequence")
	flag.IntVar(&c.Iters, "iters", 3, "timed steps per run, after one warm-up")
	flag.IntVar(&c.Threads, "threads", 1, "libtorch intra-op threads")
	chunks := flag.String("chunks", "0,8192", "fused variants' chunk sizes (0: the model's default)")
	modes := flag.String("modes", "step,fwd", "step (forward + loss + backward) and/or fwd (no autograd)")
	runs := flag.Int("runs", 3, "child processes per variant (the median is reported)")
	out := flag.String("out", "", "write the markdown report here (default: stdout only)")
	childArg := flag.String("child", "", "internal: run one measurement from this JSON config")
	flag.Parse()
	if *childArg != "" {
		if err := child.Serve(*childArg, runChild); err != nil {
			fatal(err)
		}
		return
	}
	if err := parent(c, *chunks, *modes, *runs, *out); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "vocab:", err)
	os.Exit(1)
}

// ---- parent -------------------------------------------------------------------

func runOnce(c config) (result, error) {
	var r result
	st, err := child.RunConfig(&r, c)
	if err != nil {
		return result{}, fmt.Errorf("%s/%s: %v", c.Mode, c.Variant, err)
	}
	r.ChildPeak = st.MaxRSS
	return r, nil
}

func mib(b float64) string { return fmt.Sprintf("%.0f", b/(1<<20)) }

type variant struct {
	name  string
	chunk int64
}

func parent(c config, chunks, modes string, runs int, out string) error {
	info, err := torch.Describe()
	if err != nil {
		return err
	}
	variants := []variant{{"plain", 0}}
	for _, s := range strings.Split(chunks, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("-chunks: %v", err)
		}
		variants = append(variants, variant{"fused", n})
	}
	N := c.Batch * (c.SeqLen - 1)
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s by `go run ./bench/vocab %s` on %s (%d CPUs, %s/%s), libtorch %s, float32, %d intra-op thread(s).\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.Join(os.Args[1:], " "), measure.CPUModel(), runtime.NumCPU(),
		runtime.GOOS, runtime.GOARCH, info.RuntimeVersion, c.Threads)
	fmt.Fprintf(&md, "Model: vocabulary %d, hidden %d, %d layer(s), tied head, random weights. Batch %d x %d tokens: N = %d log-probabilities; "+
		"full logits would be [%d, %d] = %s MiB in float32. Each figure is the median of %d runs, each in a fresh process; "+
		"CPU ms (user + system time of the stepping thread, robust to other load on shared cores) and wall ms are each run's median of %d steps after a warm-up.\n\n",
		c.Vocab, c.Hidden, c.Layers, c.Batch, c.SeqLen, N, N, c.Vocab, mib(float64(N)*float64(c.Vocab)*4), runs, c.Iters)
	md.WriteString("| mode | variant | chunk | CPU ms | wall ms | CPU time vs plain | step peak MiB | step peak vs plain | process peak RSS MiB | native calls/step | check |\n")
	md.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, mode := range strings.Split(modes, ",") {
		// Runs are interleaved across the variants, so that load from other
		// processes on a shared machine falls on all of them alike.
		res := make([][]result, len(variants))
		for range runs {
			for i, v := range variants {
				cc := c
				cc.Mode, cc.Variant, cc.Chunk = mode, v.name, v.chunk
				r, err := runOnce(cc)
				if err != nil {
					return err
				}
				res[i] = append(res[i], r)
				fmt.Fprintf(os.Stderr, "%s %s chunk %d: %.1f ms wall, %.1f ms CPU, step peak %s MiB, process %s MiB\n",
					mode, v.name, v.chunk, r.Ms, r.CPUMs, mib(float64(r.StepPeak)), mib(float64(r.ChildPeak)))
			}
		}
		var base result
		for i, v := range variants {
			var ms, cpu, sp, cp []float64
			for _, r := range res[i] {
				ms, cpu = append(ms, r.Ms), append(cpu, r.CPUMs)
				sp, cp = append(sp, float64(r.StepPeak)), append(cp, float64(r.ChildPeak))
			}
			last := res[i][len(res[i])-1]
			r := result{Ms: measure.Median(ms), CPUMs: measure.Median(cpu), StepPeak: int64(measure.Median(sp)), ChildPeak: int64(measure.Median(cp)),
				Calls: last.Calls, Check: last.Check}
			if i == 0 {
				base = r
			}
			chunk := "-"
			if v.name == "fused" {
				chunk = "default"
				if v.chunk > 0 {
					chunk = strconv.FormatInt(v.chunk, 10)
				}
			}
			fmt.Fprintf(&md, "| %s | %s | %s | %.0f | %.0f | %.2fx | %s | %.1fx | %s | %d | %.6g |\n", mode, v.name, chunk,
				r.CPUMs, r.Ms, base.CPUMs/r.CPUMs, mib(float64(r.StepPeak)),
				float64(base.StepPeak)/float64(max(r.StepPeak, 1)), mib(float64(r.ChildPeak)), r.Calls, r.Check)
		}
	}
	fmt.Print(md.String())
	if out != "" {
		return os.WriteFile(out, []byte(md.String()), 0o644)
	}
	return nil
}

// ---- child --------------------------------------------------------------------

// threadCPU is the user + system CPU time of the calling OS thread (locked
// by runChild; with one intra-op thread libtorch and OpenBLAS compute on it).
// Unlike wall time it does not count the time other processes hold the
// shared cores.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const configJSON = `{"model_type":"qwen2","vocab_size":%d,"hidden_size":%d,"num_hidden_layers":%d,
"num_attention_heads":%d,"num_key_value_heads":2,"intermediate_size":%d,"max_position_embeddings":512,
"tie_word_embeddings":true,"rope_theta":1000000}`

func runChild(c config) (r result, err error) {
	// Build and backpropagate from one OS thread (engine/torch's rule).
	runtime.LockOSThread()
	if err := torch.SetNumThreads(c.Threads); err != nil {
		return r, err
	}
	cfg, err := model.ParseConfig([]byte(fmt.Sprintf(configJSON, c.Vocab, c.Hidden, c.Layers, max(c.Hidden/64, 2), c.Hidden*4864/896)))
	if err != nil {
		return r, err
	}
	m, err := model.Init(cfg, model.CausalLM, 1, model.Options{})
	if err != nil {
		return r, err
	}
	defer m.Close()
	grad := c.Mode == "step"
	m.SetTrainable(grad)
	seqs := make([][]int, c.Batch)
	for b := range seqs {
		seqs[b] = make([]int, c.SeqLen)
		for j := range seqs[b] {
			seqs[b][j] = (b*7919 + j*104729 + 13) % c.Vocab
		}
	}
	logProbs := func(b *model.Batch) *torch.Tensor {
		if c.Variant == "plain" {
			return m.TokenLogProbsPlain(b)
		}
		return m.TokenLogProbsFused(b, c.Chunk)
	}
	step := func() {
		s := torch.NewScope()
		defer s.Close()
		b, err := m.NewBatch(s, seqs, 0)
		if err != nil {
			panic(err)
		}
		if !grad {
			torch.NoGrad(func() { r.Check = s.Own(logProbs(b).Sum()).Item() })
			return
		}
		torch.ZeroGrad(m.Tensors())
		N, T := int64(c.Batch), int64(c.SeqLen-1)
		mask := make([]float32, N*T)
		old := make([]float32, N*T)
		adv := make([]float32, N)
		for i := range mask {
			mask[i] = 1
			old[i] = -12 + 0.01*float32(i%7)
		}
		for i := range adv {
			adv[i] = float32(i%2)*2 - 1
		}
		mt := s.Own(torch.FromSlice(mask, N, T))
		oldT := s.Own(torch.FromSlice(old, N, T))
		advT := s.Own(torch.FromSlice(adv, N))
		logp := logProbs(b)
		pg, _ := loss.PolicyGradient(logp, oldT, advT, mt, loss.PGOptions{ClipEps: 0.2, NormConst: float64(T)})
		total, _ := loss.Weighted(
			loss.Term{Name: "policy", Weight: 1, Loss: pg},
			loss.Term{Name: "kl", Weight: 0.05, Loss: loss.KL(logp, oldT, mt, loss.K3, float64(T))},
			loss.Term{Name: "unlikelihood", Weight: 0.5, Loss: loss.Unlikelihood(logp, mt, float64(T))},
			loss.Term{Name: "replay", Weight: 0.3, Loss: loss.LanguageModel(logp, mt, loss.PerToken)},
		)
		total.Backward()
		r.Check = total.Item()
	}
	err = torch.Try(func() {
		// The probe starts before the warm-up step: buffers that glibc keeps
		// for reuse after the first step (those below its dynamic mmap
		// threshold, up to 32 MiB) are counted once, where they are made.
		if err := child.ResetPeak(); err != nil {
			fmt.Fprintln(os.Stderr, "vocab: cannot reset peak RSS:", err)
		}
		base := child.Status("VmRSS")
		step() // warm-up
		ms := make([]float64, c.Iters)
		cpu := make([]float64, c.Iters)
		var calls int64
		for i := range ms {
			c0 := torch.NativeCalls()
			u0 := threadCPU()
			t0 := time.Now()
			step()
			ms[i] = float64(time.Since(t0).Microseconds()) / 1e3
			cpu[i] = (threadCPU() - u0).Seconds() * 1e3
			calls = torch.NativeCalls() - c0
		}
		r.Ms, r.CPUMs, r.Calls = measure.Median(ms), measure.Median(cpu), calls
		r.StepPeak = child.Status("VmHWM") - base
	})
	return r, err
}
