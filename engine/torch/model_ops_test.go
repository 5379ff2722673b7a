package torch

import (
	"fmt"
	"math"
	"testing"
)

// Tests of the fused model ops (model_ops.go) against the compositions of
// plain ops they replace (the engine's model code before them), at several
// shapes, |got - ref| <= atol + rtol*|ref| with atol = rtol = 0 in float32 and
// float64: the fused ops run the same libtorch ops on matrices of the same
// shapes, so the results must be equal to the bit (a trained model's numbers,
// the demo's, then do not move); and their gradients in float64 against
// central finite differences (numGrad, fused_test.go).

// refRotate is x*cos + rotate_half(x)*sin over the first rd of d dims.
func refRotate(x, cos, sin *Tensor, rd, d int64) *Tensor {
	if rd < d {
		return Cat([]*Tensor{refRotate(x.Narrow(-1, 0, rd), cos, sin, rd, rd), x.Narrow(-1, rd, d-rd)}, -1)
	}
	half := d / 2
	x1, x2 := x.Narrow(-1, 0, half), x.Narrow(-1, half, half)
	return x.Mul(cos).Add(Cat([]*Tensor{x2.Neg(), x1}, -1).Mul(sin))
}

// refAttention is GQAttention composed of plain ops; kc, vc (may be nil) are
// written as the fused op writes its caches.
func refAttention(q, k, v, cos, sin, kc, vc *Tensor, start int64, mask *Tensor, sp AttentionSpec, B, L int64) *Tensor {
	nH, nKV, D := sp.Heads, sp.KVHeads, sp.HeadDim
	qh := q.Reshape(B, L, nH, D).Transpose(1, 2)
	kh := k.Reshape(B, L, nKV, D).Transpose(1, 2)
	vh := v.Reshape(B, L, nKV, D).Transpose(1, 2)
	if cos != nil {
		rd := sp.RotaryDim
		if rd <= 0 {
			rd = D
		}
		qh, kh = refRotate(qh, cos, sin, rd, D), refRotate(kh, cos, sin, rd, D)
	}
	if kc != nil {
		kc.CopyInto(2, start, kh)
		vc.CopyInto(2, start, vh)
		kh, vh = q.Scope().Own(kc.Narrow(2, 0, start+L)), q.Scope().Own(vc.Narrow(2, 0, start+L))
	}
	rep := nH / nKV
	if rep > 1 {
		T := kh.Size(2)
		kh = kh.Unsqueeze(2).Expand(B, nKV, rep, T, D).Reshape(B, nH, T, D)
		vh = vh.Unsqueeze(2).Expand(B, nKV, rep, T, D).Reshape(B, nH, T, D)
	}
	return Attention(qh, kh, vh, mask, false, sp.Scale).Transpose(1, 2).Reshape(B, L, -1)
}

type attnShape struct {
	B, L, nH, nKV, D, rd, start, capacity int64
	rope, mask                            bool
}

var attnShapes = []attnShape{
	{B: 1, L: 1, nH: 1, nKV: 1, D: 2, rd: 2, rope: true},
	{B: 2, L: 5, nH: 4, nKV: 2, D: 8, rd: 8, rope: true, mask: true},
	{B: 3, L: 4, nH: 6, nKV: 2, D: 16, rd: 8, rope: true, mask: true},                         // partial rotary
	{B: 2, L: 3, nH: 4, nKV: 4, D: 8, mask: true},                                             // no rotary (GPT-2)
	{B: 2, L: 1, nH: 4, nKV: 1, D: 8, rd: 4, start: 6, capacity: 9, rope: true, mask: true},   // decode into a cache
	{B: 2, L: 4, nH: 2, nKV: 1, D: 12, rd: 12, start: 0, capacity: 4, rope: true, mask: true}, // prefill fills a cache
	{B: 1, L: 3, nH: 8, nKV: 2, D: 4, rd: 4, start: 2, capacity: 16, rope: true},
}

// attnInputs makes q, k, v [B, L, n*D], cos, sin [B, 1, L, rd] (rotary
// tables of positions start.. as Llama's) and a bool mask [B, 1, L, start+L].
func attnInputs(f fusedCase, r *lcg, sh attnShape, dt DType) (q, k, v, cos, sin, mask *Tensor) {
	q = f.tensor(randf(r, int(sh.B*sh.L*sh.nH*sh.D), 1), dt, sh.B, sh.L, sh.nH*sh.D)
	k = f.tensor(randf(r, int(sh.B*sh.L*sh.nKV*sh.D), 1), dt, sh.B, sh.L, sh.nKV*sh.D)
	v = f.tensor(randf(r, int(sh.B*sh.L*sh.nKV*sh.D), 1), dt, sh.B, sh.L, sh.nKV*sh.D)
	if sh.rope {
		c, s := make([]float64, 0), make([]float64, 0)
		for b := int64(0); b < sh.B; b++ {
			for l := int64(0); l < sh.L; l++ {
				p := float64(sh.start + l + b)
				for i := int64(0); i < sh.rd; i++ {
					a := p / math.Pow(100, float64(2*(i%(sh.rd/2)))/float64(sh.rd))
					c, s = append(c, math.Cos(a)), append(s, math.Sin(a))
				}
			}
		}
		cos, sin = f.tensor(c, dt, sh.B, 1, sh.L, sh.rd), f.tensor(s, dt, sh.B, 1, sh.L, sh.rd)
	}
	if sh.mask {
		T := sh.start + sh.L
		m := make([]bool, 0, sh.B*sh.L*T)
		for b := int64(0); b < sh.B; b++ {
			for i := int64(0); i < sh.L; i++ {
				for j := int64(0); j < T; j++ {
					m = append(m, j <= sh.start+i && !(b == 1 && j == 0 && i > 0)) // causal, one padded key
				}
			}
		}
		mask = f.s.Own(FromSlice(m, sh.B, 1, sh.L, T))
	}
	return
}

func TestGQAttentionMatchesComposed(t *testing.T) {
	for _, dt := range []DType{Float32, Float64} {
		for i, sh := range attnShapes {
			t.Run(fmt.Sprintf("%v/%d", dt, i), func(t *testing.T) {
				s := NewScope()
				defer s.Close()
				f := fusedCase{s, CPU}
				r := lcg(11 + i)
				must(t, func() {
					q, k, v, cos, sin, mask := attnInputs(f, &r, sh, dt)
					sp := AttentionSpec{Heads: sh.nH, KVHeads: sh.nKV, HeadDim: sh.D, RotaryDim: sh.rd}
					if i%2 == 1 {
						sp.Scale = 0.3
					}
					var kc, vc, rkc, rvc *Tensor
					if sh.capacity > 0 {
						cshape := []int64{sh.B, sh.nKV, sh.capacity, sh.D}
						prev := randf(&r, int(sh.B*sh.nKV*sh.capacity*sh.D), 1) // what earlier steps cached
						kc, rkc = f.tensor(prev, dt, cshape...), f.tensor(prev, dt, cshape...)
						prev = randf(&r, len(prev), 1)
						vc, rvc = f.tensor(prev, dt, cshape...), f.tensor(prev, dt, cshape...)
					}
					got := GQAttention(q, k, v, cos, sin, kc, vc, sh.start, mask, sp)
					want := refAttention(q, k, v, cos, sin, rkc, rvc, sh.start, mask, sp, sh.B, sh.L)
					if g, w := got.Shape(), want.Shape(); fmt.Sprint(g) != fmt.Sprint(w) {
						t.Fatalf("shape %v, want %v", g, w)
					}
					atol, rtol := 0.0, 0.0
					closeTo64(t, "attention", vals(got), vals(want), atol, rtol)
					if kc != nil {
						closeTo64(t, "key cache", vals(kc), vals(rkc), atol, rtol)
						closeTo64(t, "value cache", vals(vc), vals(rvc), atol, rtol)
					}
					// [B, L, n, D] inputs (as after a per-head q/k norm) are the same.
					q4, k4 := q.Reshape(sh.B, sh.L, sh.nH, sh.D), k.Reshape(sh.B, sh.L, sh.nKV, sh.D)
					if kc == nil {
						closeTo64(t, "attention from [B, L, n, D]", vals(GQAttention(q4, k4, v, cos, sin, nil, nil, 0, mask, sp)), vals(want), atol, rtol)
					}
				})
			})
		}
	}
}

func TestGQAttentionFiniteDifferences(t *testing.T) {
	sh := attnShape{B: 2, L: 3, nH: 4, nKV: 2, D: 6, rd: 4, rope: true, mask: true}
	r := lcg(5)
	n := int(sh.B * sh.L * sh.D)
	qd, kd, vd := randf(&r, n*int(sh.nH), 1), randf(&r, n*int(sh.nKV), 1), randf(&r, n*int(sh.nKV), 1)
	cw := randf(&r, n*int(sh.nH), 1)
	g, fn := fdObjective(t, func(f fusedCase, grads bool) (*Tensor, []*Tensor) {
		rr := lcg(9)
		_, _, _, cos, sin, mask := attnInputs(f, &rr, sh, Float64)
		q := f.tensor(qd, Float64, sh.B, sh.L, sh.nH*sh.D).SetRequiresGrad(grads)
		k := f.tensor(kd, Float64, sh.B, sh.L, sh.nKV*sh.D).SetRequiresGrad(grads)
		v := f.tensor(vd, Float64, sh.B, sh.L, sh.nKV*sh.D).SetRequiresGrad(grads)
		sp := AttentionSpec{Heads: sh.nH, KVHeads: sh.nKV, HeadDim: sh.D, RotaryDim: sh.rd}
		o := GQAttention(q, k, v, cos, sin, nil, nil, 0, mask, sp).Mul(f.tensor(cw, Float64, sh.B, sh.L, sh.nH*sh.D)).Sum()
		return o, []*Tensor{q, k, v}
	})
	idx := []int{0, 1, 3, 5, 7, 17, 30, 41, 60, 71}
	numGrad(t, "q", qd, g[0], idx, fn)
	numGrad(t, "k", kd, g[1], idx, fn)
	numGrad(t, "v", vd, g[2], idx, fn)
}

func refGatedMLP(x, gate, up, down *Tensor, act Activation) *Tensor {
	g := Linear(x, gate, nil)
	switch act {
	case ActGelu:
		g = g.Gelu()
	case ActGeluTanh:
		g = g.GeluTanh()
	default:
		g = g.Silu()
	}
	return Linear(g.Mul(Linear(x, up, nil)), down, nil)
}

type mlpShape struct{ B, L, H, I int64 }

var mlpShapes = []mlpShape{{1, 1, 1, 1}, {2, 3, 8, 12}, {1, 7, 32, 48}, {4, 1, 64, 176}}

func TestGatedMLPMatchesComposed(t *testing.T) {
	for _, dt := range []DType{Float32, Float64} {
		for _, act := range []Activation{ActSilu, ActGelu, ActGeluTanh} {
			for i, sh := range mlpShapes {
				t.Run(fmt.Sprintf("%v/act%d/%d", dt, act, i), func(t *testing.T) {
					s := NewScope()
					defer s.Close()
					f := fusedCase{s, CPU}
					r := lcg(3 + i)
					must(t, func() {
						x := f.tensor(randf(&r, int(sh.B*sh.L*sh.H), 1), dt, sh.B, sh.L, sh.H)
						gate := f.tensor(randf(&r, int(sh.I*sh.H), 0.5), dt, sh.I, sh.H)
						up := f.tensor(randf(&r, int(sh.I*sh.H), 0.5), dt, sh.I, sh.H)
						down := f.tensor(randf(&r, int(sh.I*sh.H), 0.5), dt, sh.H, sh.I)
						atol, rtol := 0.0, 0.0
						closeTo64(t, "mlp", vals(GatedMLP(x, gate, up, down, act)), vals(refGatedMLP(x, gate, up, down, act)), atol, rtol)
					})
				})
			}
		}
	}
}

func TestGatedMLPFiniteDifferences(t *testing.T) {
	for _, act := range []Activation{ActSilu, ActGelu, ActGeluTanh} {
		t.Run(fmt.Sprint(act), func(t *testing.T) {
			const B, L, H, I = 2, 3, 5, 7
			r := lcg(21)
			xd, gd, ud, dd := randf(&r, B*L*H, 1), randf(&r, I*H, 0.5), randf(&r, I*H, 0.5), randf(&r, H*I, 0.5)
			cw := randf(&r, B*L*H, 1)
			g, fn := fdObjective(t, func(f fusedCase, grads bool) (*Tensor, []*Tensor) {
				x := f.tensor(xd, Float64, B, L, H).SetRequiresGrad(grads)
				gate := f.tensor(gd, Float64, I, H).SetRequiresGrad(grads)
				up := f.tensor(ud, Float64, I, H).SetRequiresGrad(grads)
				down := f.tensor(dd, Float64, H, I).SetRequiresGrad(grads)
				return GatedMLP(x, gate, up, down, act).Mul(f.tensor(cw, Float64, B, L, H)).Sum(), []*Tensor{x, gate, up, down}
			})
			idx := []int{0, 2, 9, 16, 23, 29, 34}
			numGrad(t, "x", xd, g[0], idx, fn)
			numGrad(t, "gate", gd, g[1], idx, fn)
			numGrad(t, "up", ud, g[2], idx, fn)
			numGrad(t, "down", dd, g[3], idx, fn)
		})
	}
}

func TestRopeGather(t *testing.T) {
	s := NewScope()
	defer s.Close()
	f := fusedCase{s, CPU}
	r := lcg(2)
	must(t, func() {
		ct, st := f.tensor(randf(&r, 10*6, 1), Float32, 10, 6), f.tensor(randf(&r, 10*6, 1), Float32, 10, 6)
		pos := s.Own(FromSlice([]int64{3, 4, 5, 0, 9, 2}, 2, 3))
		cos, sin := RopeGather(ct, st, pos)
		closeTo64(t, "cos", vals(cos), vals(Embedding(ct, pos).Unsqueeze(1)), 0, 0)
		closeTo64(t, "sin", vals(sin), vals(Embedding(st, pos).Unsqueeze(1)), 0, 0)
		if got := fmt.Sprint(cos.Shape()); got != "[2 1 3 6]" {
			t.Fatalf("cos shape %s", got)
		}
	})
}

func TestModelOpsErrors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	f := fusedCase{s, CPU}
	r := lcg(4)
	q := f.tensor(randf(&r, 2*3*8, 1), Float32, 2, 3, 8)
	kv := f.tensor(randf(&r, 2*3*4, 1), Float32, 2, 3, 4)
	cache := s.Own(Zeros([]int64{2, 1, 4, 4}, Float32, CPU))
	cache2 := s.Own(Zeros([]int64{2, 1, 4, 4}, Float32, CPU))
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"heads not dividing", func() {
			GQAttention(q, kv, kv, nil, nil, nil, nil, 0, nil, AttentionSpec{Heads: 3, KVHeads: 2, HeadDim: 4})
		}},
		{"wrong head size", func() {
			GQAttention(q, kv, kv, nil, nil, nil, nil, 0, nil, AttentionSpec{Heads: 2, KVHeads: 1, HeadDim: 3})
		}},
		{"cos without sin", func() {
			GQAttention(q, kv, kv, kv, nil, nil, nil, 0, nil, AttentionSpec{Heads: 2, KVHeads: 1, HeadDim: 4})
		}},
		{"odd rotary dim", func() {
			GQAttention(q, kv, kv, kv, kv, nil, nil, 0, nil, AttentionSpec{Heads: 2, KVHeads: 1, HeadDim: 4, RotaryDim: 3})
		}},
		{"cache full", func() {
			GQAttention(q, kv, kv, nil, nil, cache, cache2, 2, nil, AttentionSpec{Heads: 2, KVHeads: 1, HeadDim: 4})
		}},
		{"one cache", func() {
			GQAttention(q, kv, kv, nil, nil, cache, nil, 0, nil, AttentionSpec{Heads: 2, KVHeads: 1, HeadDim: 4})
		}},
		{"unknown activation", func() { GatedMLP(q, q, q, q, Activation(9)) }},
	} {
		wantInvalid(t, c.name, c.f)
	}
}
