package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
)

// Golden checkpoints: a tiny checkpoint of every released format version
// is committed under testdata/golden-v<N>, written by the code of that
// version. Every later build must still open, verify and read them, so a
// change that breaks old checkpoints fails here rather than in a user's
// resume. They are written only on purpose:
//
//	ARES_WRITE_GOLDEN=1 go test ./checkpoints/ -run TestWriteGolden
//
// which (re)writes the one of the current FormatVersion; older ones are
// never rewritten.

// goldenEnv enables the generators of golden checkpoints.
const goldenEnv = "ARES_WRITE_GOLDEN"

// goldenVersions are the committed golden checkpoints' format versions.
var goldenVersions = []int{1, 2}

func goldenDir(version int) string {
	return filepath.Join("testdata", fmt.Sprintf("golden-v%d", version))
}

// The content of every golden checkpoint. These are constants: they must
// not be derived from code that may change.
const (
	goldenStep    = 4242
	goldenDataPos = `{"epoch":3,"batch":17,"seed":99}`
	goldenConfig  = "[train]\nlr = 0.0003\nsteps = 10000\n"
	goldenRNG     = "\x01\x02\x03\x04\xfe\xff"
)

var goldenMeta = map[string]string{"model": "golden-tiny", "run": "golden"}

type goldenTensor struct {
	name, group string
	dtype       DType
	shape       []int64
	// values, as float64 (exact for every entry below), or raw bytes.
	values []float64
}

var goldenTensors = []goldenTensor{
	{"model/wte", GroupModel, safetensors.F32, []int64{2, 3}, []float64{1, -2, 0.5, 3.25, -0.125, 1e-3}},
	{"model/ln.weight", GroupModel, safetensors.BF16, []int64{4}, []float64{1, 0.5, -1.5, 2}},
	{"model/step_ids", GroupModel, safetensors.I64, []int64{3}, []float64{7, -1, 1 << 40}},
	{"adamw/0.exp_avg", GroupOptim, safetensors.F32, []int64{2, 3}, []float64{0.01, -0.02, 0, 0.5, -0.25, 1e-6}},
	{"adamw/0.exp_avg_sq", GroupOptim, safetensors.F32, []int64{2, 3}, []float64{1e-4, 4e-4, 0, 0.25, 0.0625, 1e-12}},
}

// goldenBytes encodes a golden tensor's values in its dtype, little-endian.
func goldenBytes(t testing.TB, g goldenTensor) []byte {
	var b []byte
	for _, v := range g.values {
		switch g.dtype {
		case safetensors.F32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		case safetensors.BF16:
			bits := math.Float32bits(float32(v))
			if bits&0xffff != 0 {
				t.Fatalf("golden %s: %v is not exact in bf16", g.name, v)
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(bits>>16))
		case safetensors.I64:
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(v)))
		default:
			t.Fatalf("golden %s: dtype %s", g.name, g.dtype)
		}
	}
	return b
}

// TestWriteGolden (re)writes the golden checkpoint of the current format
// version. It runs only with ARES_WRITE_GOLDEN=1.
func TestWriteGolden(t *testing.T) {
	if os.Getenv(goldenEnv) != "1" {
		t.Skip("set " + goldenEnv + "=1 to rewrite testdata/golden-v" + fmt.Sprint(FormatVersion))
	}
	dir := goldenDir(FormatVersion)
	must(t, os.RemoveAll(dir))
	must(t, os.MkdirAll(filepath.Dir(dir), 0o755))
	w, err := Create(dir, &Options{Workers: 1, ChunkSize: MinChunkSize})
	must(t, err)
	w.SetStep(goldenStep)
	w.SetDataPosition(json.RawMessage(goldenDataPos))
	for k, v := range goldenMeta {
		w.SetMetadata(k, v)
	}
	for _, g := range goldenTensors {
		must(t, w.AddTensor(TensorInfo{Name: g.name, Group: g.group, DType: g.dtype, Shape: g.shape}, goldenBytes(t, g)))
	}
	must(t, w.AddBlob(BlobConfig, []byte(goldenConfig)))
	must(t, w.AddBlob(BlobRNGPrefix+"cpu", []byte(goldenRNG)))
	must(t, w.Commit())
	t.Logf("wrote %s", dir)
}

// TestGoldenCheckpoints opens, verifies and reads every committed golden
// checkpoint and compares it with the constants above.
func TestGoldenCheckpoints(t *testing.T) {
	for _, v := range goldenVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			dir := goldenDir(v)
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("golden checkpoint of format version %d is missing: %v", v, err)
			}
			r, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Verify(); err != nil {
				t.Fatal(err)
			}
			m := r.Manifest()
			if m.Version != v {
				t.Errorf("%s: format version %d, want %d", dir, m.Version, v)
			}
			if v >= 2 && m.Checksum == "" {
				t.Errorf("%s: a version %d manifest has no checksum", dir, v)
			}
			if m.Step != goldenStep {
				t.Errorf("%s: step %d, want %d", dir, m.Step, goldenStep)
			}
			if got := compact(m.DataPosition); got != goldenDataPos {
				t.Errorf("%s: data position %s, want %s", dir, got, goldenDataPos)
			}
			for k, want := range goldenMeta {
				if m.Metadata[k] != want {
					t.Errorf("%s: metadata %q = %q, want %q", dir, k, m.Metadata[k], want)
				}
			}
			var names []string
			for _, ti := range r.Tensors() {
				names = append(names, ti.Name)
			}
			if len(names) != len(goldenTensors) {
				t.Errorf("%s: tensors %v", dir, names)
			}
			for _, g := range goldenTensors {
				e, ok := r.Entry(g.name)
				if !ok {
					t.Errorf("%s: no tensor %q", dir, g.name)
					continue
				}
				if e.Group != g.group || e.DType != g.dtype || !slices.Equal(e.Shape, g.shape) {
					t.Errorf("%s: tensor %q is %s %s%v, want %s %s%v", dir, g.name, e.Group, e.DType, e.Shape, g.group, g.dtype, g.shape)
					continue
				}
				got, err := r.ReadTensorAlloc(g.name)
				if err != nil {
					t.Error(err)
					continue
				}
				if want := goldenBytes(t, g); !bytes.Equal(got, want) {
					t.Errorf("%s: tensor %q reads % x, want % x", dir, g.name, got, want)
				}
			}
			for name, want := range map[string]string{BlobConfig: goldenConfig, BlobRNGPrefix + "cpu": goldenRNG} {
				got, err := r.Blob(name)
				if err != nil {
					t.Error(err)
				} else if string(got) != want {
					t.Errorf("%s: blob %q = %q, want %q", dir, name, got, want)
				}
			}
		})
	}
}
