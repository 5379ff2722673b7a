package torch

import (
	"math"
	"sort"
	"testing"
)

// onDev copies host data to dev inside scope s.
func onDev(s *Scope, dev Device, data []float32, shape ...int64) *Tensor {
	h := s.Own(FromSlice(data, shape...))
	if dev.Kind == KindCPU {
		return h
	}
	return h.ToDevice(dev)
}

func TestUnaryOps(t *testing.T) {
	for _, dev := range devices(t) {
		r := lcg(1)
		xs := r.floats(37) // not a multiple of any vector width
		pos := mapf(xs, func(v float64) float64 { return math.Abs(v) + 0.1 })
		pos32 := make([]float32, len(pos))
		for i, v := range pos {
			pos32[i] = float32(v)
		}
		sigmoid := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
		cases := []struct {
			name string
			op   func(*Tensor) *Tensor
			in   []float32
			ref  func(float64) float64
		}{
			{"Neg", (*Tensor).Neg, xs, func(v float64) float64 { return -v }},
			{"Exp", (*Tensor).Exp, xs, math.Exp},
			{"Log", (*Tensor).Log, pos32, math.Log},
			{"Log1p", (*Tensor).Log1p, pos32, math.Log1p},
			{"Sqrt", (*Tensor).Sqrt, pos32, math.Sqrt},
			{"Rsqrt", (*Tensor).Rsqrt, pos32, func(v float64) float64 { return 1 / math.Sqrt(v) }},
			{"Square", (*Tensor).Square, xs, func(v float64) float64 { return v * v }},
			{"Abs", (*Tensor).Abs, xs, math.Abs},
			{"Sigmoid", (*Tensor).Sigmoid, xs, sigmoid},
			{"LogSigmoid", (*Tensor).LogSigmoid, xs, func(v float64) float64 { return math.Log(sigmoid(v)) }},
			{"Tanh", (*Tensor).Tanh, xs, math.Tanh},
			{"Relu", (*Tensor).Relu, xs, func(v float64) float64 { return math.Max(v, 0) }},
			{"Silu", (*Tensor).Silu, xs, func(v float64) float64 { return v * sigmoid(v) }},
			{"Gelu", (*Tensor).Gelu, xs, func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) }},
			{"GeluTanh", (*Tensor).GeluTanh, xs, func(v float64) float64 {
				return 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
			}},
			{"Sin", (*Tensor).Sin, xs, math.Sin},
			{"Cos", (*Tensor).Cos, xs, math.Cos},
			{"Clone", (*Tensor).Clone, xs, func(v float64) float64 { return v }},
			{"Contiguous", (*Tensor).Contiguous, xs, func(v float64) float64 { return v }},
			{"Detach", (*Tensor).Detach, xs, func(v float64) float64 { return v }},
			{"AddScalar", func(x *Tensor) *Tensor { return x.AddScalar(1.5) }, xs, func(v float64) float64 { return v + 1.5 }},
			{"SubScalar", func(x *Tensor) *Tensor { return x.SubScalar(1.5) }, xs, func(v float64) float64 { return v - 1.5 }},
			{"MulScalar", func(x *Tensor) *Tensor { return x.MulScalar(-3) }, xs, func(v float64) float64 { return -3 * v }},
			{"DivScalar", func(x *Tensor) *Tensor { return x.DivScalar(4) }, xs, func(v float64) float64 { return v / 4 }},
			{"PowScalar", func(x *Tensor) *Tensor { return x.PowScalar(3) }, xs, func(v float64) float64 { return v * v * v }},
			{"RSubScalar", func(x *Tensor) *Tensor { return x.RSubScalar(1) }, xs, func(v float64) float64 { return 1 - v }},
			{"Clamp", func(x *Tensor) *Tensor { return x.Clamp(-0.5, 0.7) }, xs, func(v float64) float64 { return math.Min(math.Max(v, -0.5), 0.7) }},
			{"ClampMin", func(x *Tensor) *Tensor { return x.Clamp(0.2, math.Inf(1)) }, xs, func(v float64) float64 { return math.Max(v, 0.2) }},
		}
		for _, c := range cases {
			t.Run(dev.String()+"/"+c.name, func(t *testing.T) {
				s := NewScope()
				defer s.Close()
				must(t, func() {
					got := c.op(onDev(s, dev, c.in)).Float32s()
					closeTo(t, c.name, got, mapf(c.in, c.ref), 1e-5, 1e-5)
				})
			})
		}
	}
}

func TestBinaryOpsBroadcast(t *testing.T) {
	for _, dev := range devices(t) {
		s := NewScope()
		r := lcg(2)
		a := r.floats(3 * 5)
		b := r.floats(5)
		for i := range b {
			if math.Abs(float64(b[i])) < 0.1 {
				b[i] = 0.5
			}
		}
		ref := func(f func(x, y float64) float64) []float64 {
			out := make([]float64, 15)
			for i := 0; i < 3; i++ {
				for j := 0; j < 5; j++ {
					out[i*5+j] = f(float64(a[i*5+j]), float64(b[j]))
				}
			}
			return out
		}
		must(t, func() {
			A, B := onDev(s, dev, a, 3, 5), onDev(s, dev, b, 5)
			closeTo(t, "Add", A.Add(B).Float32s(), ref(func(x, y float64) float64 { return x + y }), 1e-6, 1e-6)
			closeTo(t, "Sub", A.Sub(B).Float32s(), ref(func(x, y float64) float64 { return x - y }), 1e-6, 1e-6)
			closeTo(t, "Mul", A.Mul(B).Float32s(), ref(func(x, y float64) float64 { return x * y }), 1e-6, 1e-6)
			closeTo(t, "Div", A.Div(B).Float32s(), ref(func(x, y float64) float64 { return x / y }), 1e-5, 1e-5)
			closeTo(t, "Maximum", A.Maximum(B).Float32s(), ref(math.Max), 0, 0)
			closeTo(t, "Minimum", A.Minimum(B).Float32s(), ref(math.Min), 0, 0)
			Apos := A.Abs().AddScalar(0.5)
			closeTo(t, "Pow", Apos.Pow(B).Float32s(), ref(func(x, y float64) float64 { return math.Pow(math.Abs(x)+0.5, y) }), 1e-5, 1e-5)
			boolRef := func(f func(x, y float64) bool) []float64 {
				return ref(func(x, y float64) float64 {
					if f(x, y) {
						return 1
					}
					return 0
				})
			}
			asF := func(x *Tensor) []float32 { return x.To(Float32).Float32s() }
			closeTo(t, "Gt", asF(A.Gt(B)), boolRef(func(x, y float64) bool { return x > y }), 0, 0)
			closeTo(t, "Ge", asF(A.Ge(B)), boolRef(func(x, y float64) bool { return x >= y }), 0, 0)
			closeTo(t, "Lt", asF(A.Lt(B)), boolRef(func(x, y float64) bool { return x < y }), 0, 0)
			closeTo(t, "Le", asF(A.Le(B)), boolRef(func(x, y float64) bool { return x <= y }), 0, 0)
			closeTo(t, "Eq", asF(A.Eq(A)), boolRef(func(x, y float64) bool { return true }), 0, 0)
			closeTo(t, "Ne", asF(A.Ne(A)), boolRef(func(x, y float64) bool { return false }), 0, 0)
			closeTo(t, "GtScalar", asF(A.GtScalar(0)), mapf(a, func(v float64) float64 { return b2f(v > 0) }), 0, 0)
			closeTo(t, "LeScalar", asF(A.LeScalar(0)), mapf(a, func(v float64) float64 { return b2f(v <= 0) }), 0, 0)
			pa, pb := A.GtScalar(0), A.LtScalar(1)
			closeTo(t, "LogicalAnd", asF(pa.LogicalAnd(pb)), mapf(a, func(v float64) float64 { return b2f(v > 0 && v < 1) }), 0, 0)
			closeTo(t, "LogicalOr", asF(pa.LogicalOr(pb)), mapf(a, func(v float64) float64 { return b2f(v > 0 || v < 1) }), 0, 0)
			closeTo(t, "LogicalNot", asF(pa.LogicalNot()), mapf(a, func(v float64) float64 { return b2f(!(v > 0)) }), 0, 0)
			closeTo(t, "IsFinite", asF(A.IsFinite()), mapf(a, func(float64) float64 { return 1 }), 0, 0)
		})
		s.Close()
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// matmulRef multiplies [m,k] by [k,n] in float64.
func matmulRef(a, b []float32, m, k, n int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var acc float64
			for p := 0; p < k; p++ {
				acc += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			out[i*n+j] = acc
		}
	}
	return out
}

func TestMatMulAndLinear(t *testing.T) {
	for _, dev := range devices(t) {
		for _, sz := range [][3]int{{1, 1, 1}, {3, 7, 5}, {17, 33, 9}} {
			m, k, n := sz[0], sz[1], sz[2]
			s := NewScope()
			r := lcg(uint64(m*100 + k))
			a, b, bias := r.floats(m*k), r.floats(k*n), r.floats(n)
			must(t, func() {
				A, B := onDev(s, dev, a, int64(m), int64(k)), onDev(s, dev, b, int64(k), int64(n))
				want := matmulRef(a, b, m, k, n)
				closeTo(t, "MatMul", A.MatMul(B).Float32s(), want, 1e-4, 1e-4)
				// Linear takes the weight as [out, in].
				W := B.Transpose(0, 1).Contiguous()
				bt := onDev(s, dev, bias, int64(n))
				lin := make([]float64, len(want))
				for i := range lin {
					lin[i] = want[i] + float64(bias[i%n])
				}
				closeTo(t, "Linear", Linear(A, W, bt).Float32s(), lin, 1e-4, 1e-4)
				closeTo(t, "Linear(nil bias)", Linear(A, W, nil).Float32s(), want, 1e-4, 1e-4)
				// Batched: [2, m, k] @ [k, n] broadcasts.
				A2 := Stack([]*Tensor{A, A.MulScalar(2)}, 0)
				got := A2.MatMul(B).Float32s()
				want2 := append(append([]float64{}, want...), mapf(toF32(want), func(v float64) float64 { return 2 * v })...)
				closeTo(t, "MatMul batched", got, want2, 1e-4, 1e-4)
			})
			s.Close()
		}
	}
}

func toF32(xs []float64) []float32 {
	out := make([]float32, len(xs))
	for i, v := range xs {
		out[i] = float32(v)
	}
	return out
}

func TestReductionsAndSoftmax(t *testing.T) {
	for _, dev := range devices(t) {
		s := NewScope()
		r := lcg(3)
		const rows, cols = 4, 9
		x := r.floats(rows * cols)
		rowRef := func(f func(row []float64) float64) []float64 {
			out := make([]float64, rows)
			for i := 0; i < rows; i++ {
				out[i] = f(f64s(x[i*cols : (i+1)*cols]))
			}
			return out
		}
		sum := func(r []float64) float64 {
			var a float64
			for _, v := range r {
				a += v
			}
			return a
		}
		maxOf := func(r []float64) float64 {
			m := math.Inf(-1)
			for _, v := range r {
				m = math.Max(m, v)
			}
			return m
		}
		lse := func(r []float64) float64 {
			m := maxOf(r)
			var a float64
			for _, v := range r {
				a += math.Exp(v - m)
			}
			return m + math.Log(a)
		}
		must(t, func() {
			X := onDev(s, dev, x, rows, cols)
			closeTo(t, "Sum(-1)", X.Sum(-1).Float32s(), rowRef(sum), 1e-5, 1e-5)
			closeTo(t, "Sum()", X.Sum().Float32s(), []float64{sum(f64s(x))}, 1e-4, 1e-5)
			closeTo(t, "Mean(1)", X.Mean(1).Float32s(), rowRef(func(r []float64) float64 { return sum(r) / cols }), 1e-5, 1e-5)
			closeTo(t, "AMax(1)", X.AMax(1).Float32s(), rowRef(maxOf), 0, 0)
			closeTo(t, "AMin(1)", X.AMin(1).Neg().Float32s(), rowRef(func(r []float64) float64 {
				m := math.Inf(1)
				for _, v := range r {
					m = math.Min(m, v)
				}
				return -m
			}), 0, 0)
			closeTo(t, "LogSumExp", X.LogSumExp(1).Float32s(), rowRef(lse), 1e-5, 1e-5)
			if got := X.SumKeep(1).Shape(); len(got) != 2 || got[1] != 1 {
				t.Fatalf("SumKeep shape %v", got)
			}
			if got := X.MeanKeep(0).Shape(); len(got) != 2 || got[0] != 1 {
				t.Fatalf("MeanKeep shape %v", got)
			}
			closeTo(t, "AMaxKeep", X.AMaxKeep(1).Reshape(-1).Float32s(), rowRef(maxOf), 0, 0)
			vals, idx := X.Max(1)
			closeTo(t, "Max.values", vals.Float32s(), rowRef(maxOf), 0, 0)
			am := X.ArgMax(1).Int64s()
			for i, j := range idx.Int64s() {
				if x[i*cols+int(j)] != float32(rowRef(maxOf)[i]) || am[i] != j {
					t.Fatalf("Max/ArgMax index row %d: %d vs %d", i, j, am[i])
				}
			}
			sm := X.Softmax(1).Float32s()
			lsm := X.LogSoftmax(1).Float32s()
			for i := 0; i < rows; i++ {
				l := lse(f64s(x[i*cols : (i+1)*cols]))
				for j := 0; j < cols; j++ {
					want := float64(x[i*cols+j]) - l
					closeTo(t, "LogSoftmax", lsm[i*cols+j:i*cols+j+1], []float64{want}, 1e-5, 1e-5)
					closeTo(t, "Softmax", sm[i*cols+j:i*cols+j+1], []float64{math.Exp(want)}, 1e-6, 1e-5)
				}
			}
			cs := X.CumSum(1).Float32s()
			for i := 0; i < rows; i++ {
				var acc float64
				for j := 0; j < cols; j++ {
					acc += float64(x[i*cols+j])
					closeTo(t, "CumSum", cs[i*cols+j:i*cols+j+1], []float64{acc}, 1e-5, 1e-5)
				}
			}
			b := X.GtScalar(-3)
			if !(b.All().Item() == 1 && X.GtScalar(1.9).All().Item() == 0 && X.GtScalar(1.5).Any().Item() == 1) {
				t.Fatal("All/Any wrong")
			}
		})
		s.Close()
	}
}

func TestTopKSortMultinomial(t *testing.T) {
	for _, dev := range devices(t) {
		s := NewScope()
		x := []float32{0.3, -1, 2.5, 0.7, 2.5, -4, 1.1}
		must(t, func() {
			X := onDev(s, dev, x, 1, 7)
			v, i := X.TopK(3, 1, true)
			closeTo(t, "TopK", v.Float32s(), f64s([]float32{2.5, 2.5, 1.1}), 0, 0)
			idx := i.Int64s()
			if !((idx[0] == 2 && idx[1] == 4) || (idx[0] == 4 && idx[1] == 2)) || idx[2] != 6 {
				t.Fatalf("TopK indices %v", idx)
			}
			v, _ = X.TopK(2, 1, false)
			closeTo(t, "TopK smallest", v.Float32s(), []float64{-4, -1}, 0, 0)
			sv, si := X.Sort(1, false)
			want := f64s(x)
			sort.Float64s(want)
			closeTo(t, "Sort", sv.Float32s(), want, 0, 0)
			for k, j := range si.Int64s() {
				if float64(x[j]) != want[k] {
					t.Fatalf("Sort indices %v", si.Int64s())
				}
			}
			dv, _ := X.Sort(1, true)
			if dv.Float32s()[0] != 2.5 {
				t.Fatal("Sort descending")
			}
			// Multinomial: a zero-weight category is never drawn, and frequencies
			// follow the weights.
			g := NewGenerator(7, dev)
			defer g.Close()
			w := onDev(s, dev, []float32{1, 0, 3}, 3)
			draws := w.Multinomial(4000, true, g).Int64s()
			var counts [3]int
			for _, d := range draws {
				counts[d]++
			}
			if counts[1] != 0 || math.Abs(float64(counts[2])/4000-0.75) > 0.03 {
				t.Fatalf("Multinomial counts %v", counts)
			}
		})
		s.Close()
	}
}

func TestShapeAndIndexOps(t *testing.T) {
	for _, dev := range devices(t) {
		s := NewScope()
		x := make([]float32, 24)
		for i := range x {
			x[i] = float32(i)
		}
		must(t, func() {
			X := onDev(s, dev, x, 2, 3, 4)
			at := func(i, j, k int) float64 { return float64(i*12 + j*4 + k) }
			// Permute (2,0,1): out[k][i][j] = x[i][j][k]
			P := X.Permute(2, 0, 1).Contiguous()
			var want []float64
			for k := 0; k < 4; k++ {
				for i := 0; i < 2; i++ {
					for j := 0; j < 3; j++ {
						want = append(want, at(i, j, k))
					}
				}
			}
			closeTo(t, "Permute", P.Float32s(), want, 0, 0)
			want = want[:0]
			for i := 0; i < 2; i++ {
				for k := 0; k < 4; k++ {
					for j := 0; j < 3; j++ {
						want = append(want, at(i, j, k))
					}
				}
			}
			closeTo(t, "Transpose", X.Transpose(1, 2).Contiguous().Float32s(), want, 0, 0)
			closeTo(t, "Reshape", X.Reshape(6, -1).Narrow(0, 5, 1).Float32s(), []float64{20, 21, 22, 23}, 0, 0)
			closeTo(t, "Narrow", X.Narrow(2, 1, 2).Narrow(1, 2, 1).Narrow(0, 1, 1).Float32s(), []float64{21, 22}, 0, 0)
			if sh := X.Unsqueeze(1).Shape(); len(sh) != 4 || sh[1] != 1 {
				t.Fatalf("Unsqueeze %v", sh)
			}
			if sh := X.Unsqueeze(0).Squeeze(0).Shape(); len(sh) != 3 {
				t.Fatalf("Squeeze %v", sh)
			}
			if sh := X.Narrow(0, 0, 1).Expand(5, -1, -1).Shape(); sh[0] != 5 || sh[2] != 4 {
				t.Fatalf("Expand %v", sh)
			}
			c := Cat([]*Tensor{X.Narrow(2, 0, 1), X.Narrow(2, 3, 1)}, 2).Reshape(-1).Float32s()
			closeTo(t, "Cat", c, []float64{0, 3, 4, 7, 8, 11, 12, 15, 16, 19, 20, 23}, 0, 0)
			st := Stack([]*Tensor{X, X}, 0)
			if sh := st.Shape(); len(sh) != 4 || sh[0] != 2 {
				t.Fatalf("Stack %v", sh)
			}
			idx := s.Own(FromSlice([]int64{3, 0, 3})).ToDevice(dev)
			closeTo(t, "IndexSelect", X.IndexSelect(2, idx).Narrow(0, 0, 1).Narrow(1, 0, 1).Reshape(-1).Float32s(), []float64{3, 0, 3}, 0, 0)
			M := onDev(s, dev, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
			gi := s.Own(FromSlice([]int64{2, 0, 1, 1}, 2, 2)).ToDevice(dev)
			closeTo(t, "Gather", M.Gather(1, gi).Float32s(), []float64{3, 1, 5, 5}, 0, 0)
			mask := M.GtScalar(3.5)
			closeTo(t, "MaskedFill", M.MaskedFill(mask, -1).Float32s(), []float64{1, 2, 3, -1, -1, -1}, 0, 0)
			closeTo(t, "Where", Where(mask, M, M.Neg()).Float32s(), []float64{-1, -2, -3, 4, 5, 6}, 0, 0)
			sq := onDev(s, dev, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, 3)
			closeTo(t, "Tril", sq.Tril(0).Float32s(), []float64{1, 0, 0, 4, 5, 0, 7, 8, 9}, 0, 0)
			closeTo(t, "Triu", sq.Triu(1).Float32s(), []float64{0, 2, 3, 0, 0, 6, 0, 0, 0}, 0, 0)
			// CopyInto: write a [2,2] block into column 1 of a 3x3 zero matrix.
			z := s.Own(Zeros([]int64{2, 3}, Float32, dev))
			z.CopyInto(1, 1, onDev(s, dev, []float32{7, 8, 9, 10}, 2, 2))
			closeTo(t, "CopyInto", z.Float32s(), []float64{0, 7, 8, 0, 9, 10}, 0, 0)
		})
		s.Close()
	}
}

func TestCreationAndDTypes(t *testing.T) {
	for _, dev := range devices(t) {
		s := NewScope()
		must(t, func() {
			closeTo(t, "Full", s.Own(Full([]int64{2, 2}, 3.5, Float32, dev)).Float32s(), []float64{3.5, 3.5, 3.5, 3.5}, 0, 0)
			closeTo(t, "Ones", s.Own(Ones([]int64{3}, Float32, dev)).Float32s(), []float64{1, 1, 1}, 0, 0)
			if got := s.Own(Arange(0, 5, 1, Int64, dev)).Int64s(); len(got) != 5 || got[4] != 4 {
				t.Fatalf("Arange %v", got)
			}
			closeTo(t, "Arange f32", s.Own(Arange(1, 2, 0.25, Float32, dev)).Float32s(), []float64{1, 1.25, 1.5, 1.75}, 0, 0)
			// Every dtype round-trips through the tensor and converts back to f32.
			for _, dt := range []DType{Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, Uint8} {
				x := s.Own(FromSlice([]float32{0, 1, 2, 3})).To(dt)
				if x.DType() != dt {
					t.Fatalf("To(%v) gave %v", dt, x.DType())
				}
				raw := x.Bytes()
				if len(raw) != 4*dt.Size() {
					t.Fatalf("%v: %d bytes", dt, len(raw))
				}
				back := s.Own(FromBytes(raw, dt, []int64{4}, dev)).To(Float32).Float32s()
				closeTo(t, "roundtrip "+dt.String(), back, []float64{0, 1, 2, 3}, 0, 0)
			}
			bs := s.Own(FromSlice([]bool{true, false, true})).Bools()
			if !bs[0] || bs[1] || !bs[2] {
				t.Fatalf("bool round trip %v", bs)
			}
			if v := s.Own(Scalar(int32(7))).Item(); v != 7 {
				t.Fatalf("Scalar item %v", v)
			}
			// bf16 of 1/3 has 8 significant bits.
			third := s.Own(FromSlice([]float32{1.0 / 3})).To(BFloat16).To(Float32).Float32s()[0]
			if third == float32(1.0/3) || math.Abs(float64(third)-1.0/3) > 1.0/256 {
				t.Fatalf("bf16 rounding %v", third)
			}
			if d := s.Own(Zeros([]int64{1}, Float32, dev)).Device(); d.Kind != dev.Kind {
				t.Fatalf("device %v, want %v", d, dev)
			}
		})
		s.Close()
	}
}

func TestNNOps(t *testing.T) {
	for _, dev := range devices(t) {
		s := NewScope()
		r := lcg(4)
		const n, d = 3, 6
		x := r.floats(n * d)
		w := r.floats(d)
		b := r.floats(d)
		must(t, func() {
			X, W, B := onDev(s, dev, x, n, d), onDev(s, dev, w, d), onDev(s, dev, b, d)
			var ln, rms []float64
			for i := 0; i < n; i++ {
				row := f64s(x[i*d : (i+1)*d])
				var mean, sq float64
				for _, v := range row {
					mean += v / d
					sq += v * v / d
				}
				var variance float64
				for _, v := range row {
					variance += (v - mean) * (v - mean) / d
				}
				for j, v := range row {
					ln = append(ln, (v-mean)/math.Sqrt(variance+1e-5)*float64(w[j])+float64(b[j]))
					rms = append(rms, v/math.Sqrt(sq+1e-6)*float64(w[j]))
				}
			}
			closeTo(t, "LayerNorm", LayerNorm(X, W, B, 1e-5).Float32s(), ln, 1e-5, 1e-4)
			closeTo(t, "RMSNorm", RMSNorm(X, W, 1e-6).Float32s(), rms, 1e-5, 1e-4)
			closeTo(t, "RMSNorm bf16", RMSNorm(X.To(BFloat16), W.To(BFloat16), 1e-6).To(Float32).Float32s(), rms, 3e-2, 2e-2)
			// Embedding.
			ids := s.Own(FromSlice([]int64{2, 0, 2}, 3)).ToDevice(dev)
			emb := Embedding(X, ids).Float32s()
			closeTo(t, "Embedding", emb, f64s(append(append(append([]float32{}, x[2*d:3*d]...), x[:d]...), x[2*d:3*d]...)), 0, 0)
			// Cross-entropy against -log softmax[target], mean over kept targets.
			tg := s.Own(FromSlice([]int64{1, -100, 5})).ToDevice(dev)
			var ce float64
			for _, i := range []int{0, 2} {
				row := f64s(x[i*d : (i+1)*d])
				m := math.Inf(-1)
				for _, v := range row {
					m = math.Max(m, v)
				}
				var z float64
				for _, v := range row {
					z += math.Exp(v - m)
				}
				tgt := map[int]int{0: 1, 2: 5}[i]
				ce += -(row[tgt] - m - math.Log(z))
			}
			closeTo(t, "CrossEntropy", []float32{float32(CrossEntropy(X, tg).Item())}, []float64{ce / 2}, 1e-5, 1e-5)
			sum := CrossEntropyWith(X, tg, CrossEntropyOptions{IgnoreIndex: -100, Reduction: ReduceSum}).Item()
			closeTo(t, "CrossEntropy sum", []float32{float32(sum)}, []float64{ce}, 1e-5, 1e-5)
			per := CrossEntropyWith(X, tg, CrossEntropyOptions{IgnoreIndex: -100, Reduction: ReduceNone})
			if per.Numel() != 3 || per.Float32s()[1] != 0 {
				t.Fatalf("CrossEntropy none: %v", per.Float32s())
			}
		})
		s.Close()
	}
}

// attentionRef computes causal or masked attention for one head in float64.
func attentionRef(q, k, v []float32, lq, lk, d int, causal bool, mask []bool) []float64 {
	out := make([]float64, lq*d)
	scale := 1 / math.Sqrt(float64(d))
	for i := 0; i < lq; i++ {
		scores := make([]float64, lk)
		m := math.Inf(-1)
		for j := 0; j < lk; j++ {
			allowed := !causal || j <= i+(lk-lq)
			if mask != nil && !mask[i*lk+j] {
				allowed = false
			}
			if !allowed {
				scores[j] = math.Inf(-1)
				continue
			}
			var dot float64
			for p := 0; p < d; p++ {
				dot += float64(q[i*d+p]) * float64(k[j*d+p])
			}
			scores[j] = dot * scale
			m = math.Max(m, scores[j])
		}
		var z float64
		for j := range scores {
			scores[j] = math.Exp(scores[j] - m)
			z += scores[j]
		}
		for j := range scores {
			for p := 0; p < d; p++ {
				out[i*d+p] += scores[j] / z * float64(v[j*d+p])
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	for _, dev := range devices(t) {
		for _, c := range []struct{ lq, lk int }{{5, 5}, {1, 6}, {3, 7}} {
			s := NewScope()
			r := lcg(uint64(10 + c.lq))
			const d = 8
			q, k, v := r.floats(c.lq*d), r.floats(c.lk*d), r.floats(c.lk*d)
			mask := make([]bool, c.lq*c.lk)
			for i := range mask {
				mask[i] = i%c.lk != 1 // padding at key position 1
			}
			must(t, func() {
				Q := onDev(s, dev, q, 1, 1, int64(c.lq), d)
				K := onDev(s, dev, k, 1, 1, int64(c.lk), d)
				V := onDev(s, dev, v, 1, 1, int64(c.lk), d)
				closeTo(t, "Attention causal", Attention(Q, K, V, nil, true, 0).Float32s(), attentionRef(q, k, v, c.lq, c.lk, d, true, nil), 1e-5, 1e-4)
				closeTo(t, "Attention full", Attention(Q, K, V, nil, false, 0).Float32s(), attentionRef(q, k, v, c.lq, c.lk, d, false, nil), 1e-5, 1e-4)
				M := s.Own(FromSlice(mask, 1, 1, int64(c.lq), int64(c.lk))).ToDevice(dev)
				closeTo(t, "Attention masked causal", Attention(Q, K, V, M, true, 0).Float32s(), attentionRef(q, k, v, c.lq, c.lk, d, true, mask), 1e-5, 1e-4)
			})
			s.Close()
		}
	}
}
