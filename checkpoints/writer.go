package checkpoints

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
	"github.com/ares-rlhf/ares/internal/atomicfile"
)

// DType is a tensor element type, named as safetensors names it ("F32",
// "BF16", "I64", ...). Tensor bytes are always little-endian.
type DType = safetensors.DType

// Conventional tensor groups and blob names. Groups separate model weights
// from optimizer state; export to safetensors takes the model group.
const (
	GroupModel = "model"
	GroupOptim = "optim"

	BlobConfig    = "config.toml"    // the run's TOML config
	BlobTokenizer = "tokenizer.json" // Hugging Face tokenizer file
	BlobRNGPrefix = "rng/"           // RNG states, e.g. "rng/cpu", "rng/cuda:0"
)

// TensorInfo describes a tensor handed to a Writer or listed by a Reader.
type TensorInfo struct {
	Name  string
	Group string // GroupModel when empty
	DType DType
	Shape []int64
}

// Options configure a Writer. The zero value is usable.
type Options struct {
	Workers   int   // compression goroutines; default GOMAXPROCS
	ShardSize int64 // maximum shard file size; default 1 GiB (a chunk never straddles shards)
	ChunkSize int64 // raw bytes per chunk; default 4 MiB
	// Level is the zstd level: 1 fastest (default), 2 default, 3 better, 4 best.
	Level int
}

const (
	defaultShardSize = 1 << 30
	defaultChunkSize = 4 << 20
	// Tensors up to this size are copied so AddTensor can return at once;
	// larger ones are compressed in place and AddTensor waits for them.
	smallTensor = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Writer streams one checkpoint into a directory. Tensors are added one at
// a time; each is cut into chunks compressed in parallel and appended to
// size-capped shard files, so memory holds a few chunks, never a copy of
// the model. Nothing is visible under the final name until Commit, which
// syncs everything and renames the temporary directory into place.
type Writer struct {
	dir, tmp string
	opts     Options
	level    zstd.EncoderLevel
	m        Manifest
	tensors  []*Tensor
	blobs    []*Blob
	names    map[string]bool
	blobSet  map[string]bool

	jobs  chan *job
	order chan *job
	wg    sync.WaitGroup
	done  chan struct{}

	mu     sync.Mutex
	err    error
	shards []Shard
	closed bool
}

type job struct {
	raw     []byte
	nplanes int
	out     *Chunk
	stored  []byte
	crc     uint32
	ready   chan struct{}
}

var storedPool = sync.Pool{New: func() any { return new([]byte) }}

// Create starts a checkpoint that will appear at dir on Commit. dir must
// not exist; its parent must.
func Create(dir string, opts *Options) (*Writer, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.ShardSize <= 0 {
		o.ShardSize = defaultShardSize
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = defaultChunkSize
	}
	if o.ChunkSize < MinChunkSize || o.ChunkSize > MaxChunkSize || o.ChunkSize%8 != 0 {
		return nil, fmt.Errorf("checkpoint %s: chunk size %d must be a multiple of 8 in [%d, %d]", dir, o.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	level := zstd.SpeedFastest
	switch o.Level {
	case 0, 1:
	case 2:
		level = zstd.SpeedDefault
	case 3:
		level = zstd.SpeedBetterCompression
	case 4:
		level = zstd.SpeedBestCompression
	default:
		return nil, fmt.Errorf("checkpoint %s: zstd level %d not in 1..4", dir, o.Level)
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("checkpoint %s: already exists", dir)
	}
	parent, name := filepath.Split(filepath.Clean(dir))
	if parent == "" {
		parent = "."
	}
	tmp, err := os.MkdirTemp(parent, "."+name+tmpMarker)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	w := &Writer{
		dir: filepath.Clean(dir), tmp: tmp, opts: o, level: level,
		names: map[string]bool{}, blobSet: map[string]bool{},
		jobs:  make(chan *job, 2*o.Workers),
		order: make(chan *job, 2*o.Workers),
		done:  make(chan struct{}),
	}
	w.m = Manifest{Format: FormatName, Version: FormatVersion, ChunkSize: o.ChunkSize}
	for i := 0; i < o.Workers; i++ {
		w.wg.Add(1)
		go w.worker()
	}
	go w.shardWriter()
	return w, nil
}

// tmpMarker is part of every temporary directory name, so that readers and
// the Manager can recognise (and ignore or clean up) interrupted saves.
const tmpMarker = ".tmp-"

// SetStep records the training step.
func (w *Writer) SetStep(step int64) { w.m.Step = step }

// SetDataPosition records where the data loader is, as engine-defined JSON.
func (w *Writer) SetDataPosition(pos json.RawMessage) { w.m.DataPosition = slices.Clone(pos) }

// SetMetadata records one free-form string entry.
func (w *Writer) SetMetadata(key, value string) {
	if w.m.Metadata == nil {
		w.m.Metadata = map[string]string{}
	}
	w.m.Metadata[key] = value
}

// SetExtra records free-form JSON (for example training metrics).
func (w *Writer) SetExtra(extra json.RawMessage) { w.m.Extra = slices.Clone(extra) }

func (w *Writer) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *Writer) error() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// AddTensor adds one tensor: its raw little-endian bytes, exactly
// len = product(shape) * dtype size. When AddTensor returns, data is no
// longer referenced and the caller may reuse or free it.
func (w *Writer) AddTensor(info TensorInfo, data []byte) error {
	if w.closed {
		return fmt.Errorf("checkpoint %s: AddTensor after Commit or Abort", w.dir)
	}
	if err := w.error(); err != nil {
		return err
	}
	if info.Name == "" || w.names[info.Name] {
		return fmt.Errorf("checkpoint %s: tensor %q: empty or duplicate name", w.dir, info.Name)
	}
	n, err := safetensors.NumBytes(info.DType, info.Shape)
	if err != nil {
		return fmt.Errorf("checkpoint %s: tensor %q: %w", w.dir, info.Name, err)
	}
	if n != int64(len(data)) {
		return fmt.Errorf("checkpoint %s: tensor %q: %s%v needs %d bytes, got %d", w.dir, info.Name, info.DType, info.Shape, n, len(data))
	}
	if len(info.Shape) > maxRank {
		return fmt.Errorf("checkpoint %s: tensor %q: rank %d exceeds %d", w.dir, info.Name, len(info.Shape), maxRank)
	}
	group := info.Group
	if group == "" {
		group = GroupModel
	}
	w.names[info.Name] = true
	t := &Tensor{
		Name: info.Name, Group: group, DType: info.DType, Shape: slices.Clone(info.Shape),
		Size: n, Codec: codecFor(info.DType), CRC32C: crc(data),
	}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	w.tensors = append(w.tensors, t)
	t.Chunks = make([]Chunk, numChunks(n, w.m.ChunkSize))
	return w.submit(data, planesFor(info.DType), t.Chunks)
}

// AddBlob adds a named byte string (config, tokenizer, RNG state). Like
// AddTensor, data may be reused once it returns.
func (w *Writer) AddBlob(name string, data []byte) error {
	if w.closed {
		return fmt.Errorf("checkpoint %s: AddBlob after Commit or Abort", w.dir)
	}
	if err := w.error(); err != nil {
		return err
	}
	if name == "" || w.blobSet[name] {
		return fmt.Errorf("checkpoint %s: blob %q: empty or duplicate name", w.dir, name)
	}
	w.blobSet[name] = true
	b := &Blob{Name: name, Size: int64(len(data)), CRC32C: crc(data)}
	b.Chunks = make([]Chunk, numChunks(b.Size, w.m.ChunkSize))
	w.blobs = append(w.blobs, b)
	return w.submit(data, 1, b.Chunks)
}

// submit queues the chunks of data and waits until data is no longer
// needed (at once for small data, which is copied).
func (w *Writer) submit(data []byte, nplanes int, out []Chunk) error {
	if len(data) <= smallTensor {
		data = slices.Clone(data)
	}
	cs := int(w.m.ChunkSize)
	var wait []*job
	for i := range out {
		lo, hi := i*cs, min((i+1)*cs, len(data))
		j := &job{raw: data[lo:hi], nplanes: nplanes, out: &out[i], ready: make(chan struct{})}
		// order first: the shard writer then waits for jobs in submission
		// order, and the bounded channels give backpressure.
		w.order <- j
		w.jobs <- j
		wait = append(wait, j)
	}
	if len(data) > smallTensor {
		for _, j := range wait {
			<-j.ready
		}
	}
	return w.error()
}

func (w *Writer) worker() {
	defer w.wg.Done()
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(w.level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	if err != nil {
		w.setErr(err)
	}
	e := &encoder{z: z}
	for j := range w.jobs {
		if z == nil || w.error() != nil {
			close(j.ready)
			continue
		}
		bp := storedPool.Get().(*[]byte)
		out := e.encodeChunk((*bp)[:0], j.raw, j.nplanes)
		*bp = out
		j.stored = out
		j.crc = crc(out)
		j.raw = nil
		close(j.ready)
	}
}

func (w *Writer) shardWriter() {
	defer close(w.done)
	var (
		f    *os.File
		bw   *bufio.Writer
		size int64
	)
	closeShard := func() error {
		if f == nil {
			return nil
		}
		err := bw.Flush()
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		w.shards[len(w.shards)-1].Size = size
		f = nil
		return err
	}
	for j := range w.order {
		<-j.ready
		if j.stored == nil || w.error() != nil {
			continue
		}
		l := int64(len(j.stored))
		if f != nil && size > 0 && size+l > w.opts.ShardSize {
			if err := closeShard(); err != nil {
				w.setErr(fmt.Errorf("checkpoint %s: shard %s: %w", w.dir, w.shards[len(w.shards)-1].File, err))
				continue
			}
		}
		if f == nil {
			name := fmt.Sprintf("shard-%05d.ares", len(w.shards))
			var err error
			f, err = os.OpenFile(filepath.Join(w.tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				w.setErr(fmt.Errorf("checkpoint %s: %w", w.dir, err))
				continue
			}
			bw = bufio.NewWriterSize(f, 1<<20)
			size = 0
			w.shards = append(w.shards, Shard{File: name})
		}
		if _, err := bw.Write(j.stored); err != nil {
			w.setErr(fmt.Errorf("checkpoint %s: shard %s: %w", w.dir, w.shards[len(w.shards)-1].File, err))
			continue
		}
		*j.out = Chunk{Shard: len(w.shards) - 1, Offset: size, Length: l, CRC32C: j.crc}
		size += l
		b := j.stored[:0]
		j.stored = nil
		storedPool.Put(&b)
	}
	if err := closeShard(); err != nil {
		w.setErr(fmt.Errorf("checkpoint %s: %w", w.dir, err))
	}
}

func (w *Writer) stop() {
	if w.closed {
		return
	}
	w.closed = true
	close(w.order)
	close(w.jobs)
	w.wg.Wait()
	<-w.done
}

// Abort discards the checkpoint being written.
func (w *Writer) Abort() error {
	w.stop()
	return os.RemoveAll(w.tmp)
}

// Commit finishes the checkpoint: shards are already synced; the manifest
// is written and synced, then the directory is renamed into place and the
// parent directory synced. After a crash at any point, dir either does not
// exist or is complete.
func (w *Writer) Commit() error {
	if w.closed {
		return fmt.Errorf("checkpoint %s: Commit after Commit or Abort", w.dir)
	}
	w.stop()
	if err := w.error(); err != nil {
		os.RemoveAll(w.tmp)
		return err
	}
	w.m.Created = time.Now().UTC().Format(time.RFC3339)
	w.m.Shards = w.shards
	if w.m.Shards == nil {
		w.m.Shards = []Shard{}
	}
	w.m.Tensors = make([]Tensor, len(w.tensors))
	for i, t := range w.tensors {
		w.m.Tensors[i] = *t
	}
	w.m.Blobs = make([]Blob, len(w.blobs))
	for i, b := range w.blobs {
		w.m.Blobs[i] = *b
	}
	if err := w.m.Validate(); err != nil { // a bug here must not produce a checkpoint
		os.RemoveAll(w.tmp)
		return fmt.Errorf("checkpoint %s: internal error: %w", w.dir, err)
	}
	raw, err := w.sealManifest()
	if err != nil {
		os.RemoveAll(w.tmp)
		return fmt.Errorf("checkpoint %s: internal error: %w", w.dir, err)
	}
	err = atomicfile.WriteFile(filepath.Join(w.tmp, ManifestName), raw, 0o644)
	if err == nil {
		err = os.Rename(w.tmp, w.dir)
	}
	if err != nil {
		os.RemoveAll(w.tmp)
		return fmt.Errorf("checkpoint %s: %w", w.dir, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(w.dir)); err != nil {
		return fmt.Errorf("checkpoint %s: syncing parent: %w", w.dir, err)
	}
	return nil
}

// Dir is the final directory of the checkpoint.
func (w *Writer) Dir() string { return w.dir }

// sealManifest sets the manifest's checksum and returns the file's bytes.
// The checksum is computed over the manifest as a reader will decode it
// (encoded, then decoded again), so that anything JSON does not carry
// through unchanged (such as invalid UTF-8 in metadata, which becomes
// U+FFFD) cannot make a fresh checkpoint fail its own check; and the bytes
// are parsed back exactly as Open will, so a checkpoint that would not open
// is never written.
func (w *Writer) sealManifest() ([]byte, error) {
	w.m.Checksum = ""
	first, err := json.Marshal(&w.m)
	if err != nil {
		return nil, err
	}
	var decoded Manifest
	if err := json.Unmarshal(first, &decoded); err != nil {
		return nil, err
	}
	if w.m.Checksum, err = decoded.ComputeChecksum(); err != nil {
		return nil, err
	}
	raw, err := json.MarshalIndent(&w.m, "", " ")
	if err != nil {
		return nil, err
	}
	raw = append(raw, '\n')
	if _, err := ParseManifest(raw); err != nil {
		return nil, fmt.Errorf("the manifest written does not read back: %w", err)
	}
	return raw, nil
}
