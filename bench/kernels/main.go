// Command kernels measures the fused ops of engine/torch (fused.go) against
// the composed libtorch ops they replace: time and peak memory, on the CPU or
// a CUDA device.
//
//	go run ./bench/kernels [-device cpu|cuda] [-dtype float32|bfloat16|float16]
//	    [-op all|logprobs|reward] [-vocab 152064] [-hidden 896] [-tokens 256,1024]
//	    [-chunk 8192] [-batch 64] [-seqlen 512] [-iters 5] [-out FILE]
//
// Variants:
//
//	composed  the unfused graph of engine/torch ops: full [N, V] logits,
//	          log_softmax (f32), gather / gather rows, norm, linear, BT loss
//	chunked   the fused op with its CUDA kernels off: the composed path of the
//	          fused op (vocabulary chunks with an online log-sum-exp)
//	fused     the fused op with its CUDA kernels (CUDA only)
//
// Each variant runs in its own child process (the binary re-executes itself),
// so peak memory is that variant's alone: on the CPU, the growth of peak
// resident memory (VmHWM, reset through /proc/self/clear_refs after the
// inputs exist); on CUDA, the growth of the caching allocator's peak
// allocated bytes (CUDAResetPeak after the inputs exist). Times are medians of
// -iters runs after one warm-up, each followed by a device synchronisation.
// On CUDA the report adds the measured device-to-device copy bandwidth and,
// for the fused ops, a model of the bytes they must move (see bytesModel).
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/child"
	"github.com/ares-rlhf/ares/bench/internal/measure"
	"github.com/ares-rlhf/ares/engine/torch"
)

type config struct {
	Device  string `json:"device"`
	DType   string `json:"dtype"`
	Vocab   int64  `json:"vocab"`
	Hidden  int64  `json:"hidden"`
	Tokens  int64  `json:"tokens"`
	Chunk   int64  `json:"chunk"`
	Batch   int64  `json:"batch"`
	SeqLen  int64  `json:"seqlen"`
	Iters   int    `json:"iters"`
	Op      string `json:"op"`       // logprobs | reward | bandwidth
	Mode    string `json:"mode"`     // fwd | fwdbwd
	Variant string `json:"variant"`  // composed | chunked | fused
	Threads int    `json:"threads"`  // intra-op threads (0: default)
	NormRMS bool   `json:"norm_rms"` // reward: RMSNorm instead of LayerNorm
}

type result struct {
	Ms        float64 `json:"ms"`
	PeakBytes int64   `json:"peak_bytes"`
	Check     float64 `json:"check"`       // a value that must agree between variants
	GBps      float64 `json:"gbps"`        // bandwidth runs only
	Inputs    int64   `json:"input_bytes"` // bytes of the inputs (not in the peak)
}

func main() {
	var c config
	device := flag.String("device", "cpu", "cpu or cuda")
	flag.StringVar(&c.DType, "dtype", "float32", "float32, bfloat16 or float16")
	op := flag.String("op", "all", "all, logprobs or reward")
	flag.Int64Var(&c.Vocab, "vocab", 152064, "vocabulary size (Qwen2: 151936-152064)")
	flag.Int64Var(&c.Hidden, "hidden", 896, "hidden size (Qwen2-0.5B: 896)")
	tokens := flag.String("tokens", "256,1024", "token counts N for log-probs, comma-separated")
	flag.Int64Var(&c.Chunk, "chunk", 8192, "vocabulary chunk of the fused op")
	flag.Int64Var(&c.Batch, "batch", 64, "reward: sequences (even: chosen then rejected)")
	flag.Int64Var(&c.SeqLen, "seqlen", 512, "reward: sequence length")
	flag.IntVar(&c.Iters, "iters", 5, "timed iterations per variant")
	flag.IntVar(&c.Threads, "threads", 0, "intra-op threads (0: the engine's default)")
	modes := flag.String("modes", "fwd,fwdbwd", "fwd (no autograd) and/or fwdbwd")
	out := flag.String("out", "", "also write the markdown report to this file")
	childArg := flag.String("child", "", "internal: run one variant described by this JSON")
	flag.Parse()

	if *childArg != "" {
		if err := child.Serve(*childArg, runChild); err != nil {
			fatal(err)
		}
		return
	}
	c.Device = *device
	if err := parent(c, *op, *tokens, *modes, *out); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "kernels:", err)
	os.Exit(1)
}

// ---- parent: run the children and write the report ---------------------------

func runVariant(c config) (result, error) {
	var r result
	if _, err := child.RunConfig(&r, c); err != nil {
		return result{}, fmt.Errorf("%s/%s/%s: %v", c.Op, c.Mode, c.Variant, err)
	}
	return r, nil
}

// eachVariant runs c in every mode and variant, in that order, and hands
// row each result with the composed variant's (the first) of its mode.
func eachVariant(c config, modes, variants []string, row func(c config, r, base result)) error {
	for _, mode := range modes {
		var base result
		for _, v := range variants {
			vc := c
			vc.Mode, vc.Variant = mode, v
			r, err := runVariant(vc)
			if err != nil {
				return err
			}
			if v == "composed" {
				base = r
			}
			row(vc, r, base)
		}
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func parent(c config, op, tokens, modes, out string) error {
	info, err := torch.Describe()
	if err != nil {
		return err
	}
	cuda := c.Device == "cuda"
	if cuda && !torch.CUDAAvailable() {
		return fmt.Errorf("-device cuda: no CUDA device (shim built without CUDA or no GPU)")
	}
	variants := []string{"composed", "chunked"}
	if cuda {
		if !torch.FusedKernelsBuilt() {
			return fmt.Errorf("the shim has no fused CUDA kernels (built against a CPU libtorch?)")
		}
		variants = append(variants, "fused")
	}
	devName := fmt.Sprintf("%d CPUs (%s/%s)", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	if cuda {
		devName = torch.CUDADeviceName(0)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Fused kernels vs composed ops (%s)\n\n", c.Device)
	fmt.Fprintf(&md, "Measured %s by `go run ./bench/kernels %s`, on %s, libtorch %s, dtype %s",
		time.Now().UTC().Format("2006-01-02"), strings.Join(os.Args[1:], " "), devName,
		info.RuntimeVersion, c.DType)
	if !cuda {
		fmt.Fprintf(&md, ", %d intra-op threads", threadsOr(c.Threads))
	}
	md.WriteString(".\n\n")
	var bw float64
	if cuda {
		bc := c
		bc.Op, bc.Variant, bc.Mode = "bandwidth", "copy", "copy"
		r, err := runVariant(bc)
		if err != nil {
			return err
		}
		bw = r.GBps
		fmt.Fprintf(&md, "Measured device-to-device copy bandwidth (read + write, 1 GiB): %.0f GB/s.\n\n", bw)
	}
	modeList := strings.Split(modes, ",")
	// header writes a table's header and alignment rows, with the CUDA
	// columns on CUDA.
	header := func(cols, align, cudaCols, cudaAlign string) {
		if !cuda {
			cudaCols, cudaAlign = "", ""
		}
		md.WriteString(cols + cudaCols + "\n" + align + cudaAlign + "\n")
	}
	if op == "all" || op == "logprobs" {
		md.WriteString("## Token log-probabilities\n\n")
		fmt.Fprintf(&md, "hidden [N, %d] @ weight [%d, %d]^T, log_softmax, gather; chunk %d. "+
			"fwd = no autograd (e.g. reference-model log-probs); fwdbwd = forward + backward of "+
			"sum(logp * w) into hidden and weight. Peak = growth over the inputs (weight, hidden; "+
			"the weight gradient is included).\n\n", c.Hidden, c.Vocab, c.Hidden, c.Chunk)
		header("| N | mode | variant | ms | peak MiB | time vs composed | peak vs composed | peak less dW MiB | (less dW) vs composed |",
			"|---:|---|---|---:|---:|---:|---:|---:|---:|", " modeled GB | GB/s | % of copy bw |", "---:|---:|---:|")
		for _, ns := range strings.Split(tokens, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(ns), 10, 64)
			if err != nil {
				return fmt.Errorf("-tokens: %v", err)
			}
			lc := c
			lc.Op, lc.Tokens = "logprobs", n
			err = eachVariant(lc, modeList, variants, func(lc config, r, base result) {
				// The weight gradient (V x H, the same in every variant)
				// bounds the ratio; the last columns leave it out.
				dW := int64(0)
				if lc.Mode == "fwdbwd" {
					dW = c.Vocab * c.Hidden * int64(dtypeSize(c.DType))
				}
				fmt.Fprintf(&md, "| %d | %s | %s | %.2f | %s | %.2fx | %.1fx | %s | %.1fx |", n, lc.Mode, lc.Variant, r.Ms,
					mib(r.PeakBytes), base.Ms/r.Ms, float64(base.PeakBytes)/math.Max(1, float64(r.PeakBytes)),
					mib(r.PeakBytes-dW), float64(base.PeakBytes-dW)/math.Max(1, float64(r.PeakBytes-dW)))
				if cuda {
					gb := bytesModel(lc) / 1e9
					fmt.Fprintf(&md, " %.2f | %.0f | %.0f |", gb, gb/(r.Ms/1e3), 100*gb/(r.Ms/1e3)/bw)
				}
				md.WriteString("\n")
				fmt.Fprintf(os.Stderr, "logprobs N=%d %s %s: %.2f ms, peak %s MiB, check %.6g\n", n, lc.Mode, lc.Variant, r.Ms, mib(r.PeakBytes), r.Check)
			})
			if err != nil {
				return err
			}
		}
		md.WriteString("\n")
	}
	if op == "all" || op == "reward" {
		for _, rms := range []bool{false, true} {
			norm := "LayerNorm + bias"
			if rms {
				norm = "RMSNorm"
			}
			fmt.Fprintf(&md, "## Reward scoring with the Bradley-Terry loss (%s)\n\n", norm)
			fmt.Fprintf(&md, "hidden [%d, %d, %d]: gather the last position, final norm, value head, "+
				"BT loss over %d pairs. fwdbwd includes the [B, L, H] input gradient.\n\n",
				c.Batch, c.SeqLen, c.Hidden, c.Batch/2)
			header("| mode | variant | ms | peak MiB | time vs composed |", "|---|---|---:|---:|---:|", " modeled MB | GB/s |", "---:|---:|")
			rc := c
			rc.Op, rc.NormRMS = "reward", rms
			err := eachVariant(rc, modeList, variants, func(rc config, r, base result) {
				fmt.Fprintf(&md, "| %s | %s | %.3f | %s | %.2fx |", rc.Mode, rc.Variant, r.Ms, mib(r.PeakBytes), base.Ms/r.Ms)
				if cuda {
					mb := bytesModel(rc) / 1e6
					fmt.Fprintf(&md, " %.1f | %.0f |", mb, mb/1e3/(r.Ms/1e3))
				}
				md.WriteString("\n")
				fmt.Fprintf(os.Stderr, "reward rms=%v %s %s: %.3f ms, peak %s MiB, check %.6g\n", rms, rc.Mode, rc.Variant, r.Ms, mib(r.PeakBytes), r.Check)
			})
			if err != nil {
				return err
			}
			md.WriteString("\n")
		}
	}
	fmt.Print(md.String())
	if out != "" {
		return os.WriteFile(out, []byte(md.String()), 0o644)
	}
	return nil
}

func dtypeSize(name string) int {
	if name == "float32" {
		return 4
	}
	return 2
}

func threadsOr(n int) int {
	if n > 0 {
		return n
	}
	return torch.NumThreads()
}

// bytesModel is the minimum traffic of the fused op in device memory, for the
// achieved-bandwidth column: every operand read once and every result written
// once, per pass. Log-probs, per forward: the weight (V H s), the logits chunk
// written by the matmul and read by the lse kernel (2 N V s); the backward
// adds the weight read twice more (recompute, dH), dW written (V H s), the
// chunk written, read and rewritten by the gradient kernel, then read by the
// two matmuls (5 N V s). Reward: the selected rows and parameters forward; the
// backward adds the zeroed [B, L, H] gradient (written twice: memset, rows)
// and the f32 [B, H] scratch.
func bytesModel(c config) float64 {
	s := float64(dtypeSize(c.DType))
	switch c.Op {
	case "logprobs":
		V, H, N := float64(c.Vocab), float64(c.Hidden), float64(c.Tokens)
		b := V*H*s + 2*N*V*s
		if c.Mode == "fwdbwd" {
			b += 3*V*H*s + 5*N*V*s
		}
		return b
	case "reward":
		B, L, H := float64(c.Batch), float64(c.SeqLen), float64(c.Hidden)
		b := B*H*s + 3*H*s
		if c.Mode == "fwdbwd" {
			b += B*H*s + B*L*H*s + B*H*4*2 + 6*H*s
		}
		return b
	}
	return 0
}

// ---- child: one variant -----------------------------------------------------

// memProbe measures peak memory growth from the moment it is made.
type memProbe struct {
	dev  torch.Device
	base int64
}

func newProbe(dev torch.Device) memProbe {
	torch.Synchronize(dev)
	if dev.IsCUDA() {
		torch.CUDAResetPeak(0)
		return memProbe{dev, torch.CUDAMemory(0).Allocated}
	}
	// Writing 5 to clear_refs resets the peak resident set to the current one.
	if err := child.ResetPeak(); err != nil {
		fmt.Fprintln(os.Stderr, "kernels: cannot reset peak RSS:", err)
	}
	return memProbe{dev, child.Status("VmRSS")}
}

func (p memProbe) peak() int64 {
	torch.Synchronize(p.dev)
	if p.dev.IsCUDA() {
		return torch.CUDAMemory(0).PeakAllocated - p.base
	}
	return child.Status("VmHWM") - p.base
}

func runChild(c config) (r result, err error) {
	if c.Threads > 0 {
		if err := torch.SetNumThreads(c.Threads); err != nil {
			return r, err
		}
	}
	dev := torch.CPU
	if c.Device == "cuda" {
		dev = torch.CUDA(0)
	}
	dt, err := torch.ParseDType(c.DType)
	if err != nil {
		return r, err
	}
	torch.SetFusedKernels(c.Variant == "fused")
	err = torch.Try(func() {
		switch c.Op {
		case "bandwidth":
			r = bandwidth(dev)
		case "logprobs":
			r = benchLogProbs(c, dev, dt)
		case "reward":
			r = benchReward(c, dev, dt)
		default:
			panic(fmt.Sprintf("unknown op %q", c.Op))
		}
	})
	return r, err
}

// timeIt runs f once to warm up, then iters times, and returns the median ms.
func timeIt(dev torch.Device, iters int, f func()) float64 {
	f()
	torch.Synchronize(dev)
	ms := make([]float64, iters)
	for i := range ms {
		t0 := time.Now()
		f()
		torch.Synchronize(dev)
		ms[i] = float64(time.Since(t0).Microseconds()) / 1e3
	}
	return measure.Median(ms)
}

func bandwidth(dev torch.Device) result {
	s := torch.NewScope()
	defer s.Close()
	x := s.Own(torch.Zeros([]int64{1 << 28}, torch.Float32, dev)) // 1 GiB
	ms := timeIt(dev, 10, func() {
		sc := torch.NewScope()
		sc.Own(x.Clone())
		sc.Close()
	})
	return result{Ms: ms, GBps: 2 * float64(int64(1)<<30) / 1e9 / (ms / 1e3)}
}

func benchLogProbs(c config, dev torch.Device, dt torch.DType) result {
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(1234, dev)
	defer g.Close()
	N, H, V := c.Tokens, c.Hidden, c.Vocab
	grad := c.Mode == "fwdbwd"
	hidden := s.Own(torch.Randn([]int64{N, H}, dt, dev, g)).MulScalar(0.05).Detach().SetRequiresGrad(grad)
	weight := s.Own(torch.Randn([]int64{V, H}, dt, dev, g)).MulScalar(0.5).Detach().SetRequiresGrad(grad)
	targets := s.Own(torch.Rand([]int64{N}, torch.Float32, dev, g)).MulScalar(float64(V) - 1).To(torch.Int64)
	cw := s.Own(torch.Rand([]int64{N}, torch.Float32, dev, g))
	var check float64
	step := func() {
		sc := torch.NewScope()
		defer sc.Close()
		// Results of ops on the inputs would join the inputs' scope: each is
		// moved into the step's scope so that a step frees what it made.
		h, w, tg := sc.Own(hidden.Detach()), weight, targets
		if grad {
			h = hidden
			torch.ZeroGrad([]*torch.Tensor{hidden, weight})
		}
		run := func() *torch.Tensor {
			if c.Variant == "composed" {
				logits := sc.Own(h.MatMul(sc.Own(w.Transpose(0, 1))))
				if dt != torch.Float32 {
					logits = logits.To(torch.Float32)
				}
				return logits.LogSoftmax(1).Gather(1, sc.Own(tg.Unsqueeze(1))).Squeeze(1)
			}
			return sc.Own(torch.TokenLogProbs(h, w, tg, c.Chunk))
		}
		var lp *torch.Tensor
		if grad {
			lp = run()
			lp.Mul(cw).Sum().Backward()
		} else {
			torch.NoGrad(func() { lp = run() })
		}
		check = sc.Own(lp.Sum()).Item()
	}
	step() // allocator warm-up before the probe
	if grad {
		torch.ZeroGrad([]*torch.Tensor{hidden, weight})
	}
	probe := newProbe(dev)
	ms := timeIt(dev, c.Iters, step)
	return result{Ms: ms, PeakBytes: probe.peak(), Check: check,
		Inputs: (N*H + V*H) * int64(dt.Size())}
}

func benchReward(c config, dev torch.Device, dt torch.DType) result {
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(99, dev)
	defer g.Close()
	B, L, H := c.Batch, c.SeqLen, c.Hidden
	grad := c.Mode == "fwdbwd"
	hidden := s.Own(torch.Randn([]int64{B, L, H}, dt, dev, g)).Detach().SetRequiresGrad(grad)
	w := s.Own(torch.Rand([]int64{H}, dt, dev, g)).AddScalar(0.5).Detach().SetRequiresGrad(grad)
	var bias *torch.Tensor
	kind := torch.NormRMS
	if !c.NormRMS {
		kind = torch.NormLayer
		bias = s.Own(torch.Randn([]int64{H}, dt, dev, g)).MulScalar(0.1).Detach().SetRequiresGrad(grad)
	}
	head := s.Own(torch.Randn([]int64{1, H}, dt, dev, g)).MulScalar(0.05).Detach().SetRequiresGrad(grad)
	last := s.Own(torch.Rand([]int64{B}, torch.Float32, dev, g)).MulScalar(float64(L) - 1).To(torch.Int64)
	params := []*torch.Tensor{hidden, w, head}
	if bias != nil {
		params = append(params, bias)
	}
	P := B / 2
	var check float64
	step := func() {
		sc := torch.NewScope()
		defer sc.Close()
		if grad {
			torch.ZeroGrad(params)
		}
		run := func() *torch.Tensor {
			if c.Variant == "composed" {
				idx := sc.Own(torch.Arange(0, float64(B), 1, torch.Int64, dev)).MulScalar(float64(L)).To(torch.Int64).Add(last)
				x := sc.Own(hidden.Reshape(B*L, H)).IndexSelect(0, idx)
				var y *torch.Tensor
				if kind == torch.NormLayer {
					y = torch.LayerNorm(x, w, bias, 1e-5)
				} else {
					y = torch.RMSNorm(x, w, 1e-5)
				}
				sc := torch.Linear(y, head, nil).Reshape(B).To(torch.Float32)
				return sc.Narrow(0, 0, P).Sub(sc.Narrow(0, P, P)).LogSigmoid().Mean().Neg()
			}
			loss, scores := torch.RewardBTLoss(hidden, last, w, bias, kind, 1e-5, head)
			sc.Own(scores)
			return sc.Own(loss)
		}
		var loss *torch.Tensor
		if grad {
			loss = run()
			loss.Backward()
		} else {
			torch.NoGrad(func() { loss = run() })
		}
		check = loss.Item()
	}
	step()
	if grad {
		torch.ZeroGrad(params) // the [B, L, H] gradient counts in the peak
	}
	probe := newProbe(dev)
	ms := timeIt(dev, c.Iters, step)
	return result{Ms: ms, PeakBytes: probe.peak(), Check: check, Inputs: B * L * H * int64(dt.Size())}
}
