package checkpoints

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
)

// Diff statuses.
const (
	DiffEqual    = "equal"
	DiffDiffer   = "differ"
	DiffMismatch = "mismatch" // dtype or shape differ
	DiffOnlyA    = "only-a"
	DiffOnlyB    = "only-b"
)

// DiffEntry compares one tensor name across two sources.
type DiffEntry struct {
	Name    string
	Status  string
	MaxAbs  float64 // largest |a-b| over elements (NaN against a number counts as +Inf)
	Differ  int64   // number of elements whose bytes differ
	Total   int64   // number of elements
	Details string  // for mismatches: both dtypes and shapes
}

// Diff compares every tensor of a and b, one tensor at a time. Bytes are
// compared exactly; MaxAbs quantifies a difference in the dtype's values.
func Diff(a, b Source) ([]DiffEntry, error) {
	bi := map[string]TensorInfo{}
	for _, t := range b.Tensors() {
		bi[t.Name] = t
	}
	seen := map[string]bool{}
	var out []DiffEntry
	var bufA, bufB []byte
	for _, ta := range a.Tensors() {
		seen[ta.Name] = true
		tb, ok := bi[ta.Name]
		if !ok {
			out = append(out, DiffEntry{Name: ta.Name, Status: DiffOnlyA})
			continue
		}
		if ta.DType != tb.DType || !slices.Equal(ta.Shape, tb.Shape) {
			out = append(out, DiffEntry{Name: ta.Name, Status: DiffMismatch,
				Details: fmt.Sprintf("%s%v vs %s%v", ta.DType, ta.Shape, tb.DType, tb.Shape)})
			continue
		}
		n, err := safetensors.NumBytes(ta.DType, ta.Shape)
		if err != nil {
			return nil, err
		}
		if int64(cap(bufA)) < n {
			bufA, bufB = make([]byte, n), make([]byte, n)
		}
		x, y := bufA[:n], bufB[:n]
		if err := a.ReadTensor(ta.Name, x); err != nil {
			return nil, err
		}
		if err := b.ReadTensor(ta.Name, y); err != nil {
			return nil, err
		}
		e := DiffEntry{Name: ta.Name, Status: DiffEqual, Total: n / int64(ta.DType.Size())}
		compare(ta.DType, x, y, &e)
		out = append(out, e)
	}
	for _, tb := range b.Tensors() {
		if !seen[tb.Name] {
			out = append(out, DiffEntry{Name: tb.Name, Status: DiffOnlyB})
		}
	}
	return out, nil
}

func compare(d DType, x, y []byte, e *DiffEntry) {
	s := d.Size()
	for i := 0; i+s <= len(x); i += s {
		if string(x[i:i+s]) == string(y[i:i+s]) {
			continue
		}
		e.Status = DiffDiffer
		e.Differ++
		va, vb := Element(d, x[i:i+s]), Element(d, y[i:i+s])
		diff := math.Abs(va - vb)
		if math.IsNaN(diff) {
			if math.IsNaN(va) && math.IsNaN(vb) {
				continue // two NaN payloads: different bits, no distance
			}
			diff = math.Inf(1)
		}
		e.MaxAbs = max(e.MaxAbs, diff)
	}
}

// Element decodes one little-endian element of dtype d as a float64.
func Element(d DType, b []byte) float64 {
	switch d {
	case safetensors.F64:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	case safetensors.F32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case safetensors.BF16:
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16))
	case safetensors.F16:
		return halfToFloat(binary.LittleEndian.Uint16(b))
	case safetensors.F8E5M2:
		return halfToFloat(uint16(b[0]) << 8) // E5M2 is the top byte of F16
	case safetensors.F8E4M3:
		return e4m3ToFloat(b[0])
	case safetensors.I64:
		return float64(int64(binary.LittleEndian.Uint64(b)))
	case safetensors.I32:
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case safetensors.I16:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case safetensors.I8:
		return float64(int8(b[0]))
	case safetensors.U64:
		return float64(binary.LittleEndian.Uint64(b))
	case safetensors.U32:
		return float64(binary.LittleEndian.Uint32(b))
	case safetensors.U16:
		return float64(binary.LittleEndian.Uint16(b))
	default: // U8, BOOL
		return float64(b[0])
	}
}

func halfToFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	if exp == 0x1f {
		if h&0x3ff != 0 {
			return math.NaN()
		}
		if h&0x8000 != 0 {
			return math.Inf(-1)
		}
		return math.Inf(1)
	}
	return minifloat(h&0x8000 != 0, exp, int(h&0x3ff), 10, 15)
}

// e4m3ToFloat decodes float8 E4M3FN (no infinities; S.1111.111 is NaN).
func e4m3ToFloat(v byte) float64 {
	exp := int(v>>3) & 0xf
	if exp == 0xf && v&7 == 7 {
		return math.NaN()
	}
	return minifloat(v&0x80 != 0, exp, int(v&7), 3, 7)
}

// minifloat is the value of a finite binary float with the given sign,
// biased exponent field exp and mantissa field man, in a format of manBits
// mantissa bits and exponent bias: subnormal when exp is 0.
func minifloat(neg bool, exp, man, manBits, bias int) float64 {
	sign := 1.0
	if neg {
		sign = -1
	}
	m := float64(man)
	if exp == 0 {
		return sign * m * math.Ldexp(1, 1-bias-manBits)
	}
	return sign * (1 + m/float64(int(1)<<manBits)) * math.Ldexp(1, exp-bias)
}

// AllEqual reports whether a diff found no difference at all.
func AllEqual(es []DiffEntry) bool {
	for _, e := range es {
		if e.Status != DiffEqual {
			return false
		}
	}
	return true
}

// WriteDiff prints a diff as a table.
func WriteDiff(w io.Writer, es []DiffEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tSTATUS\tMAX |A-B|\tDIFFERING")
	var nd int
	for _, e := range es {
		switch e.Status {
		case DiffEqual:
			fmt.Fprintf(tw, "%s\t%s\t0\t0/%d\n", e.Name, e.Status, e.Total)
		case DiffDiffer:
			nd++
			fmt.Fprintf(tw, "%s\t%s\t%.6g\t%d/%d\n", e.Name, e.Status, e.MaxAbs, e.Differ, e.Total)
		default:
			nd++
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", e.Name, e.Status, e.Details)
		}
	}
	fmt.Fprintf(tw, "\n%d tensors, %d equal, %d not equal\n", len(es), len(es)-nd, nd)
	return tw.Flush()
}
