// Command torchops measures the engine's per-op overhead and memory
// stability, side by side with PyTorch for Python on the same libtorch:
//
//	go run ./bench/torchops [-iters N] [-steps N] [-out FILE]
//
// A third column is the floor: the same ATen calls from a plain C++ loop
// (floor/floor.cpp), so that the cost of the engine's boundary reads as Go / floor.
// Both sides run at one intra-op thread so that the figure is the cost of
// crossing into libtorch, not of the arithmetic. The MLP part trains the
// same 1-32-1 network for -steps steps and samples resident memory every
// tenth of the run; it must stay flat.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/child"
	"github.com/ares-rlhf/ares/engine/torch"
)

type peerResult struct {
	Torch        string             `json:"torch"`
	Ops          map[string]float64 `json:"ops"`
	MLPStepNs    float64            `json:"mlp_step_ns"`
	MLPFinalLoss float64            `json:"mlp_final_loss"`
}

func perOp(iters int, f func(s *torch.Scope)) float64 {
	run := func(n int) {
		s := torch.NewScope()
		for i := 0; i < n; i++ {
			f(s)
			if i%256 == 255 { // free results in batches, as a step would
				s.Close()
				s = torch.NewScope()
			}
		}
		s.Close()
	}
	run(min(1000, iters))
	t0 := time.Now()
	run(iters)
	return float64(time.Since(t0).Nanoseconds()) / float64(iters)
}

func rssKiB() int64 {
	if b := child.Status("VmRSS"); b >= 0 {
		return b >> 10
	}
	return -1
}

func main() {
	iters := flag.Int("iters", 200000, "iterations per op")
	steps := flag.Int("steps", 10000, "MLP training steps")
	out := flag.String("out", "", "also write the markdown table to this file")
	flag.Parse()
	if err := run(*iters, *steps, *out); err != nil {
		fmt.Fprintln(os.Stderr, "torchops:", err)
		os.Exit(1)
	}
}

func run(iters, steps int, outPath string) error {
	if err := torch.SetNumThreads(1); err != nil {
		return err
	}
	a := torch.Ones([]int64{8}, torch.Float32, torch.CPU)
	b := torch.Ones([]int64{8}, torch.Float32, torch.CPU)
	m := torch.Ones([]int64{8, 8}, torch.Float32, torch.CPU)
	defer a.Close()
	defer b.Close()
	defer m.Close()
	names := []string{"add [8]", "mul_scalar [8]", "matmul [8x8]", "sum [8]", "softmax [8x8]", "linear [8x8]"}
	fns := []func(s *torch.Scope){
		func(s *torch.Scope) { s.Own(a.Add(b)) },
		func(s *torch.Scope) { s.Own(a.MulScalar(2)) },
		func(s *torch.Scope) { s.Own(m.MatMul(m)) },
		func(s *torch.Scope) { s.Own(a.Sum()) },
		func(s *torch.Scope) { s.Own(m.Softmax(-1)) },
		func(s *torch.Scope) { s.Own(torch.Linear(m, m, nil)) },
	}
	goNs := map[string]float64{}
	var err error
	err = torch.Try(func() {
		for i, n := range names {
			goNs[n] = perOp(iters, fns[i])
		}
	})
	if err != nil {
		return err
	}

	// MLP: 10,000 steps, resident memory sampled along the way.
	var samples []int64
	var stepNs, finalLoss float64
	err = torch.Try(func() {
		g := torch.NewGenerator(42, torch.CPU)
		defer g.Close()
		p := newMLP(g)
		defer p.close()
		opt := torch.NewAdamW(p.params(), 0.01, 0)
		defer opt.Close()
		xs, ys := sine(64)
		live := torch.LiveTensors()
		t0 := time.Now()
		for i := 0; i < steps; i++ {
			finalLoss = p.step(opt, xs, ys)
			if (i+1)%(steps/10) == 0 {
				runtime.GC()
				samples = append(samples, rssKiB())
			}
		}
		stepNs = float64(time.Since(t0).Nanoseconds()) / float64(steps)
		if torch.LiveTensors() != live { // gradients live inside the parameters, not as handles
			panic(&torch.Error{Op: "bench", Msg: fmt.Sprintf("live tensors %d after training, %d before", torch.LiveTensors(), live)})
		}
	})
	if err != nil {
		return err
	}

	peer, err := runPeer(iters, steps)
	if err != nil {
		return err
	}
	floor, err := runFloor(iters, "")
	if err != nil {
		return err
	}
	info, _ := torch.Describe()
	// With tcmalloc linked into the engine, the floor runs a second time on
	// the same allocator (LD_PRELOAD), so that Go / floor compares like with like.
	var floorTC map[string]float64
	if lib := mappedLib("libtcmalloc_minimal"); lib != "" {
		if floorTC, err = runFloor(iters, lib); err != nil {
			return err
		}
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "# engine/torch per-op overhead and memory (CPU)\n\n")
	fmt.Fprintf(&md, "Measured %s by `go run ./bench/torchops -iters %d -steps %d`, on %d CPUs (%s/%s), libtorch %s (Go side) and PyTorch %s (peer), 1 intra-op thread on both sides.\n\n",
		time.Now().UTC().Format("2006-01-02"), iters, steps, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, info.RuntimeVersion, peer.Torch)
	fmt.Fprintf(&md, "Host allocator of the Go engine: %s. PyTorch and the floor use glibc's malloc", info.Allocator)
	if floorTC != nil {
		fmt.Fprintf(&md, "; the floor runs again with tcmalloc preloaded (floor, tcmalloc)")
	}
	fmt.Fprintf(&md, ".\n\n| op | Go engine ns/op | PyTorch (Python) ns/op | C++ loop on ATen ns/op (floor) | Go / PyTorch | Go / floor |")
	if floorTC != nil {
		fmt.Fprintf(&md, " floor, tcmalloc ns/op | Go / floor, tcmalloc |")
	}
	md.WriteString("\n|---|---:|---:|---:|---:|---:|")
	if floorTC != nil {
		md.WriteString("---:|---:|")
	}
	md.WriteString("\n")
	for _, n := range names {
		fmt.Fprintf(&md, "| %s | %.0f | %.0f | %.0f | %.2f | %.2f |", n, goNs[n], peer.Ops[n], floor[n], goNs[n]/peer.Ops[n], goNs[n]/floor[n])
		if floorTC != nil {
			fmt.Fprintf(&md, " %.0f | %.2f |", floorTC[n], goNs[n]/floorTC[n])
		}
		md.WriteString("\n")
	}
	fmt.Fprintf(&md, "\nMLP 1-32-1 training step (forward, MSE, backward, clip, AdamW) on 64 points: Go %.1f µs/step, PyTorch %.1f µs/step (Go / PyTorch %.2f); final loss Go %.2e, PyTorch %.2e.\n\n",
		stepNs/1e3, peer.MLPStepNs/1e3, stepNs/peer.MLPStepNs, finalLoss, peer.MLPFinalLoss)
	fmt.Fprintf(&md, "Resident memory of the Go process every %d steps (KiB): %v; first to last: %+d KiB.\n",
		steps/10, samples, samples[len(samples)-1]-samples[0])
	os.Stdout.Write(md.Bytes())
	if outPath != "" {
		return os.WriteFile(outPath, md.Bytes(), 0o644)
	}
	return nil
}

func runPeer(iters, steps int) (*peerResult, error) {
	_, self, _, _ := runtime.Caller(0)
	var r peerResult
	if err := child.Peer(&r, filepath.Join(filepath.Dir(self), "peer.py"), nil, fmt.Sprint(iters), fmt.Sprint(steps)); err != nil {
		return nil, err
	}
	return &r, nil
}

// mappedLib is the path of the first library mapped into this process whose
// file name starts with name, or "".
func mappedLib(name string) string {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && strings.HasPrefix(filepath.Base(f[5]), name) {
			return f[5]
		}
	}
	return ""
}

// runFloor builds (make) and runs the C++ floor, floor/floor.cpp, with
// preload (a library path, or "") in LD_PRELOAD.
func runFloor(iters int, preload string) (map[string]float64, error) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	mk := exec.Command("make", "-s", "-C", root, "build/bin/torchops-floor")
	mk.Stdout, mk.Stderr = os.Stderr, os.Stderr
	if err := mk.Run(); err != nil {
		return nil, fmt.Errorf("building the C++ floor: %w", err)
	}
	cmd := exec.Command(filepath.Join(root, "build", "bin", "torchops-floor"), fmt.Sprint(iters))
	if preload != "" {
		cmd.Env = append(os.Environ(), "LD_PRELOAD="+preload)
	}
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("C++ floor: %w", err)
	}
	var r struct {
		Ops map[string]float64 `json:"ops"`
	}
	if err := json.Unmarshal(outb, &r); err != nil {
		return nil, fmt.Errorf("C++ floor output: %w", err)
	}
	return r.Ops, nil
}

type mlp struct{ w1, b1, w2, b2 *torch.Tensor }

func newMLP(g *torch.Generator) *mlp {
	init := func(shape []int64, scale float64) *torch.Tensor {
		r := torch.Randn(shape, torch.Float32, torch.CPU, g)
		defer r.Close()
		return r.MulScalar(scale).SetRequiresGrad(true)
	}
	return &mlp{init([]int64{32, 1}, 1), init([]int64{32}, 0.5), init([]int64{1, 32}, 1/math.Sqrt(32)), init([]int64{1}, 0)}
}

func (m *mlp) params() []*torch.Tensor { return []*torch.Tensor{m.w1, m.b1, m.w2, m.b2} }

func (m *mlp) close() {
	for _, p := range m.params() {
		p.Close()
	}
}

func (m *mlp) step(opt *torch.AdamW, xs, ys []float32) float64 {
	s := torch.NewScope()
	defer s.Close()
	x := s.Own(torch.FromSlice(xs, int64(len(xs)), 1))
	y := s.Own(torch.FromSlice(ys, int64(len(ys)), 1))
	pred := torch.Linear(torch.Linear(x, m.w1, m.b1).Tanh(), m.w2, m.b2)
	loss := pred.Sub(y).Square().Mean()
	opt.ZeroGrad()
	loss.Backward()
	torch.ClipGradNorm(m.params(), 1)
	opt.Step()
	return loss.Item()
}

func sine(n int) (xs, ys []float32) {
	for i := 0; i < n; i++ {
		x := -math.Pi + 2*math.Pi*float64(i)/float64(n-1)
		xs = append(xs, float32(x))
		ys = append(ys, float32(math.Sin(x)))
	}
	return xs, ys
}
