package torch

import (
	"fmt"
	"math"
	"os"
	"testing"
)

// Tests of the fused ops (fused.go). Three references:
//   - independent float64 Go math on the inputs as rounded to the test dtype
//     (forward values);
//   - the unfused graph composed from this package's ops (forward values and
//     autograd gradients);
//   - central finite differences in float64 on the CPU (gradients).
// On the CPU the fused ops run their composed libtorch path; with a GPU the
// same tests run on CUDA:0 (kernel path) and TestFusedKernelsMatchComposed
// compares the kernels with the composed path on the device. With the shim of
// `make shim-emu` the CPU runs the kernel path (the kernels under the host
// emulation) and all of these tests hold it to the references.
//
// Tolerances are |got - want| <= atol + rtol*|want|:
//   forward vs float64 math: the ops compute in f32 from the rounded inputs,
//     so every dtype gets f32-level tolerances (1e-4); token log-probs round the
//     logits to the dtype as a matmul does, so they are compared with the
//     composed graph that does the same (1e-4), and with float64 math at
//     bf16 5e-2, f16 1e-2 (logits of magnitude ~3);
//   gradients vs the composed graph (in f64 on the rounded inputs for f16 and
//     bf16): f32 1e-4, f16 5e-3, bf16 3e-2 (relative to the largest gradient),
//     f64 1e-9;
//   gradients vs finite differences (f64, step 1e-6): 1e-6.

type fusedCase struct {
	s   *Scope
	dev Device
}

// tensor makes a tensor from float64 data, cast to dt and moved to the device.
func (f fusedCase) tensor(data []float64, dt DType, shape ...int64) *Tensor {
	t := f.s.Own(FromSlice(data, shape...))
	if dt != Float64 {
		t = t.To(dt)
	}
	if f.dev.IsCUDA() {
		t = t.ToDevice(f.dev)
	}
	return t
}

func (f fusedCase) ints(data []int64) *Tensor {
	t := f.s.Own(FromSlice(data))
	if f.dev.IsCUDA() {
		t = t.ToDevice(f.dev)
	}
	return t
}

// vals reads any float tensor as float64 values on the host.
func vals(t *Tensor) []float64 {
	return Data[float64](t.To(Float64).ToDevice(CPU))
}

func randf(r *lcg, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(r.float()) * scale
	}
	return out
}

func closeTo64(t *testing.T, name string, got, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > atol+rtol*math.Abs(want[i]) || math.IsNaN(got[i]) != math.IsNaN(want[i]) {
			t.Fatalf("%s[%d] = %.9g, want %.9g (atol %g, rtol %g)", name, i, got[i], want[i], atol, rtol)
		}
	}
}

// closeScaled compares with a tolerance relative to the largest |want| (at
// least 1e-3: for H = 1 an RMS norm's gradient is ~eps/|x|^3 and all
// cancellation).
func closeScaled(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	scale := 0.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	closeTo64(t, name, got, want, tol*math.Max(scale, 1e-3), 0)
}

// refLeaves returns the leaves the reference gradients are taken on: params
// themselves (grads zeroed) for f32/f64; for f16/bf16, float64 copies of the
// rounded values, so that the reference is exact rather than another
// low-precision computation (libtorch's CPU bf16 matmul, for one, accumulates
// less precisely than the chunked op).
func refLeaves(params []*Tensor, dt DType) []*Tensor {
	if dt == Float32 || dt == Float64 {
		ZeroGrad(params)
		return params
	}
	out := make([]*Tensor, len(params))
	for i, p := range params {
		out[i] = p.To(Float64).Detach().SetRequiresGrad(true)
	}
	return out
}

// gradVals reads the gradients of leaves.
func gradVals(leaves []*Tensor) [][]float64 {
	out := make([][]float64, len(leaves))
	for i, p := range leaves {
		out[i] = vals(p.Grad())
	}
	return out
}

var fusedDTypes = []DType{Float32, Float16, BFloat16, Float64}

// gradTol is the tolerance of fused gradients against the composed graph.
func gradTol(dt DType) float64 {
	switch dt {
	case Float64:
		return 1e-9
	case Float32:
		return 1e-4
	case Float16:
		return 5e-3
	}
	return 3e-2
}

// ---- reward scoring ----------------------------------------------------------

type rewardShape struct{ B, L, H int }

var rewardShapes = []rewardShape{{1, 1, 1}, {3, 5, 7}, {4, 9, 130}, {2, 3, 1000}, {6, 2, 33}}

type rewardInputs struct {
	hidden, w, b, head []float64
	last               []int64
}

func makeRewardInputs(r *lcg, sh rewardShape) rewardInputs {
	in := rewardInputs{
		hidden: randf(r, sh.B*sh.L*sh.H, 1),
		w:      randf(r, sh.H, 0.5),
		b:      randf(r, sh.H, 0.5),
		head:   randf(r, sh.H, 0.5),
	}
	for i := range in.w {
		in.w[i] += 1
	}
	for b := 0; b < sh.B; b++ {
		in.last = append(in.last, int64((b*7+3)%sh.L))
	}
	return in
}

// rewardTensors makes in's tensors in dt (the norm bias only with bias), the
// float ones requiring grad when grads is set; params are those leaves:
// hidden, w, head, then b if there is one.
func (f fusedCase) rewardTensors(in rewardInputs, sh rewardShape, dt DType, bias, grads bool) (hidden, w, b, head, last *Tensor, params []*Tensor) {
	B, L, H := int64(sh.B), int64(sh.L), int64(sh.H)
	hidden = f.tensor(in.hidden, dt, B, L, H).SetRequiresGrad(grads)
	w = f.tensor(in.w, dt, H).SetRequiresGrad(grads)
	head = f.tensor(in.head, dt, 1, H).SetRequiresGrad(grads)
	params = []*Tensor{hidden, w, head}
	if bias {
		b = f.tensor(in.b, dt, H).SetRequiresGrad(grads)
		params = append(params, b)
	}
	return hidden, w, b, head, f.ints(in.last), params
}

// refReward is the float64 reference of RewardScore.
func refReward(in rewardInputs, sh rewardShape, kind NormKind, bias bool, eps float64) []float64 {
	out := make([]float64, sh.B)
	for b := 0; b < sh.B; b++ {
		x := in.hidden[(b*sh.L+int(in.last[b]))*sh.H:][:sh.H]
		mu := 0.0
		if kind == NormLayer {
			for _, v := range x {
				mu += v
			}
			mu /= float64(sh.H)
		}
		ss := 0.0
		for _, v := range x {
			ss += (v - mu) * (v - mu)
		}
		rstd := 1 / math.Sqrt(ss/float64(sh.H)+eps)
		for i, v := range x {
			y := (v - mu) * rstd * in.w[i]
			if bias {
				y += in.b[i]
			}
			out[b] += y * in.head[i]
		}
	}
	return out
}

// composedReward is the unfused graph of this package's ops, on leaves in
// the order of rewardTensors' params.
func composedReward(s *Scope, leaves []*Tensor, last *Tensor, kind NormKind, eps float64) *Tensor {
	hidden, w, head := leaves[0], leaves[1], leaves[2]
	var b *Tensor
	if len(leaves) > 3 {
		b = leaves[3]
	}
	B, L, H := hidden.Size(0), hidden.Size(1), hidden.Size(2)
	acc := Float32
	if hidden.DType() == Float64 {
		acc = Float64
	}
	idx := s.Own(Arange(0, float64(B), 1, Int64, hidden.Device())).MulScalar(float64(L)).To(Int64).Add(last)
	x := hidden.Reshape(B*L, H).IndexSelect(0, idx).To(acc)
	if kind == NormLayer {
		x = x.Sub(x.MeanKeep(-1))
	}
	y := x.Mul(x.Mul(x).MeanKeep(-1).AddScalar(eps).Rsqrt()).Mul(w.To(acc))
	if b != nil {
		y = y.Add(b.To(acc))
	}
	return y.MatMul(head.To(acc).Reshape(H, 1)).Reshape(B)
}

func TestRewardScoreParity(t *testing.T) {
	for _, dev := range devices(t) {
		for _, dt := range fusedDTypes {
			if dev.IsCUDA() && dt == Float64 {
				continue // the composed path; covered on the CPU
			}
			for _, kind := range []NormKind{NormLayer, NormRMS} {
				for _, bias := range []bool{true, false} {
					if kind == NormRMS && bias {
						continue
					}
					for _, sh := range rewardShapes {
						name := fmt.Sprintf("%v/%v/%v/bias=%v/%dx%dx%d", dev, dt, kind, bias, sh.B, sh.L, sh.H)
						t.Run(name, func(t *testing.T) { checkReward(t, dev, dt, kind, bias, sh) })
					}
				}
			}
		}
	}
}

func checkReward(t *testing.T, dev Device, dt DType, kind NormKind, bias bool, sh rewardShape) {
	s := NewScope()
	defer s.Close()
	f := fusedCase{s, dev}
	r := lcg(sh.B*1000 + sh.H)
	in := makeRewardInputs(&r, sh)
	const eps = 1e-5
	must(t, func() {
		hidden, w, b, head, last, params := f.rewardTensors(in, sh, dt, bias, true)

		// Forward against float64 math on the rounded inputs.
		rounded := rewardInputs{hidden: vals(hidden), w: vals(w), head: vals(head), last: in.last}
		if bias {
			rounded.b = vals(b)
		}
		scores := RewardScore(hidden, last, w, b, kind, eps, head)
		if want := Float32; dt == Float64 && scores.DType() != Float64 || dt != Float64 && scores.DType() != want {
			t.Fatalf("scores dtype %v", scores.DType())
		}
		closeTo64(t, "scores", vals(scores), refReward(rounded, sh, kind, bias, eps), 1e-4, 1e-4)

		// Gradients against the composed graph, through a random weighting.
		cw := f.tensor(randf(&r, sh.B, 1), scores.DType(), int64(sh.B))
		scores.Mul(cw).Sum().Backward()
		fused := gradVals(params)
		ref := refLeaves(params, dt)
		composedReward(s, ref, last, kind, eps).Mul(cw.To(ref[0].DType())).Sum().Backward()
		for i, p := range ref {
			closeScaled(t, fmt.Sprintf("grad %d", i), fused[i], vals(p.Grad()), gradTol(dt))
		}
	})
}

func TestRewardBTLoss(t *testing.T) {
	for _, dev := range devices(t) {
		for _, dt := range []DType{Float32, BFloat16, Float64} {
			if dev.IsCUDA() && dt == Float64 {
				continue
			}
			for _, kind := range []NormKind{NormLayer, NormRMS} {
				t.Run(fmt.Sprintf("%v/%v/%v", dev, dt, kind), func(t *testing.T) {
					s := NewScope()
					defer s.Close()
					f := fusedCase{s, dev}
					sh := rewardShape{B: 6, L: 4, H: 45}
					r := lcg(99)
					in := makeRewardInputs(&r, sh)
					must(t, func() {
						hidden, w, b, head, last, params := f.rewardTensors(in, sh, dt, kind == NormLayer, true)
						loss, scores := RewardBTLoss(hidden, last, w, b, kind, 1e-5, head)
						sc := vals(scores)
						want := 0.0
						for i := 0; i < 3; i++ {
							want += math.Log1p(math.Exp(sc[3+i] - sc[i]))
						}
						closeTo64(t, "loss", []float64{loss.Item()}, []float64{want / 3}, 1e-5, 1e-5)

						// Gradient of loss + 0.3 * sum(scores): both outputs used.
						loss.Add(scores.Sum().MulScalar(0.3)).Backward()
						fused := gradVals(params)
						ref := refLeaves(params, dt)
						cs := composedReward(s, ref, last, kind, 1e-5)
						closeTo64(t, "scores", sc, vals(cs), 1e-4, 1e-4)
						cl := cs.Narrow(0, 0, 3).Sub(cs.Narrow(0, 3, 3)).LogSigmoid().Mean().Neg()
						cl.Add(cs.Sum().MulScalar(0.3)).Backward()
						for i, p := range ref {
							closeScaled(t, fmt.Sprintf("grad %d", i), fused[i], vals(p.Grad()), gradTol(dt))
						}
					})
				})
			}
		}
	}
}

// numGrad checks d f / d x[i] for a few coordinates by central differences.
func numGrad(t *testing.T, name string, x []float64, analytic []float64, idx []int, f func() float64) {
	t.Helper()
	const h = 1e-6
	for _, i := range idx {
		if i >= len(x) {
			continue
		}
		old := x[i]
		x[i] = old + h
		fp := f()
		x[i] = old - h
		fm := f()
		x[i] = old
		num := (fp - fm) / (2 * h)
		if math.Abs(num-analytic[i]) > 1e-6+1e-6*math.Abs(num) {
			t.Fatalf("%s[%d]: analytic %.10g, finite difference %.10g", name, i, analytic[i], num)
		}
	}
}

// fdObjective evaluates a float64 objective on the CPU for numGrad: build
// makes the leaves in a fresh scope (requiring grad when grads is set) and
// returns the objective and the leaves. fdObjective returns the leaves'
// gradients and a function that evaluates the objective again, on the data
// as numGrad has perturbed it.
func fdObjective(t *testing.T, build func(f fusedCase, grads bool) (*Tensor, []*Tensor)) ([][]float64, func() float64) {
	t.Helper()
	eval := func(grads bool) (obj float64, gs [][]float64) {
		s := NewScope()
		defer s.Close()
		must(t, func() {
			o, leaves := build(fusedCase{s, CPU}, grads)
			obj = o.Item()
			if grads {
				o.Backward()
				gs = gradVals(leaves)
			}
		})
		return obj, gs
	}
	_, g := eval(true)
	return g, func() float64 { v, _ := eval(false); return v }
}

func TestRewardFiniteDifferences(t *testing.T) {
	for _, kind := range []NormKind{NormLayer, NormRMS} {
		for _, pairs := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/bt=%v", kind, pairs), func(t *testing.T) {
				sh := rewardShape{B: 4, L: 3, H: 11}
				r := lcg(7)
				in := makeRewardInputs(&r, sh)
				cw := randf(&r, sh.B, 1)
				bias := kind == NormLayer
				g, fn := fdObjective(t, func(f fusedCase, grads bool) (*Tensor, []*Tensor) {
					hidden, w, b, head, last, params := f.rewardTensors(in, sh, Float64, bias, grads)
					if pairs {
						loss, scores := RewardBTLoss(hidden, last, w, b, kind, 1e-5, head)
						return loss.Add(scores.Mul(f.tensor(cw, Float64, 4)).Sum()), params
					}
					return RewardScore(hidden, last, w, b, kind, 1e-5, head).Mul(f.tensor(cw, Float64, 4)).Sum(), params
				})
				// Coordinates on the selected rows of hidden and elsewhere.
				var hidx []int
				for b := 0; b < sh.B; b++ {
					row := (b*sh.L + int(in.last[b])) * sh.H
					hidx = append(hidx, row, row+5, row+10)
				}
				hidx = append(hidx, 1) // an unselected position: gradient 0
				numGrad(t, "hidden", in.hidden, g[0], hidx, fn)
				numGrad(t, "norm weight", in.w, g[1], []int{0, 4, 10}, fn)
				numGrad(t, "head", in.head, g[2], []int{0, 3, 9}, fn)
				if bias {
					numGrad(t, "norm bias", in.b, g[3], []int{0, 6}, fn)
				}
			})
		}
	}
}

func TestRewardScoreErrors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	f := fusedCase{s, CPU}
	before := LiveTensors()
	hidden := f.tensor(make([]float64, 2*3*4), Float32, 2, 3, 4)
	w := f.tensor(make([]float64, 4), Float32, 4)
	head := f.tensor(make([]float64, 4), Float32, 1, 4)
	cases := map[string]func(){
		"last out of range": func() { RewardScore(hidden, f.ints([]int64{0, 3}), w, nil, NormRMS, 1e-5, head) },
		"negative last":     func() { RewardScore(hidden, f.ints([]int64{-1, 0}), w, nil, NormRMS, 1e-5, head) },
		"rms with bias":     func() { RewardScore(hidden, f.ints([]int64{0, 1}), w, w, NormRMS, 1e-5, head) },
		"bad head":          func() { RewardScore(hidden, f.ints([]int64{0, 1}), w, nil, NormRMS, 1e-5, w.Reshape(2, 2)) },
		"bad kind":          func() { RewardScore(hidden, f.ints([]int64{0, 1}), w, nil, NormKind(7), 1e-5, head) },
		"2-d hidden":        func() { RewardScore(w.Reshape(2, 2), f.ints([]int64{0, 1}), w, nil, NormRMS, 1e-5, head) },
		"odd pair rows": func() {
			RewardBTLoss(hidden.Narrow(0, 0, 1), f.ints([]int64{0}), w, nil, NormRMS, 1e-5, head)
		},
		"last wrong dtype": func() { RewardScore(hidden, f.tensor([]float64{0, 1}, Float32, 2), w, nil, NormRMS, 1e-5, head) },
	}
	for name, fn := range cases {
		wantInvalid(t, name, fn)
	}
	s.Close()
	if after := LiveTensors(); after != before {
		t.Fatalf("live tensors %d -> %d", before, after)
	}
}

// ---- token log-probabilities --------------------------------------------------

type tlpShape struct{ N, H, V, chunk int }

var tlpShapes = []tlpShape{{1, 1, 1, 0}, {5, 7, 13, 4}, {6, 16, 100, 7}, {9, 33, 1000, 256}, {4, 8, 50, 50}, {3, 12, 70, 1000}}

func tlpTargets(n, v int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64((i*37 + 11) % v)
	}
	if n > 2 {
		out[1] = -100 // ignored
	}
	return out
}

// refLogProbs is float64 log_softmax(h W^T)[target] (0 for ignored).
func refLogProbs(h, w []float64, tg []int64, N, H, V int) []float64 {
	out := make([]float64, N)
	for n := 0; n < N; n++ {
		if tg[n] < 0 {
			continue
		}
		logits := make([]float64, V)
		m := math.Inf(-1)
		for v := 0; v < V; v++ {
			for k := 0; k < H; k++ {
				logits[v] += h[n*H+k] * w[v*H+k]
			}
			m = math.Max(m, logits[v])
		}
		s := 0.0
		for _, l := range logits {
			s += math.Exp(l - m)
		}
		out[n] = logits[tg[n]] - m - math.Log(s)
	}
	return out
}

// composedLogProbs is the unfused graph: full logits in the matmul dtype,
// log_softmax in f32 (f64), gather; ignored targets masked to 0.
func composedLogProbs(s *Scope, hidden, weight, targets *Tensor) *Tensor {
	acc := Float32
	if hidden.DType() == Float64 {
		acc = Float64
	}
	h, w := hidden, weight
	if hidden.DType() == Float16 && !hidden.Device().IsCUDA() {
		h, w = h.To(Float32), w.To(Float32)
	}
	logits := h.MatMul(w.Transpose(0, 1)).To(acc)
	keep := targets.GeScalar(0)
	safe := Where(keep, targets, s.Own(Zeros([]int64{1}, Int64, targets.Device())))
	lp := logits.LogSoftmax(1).Gather(1, safe.Unsqueeze(1)).Squeeze(1)
	return Where(keep, lp, s.Own(Zeros([]int64{1}, acc, targets.Device())))
}

func TestTokenLogProbsParity(t *testing.T) {
	for _, dev := range devices(t) {
		for _, dt := range fusedDTypes {
			if dev.IsCUDA() && dt == Float64 {
				continue
			}
			for _, sh := range tlpShapes {
				name := fmt.Sprintf("%v/%v/N%d_H%d_V%d_c%d", dev, dt, sh.N, sh.H, sh.V, sh.chunk)
				t.Run(name, func(t *testing.T) { checkTokenLogProbs(t, dev, dt, sh) })
			}
		}
	}
}

func checkTokenLogProbs(t *testing.T, dev Device, dt DType, sh tlpShape) {
	s := NewScope()
	defer s.Close()
	f := fusedCase{s, dev}
	r := lcg(sh.N*31 + sh.V)
	N, H, V := int64(sh.N), int64(sh.H), int64(sh.V)
	scale := 1.5 / math.Sqrt(float64(sh.H)) // logits of magnitude ~3
	tg := tlpTargets(sh.N, sh.V)
	must(t, func() {
		hidden := f.tensor(randf(&r, sh.N*sh.H, scale), dt, N, H).SetRequiresGrad(true)
		weight := f.tensor(randf(&r, sh.V*sh.H, 1), dt, V, H).SetRequiresGrad(true)
		targets := f.ints(tg)
		lp := TokenLogProbs(hidden, weight, targets, int64(sh.chunk))

		ref := refLogProbs(vals(hidden), vals(weight), tg, sh.N, sh.H, sh.V)
		tol := map[DType]float64{Float64: 1e-12, Float32: 1e-4, Float16: 1e-2, BFloat16: 5e-2}[dt]
		closeTo64(t, "logp vs float64", vals(lp), ref, tol, tol)

		composed := composedLogProbs(s, hidden, weight, targets)
		closeTo64(t, "logp vs composed", vals(lp), vals(composed), 1e-4, 1e-4)

		// Gradients against the composed graph.
		cw := f.tensor(randf(&r, sh.N, 1), lp.DType(), N)
		lp.Mul(cw).Sum().Backward()
		gh, gw := vals(hidden.Grad()), vals(weight.Grad())
		rl := refLeaves([]*Tensor{hidden, weight}, dt)
		composedLogProbs(s, rl[0], rl[1], targets).Mul(cw.To(rl[0].DType())).Sum().Backward()
		closeScaled(t, "grad hidden", gh, vals(rl[0].Grad()), gradTol(dt))
		closeScaled(t, "grad weight", gw, vals(rl[1].Grad()), gradTol(dt))
		if sh.N > 2 {
			for k := 0; k < sh.H; k++ {
				if gh[sh.H+k] != 0 {
					t.Fatalf("ignored position has gradient %v", gh[sh.H+k])
				}
			}
		}

		// Unlikelihood: -log(1 - p) from the same log-probs.
		ul := vals(UnlikelihoodLoss(hidden, weight, targets, int64(sh.chunk), 0))
		want := make([]float64, len(ref))
		for i, l := range ref {
			if tg[i] >= 0 {
				want[i] = -math.Log(math.Max(1-math.Exp(l), 1e-6))
			}
		}
		closeTo64(t, "unlikelihood", ul, want, 2*tol, 2*tol)
	})
}

func TestTokenLogProbsFiniteDifferences(t *testing.T) {
	for _, mode := range []string{"logprob", "unlikelihood"} {
		t.Run(mode, func(t *testing.T) {
			const N, H, V, chunk = 5, 6, 11, 3
			r := lcg(5)
			h, w := randf(&r, N*H, 0.6), randf(&r, V*H, 1)
			cw := randf(&r, N, 1)
			tg := tlpTargets(N, V)
			g, fn := fdObjective(t, func(f fusedCase, grads bool) (*Tensor, []*Tensor) {
				hidden := f.tensor(h, Float64, N, H).SetRequiresGrad(grads)
				weight := f.tensor(w, Float64, V, H).SetRequiresGrad(grads)
				var out *Tensor
				if mode == "logprob" {
					out = TokenLogProbs(hidden, weight, f.ints(tg), chunk)
				} else {
					out = UnlikelihoodLoss(hidden, weight, f.ints(tg), chunk, 0)
				}
				return out.Mul(f.tensor(cw, Float64, N)).Sum(), []*Tensor{hidden, weight}
			})
			numGrad(t, "hidden", h, g[0], []int{0, 5, 7, 13, 20, 29}, fn)
			numGrad(t, "weight", w, g[1], []int{0, 1, 17, 30, 44, 65}, fn)
		})
	}
}

func TestTokenLogProbsErrors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	f := fusedCase{s, CPU}
	before := LiveTensors()
	h := f.tensor(make([]float64, 6), Float32, 2, 3)
	w := f.tensor(make([]float64, 12), Float32, 4, 3)
	cases := map[string]func(){
		"target >= V":     func() { TokenLogProbs(h, w, f.ints([]int64{0, 4}), 0) },
		"dtype mismatch":  func() { TokenLogProbs(h, w.To(Float64), f.ints([]int64{0, 1}), 0) },
		"width mismatch":  func() { TokenLogProbs(h, w.Narrow(1, 0, 2), f.ints([]int64{0, 1}), 0) },
		"targets count":   func() { TokenLogProbs(h, w, f.ints([]int64{0}), 0) },
		"targets dtype":   func() { TokenLogProbs(h, w, h.Narrow(1, 0, 1).Squeeze(1), 0) },
		"1-d hidden":      func() { TokenLogProbs(h.Reshape(6), w, f.ints([]int64{0, 1}), 0) },
		"ul bad dtype tg": func() { UnlikelihoodLoss(h, w, f.tensor([]float64{0, 1}, Float32, 2), 0, 0) },
	}
	for name, fn := range cases {
		wantInvalid(t, name, fn)
	}
	// Empty batch.
	must(t, func() {
		out := TokenLogProbs(h.Narrow(0, 0, 0), w, f.ints([]int64{}), 0)
		if out.Numel() != 0 {
			t.Fatalf("empty batch gave %v", out.Shape())
		}
	})
	s.Close()
	if after := LiveTensors(); after != before {
		t.Fatalf("live tensors %d -> %d", before, after)
	}
}

// TestFusedKernelsMatchComposed compares the kernels with the composed path
// on the same device (kernels switched off), at sizes that are not multiples
// of the block or vector widths, and a real vocabulary size. It runs on a GPU
// with a CUDA shim, and on the CPU with the shim of `make shim-emu`, whose
// kernels run under the host emulation (the shim's kernel path end to end,
// without a GPU).
func TestFusedKernelsMatchComposed(t *testing.T) {
	dev, ok := FusedKernelDevice()
	if want := os.Getenv("ARES_TEST_KERNELS"); want == "host-emu" && (!ok || dev.IsCUDA()) {
		t.Fatal("ARES_TEST_KERNELS=host-emu, but the shim loaded has no emulated kernels: is build/lib-emu first on LD_LIBRARY_PATH?")
	}
	if !ok {
		t.Skip("shim built without the fused kernels: needs a CUDA build on a GPU, or `make shim-emu`")
	}
	if dev.IsCUDA() && !CUDAAvailable() {
		t.Skip("shim built with CUDA, but no CUDA device")
	}
	defer SetFusedKernels(SetFusedKernels(true))
	for _, dt := range []DType{Float32, Float16, BFloat16} {
		for _, sh := range []tlpShape{{7, 64, 8191, 1000}, {130, 96, 50257, 8192}, {33, 136, 152064, 0}} {
			t.Run(fmt.Sprintf("logprobs/%v/N%d_V%d", dt, sh.N, sh.V), func(t *testing.T) {
				s := NewScope()
				defer s.Close()
				f := fusedCase{s, dev}
				r := lcg(sh.V)
				tg := tlpTargets(sh.N, sh.V)
				must(t, func() {
					hidden := f.tensor(randf(&r, sh.N*sh.H, 2/math.Sqrt(float64(sh.H))), dt, int64(sh.N), int64(sh.H)).SetRequiresGrad(true)
					weight := f.tensor(randf(&r, sh.V*sh.H, 1), dt, int64(sh.V), int64(sh.H)).SetRequiresGrad(true)
					targets := f.ints(tg)
					cw := f.tensor(randf(&r, sh.N, 1), Float32, int64(sh.N))
					run := func(kernels bool) ([]float64, []float64, []float64) {
						SetFusedKernels(kernels)
						ZeroGrad([]*Tensor{hidden, weight})
						lp := TokenLogProbs(hidden, weight, targets, int64(sh.chunk))
						lp.Mul(cw).Sum().Backward()
						return vals(lp), vals(hidden.Grad()), vals(weight.Grad())
					}
					kl, kh, kw := run(true)
					cl, ch, cwg := run(false)
					closeTo64(t, "logp", kl, cl, 1e-4, 1e-4)
					closeScaled(t, "grad hidden", kh, ch, gradTol(dt))
					closeScaled(t, "grad weight", kw, cwg, gradTol(dt))
				})
			})
		}
		for _, sh := range []rewardShape{{5, 17, 1000}, {64, 300, 4096}, {3, 2, 8191}} {
			for _, kind := range []NormKind{NormLayer, NormRMS} {
				t.Run(fmt.Sprintf("reward/%v/%v/%dx%dx%d", dt, kind, sh.B, sh.L, sh.H), func(t *testing.T) {
					s := NewScope()
					defer s.Close()
					f := fusedCase{s, dev}
					r := lcg(sh.H)
					in := makeRewardInputs(&r, sh)
					must(t, func() {
						hidden, w, b, head, last, params := f.rewardTensors(in, sh, dt, kind == NormLayer, true)
						run := func(kernels bool) [][]float64 {
							SetFusedKernels(kernels)
							ZeroGrad(params)
							var out [][]float64
							if sh.B%2 == 0 {
								loss, sc := RewardBTLoss(hidden, last, w, b, kind, 1e-5, head)
								loss.Add(sc.Sum().MulScalar(0.1)).Backward()
								out = append(out, []float64{loss.Item()}, vals(sc))
							} else {
								sc := RewardScore(hidden, last, w, b, kind, 1e-5, head)
								sc.Sum().Backward()
								out = append(out, vals(sc))
							}
							return append(out, gradVals(params)...)
						}
						k, c := run(true), run(false)
						for i := range k {
							closeScaled(t, fmt.Sprintf("output %d", i), k[i], c[i], gradTol(dt))
						}
					})
				})
			}
		}
	}
}
