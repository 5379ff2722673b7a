// Command ckpt benchmarks ARES checkpoints (package checkpoints) against raw
// bytes, plain zstd without byte planes, and PyTorch's torch.save, on the
// same tensors, in one run. Results go to stdout as markdown.
//
//	go run ./bench/ckpt -dir /dev/shm/ckptbench -python /usr/bin/python3
//
// Throughput is raw tensor bytes (1 MB = 1e6 bytes) per second of wall
// time. "1 core" runs use GOMAXPROCS=1 and one worker. Put -dir on tmpfs to
// measure CPU cost rather than the disk.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ares-rlhf/ares/bench/internal/measure"
	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/checkpoints/safetensors"
)

type tensor struct {
	info checkpoints.TensorInfo
	data []byte
}

type dataset struct {
	name    string
	tensors []tensor
}

func (d *dataset) bytes() int64 {
	var n int64
	for _, t := range d.tensors {
		n += int64(len(t.data))
	}
	return n
}

var (
	flagDir     = flag.String("dir", "", "work directory (default: a new temporary directory; use tmpfs to measure CPU)")
	flagLayers  = flag.Int("layers", 8, "transformer layers of the synthetic model (d=512, vocab 32000)")
	flagPython  = flag.String("python", "python3", "Python interpreter with torch for the torch.save peer (\"\" to skip)")
	flagRepeats = flag.Int("repeats", 3, "runs per measurement (median reported)")
	flagLevel   = flag.Int("level", 1, "zstd level for ARES and plain zstd (1 fastest .. 4 best)")
	flagTrained = flag.String("trained", "", "optional safetensors file/dir of a trained model to add as a data set")
)

func main() {
	flag.Parse()
	dir := *flagDir
	if dir == "" {
		var err error
		dir, err = os.MkdirTemp("", "ckptbench-")
		check(err)
		defer os.RemoveAll(dir)
	} else {
		check(os.MkdirAll(dir, 0o755))
	}
	ncpu := runtime.NumCPU()
	fmt.Printf("# ARES checkpoint benchmark\n\n%s, %d CPUs, GOMAXPROCS %d, work dir %s\n\n", measure.CPUModel(), ncpu, runtime.GOMAXPROCS(0), fsType(dir))

	masterTrained := trainedLike(*flagLayers, rand.New(rand.NewPCG(1, 1)))
	masterRandom := randomNormal(*flagLayers, rand.New(rand.NewPCG(2, 2)))
	sets := []*dataset{
		convert("trained-like", masterTrained, safetensors.F32),
		convert("trained-like", masterTrained, safetensors.BF16),
		convert("random-normal", masterRandom, safetensors.F32),
		convert("random-normal", masterRandom, safetensors.BF16),
	}
	if *flagTrained != "" {
		sets = append(sets, loadTrained(*flagTrained)...)
	}

	type row struct {
		set, method                string
		size                       int64
		save1, load1, saveN, loadN float64 // MB/s
	}
	var rows []row
	torch := map[string]torchResult{}
	if *flagPython != "" {
		torch = runTorch(dir, sets)
	}
	for _, ds := range sets {
		raw := ds.bytes()
		mb := float64(raw) / 1e6
		p := filepath.Join(dir, "x")
		for _, m := range methods {
			r := row{set: ds.name, method: m.name}
			for _, workers := range []int{1, ncpu} {
				runtime.GOMAXPROCS(workers)
				var sv, ld []float64
				for k := 0; k < *flagRepeats; k++ {
					os.RemoveAll(p)
					t0 := time.Now()
					size := m.save(ds, p, workers)
					sv = append(sv, time.Since(t0).Seconds())
					t0 = time.Now()
					m.load(ds, p, workers)
					ld = append(ld, time.Since(t0).Seconds())
					r.size = size
				}
				if workers == 1 {
					r.save1, r.load1 = mb/measure.Median(sv), mb/measure.Median(ld)
				} else {
					r.saveN, r.loadN = mb/measure.Median(sv), mb/measure.Median(ld)
				}
			}
			runtime.GOMAXPROCS(ncpu)
			os.RemoveAll(p)
			rows = append(rows, r)
			if ncpu == 1 {
				r.saveN, r.loadN = r.save1, r.load1
			}
		}
		if t, ok := torch[fileName(ds)]; ok {
			rows = append(rows, row{set: ds.name, method: "torch.save " + t.Torch, size: t.Bytes,
				save1: mb / t.SaveS, load1: mb / t.LoadS})
		}
	}

	fmt.Printf("## Save and load\n\nMB/s of raw tensor bytes; ratio = raw size / stored size.\n\n")
	fmt.Printf("| data set | method | stored | ratio | save 1 core | load 1 core | save %d cores | load %d cores |\n|---|---|---:|---:|---:|---:|---:|---:|\n", ncpu, ncpu)
	rawSize := map[string]int64{}
	for _, ds := range sets {
		rawSize[ds.name] = ds.bytes()
	}
	for _, r := range rows {
		n := "-"
		if r.saveN > 0 {
			n = fmt.Sprintf("%.0f", r.saveN)
		}
		l := "-"
		if r.loadN > 0 {
			l = fmt.Sprintf("%.0f", r.loadN)
		}
		fmt.Printf("| %s | %s | %.1f MB | %.3fx | %.0f | %.0f | %s | %s |\n", r.set, r.method, float64(r.size)/1e6,
			float64(rawSize[r.set])/float64(r.size), r.save1, r.load1, n, l)
	}
	if *flagPython != "" && len(torch) == 0 {
		fmt.Printf("\n(torch.save peer did not run: see stderr)\n")
	}
}

// ---- methods ----------------------------------------------------------------

type method struct {
	name string
	save func(ds *dataset, path string, workers int) int64
	load func(ds *dataset, path string, workers int)
}

var methods = []method{
	{"raw bytes", rawSave, rawLoad},
	{"plain zstd (4 MiB chunks)", zstdSave, zstdLoad},
	{"ARES (byte planes + zstd)", oursSave, oursLoad},
}

// loadBufs are the engine's destination buffers, allocated outside timing.
var loadBufs = map[string][][]byte{}

func bufsFor(ds *dataset) [][]byte {
	key := ds.name + fmt.Sprint(ds.bytes())
	if b, ok := loadBufs[key]; ok {
		return b
	}
	b := make([][]byte, len(ds.tensors))
	for i, t := range ds.tensors {
		b[i] = make([]byte, len(t.data))
	}
	loadBufs[key] = b
	return b
}

// writeSynced creates path, hands write a 1 MiB buffer on it, then
// flushes, syncs and closes the file.
func writeSynced(path string, write func(w *bufio.Writer)) {
	f, err := os.Create(path)
	check(err)
	w := bufio.NewWriterSize(f, 1<<20)
	write(w)
	check(w.Flush())
	check(f.Sync())
	check(f.Close())
}

func rawSave(ds *dataset, path string, _ int) int64 {
	writeSynced(path, func(w *bufio.Writer) {
		for _, t := range ds.tensors {
			w.Write(t.data)
		}
	})
	return ds.bytes()
}

func rawLoad(ds *dataset, path string, _ int) {
	bufs := bufsFor(ds)
	f, err := os.Open(path)
	check(err)
	r := bufio.NewReaderSize(f, 1<<20)
	for _, b := range bufs {
		_, err := io.ReadFull(r, b)
		check(err)
	}
	f.Close()
}

const chunk = 4 << 20

type span struct{ t, lo, hi int }

func spans(ds *dataset) []span {
	var out []span
	for i, t := range ds.tensors {
		for lo := 0; lo < len(t.data); lo += chunk {
			out = append(out, span{i, lo, min(lo+chunk, len(t.data))})
		}
	}
	return out
}

func zlevel() zstd.EncoderLevel {
	return []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression}[*flagLevel]
}

// zstdSave compresses 4 MiB chunks in parallel, in batches of one chunk per
// worker so that memory stays bounded, and writes them in order.
func zstdSave(ds *dataset, path string, workers int) int64 {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zlevel()), zstd.WithEncoderConcurrency(workers), zstd.WithEncoderCRC(false))
	check(err)
	defer enc.Close()
	sp := spans(ds)
	var n int64
	outs := make([][]byte, workers)
	writeSynced(path, func(w *bufio.Writer) {
		for i := 0; i < len(sp); i += workers {
			var wg sync.WaitGroup
			for j := i; j < min(i+workers, len(sp)); j++ {
				wg.Add(1)
				go func(j int) {
					defer wg.Done()
					s := sp[j]
					outs[j-i] = enc.EncodeAll(ds.tensors[s.t].data[s.lo:s.hi], outs[j-i][:0])
				}(j)
			}
			wg.Wait()
			for j := i; j < min(i+workers, len(sp)); j++ {
				var l [4]byte
				binary.LittleEndian.PutUint32(l[:], uint32(len(outs[j-i])))
				w.Write(l[:])
				w.Write(outs[j-i])
				n += 4 + int64(len(outs[j-i]))
			}
		}
	})
	return n
}

func zstdLoad(ds *dataset, path string, workers int) {
	bufs := bufsFor(ds)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(workers))
	check(err)
	defer dec.Close()
	raw, err := os.ReadFile(path)
	check(err)
	sp := spans(ds)
	offs := make([]int, len(sp))
	pos := 0
	for i := range sp {
		offs[i] = pos
		pos += 4 + int(binary.LittleEndian.Uint32(raw[pos:]))
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s := sp[i]
				l := int(binary.LittleEndian.Uint32(raw[offs[i]:]))
				dst := bufs[s.t][s.lo:s.hi]
				out, err := dec.DecodeAll(raw[offs[i]+4:offs[i]+4+l], dst[:0])
				check(err)
				if len(out) != len(dst) {
					panic("zstd: short chunk")
				}
			}
		}()
	}
	for i := range sp {
		next <- i
	}
	close(next)
	wg.Wait()
}

func oursSave(ds *dataset, dir string, workers int) int64 {
	w, err := checkpoints.Create(dir, &checkpoints.Options{Workers: workers, Level: *flagLevel})
	check(err)
	for _, t := range ds.tensors {
		check(w.AddTensor(t.info, t.data))
	}
	check(w.Commit())
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		st, _ := e.Info()
		n += st.Size()
	}
	return n
}

func oursLoad(ds *dataset, dir string, workers int) {
	bufs := bufsFor(ds)
	r, err := checkpoints.Open(dir, &checkpoints.OpenOptions{Workers: workers})
	check(err)
	for i, t := range ds.tensors {
		check(r.ReadTensor(t.info.Name, bufs[i]))
	}
	r.Close()
}

// ---- data -------------------------------------------------------------------

// master is a model in float64 before it is stored in a dtype.
type master struct {
	names  []string
	shapes [][]int64
	vals   [][]float32
}

func (m *master) add(name string, shape []int64, v []float32) {
	m.names, m.shapes, m.vals = append(m.names, name), append(m.shapes, shape), append(m.vals, v)
}

// gptShapes calls f for each tensor of a GPT-2-style model.
func gptShapes(layers int, f func(name, kind string, shape []int64)) {
	const d, ff, vocab = 512, 2048, 32000
	f("wte.weight", "embed", []int64{vocab, d})
	f("wpe.weight", "embed", []int64{1024, d})
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("h.%d.", l)
		f(p+"ln_1.weight", "norm", []int64{d})
		f(p+"ln_1.bias", "bias", []int64{d})
		f(p+"attn.c_attn.weight", "linear", []int64{3 * d, d})
		f(p+"attn.c_attn.bias", "bias", []int64{3 * d})
		f(p+"attn.c_proj.weight", "linear", []int64{d, d})
		f(p+"attn.c_proj.bias", "bias", []int64{d})
		f(p+"ln_2.weight", "norm", []int64{d})
		f(p+"ln_2.bias", "bias", []int64{d})
		f(p+"mlp.c_fc.weight", "linear", []int64{ff, d})
		f(p+"mlp.c_fc.bias", "bias", []int64{ff})
		f(p+"mlp.c_proj.weight", "linear", []int64{d, ff})
		f(p+"mlp.c_proj.bias", "bias", []int64{d})
	}
	f("ln_f.weight", "norm", []int64{d})
	f("ln_f.bias", "bias", []int64{d})
}

// trainedLike generates weights with the structure trained transformers
// show (not a trained model): per-layer scales, per-row norms spread
// log-normally (token frequency in embeddings), heavy tails (Student t,
// 6 d.o.f.), a few outlier feature columns, a low-rank component, layer
// norms near 1 and small biases.
func trainedLike(layers int, rng *rand.Rand) *master {
	m := &master{}
	gptShapes(layers, func(name, kind string, shape []int64) {
		n := int(shape[0])
		cols := 1
		if len(shape) == 2 {
			cols = int(shape[1])
		}
		v := make([]float32, n*cols)
		switch kind {
		case "norm":
			for i := range v {
				v[i] = float32(1 + 0.1*rng.NormFloat64())
			}
		case "bias":
			for i := range v {
				v[i] = float32(0.02 * rng.NormFloat64())
			}
		default:
			sigma := 0.02 * (0.7 + 0.8*rng.Float64())
			rowSpread := 0.25
			if kind == "embed" {
				rowSpread = 0.5
			}
			colScale := make([]float64, cols)
			for j := range colScale {
				colScale[j] = 1
				if rng.Float64() < 0.005 {
					colScale[j] = 6 // outlier feature dimension
				}
			}
			const rank = 4
			u := make([]float64, n*rank)
			w := make([]float64, cols*rank)
			for i := range u {
				u[i] = rng.NormFloat64()
			}
			for i := range w {
				w[i] = rng.NormFloat64()
			}
			for i := 0; i < n; i++ {
				rs := sigma * math.Exp(rowSpread*rng.NormFloat64())
				for j := 0; j < cols; j++ {
					lr := 0.0
					for k := 0; k < rank; k++ {
						lr += u[i*rank+k] * w[j*rank+k]
					}
					v[i*cols+j] = float32(rs * colScale[j] * (studentT(rng) + 0.15*lr))
				}
			}
		}
		m.add(name, shape, v)
	})
	return m
}

// studentT draws from a unit-variance Student t with 6 degrees of freedom.
func studentT(rng *rand.Rand) float64 {
	var chi float64
	for k := 0; k < 6; k++ {
		z := rng.NormFloat64()
		chi += z * z
	}
	return rng.NormFloat64() / math.Sqrt(chi/6) / math.Sqrt(1.5)
}

func randomNormal(layers int, rng *rand.Rand) *master {
	m := &master{}
	gptShapes(layers, func(name, _ string, shape []int64) {
		n := 1
		for _, s := range shape {
			n *= int(s)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		m.add(name, shape, v)
	})
	return m
}

func convert(name string, m *master, dt safetensors.DType) *dataset {
	ds := &dataset{name: fmt.Sprintf("%s %s", name, dt)}
	for i, v := range m.vals {
		b := make([]byte, len(v)*dt.Size())
		for j, x := range v {
			bits := math.Float32bits(x)
			if dt == safetensors.BF16 {
				bits += 0x7fff + (bits>>16)&1
				binary.LittleEndian.PutUint16(b[2*j:], uint16(bits>>16))
			} else {
				binary.LittleEndian.PutUint32(b[4*j:], bits)
			}
		}
		ds.tensors = append(ds.tensors, tensor{checkpoints.TensorInfo{Name: m.names[i], DType: dt, Shape: m.shapes[i]}, b})
	}
	return ds
}

func loadTrained(path string) []*dataset {
	s, err := safetensors.OpenSet(path)
	check(err)
	defer s.Close()
	ds := &dataset{name: "trained " + filepath.Base(path)}
	for _, t := range s.Tensors() {
		b, err := s.Data(t.Name)
		check(err)
		ds.tensors = append(ds.tensors, tensor{checkpoints.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}, append([]byte(nil), b...)})
	}
	return []*dataset{ds}
}

// ---- torch peer -------------------------------------------------------------

type torchResult struct {
	File  string  `json:"file"`
	Bytes int64   `json:"bytes"`
	SaveS float64 `json:"save_s"`
	LoadS float64 `json:"load_s"`
	Torch string  `json:"torch"`
}

func fileName(ds *dataset) string { return strings.ReplaceAll(ds.name, " ", "_") + ".safetensors" }

func runTorch(dir string, sets []*dataset) map[string]torchResult {
	var files []string
	for _, ds := range sets {
		p := filepath.Join(dir, fileName(ds))
		infos := make([]safetensors.TensorInfo, len(ds.tensors))
		for i, t := range ds.tensors {
			infos[i] = safetensors.TensorInfo{Name: t.info.Name, DType: t.info.DType, Shape: t.info.Shape}
		}
		check(safetensors.WriteFile(p, infos, nil, func(i int) ([]byte, error) { return ds.tensors[i].data, nil }))
		files = append(files, p)
	}
	defer func() {
		for _, f := range files {
			os.Remove(f)
		}
	}()
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "torch_save_peer.py")
	args := append([]string{script, dir, fmt.Sprint(*flagRepeats)}, files...)
	cmd := exec.Command(*flagPython, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	res := map[string]torchResult{}
	if err != nil {
		fmt.Fprintf(os.Stderr, "torch peer: %v\n", err)
		return res
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r torchResult
		if json.Unmarshal([]byte(line), &r) == nil {
			res[r.File] = r
		}
	}
	return res
}

// ---- helpers ----------------------------------------------------------------

func fsType(dir string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "on an unknown file system"
	}
	abs, _ := filepath.Abs(dir)
	best, typ := "", "unknown"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && strings.HasPrefix(abs, f[1]) && len(f[1]) > len(best) {
			best, typ = f[1], f[2]
		}
	}
	return "on " + typ
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "ckptbench:", err)
		os.Exit(1)
	}
}
