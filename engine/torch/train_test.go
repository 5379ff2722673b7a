package torch

import (
	"math"
	"runtime"
	"sync"
	"testing"
)

func TestGradientsAgainstAnalytic(t *testing.T) {
	for _, dev := range devices(t) {
		must(t, func() {
			s := NewScope()
			defer s.Close()
			// loss = sum(sigmoid(x) * w); d/dx = sigmoid'(x) * w, d/dw = sigmoid(x).
			xs := []float32{-1, 0.5, 2}
			ws := []float32{0.3, -0.7, 1.1}
			x := s.Own(FromSlice(xs).ToDevice(dev).SetRequiresGrad(true))
			w := s.Own(FromSlice(ws).ToDevice(dev).SetRequiresGrad(true))
			if !x.RequiresGrad() {
				t.Fatal("RequiresGrad")
			}
			x.Sigmoid().Mul(w).Sum().Backward()
			gx, gw := x.Grad().Float32s(), w.Grad().Float32s()
			var wantX, wantW []float64
			for i := range xs {
				sg := 1 / (1 + math.Exp(-float64(xs[i])))
				wantX = append(wantX, sg*(1-sg)*float64(ws[i]))
				wantW = append(wantW, sg)
			}
			closeTo(t, "dx", gx, wantX, 1e-6, 1e-5)
			closeTo(t, "dw", gw, wantW, 1e-6, 1e-5)
			// Gradients accumulate until ZeroGrad.
			x.Sigmoid().Mul(w).Sum().Backward()
			closeTo(t, "dx accumulated", x.Grad().Float32s(), mapf(toF32(wantX), func(v float64) float64 { return 2 * v }), 1e-6, 1e-5)
			ZeroGrad([]*Tensor{x, w})
			if x.Grad() != nil {
				t.Fatal("grad after ZeroGrad")
			}
			// Detach cuts the graph; NoGrad records nothing.
			if x.Detach().RequiresGrad() {
				t.Fatal("Detach kept requires_grad")
			}
			NoGrad(func() {
				if x.MulScalar(2).RequiresGrad() {
					t.Fatal("NoGrad recorded a graph")
				}
			})
			if !x.MulScalar(2).RequiresGrad() {
				t.Fatal("grad mode not restored after NoGrad")
			}
		})
	}
}

// TestGradientFiniteDifferences checks the backward pass of a composed loss
// (layer norm, GELU, log-softmax, cross-entropy) against central differences
// in float64.
func TestGradientFiniteDifferences(t *testing.T) {
	must(t, func() {
		s := NewScope()
		defer s.Close()
		r := lcg(9)
		x0 := f64s(r.floats(12))
		tg := s.Own(FromSlice([]int64{2, 0, 3}))
		loss := func(x *Tensor) *Tensor {
			h := LayerNorm(x.Reshape(3, 4), nil, nil, 1e-5).Gelu().MulScalar(1.7)
			return CrossEntropy(h, tg)
		}
		x := s.Own(FromSlice(x0).SetRequiresGrad(true))
		loss(x).Backward()
		g := Data[float64](x.Grad())
		const eps = 1e-6
		for i := range x0 {
			plus := append([]float64{}, x0...)
			minus := append([]float64{}, x0...)
			plus[i] += eps
			minus[i] -= eps
			fd := (loss(s.Own(FromSlice(plus))).Item() - loss(s.Own(FromSlice(minus))).Item()) / (2 * eps)
			if math.Abs(fd-g[i]) > 1e-6+1e-4*math.Abs(fd) {
				t.Fatalf("grad[%d] = %v, finite difference %v", i, g[i], fd)
			}
		}
	})
}

// TestAdamWMatchesReference runs three AdamW steps and compares each
// parameter with the update rule computed in Go.
func TestAdamWMatchesReference(t *testing.T) {
	for _, dev := range devices(t) {
		must(t, func() {
			p0 := []float32{0.5, -1.5, 2}
			p := FromSlice(p0).ToDevice(dev).SetRequiresGrad(true)
			defer p.Close()
			o := NewAdamW([]*Tensor{p}, 0.01, 0.1)
			defer o.Close()
			ref := f64s(p0)
			m := make([]float64, 3)
			v := make([]float64, 3)
			for step := 1; step <= 3; step++ {
				s := NewScope()
				// loss = sum(p^3) so grad = 3 p^2
				p.PowScalar(3).Sum().Backward()
				s.Close()
				o.Step()
				o.ZeroGrad()
				for i := range ref {
					g := 3 * ref[i] * ref[i]
					ref[i] *= 1 - 0.01*0.1
					m[i] = 0.9*m[i] + 0.1*g
					v[i] = 0.999*v[i] + 0.001*g*g
					mh := m[i] / (1 - math.Pow(0.9, float64(step)))
					vh := v[i] / (1 - math.Pow(0.999, float64(step)))
					ref[i] -= 0.01 * mh / (math.Sqrt(vh) + 1e-8)
				}
				got := p.Float32s()
				closeTo(t, "AdamW", got, ref, 1e-6, 1e-5)
			}
			if o.StepCount != 3 || len(o.State()) != 2 {
				t.Fatalf("StepCount %d, state %d", o.StepCount, len(o.State()))
			}
		})
	}
}

// TestAdamWMasterWeights checks the bf16 path: the update is made to a
// float32 master from the float32-cast gradient (so it matches the float32
// rule computed in Go), and the bf16 weight is the master rounded. At this
// learning rate every single update is below half a bf16 ulp, so a bf16
// weight updated in place would never move.
func TestAdamWMasterWeights(t *testing.T) {
	for _, dev := range devices(t) {
		must(t, func() {
			p0 := []float32{0.5, -1.5, 2}
			p := FromSlice(p0).Convert(BFloat16, dev).SetRequiresGrad(true)
			defer p.Close()
			const lr = 1e-4
			o := NewAdamW([]*Tensor{p}, lr, 0.1)
			defer o.Close()
			if o.Master(0) == nil || o.Master(0).DType() != Float32 || o.State()["0.exp_avg"].DType() != Float32 {
				t.Fatalf("a bf16 parameter needs a float32 master and float32 moments")
			}
			ref := f64s(p0)
			m := make([]float64, 3)
			v := make([]float64, 3)
			for step := 1; step <= 40; step++ {
				s := NewScope()
				// loss = sum(p * c) so grad = c, exact in bf16
				c := s.Own(FromSlice([]float32{1, -2, 0.5})).Convert(BFloat16, dev)
				p.Mul(c).Sum().Backward()
				s.Close()
				o.Step()
				o.ZeroGrad()
				for i, g := range []float64{1, -2, 0.5} {
					ref[i] *= 1 - lr*0.1
					m[i] = 0.9*m[i] + 0.1*g
					v[i] = 0.999*v[i] + 0.001*g*g
					mh := m[i] / (1 - math.Pow(0.9, float64(step)))
					vh := v[i] / (1 - math.Pow(0.999, float64(step)))
					ref[i] -= lr * mh / (math.Sqrt(vh) + 1e-8)
				}
				closeTo(t, "master", o.Master(0).Float32s(), ref, 1e-6, 1e-6)
				cs := NewScope()
				want := cs.Own(o.Master(0).To(BFloat16)).To(Float32).Float32s()
				got := cs.Own(p.To(Float32)).Float32s()
				cs.Close()
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("step %d: weight[%d] = %v, master rounded to bf16 = %v", step, i, got[i], want[i])
					}
				}
			}
			// 40 updates of lr each moved the weights by more than a bf16 ulp.
			got := p.To(Float32).Float32s()
			for i := range got {
				if got[i] == p0[i] {
					t.Fatalf("weight[%d] never moved from %v", i, p0[i])
				}
			}
			if len(o.State()) != 3 {
				t.Fatalf("state %d tensors, want moments and master", len(o.State()))
			}
		})
	}
}

func TestClipGradNorm(t *testing.T) {
	must(t, func() {
		a := FromSlice([]float32{1, 2}).SetRequiresGrad(true)
		b := FromSlice([]float32{2}).SetRequiresGrad(true)
		defer a.Close()
		defer b.Close()
		s := NewScope()
		// grads: a -> [3, 6]? use loss = 3*sum(a) + 4*b -> grads [3,3], [4]
		a.Sum().MulScalar(3).Add(b.MulScalar(4).Sum()).Backward()
		s.Close()
		n := ClipGradNorm([]*Tensor{a, b}, 1)
		if math.Abs(n-math.Sqrt(34)) > 1e-5 {
			t.Fatalf("norm %v, want sqrt(34)", n)
		}
		ga := a.Grad()
		defer ga.Close()
		if after := ClipGradNorm([]*Tensor{a, b}, 0); math.Abs(after-1) > 1e-5 {
			t.Fatalf("norm after clipping %v", after)
		}
		closeTo(t, "clipped", ga.Float32s(), []float64{3 / math.Sqrt(34), 3 / math.Sqrt(34)}, 1e-6, 1e-5)
	})
}

// mlp is a two-layer perceptron used to check training end to end.
type mlp struct{ w1, b1, w2, b2 *Tensor }

func newMLP(g *Generator, hidden int64) *mlp {
	init := func(shape []int64, scale float64) *Tensor {
		r := Randn(shape, Float32, CPU, g)
		defer r.Close()
		return r.MulScalar(scale).SetRequiresGrad(true)
	}
	return &mlp{
		w1: init([]int64{hidden, 1}, 1), b1: init([]int64{hidden}, 0.5),
		w2: init([]int64{1, hidden}, 1/math.Sqrt(float64(hidden))), b2: init([]int64{1}, 0),
	}
}

func (m *mlp) params() []*Tensor { return []*Tensor{m.w1, m.b1, m.w2, m.b2} }
func (m *mlp) forward(x *Tensor) *Tensor {
	return Linear(Linear(x, m.w1, m.b1).Tanh(), m.w2, m.b2)
}
func (m *mlp) close() {
	for _, p := range m.params() {
		p.Close()
	}
}

// sineBatch returns x in [-pi, pi] and y = sin(x), shaped [n, 1].
func sineBatch(n int) (xs, ys []float32) {
	for i := 0; i < n; i++ {
		x := -math.Pi + 2*math.Pi*float64(i)/float64(n-1)
		xs = append(xs, float32(x))
		ys = append(ys, float32(math.Sin(x)))
	}
	return xs, ys
}

// trainStep is one full step: forward, MSE loss, backward, clip, AdamW.
func trainStep(m *mlp, o *AdamW, xs, ys []float32) float64 {
	s := NewScope()
	defer s.Close()
	x := s.Own(FromSlice(xs, int64(len(xs)), 1))
	y := s.Own(FromSlice(ys, int64(len(ys)), 1))
	loss := m.forward(x).Sub(y).Square().Mean()
	o.ZeroGrad()
	loss.Backward()
	ClipGradNorm(m.params(), 1)
	o.Step()
	return loss.Item()
}

func TestMLPLearnsSine(t *testing.T) {
	g := NewGenerator(42, CPU)
	defer g.Close()
	m := newMLP(g, 32)
	defer m.close()
	o := NewAdamW(m.params(), 0.01, 0)
	defer o.Close()
	xs, ys := sineBatch(64)
	var loss float64
	must(t, func() {
		for i := 0; i < 800; i++ {
			loss = trainStep(m, o, xs, ys)
		}
	})
	t.Logf("MSE after 800 steps: %.2e", loss)
	if loss > 2e-3 {
		t.Fatalf("MLP did not learn sin(x): loss %v", loss)
	}
}

func TestLiveHandlesReturnToBaselineAfterStep(t *testing.T) {
	g := NewGenerator(1, CPU)
	defer g.Close()
	m := newMLP(g, 16)
	o := NewAdamW(m.params(), 0.01, 0)
	xs, ys := sineBatch(32)
	must(t, func() { trainStep(m, o, xs, ys) }) // warm up (first step allocates grads)
	base := LiveTensors()
	for i := 0; i < 20; i++ {
		must(t, func() { trainStep(m, o, xs, ys) })
		if got := LiveTensors(); got != base {
			t.Fatalf("step %d: %d live tensors, baseline %d", i, got, base)
		}
	}
	// A failing step frees its tensors too.
	err := Try(func() {
		s := NewScope()
		defer s.Close()
		x := s.Own(FromSlice(xs, int64(len(xs)), 1))
		m.forward(x).MatMul(s.Own(Zeros([]int64{7, 7}, Float32, CPU)))
	})
	if err == nil || LiveTensors() != base {
		t.Fatalf("failed step: err %v, live %d, baseline %d", err, LiveTensors(), base)
	}
	o.Close()
	m.close()
	if got := LiveTensors(); got != base-12 {
		t.Fatalf("after closing model and optimizer: %d live, want %d", got, base-12)
	}
}

func TestScopeKeepAndOwn(t *testing.T) {
	base := LiveTensors()
	var kept *Tensor
	must(t, func() {
		s := NewScope()
		x := s.Own(Ones([]int64{3}, Float32, CPU))
		y := x.MulScalar(2)
		kept = y.AddScalar(1).Keep()
		z := x.Exp()
		z.Close() // early close inside a scope is fine
		if s.Len() != 4 {
			t.Fatalf("scope holds %d", s.Len())
		}
		s.Close()
		s.Close()
		if !x.Closed() || !y.Closed() || kept.Closed() {
			t.Fatal("scope closed the wrong tensors")
		}
	})
	closeTo(t, "kept", kept.Float32s(), []float64{3, 3, 3}, 0, 0)
	kept.Close()
	if LiveTensors() != base {
		t.Fatalf("live %d, want %d", LiveTensors(), base)
	}
}

func TestGeneratorDeterminismAndState(t *testing.T) {
	must(t, func() {
		draw := func(g *Generator) []float32 {
			r := Randn([]int64{5}, Float32, CPU, g)
			defer r.Close()
			return r.Float32s()
		}
		g1, g2 := NewGenerator(123, CPU), NewGenerator(123, CPU)
		defer g1.Close()
		defer g2.Close()
		a, b := draw(g1), draw(g2)
		closeTo(t, "same seed", a, f64s(b), 0, 0)
		st := g1.State()
		defer st.Close()
		next := draw(g1)
		g1.SetState(st)
		closeTo(t, "restored state", draw(g1), f64s(next), 0, 0)
		u := Rand([]int64{1000}, Float32, CPU, g1)
		defer u.Close()
		if u.AMin().Item() < 0 || u.AMax().Item() >= 1 || math.Abs(u.Mean().Item()-0.5) > 0.05 {
			t.Fatal("Rand not uniform in [0,1)")
		}
		ManualSeed(5)
		r1 := Randn([]int64{3}, Float32, CPU, nil)
		ManualSeed(5)
		r2 := Randn([]int64{3}, Float32, CPU, nil)
		closeTo(t, "ManualSeed", r1.Float32s(), f64s(r2.Float32s()), 0, 0)
		r1.Close()
		r2.Close()
	})
}

// TestThreadCountOnEveryOSThread checks that the intra-op thread count set
// once applies to cgo calls made from other OS threads too (OpenMP keeps it
// per thread; the shim re-applies it).
func TestThreadCountOnEveryOSThread(t *testing.T) {
	if err := SetNumThreads(2); err != nil {
		t.Fatal(err)
	}
	defer SetNumThreads(runtime.NumCPU())
	var wg sync.WaitGroup
	errs := make(chan int, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // a fresh OS thread for this goroutine
			if n := NumThreads(); n != 2 {
				errs <- n
			}
		}()
	}
	wg.Wait()
	close(errs)
	for n := range errs {
		t.Fatalf("an OS thread runs with %d intra-op threads, want 2", n)
	}
}

func TestDescribe(t *testing.T) {
	info, err := Describe()
	if err != nil {
		t.Fatal(err)
	}
	if info.CompiledVersion == "" || info.RuntimeVersion == "" || info.RuntimeVersion == "unknown" || info.Threads < 1 {
		t.Fatalf("Describe: %+v", info)
	}
	t.Logf("%+v", info)
}

// TestThreadInfo checks that SetNumThreads reaches OpenMP on another OS
// thread and OpenBLAS's own pool (libtorch sets only the former).
func TestThreadInfo(t *testing.T) {
	prev, prevBLAS := NumThreads(), blasThreads.Load()
	blasThreads.Store(0) // the intra-op count for OpenBLAS too
	defer func() {
		blasThreads.Store(prevBLAS)
		SetNumThreads(prev)
	}()
	for _, n := range []int{1, 3} {
		if err := SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		done := make(chan Info)
		go func() {
			runtime.LockOSThread() // a fresh OS thread for this goroutine
			info, err := Describe()
			if err != nil {
				t.Error(err)
			}
			done <- info
		}()
		info := <-done
		if info.Threads != n || (info.OpenMPThreads != -1 && info.OpenMPThreads != n) {
			t.Fatalf("SetNumThreads(%d): intra-op %d, OpenMP %d", n, info.Threads, info.OpenMPThreads)
		}
		if info.OpenBLASThreads != -1 && info.OpenBLASThreads != n {
			t.Fatalf("SetNumThreads(%d): OpenBLAS runs %d threads", n, info.OpenBLASThreads)
		}
		if info.WaitPolicy == "" {
			t.Fatal("no wait policy")
		}
	}
}

// TestBLASThreadsApart: SetBLASThreads sizes OpenBLAS apart from the
// intra-op count, and a later SetNumThreads keeps it.
func TestBLASThreadsApart(t *testing.T) {
	prev, prevBLAS := NumThreads(), blasThreads.Load()
	defer func() {
		blasThreads.Store(prevBLAS)
		SetNumThreads(prev)
	}()
	if err := SetBLASThreads(3); err != nil {
		t.Fatal(err)
	}
	if err := SetNumThreads(1); err != nil {
		t.Fatal(err)
	}
	info, err := Describe()
	if err != nil {
		t.Fatal(err)
	}
	if info.OpenBLASThreads == -1 {
		t.Skip("the BLAS is not OpenBLAS")
	}
	if info.Threads != 1 || info.OpenBLASThreads != 3 {
		t.Fatalf("intra-op %d, OpenBLAS %d; want 1 and 3", info.Threads, info.OpenBLASThreads)
	}
	if err := SetBLASThreads(0); err == nil {
		t.Fatal("SetBLASThreads(0) accepted")
	}
}
