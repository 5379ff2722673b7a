package checkpoints

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
)

// Codec micro-benchmarks, one core: go test -bench Chunk -run XXX ./checkpoints
func benchChunk(b *testing.B, d DType) {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := randomTensor(rng, d, defaultChunkSize/d.Size())
	z, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	e := &encoder{z: z}
	var out []byte
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for i := 0; i < b.N; i++ {
			out = e.encodeChunk(out[:0], raw, planesFor(d))
		}
		b.ReportMetric(float64(len(raw))/float64(len(out)), "ratio")
	})
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	dst := make([]byte, len(raw))
	sc := &scratch{}
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for i := 0; i < b.N; i++ {
			if err := decodeChunk(dec, dst, out, planesFor(d), sc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkChunkBF16(b *testing.B) { benchChunk(b, safetensors.BF16) }
func BenchmarkChunkF32(b *testing.B)  { benchChunk(b, safetensors.F32) }

// BenchmarkSaveLoad measures the whole Writer and Reader on one worker.
func BenchmarkSaveLoad(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := randomTensor(rng, safetensors.BF16, 8<<20)
	info := TensorInfo{Name: "w", DType: safetensors.BF16, Shape: []int64{8 << 20}}
	root := b.TempDir()
	var dir string
	saves := 0
	b.Run("save", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			saves++
			dir = filepath.Join(root, fmt.Sprint("c", saves))
			w, err := Create(dir, &Options{Workers: 1})
			if err != nil {
				b.Fatal(err)
			}
			if err := w.AddTensor(info, data); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		r, err := Open(dir, &OpenOptions{Workers: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		dst := make([]byte, len(data))
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			if err := r.ReadTensor("w", dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}
