package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
)

func TestTrainingState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	w, err := Create(dir, &Options{Workers: 2, ChunkSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	weight := randomTensor(rng, safetensors.BF16, 20000)
	moment := randomTensor(rng, safetensors.F32, 20000)
	big := bytes.Repeat([]byte("tokenizer "), 5000) // multi-chunk blob
	w.SetStep(1234)
	w.SetDataPosition(json.RawMessage(`{"epoch":2,"offset":98765}`))
	w.SetMetadata("model", "tiny-policy")
	w.SetExtra(json.RawMessage(`{"loss":1.25}`))
	must(t, w.AddTensor(TensorInfo{Name: "wte", DType: safetensors.BF16, Shape: []int64{200, 100}}, weight))
	must(t, w.AddTensor(TensorInfo{Name: "optim.wte.exp_avg", Group: GroupOptim, DType: safetensors.F32, Shape: []int64{200, 100}}, moment))
	must(t, w.AddBlob(BlobConfig, []byte("[train]\nlr = 1e-5\n")))
	must(t, w.AddBlob(BlobTokenizer, big))
	must(t, w.AddBlob(BlobRNGPrefix+"cpu", []byte{1, 2, 3, 4, 5}))
	must(t, w.AddBlob(BlobRNGPrefix+"empty", nil))
	if err := w.AddTensor(TensorInfo{Name: "wte", DType: safetensors.BF16, Shape: []int64{1}}, []byte{0, 0}); err == nil {
		t.Error("duplicate tensor name accepted")
	}
	must(t, w.Commit())

	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := r.Manifest()
	if m.Step != 1234 || compact(m.DataPosition) != `{"epoch":2,"offset":98765}` || m.Metadata["model"] != "tiny-policy" || compact(m.Extra) != `{"loss":1.25}` {
		t.Errorf("state: step %d pos %s meta %v extra %s", m.Step, m.DataPosition, m.Metadata, m.Extra)
	}
	if e, _ := r.Entry("optim.wte.exp_avg"); e.Group != GroupOptim {
		t.Errorf("group %q", e.Group)
	}
	for name, want := range map[string][]byte{BlobConfig: []byte("[train]\nlr = 1e-5\n"), BlobTokenizer: big, "rng/cpu": {1, 2, 3, 4, 5}, "rng/empty": {}} {
		got, err := r.Blob(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("blob %s: %v", name, err)
		}
	}
	got, _ := r.ReadTensorAlloc("wte")
	if !bytes.Equal(got, weight) {
		t.Error("wte differs")
	}
	if e, _ := r.Entry("wte"); e.StoredSize() >= e.Size {
		t.Errorf("bf16 weights did not compress: %d >= %d", e.StoredSize(), e.Size)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
}

func compact(b []byte) string {
	var out bytes.Buffer
	json.Compact(&out, b)
	return out.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeOriginal writes a safetensors set as a model hub would.
func writeOriginal(t *testing.T, dir string, maxShard int64) ([]safetensors.TensorInfo, [][]byte) {
	rng := rand.New(rand.NewPCG(5, 6))
	var infos []safetensors.TensorInfo
	var datas [][]byte
	for i, d := range safetensors.DTypes() {
		shape := []int64{int64(50 + i), 7}
		n, _ := safetensors.NumBytes(d, shape)
		infos = append(infos, safetensors.TensorInfo{Name: "model.layers." + string(d) + ".weight", DType: d, Shape: shape})
		datas = append(datas, randomTensor(rng, d, int(n)/d.Size()))
	}
	_, err := safetensors.WriteSet(dir, "model", infos, map[string]string{"format": "pt"}, maxShard,
		func(i int) ([]byte, error) { return datas[i], nil })
	must(t, err)
	return infos, datas
}

func TestImportExportByteIdentical(t *testing.T) {
	for _, maxShard := range []int64{0, 3000} {
		root := t.TempDir()
		orig := filepath.Join(root, "orig")
		os.Mkdir(orig, 0o755)
		_, _ = writeOriginal(t, orig, maxShard)
		ck := filepath.Join(root, "ckpt")
		must(t, Import(orig, ck, &Options{ChunkSize: 4 << 10}))
		out := filepath.Join(root, "out")
		files, err := Export(ck, out, &ExportOptions{MaxShardBytes: maxShard})
		must(t, err)
		if maxShard > 0 && len(files) < 3 {
			t.Fatalf("expected a sharded set, got %v", files)
		}
		a, err := safetensors.OpenSet(orig)
		must(t, err)
		b, err := safetensors.OpenSet(out)
		must(t, err)
		if len(a.Tensors()) != len(b.Tensors()) {
			t.Fatalf("%d tensors vs %d", len(a.Tensors()), len(b.Tensors()))
		}
		for _, ti := range a.Tensors() {
			x, _ := a.Data(ti.Name)
			y, err := b.Data(ti.Name)
			bi, _ := b.Info(ti.Name)
			if err != nil || !bytes.Equal(x, y) || bi.DType != ti.DType || !slices.Equal(bi.Shape, ti.Shape) {
				t.Fatalf("tensor %s not identical after import/export (%v)", ti.Name, err)
			}
		}
		if b.Metadata()["format"] != "pt" {
			t.Errorf("metadata lost: %v", b.Metadata())
		}
		// A single-file export of a single-file import is byte-identical as
		// a whole: same order, same header, same data.
		if maxShard == 0 {
			x, _ := os.ReadFile(filepath.Join(orig, "model.safetensors"))
			y, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
			if !bytes.Equal(x, y) {
				t.Error("single-file export is not byte-identical to the original file")
			}
		}
		// Diff agrees, through both kinds of source.
		sa, _ := OpenSource(orig)
		sb, _ := OpenSource(ck)
		es, err := Diff(sa, sb)
		must(t, err)
		if !AllEqual(es) {
			t.Errorf("diff reports differences: %+v", es)
		}
		sa.Close()
		sb.Close()
		a.Close()
		b.Close()
	}
}

// damage helpers ------------------------------------------------------------

func smallCheckpoint(t *testing.T) (string, []testTensor) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	ts := testModel(7, 600)
	writeCheckpoint(t, dir, ts, &Options{Workers: 2, ChunkSize: 8 << 10, ShardSize: 40 << 10})
	return dir, ts
}

// loadAll reads every tensor and reports the first error. It also fails
// the test if a read "succeeds" with wrong bytes.
func loadAll(t *testing.T, dir string, ts []testTensor) error {
	r, err := Open(dir, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, tt := range ts {
		got := make([]byte, len(tt.data))
		if err := r.ReadTensor(tt.info.Name, got); err != nil {
			return err
		}
		if !bytes.Equal(got, tt.data) {
			t.Fatalf("tensor %s read back wrong bytes without an error", tt.info.Name)
		}
	}
	return nil
}

func TestDamage(t *testing.T) {
	t.Run("truncated shard", func(t *testing.T) {
		dir, ts := smallCheckpoint(t)
		p := filepath.Join(dir, "shard-00001.ares")
		st, _ := os.Stat(p)
		must(t, os.Truncate(p, st.Size()-10))
		err := loadAll(t, dir, ts)
		wantErr(t, err, "shard-00001.ares", "truncated")
	})
	t.Run("missing shard", func(t *testing.T) {
		dir, ts := smallCheckpoint(t)
		must(t, os.Remove(filepath.Join(dir, "shard-00000.ares")))
		wantErr(t, loadAll(t, dir, ts), "shard-00000.ares", "missing")
	})
	t.Run("garbage manifest", func(t *testing.T) {
		dir, ts := smallCheckpoint(t)
		must(t, os.WriteFile(filepath.Join(dir, ManifestName), []byte("\x00garbage{{"), 0o644))
		wantErr(t, loadAll(t, dir, ts), "manifest", "not valid JSON")
	})
	t.Run("path escaping the directory", func(t *testing.T) {
		dir, ts := smallCheckpoint(t)
		editManifest(t, dir, func(m *Manifest) { m.Shards[0].File = "../shard-00000.ares" })
		wantErr(t, loadAll(t, dir, ts), "leaves the checkpoint directory")
		editManifest(t, dir, func(m *Manifest) { m.Shards[0].File = "/etc/passwd" })
		wantErr(t, loadAll(t, dir, ts), "leaves the checkpoint directory")
	})
	t.Run("shape does not match bytes", func(t *testing.T) {
		dir, ts := smallCheckpoint(t)
		editManifest(t, dir, func(m *Manifest) { m.Tensors[3].Shape = []int64{4} })
		wantErr(t, loadAll(t, dir, ts), ts[3].info.Name, "bytes")
		w, err := Create(filepath.Join(t.TempDir(), "x"), nil)
		must(t, err)
		err = w.AddTensor(TensorInfo{Name: "w", DType: safetensors.F32, Shape: []int64{3, 3}}, make([]byte, 35))
		wantErr(t, err, `"w"`, "needs 36 bytes, got 35")
		w.Abort()
	})
	t.Run("chunk outside its shard", func(t *testing.T) {
		dir, ts := smallCheckpoint(t)
		editManifest(t, dir, func(m *Manifest) { m.Tensors[len(m.Tensors)-1].Chunks[0].Offset = 1 << 40 })
		wantErr(t, loadAll(t, dir, ts), "outside shard")
	})
	t.Run("flipped bit", func(t *testing.T) {
		// Flip one bit at many positions of a shard; every tensor touched
		// must fail with its name and shard, none may load wrong bytes.
		dir, ts := smallCheckpoint(t)
		p := filepath.Join(dir, "shard-00000.ares")
		orig, _ := os.ReadFile(p)
		rng := rand.New(rand.NewPCG(9, 9))
		for k := 0; k < 40; k++ {
			b := bytes.Clone(orig)
			pos := rng.IntN(len(b))
			b[pos] ^= 1 << rng.IntN(8)
			must(t, os.WriteFile(p, b, 0o644))
			err := loadAll(t, dir, ts)
			wantErr(t, err, "shard-00000.ares", "checksum mismatch", "tensor")
			r, err := Open(dir, nil)
			must(t, err)
			var ve *VerifyError
			if err := r.Verify(); !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("Verify after one flipped bit: %v", err)
			}
			r.Close()
		}
	})
	t.Run("flipped bit in the manifest numbers", func(t *testing.T) {
		// Caught by the manifest checksum at Open...
		dir, ts := smallCheckpoint(t)
		editManifestRaw(t, dir, func(m *Manifest) { m.Tensors[5].CRC32C ^= 1 << 7 })
		err := loadAll(t, dir, ts)
		wantErr(t, err, dir, "manifest checksum mismatch")
		if !errors.Is(err, ErrManifestChecksum) {
			t.Errorf("error %v does not wrap ErrManifestChecksum", err)
		}
		// ...and, in a manifest whose checksum was recomputed (a writer bug),
		// still by the tensor's checksum.
		dir, ts = smallCheckpoint(t)
		editManifest(t, dir, func(m *Manifest) { m.Tensors[5].CRC32C ^= 1 << 7 })
		wantErr(t, loadAll(t, dir, ts), ts[5].info.Name, "checksum")
	})
}

// TestManifestChecksum flips every bit of the manifest file, one at a time,
// at the bytes of the step counter, the data position and a shard size:
// every flip must be refused by Open and by the Manager (never resumed with
// a different state), naming the checkpoint.
func TestManifestChecksum(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	w, err := Create(dir, &Options{Workers: 1, ChunkSize: MinChunkSize})
	must(t, err)
	w.SetStep(1234)
	w.SetDataPosition(json.RawMessage(`{"epoch":2,"batch":98765}`))
	must(t, w.AddTensor(TensorInfo{Name: "w", DType: safetensors.F32, Shape: []int64{4}}, f32s(1, 2, 3, 4)))
	must(t, w.Commit())
	p := filepath.Join(dir, ManifestName)
	orig, err := os.ReadFile(p)
	must(t, err)
	var m Manifest
	must(t, json.Unmarshal(orig, &m))
	if m.Version != FormatVersion || !strings.HasPrefix(m.Checksum, "sha256:") {
		t.Fatalf("fresh manifest: version %d, checksum %q", m.Version, m.Checksum)
	}
	flipped := 0
	for _, field := range []string{`"step": 1234`, `"batch": 98765`, `"size": `, `"version": 2`, `"checksum": "sha256:`} {
		at := bytes.Index(orig, []byte(field))
		if at < 0 {
			t.Fatalf("manifest has no %s:\n%s", field, orig)
		}
		for pos := at; pos < at+len(field)+2; pos++ {
			for bit := 0; bit < 8; bit++ {
				b := bytes.Clone(orig)
				b[pos] ^= 1 << bit
				if _, err := ParseManifest(b); err == nil {
					var got Manifest
					if json.Unmarshal(b, &got) == nil && reflect.DeepEqual(got, m) {
						continue // whitespace or escaping: same manifest, same state
					}
					t.Fatalf("manifest with bit %d of byte %d (%q) flipped was accepted", bit, pos, field)
				}
				must(t, os.WriteFile(p, b, 0o644))
				if r, err := Open(dir, nil); err == nil {
					r.Close()
					t.Fatalf("checkpoint with bit %d of byte %d (%q) of its manifest flipped opened", bit, pos, field)
				} else if !strings.Contains(err.Error(), dir) {
					t.Fatalf("error does not name the checkpoint: %v", err)
				}
				flipped++
			}
		}
	}
	must(t, os.WriteFile(p, orig, 0o644))
	r, err := Open(dir, nil)
	must(t, err)
	must(t, r.Verify())
	// Verify re-reads the manifest: a change after Open is reported.
	b := bytes.Replace(orig, []byte(`"step": 1234`), []byte(`"step": 1235`), 1)
	must(t, os.WriteFile(p, b, 0o644))
	err = r.Verify()
	wantErr(t, err, dir, ManifestName, "changed since it was opened", "checksum mismatch")
	r.Close()
	t.Logf("%d single-bit flips refused", flipped)
}

// TestManifestWithoutChecksum: a manifest of format version 1 (before
// checksums) opens without one; from version 2 a missing checksum is an
// error; a checksum is checked whatever the version says.
func TestManifestWithoutChecksum(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	writeCheckpoint(t, dir, testModel(3, 100)[:3], nil)
	p := filepath.Join(dir, ManifestName)
	orig, err := os.ReadFile(p)
	must(t, err)
	edit := func(f func(m map[string]any)) {
		var m map[string]any
		must(t, json.Unmarshal(orig, &m))
		f(m)
		b, err := json.Marshal(m)
		must(t, err)
		must(t, os.WriteFile(p, b, 0o644))
	}
	edit(func(m map[string]any) { delete(m, "checksum") })
	_, err = Open(dir, nil)
	wantErr(t, err, dir, "no checksum", "version 2")
	edit(func(m map[string]any) { delete(m, "checksum"); m["version"] = 1 })
	r, err := Open(dir, nil)
	must(t, err)
	must(t, r.Verify())
	r.Close()
	edit(func(m map[string]any) { m["version"] = 1 }) // a downgrade keeps the checksum, which then fails
	_, err = Open(dir, nil)
	wantErr(t, err, dir, "manifest checksum mismatch")
	edit(func(m map[string]any) { m["checksum"] = "md5:00" })
	_, err = Open(dir, nil)
	wantErr(t, err, dir, "unknown algorithm")
	edit(func(m map[string]any) { m["version"] = FormatVersion + 1 })
	_, err = Open(dir, nil)
	wantErr(t, err, dir, "checksum mismatch")
}

// TestManifestChecksumOddMetadata: metadata that JSON does not carry
// through unchanged (invalid UTF-8, HTML characters) still gives a
// checkpoint that opens.
func TestManifestChecksumOddMetadata(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	w, err := Create(dir, nil)
	must(t, err)
	w.SetMetadata("bad\xffkey", "value \xfe<&>\u2028")
	w.SetDataPosition(json.RawMessage(" { \"a\" : [1, 2.50, 1e3] } "))
	w.SetExtra(json.RawMessage(`{"s":"<\u00e9>"}`))
	must(t, w.AddBlob("x", []byte("y")))
	must(t, w.Commit())
	r, err := Open(dir, nil)
	must(t, err)
	must(t, r.Verify())
	r.Close()
}

func wantErr(t *testing.T, err error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", words)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not say %q", err, w)
		}
	}
}

// editManifest edits a checkpoint's manifest and recomputes its checksum,
// as a buggy or hostile writer would: what it tests is what the reader
// checks beyond the checksum.
func editManifest(t *testing.T, dir string, edit func(*Manifest)) {
	t.Helper()
	editManifestOpt(t, dir, edit, true)
}

// editManifestRaw edits a manifest without updating its checksum, as
// damage would.
func editManifestRaw(t *testing.T, dir string, edit func(*Manifest)) {
	t.Helper()
	editManifestOpt(t, dir, edit, false)
}

func editManifestOpt(t *testing.T, dir string, edit func(*Manifest), reseal bool) {
	t.Helper()
	p := filepath.Join(dir, ManifestName)
	raw, err := os.ReadFile(p)
	must(t, err)
	var m Manifest
	must(t, json.Unmarshal(raw, &m))
	edit(&m)
	if reseal {
		m.Checksum, err = m.ComputeChecksum()
		must(t, err)
	}
	out, _ := json.Marshal(&m)
	must(t, os.WriteFile(p, out, 0o644))
}

// Delta checkpoints (no longer supported) ----------------------------------

// legacyDeltaManifest is a manifest as older versions wrote it for a delta
// checkpoint: a "base" naming the checkpoint it is relative to, and
// tensors stored as differences from it ("diff") or not at all ("same").
// The checksum is not the one such a version computed: the delta is
// reported before the checksum is checked.
const legacyDeltaManifest = `{
 "format": "ares-checkpoint",
 "version": 2,
 "created": "2026-11-20T10:00:00Z",
 "step": 10,
 "chunk_size": 8192,
 "base": {"name": "step-000000000000", "manifest_sha256": "5f2b0c8e6a1d4e7b9c3a2f1e0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170"},
 "shards": [{"file": "shard-00000.ares", "size": 64}],
 "tensors": [
  {"name": "w", "group": "model", "dtype": "BF16", "shape": [4], "size": 8, "codec": "zstd-planes",
   "crc32c": 1234, "delta": "diff", "base_crc32c": 5678, "chunks": [{"shard": 0, "offset": 0, "length": 64, "crc32c": 99}]},
  {"name": "frozen", "group": "model", "dtype": "BF16", "shape": [4], "size": 8, "codec": "zstd-planes",
   "crc32c": 4321, "delta": "same", "base_crc32c": 4321, "chunks": []}
 ],
 "checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000"
}
`

// writeLegacyDelta writes a delta checkpoint as an older version left it.
func writeLegacyDelta(t *testing.T, dir, manifest string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "shard-00000.ares"), make([]byte, 64), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, ManifestName), []byte(manifest), 0o644))
}

// TestDeltaCheckpointRefused: a checkpoint written as a delta by an older
// version is refused, naming the directory and saying delta checkpoints
// are no longer supported, rather than failing its checksum or loading
// differences as weights.
func TestDeltaCheckpointRefused(t *testing.T) {
	root := t.TempDir()
	noBase := strings.Replace(legacyDeltaManifest, ` "base": {"name": "step-000000000000", "manifest_sha256": "5f2b0c8e6a1d4e7b9c3a2f1e0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170"},
`, "", 1)
	v1 := strings.Replace(strings.Replace(legacyDeltaManifest, `"version": 2`, `"version": 1`, 1),
		`,
 "checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000"`, "", 1)
	for _, c := range []struct {
		name, manifest string
		words          []string
	}{
		{"base", legacyDeltaManifest, []string{`delta of checkpoint "step-000000000000"`}},
		{"v1", v1, []string{`delta of checkpoint "step-000000000000"`}},
		{"tensors-only", noBase, []string{"tensors stored as deltas"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if noBase == legacyDeltaManifest || v1 == legacyDeltaManifest {
				t.Fatal("test manifest edit did not apply")
			}
			dir := filepath.Join(root, c.name, CheckpointName(10))
			writeLegacyDelta(t, dir, c.manifest)
			r, err := Open(dir, nil)
			if err == nil {
				r.Close()
			}
			wantErr(t, err, append([]string{dir, "delta checkpoints are no longer supported", "older version"}, c.words...)...)
			if !errors.Is(err, ErrDelta) || errors.Is(err, ErrManifestChecksum) {
				t.Errorf("error %q: want ErrDelta, not a checksum mismatch", err)
			}
		})
	}
}

// TestOpenLatestPassesOverDelta: a run directory whose newest checkpoint
// is a legacy delta resumes from the newest full one and reports the delta
// as rejected; rotation keeps the base of a kept delta (the older version
// that wrote it can still read the pair) and drops both together.
func TestOpenLatestPassesOverDelta(t *testing.T) {
	run := t.TempDir()
	m, err := NewManager(run, &ManagerOptions{Keep: 2, Writer: Options{ChunkSize: 8 << 10}})
	must(t, err)
	defer m.Close()
	save := func(step int64) {
		t.Helper()
		_, err := m.Save(step, func(w *Writer) error {
			return w.AddTensor(TensorInfo{Name: "w", DType: safetensors.I64, Shape: []int64{1}}, binary.LittleEndian.AppendUint64(nil, uint64(step)))
		})
		must(t, err)
	}
	names := func() string {
		list, err := m.List()
		must(t, err)
		var n []string
		for _, e := range list {
			n = append(n, e.Name)
		}
		return strings.Join(n, ",")
	}
	save(0)
	delta := filepath.Join(run, CheckpointName(10))
	writeLegacyDelta(t, delta, legacyDeltaManifest)

	r, skipped, err := m.OpenLatest(true)
	must(t, err)
	if r.Manifest().Step != 0 || len(skipped) != 1 {
		t.Fatalf("resumed step %d, skipped %v", r.Manifest().Step, skipped)
	}
	r.Close()
	var rej *RejectedError
	if !errors.As(skipped[0], &rej) || rej.Name != CheckpointName(10) || !errors.Is(rej, ErrDelta) {
		t.Fatalf("skipped %v, want %s rejected as a delta", skipped[0], CheckpointName(10))
	}
	wantErr(t, skipped[0], delta, "delta checkpoints are no longer supported")

	save(20) // keeps 10 and 20, and 0, the base of 10
	if got, want := names(), CheckpointName(0)+","+CheckpointName(10)+","+CheckpointName(20); got != want {
		t.Fatalf("after rotation %s, want %s", got, want)
	}
	save(30) // 10 rotated out, and its base with it
	if got, want := names(), CheckpointName(20)+","+CheckpointName(30); got != want {
		t.Fatalf("after rotation %s, want %s", got, want)
	}
}

// Manager -------------------------------------------------------------------

func TestManagerRotationAndResume(t *testing.T) {
	run := t.TempDir()
	m, err := NewManager(run, &ManagerOptions{Keep: 2, Writer: Options{ChunkSize: 8 << 10}})
	must(t, err)
	rng := rand.New(rand.NewPCG(1, 1))
	model := randomTensor(rng, safetensors.BF16, 5000)
	save := func(step int64, data []byte) {
		_, err := m.Save(step, func(w *Writer) error {
			w.SetDataPosition(json.RawMessage(`{"batch":` + string(rune('0'+step%10)) + `}`))
			return w.AddTensor(TensorInfo{Name: "w", DType: safetensors.BF16, Shape: []int64{5000}}, data)
		})
		must(t, err)
	}
	save(0, model)
	for step := int64(1); step <= 5; step++ {
		model = bytes.Clone(model)
		for k := 0; k < 100; k++ {
			model[rng.IntN(len(model))] ^= byte(1 << rng.IntN(8))
		}
		save(step*10, model)
	}
	list, err := m.List()
	must(t, err)
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
	}
	want := []string{CheckpointName(40), CheckpointName(50)}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("after rotation %v, want %v", names, want)
	}
	if l, _ := m.Latest(); l != CheckpointName(50) {
		t.Errorf("latest %q", l)
	}
	// A leftover temporary directory and a damaged newer checkpoint are passed over.
	must(t, os.Mkdir(filepath.Join(run, ".step-000000000060"+tmpMarker+"x"), 0o755))
	must(t, os.MkdirAll(filepath.Join(run, CheckpointName(70)), 0o755))
	must(t, os.WriteFile(filepath.Join(run, CheckpointName(70), ManifestName), []byte("{"), 0o644))
	r, skipped, err := m.OpenLatest(true)
	must(t, err)
	if r.Manifest().Step != 50 || len(skipped) != 1 {
		t.Fatalf("resumed step %d, skipped %v", r.Manifest().Step, skipped)
	}
	got, _ := r.ReadTensorAlloc("w")
	if !bytes.Equal(got, model) {
		t.Error("resumed weights differ")
	}
	r.Close()
	m.Close()
	// Reopening cleans the temporary directory.
	m2, err := NewManager(run, nil)
	must(t, err)
	if _, err := os.Stat(filepath.Join(run, ".step-000000000060"+tmpMarker+"x")); !os.IsNotExist(err) {
		t.Error("leftover temporary directory not removed")
	}
	m2.Close()
}

// TestOpenLatestSkipsDamagedManifest: one corrupted byte in the newest
// checkpoint's manifest (its step counter) makes OpenLatest fall back to
// the previous checkpoint and name the rejected one and why.
func TestOpenLatestSkipsDamagedManifest(t *testing.T) {
	run := t.TempDir()
	m, err := NewManager(run, &ManagerOptions{Keep: -1})
	must(t, err)
	defer m.Close()
	for _, step := range []int64{10, 20, 30} {
		_, err := m.Save(step, func(w *Writer) error {
			w.SetDataPosition(json.RawMessage(fmt.Sprintf(`{"batch":%d}`, step)))
			return w.AddTensor(TensorInfo{Name: "w", DType: safetensors.F32, Shape: []int64{2}}, f32s(float32(step), 1))
		})
		must(t, err)
	}
	newest := CheckpointName(30)
	p := filepath.Join(run, newest, ManifestName)
	raw, err := os.ReadFile(p)
	must(t, err)
	at := bytes.Index(raw, []byte(`"step": 30`))
	if at < 0 {
		t.Fatalf("no step in manifest:\n%s", raw)
	}
	raw[at+len(`"step": `)] ^= 0x01 // 30 -> 20: a plausible, wrong state
	must(t, os.WriteFile(p, raw, 0o644))

	for _, verify := range []bool{false, true} {
		r, skipped, err := m.OpenLatest(verify)
		must(t, err)
		if r.Manifest().Step != 20 || compact(r.Manifest().DataPosition) != `{"batch":20}` || filepath.Base(r.Dir()) != CheckpointName(20) {
			t.Fatalf("resumed %s at step %d, want %s", r.Dir(), r.Manifest().Step, CheckpointName(20))
		}
		r.Close()
		if len(skipped) != 1 {
			t.Fatalf("skipped %v, want the one damaged checkpoint", skipped)
		}
		var rej *RejectedError
		if !errors.As(skipped[0], &rej) || rej.Name != newest || rej.Dir != filepath.Join(run, newest) {
			t.Fatalf("skipped %#v does not name %s", skipped[0], newest)
		}
		if !errors.Is(skipped[0], ErrManifestChecksum) {
			t.Errorf("rejection %v is not a manifest checksum failure", skipped[0])
		}
		wantErr(t, skipped[0], newest, "rejected", "manifest checksum mismatch")
	}

	// Every checkpoint damaged: nothing to resume, and every rejection is said.
	for _, step := range []int64{10, 20} {
		must(t, os.Truncate(filepath.Join(run, CheckpointName(step), "shard-00000.ares"), 1))
	}
	_, skipped, err := m.OpenLatest(true)
	if !errors.Is(err, ErrNoCheckpoint) || len(skipped) != 3 {
		t.Fatalf("all damaged: err %v, skipped %v", err, skipped)
	}
	wantErr(t, err, CheckpointName(10), CheckpointName(20), newest, "truncated", "checksum mismatch")
}

// TestOpenLatestReportsMissingManifest: a step directory without its
// manifest (deleted, or the directory emptied) cannot be an unfinished save
// (saves are renamed into place with their manifest): OpenLatest falls back
// past it and names it with why, as it does a damaged one; with nothing
// else to resume the error says so too.
func TestOpenLatestReportsMissingManifest(t *testing.T) {
	run := t.TempDir()
	m, err := NewManager(run, &ManagerOptions{Keep: -1})
	must(t, err)
	defer m.Close()
	for _, step := range []int64{4, 6} {
		_, err := m.Save(step, func(w *Writer) error {
			return w.AddTensor(TensorInfo{Name: "w", DType: safetensors.F32, Shape: []int64{2}}, f32s(float32(step), 1))
		})
		must(t, err)
	}
	newest := CheckpointName(6)
	must(t, os.Remove(filepath.Join(run, newest, ManifestName)))
	r, skipped, err := m.OpenLatest(true)
	must(t, err)
	if r.Manifest().Step != 4 {
		t.Fatalf("resumed step %d, want 4", r.Manifest().Step)
	}
	r.Close()
	var rej *RejectedError
	if len(skipped) != 1 || !errors.As(skipped[0], &rej) || rej.Name != newest {
		t.Fatalf("skipped %v, want %s named", skipped, newest)
	}
	wantErr(t, skipped[0], newest, "rejected", "no manifest.json")

	// An emptied one, the only one left: the error names it.
	must(t, os.RemoveAll(filepath.Join(run, CheckpointName(4))))
	must(t, os.MkdirAll(filepath.Join(run, CheckpointName(4)), 0o755))
	_, skipped, err = m.OpenLatest(false)
	if !errors.Is(err, ErrNoCheckpoint) || len(skipped) != 2 {
		t.Fatalf("none left: err %v, skipped %v", err, skipped)
	}
	wantErr(t, err, CheckpointName(4), newest, "no manifest.json")
}

func TestDiff(t *testing.T) {
	root := t.TempDir()
	a := []testTensor{
		{TensorInfo{Name: "same", DType: safetensors.F32, Shape: []int64{2}}, f32s(1, 2)},
		{TensorInfo{Name: "changed", DType: safetensors.F32, Shape: []int64{3}}, f32s(1, 2, 3)},
		{TensorInfo{Name: "reshaped", DType: safetensors.F32, Shape: []int64{2}}, f32s(1, 2)},
		{TensorInfo{Name: "gone", DType: safetensors.F32, Shape: []int64{1}}, f32s(1)},
	}
	b := []testTensor{
		a[0],
		{TensorInfo{Name: "changed", DType: safetensors.F32, Shape: []int64{3}}, f32s(1, 2.5, 2)},
		{TensorInfo{Name: "reshaped", DType: safetensors.F32, Shape: []int64{1, 2}}, f32s(1, 2)},
		{TensorInfo{Name: "new", DType: safetensors.F32, Shape: []int64{1}}, f32s(1)},
	}
	writeCheckpoint(t, filepath.Join(root, "a"), a, nil)
	writeCheckpoint(t, filepath.Join(root, "b"), b, nil)
	sa, _ := OpenSource(filepath.Join(root, "a"))
	sb, _ := OpenSource(filepath.Join(root, "b"))
	defer sa.Close()
	defer sb.Close()
	es, err := Diff(sa, sb)
	must(t, err)
	got := map[string]DiffEntry{}
	for _, e := range es {
		got[e.Name] = e
	}
	if got["same"].Status != DiffEqual || got["changed"].Status != DiffDiffer || got["changed"].MaxAbs != 1 ||
		got["changed"].Differ != 2 || got["reshaped"].Status != DiffMismatch || got["gone"].Status != DiffOnlyA ||
		got["new"].Status != DiffOnlyB || AllEqual(es) {
		t.Fatalf("diff: %+v", es)
	}
	var buf bytes.Buffer
	must(t, WriteDiff(&buf, es))
	if !strings.Contains(buf.String(), "changed") || !strings.Contains(buf.String(), "1 equal") {
		t.Errorf("diff table:\n%s", buf.String())
	}
	r, _ := Open(filepath.Join(root, "a"), nil)
	buf.Reset()
	must(t, WriteInspect(&buf, r))
	if !strings.Contains(buf.String(), "reshaped") || !strings.Contains(buf.String(), "ratio") {
		t.Errorf("inspect:\n%s", buf.String())
	}
	r.Close()
}

func f32s(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestElementDecoding(t *testing.T) {
	cases := []struct {
		d    DType
		b    []byte
		want float64
	}{
		{safetensors.F16, []byte{0x00, 0x3c}, 1},
		{safetensors.F16, []byte{0x00, 0xc0}, -2},
		{safetensors.F16, []byte{0x01, 0x00}, math.Ldexp(1, -24)},
		{safetensors.BF16, []byte{0x80, 0x3f}, 1},
		{safetensors.F8E4M3, []byte{0x38}, 1},
		{safetensors.F8E5M2, []byte{0x3c}, 1},
		{safetensors.I8, []byte{0xff}, -1},
		{safetensors.I16, []byte{0xfe, 0xff}, -2},
	}
	for _, c := range cases {
		if got := Element(c.d, c.b); got != c.want {
			t.Errorf("%s %v = %v, want %v", c.d, c.b, got, c.want)
		}
	}
}

// FuzzParseManifest: garbage must be refused without panicking, and what
// is accepted must be consistent enough to index safely.
func FuzzParseManifest(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "c")
	writeCheckpoint(f, dir, testModel(1, 40)[:12], &Options{ChunkSize: 4 << 10})
	raw, _ := os.ReadFile(filepath.Join(dir, ManifestName))
	f.Add(raw)
	f.Add([]byte(`{"format":"ares-checkpoint","version":1,"chunk_size":4096,"shards":[{"file":"../x","size":10}],"tensors":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			// Almost every mutation fails the checksum; check that what
			// Validate alone accepts (a manifest resealed by a hostile or
			// buggy writer) is safe too.
			m = new(Manifest)
			if json.Unmarshal(b, m) != nil || m.Validate() != nil {
				return
			}
		}
		for _, tt := range m.Tensors {
			for _, c := range tt.Chunks {
				s := m.Shards[c.Shard]
				if c.Offset < 0 || c.Offset+c.Length > s.Size || strings.ContainsAny(s.File, `/\`) {
					t.Fatalf("accepted chunk %+v in shard %+v", c, s)
				}
			}
		}
	})
}
