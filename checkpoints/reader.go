package checkpoints

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// OpenOptions configure a Reader. The zero value is usable.
type OpenOptions struct {
	Workers int // decompression goroutines per ReadTensor; default GOMAXPROCS
}

// Reader reads a checkpoint one tensor at a time into caller buffers. It is
// safe for concurrent use. Every byte returned has passed its checksums.
type Reader struct {
	dir         string
	m           *Manifest
	manifestSHA string
	index       map[string]*Tensor
	blobs       map[string]*Blob
	files       []*os.File
	workers     int
	dec         *zstd.Decoder
	scratch     sync.Pool
}

// maxManifestSize bounds the manifest read (a huge model has a few MB).
const maxManifestSize = 256 << 20

// Open opens a checkpoint directory. It validates the manifest and checks
// that every shard exists with the recorded size. Data checksums are
// verified as tensors are read (or all at once by Verify). A delta
// checkpoint (written by an older version) is refused with ErrDelta.
func Open(dir string, opts *OpenOptions) (_ *Reader, err error) {
	var o OpenOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	mpath := filepath.Join(dir, ManifestName)
	f, err := os.Open(mpath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s: no %s (not a checkpoint, or an incomplete one)", dir, ManifestName)
		}
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if len(raw) > maxManifestSize {
		return nil, fmt.Errorf("checkpoint %s: manifest larger than %d bytes", dir, maxManifestSize)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	sum := sha256.Sum256(raw)
	r := &Reader{dir: dir, m: m, manifestSHA: hex.EncodeToString(sum[:]), workers: o.Workers,
		index: make(map[string]*Tensor, len(m.Tensors)), blobs: make(map[string]*Blob, len(m.Blobs))}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	r.scratch.New = func() any { return new(scratch) }
	for i := range m.Tensors {
		r.index[m.Tensors[i].Name] = &m.Tensors[i]
	}
	for i := range m.Blobs {
		r.blobs[m.Blobs[i].Name] = &m.Blobs[i]
	}
	for _, s := range m.Shards {
		f, err := os.Open(filepath.Join(dir, s.File))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("checkpoint %s: shard %s is missing", dir, s.File)
			}
			return nil, fmt.Errorf("checkpoint %s: shard %s: %w", dir, s.File, err)
		}
		r.files = append(r.files, f)
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: shard %s: %w", dir, s.File, err)
		}
		if st.Size() != s.Size {
			return nil, fmt.Errorf("checkpoint %s: shard %s has %d bytes, the manifest says %d (truncated or replaced)", dir, s.File, st.Size(), s.Size)
		}
	}
	r.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(o.Workers),
		zstd.WithDecoderMaxMemory(uint64(m.ChunkSize)+1<<16), zstd.WithDecoderLowmem(false))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	return r, nil
}

// Dir is the checkpoint directory.
func (r *Reader) Dir() string { return r.dir }

// Manifest returns the parsed manifest. It must not be modified.
func (r *Reader) Manifest() *Manifest { return r.m }

// Tensors lists the tensors in the order they were saved.
func (r *Reader) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(r.m.Tensors))
	for i, t := range r.m.Tensors {
		out[i] = TensorInfo{Name: t.Name, Group: t.Group, DType: t.DType, Shape: t.Shape}
	}
	return out
}

// Entry returns a tensor's index entry.
func (r *Reader) Entry(name string) (*Tensor, bool) {
	t, ok := r.index[name]
	return t, ok
}

// Blobs lists the blob names in the order they were saved.
func (r *Reader) Blobs() []string {
	out := make([]string, len(r.m.Blobs))
	for i, b := range r.m.Blobs {
		out[i] = b.Name
	}
	return out
}

// ReadTensor decodes tensor name into dst, which must have exactly the
// tensor's byte size. Chunks are decoded in parallel. On any error dst
// holds no meaningful data.
func (r *Reader) ReadTensor(name string, dst []byte) error {
	t := r.index[name]
	if t == nil {
		return fmt.Errorf("checkpoint %s: no tensor %q", r.dir, name)
	}
	if int64(len(dst)) != t.Size {
		return fmt.Errorf("checkpoint %s: tensor %q is %d bytes (%s%v), buffer has %d", r.dir, name, t.Size, t.DType, t.Shape, len(dst))
	}
	what := fmt.Sprintf("tensor %q", name)
	if err := r.readChunks(what, t.Chunks, dst, planesFor(t.DType)); err != nil {
		return err
	}
	if crc(dst) != t.CRC32C {
		return fmt.Errorf("checkpoint %s: %s (in %s): checksum of the decoded bytes does not match", r.dir, what, r.shardNames(t.Chunks))
	}
	return nil
}

// ReadTensorAlloc is ReadTensor into a new buffer.
func (r *Reader) ReadTensorAlloc(name string) ([]byte, error) {
	t := r.index[name]
	if t == nil {
		return nil, fmt.Errorf("checkpoint %s: no tensor %q", r.dir, name)
	}
	b := make([]byte, t.Size)
	return b, r.ReadTensor(name, b)
}

// Blob returns the contents of a blob.
func (r *Reader) Blob(name string) ([]byte, error) {
	b := r.blobs[name]
	if b == nil {
		return nil, fmt.Errorf("checkpoint %s: no blob %q", r.dir, name)
	}
	dst := make([]byte, b.Size)
	what := fmt.Sprintf("blob %q", name)
	if err := r.readChunks(what, b.Chunks, dst, 1); err != nil {
		return nil, err
	}
	if crc(dst) != b.CRC32C {
		return nil, fmt.Errorf("checkpoint %s: %s (in %s): checksum of the decoded bytes does not match", r.dir, what, r.shardNames(b.Chunks))
	}
	return dst, nil
}

func (r *Reader) shardNames(cs []Chunk) string {
	var names []string
	for _, c := range cs {
		n := r.m.Shards[c.Shard].File
		if len(names) == 0 || names[len(names)-1] != n {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "no shard"
	}
	return fmt.Sprint(names)
}

// readChunks decodes chunks into dst in parallel.
func (r *Reader) readChunks(what string, cs []Chunk, dst []byte, nplanes int) error {
	cs64 := r.m.ChunkSize
	one := func(i int, sc *scratch) error {
		c := cs[i]
		lo := int64(i) * cs64
		hi := min(lo+cs64, int64(len(dst)))
		shard := r.m.Shards[c.Shard].File
		if int64(cap(sc.stored)) < c.Length {
			sc.stored = make([]byte, c.Length)
		}
		st := sc.stored[:c.Length]
		if _, err := r.files[c.Shard].ReadAt(st, c.Offset); err != nil {
			return fmt.Errorf("checkpoint %s: %s chunk %d: shard %s at offset %d: %w", r.dir, what, i, shard, c.Offset, err)
		}
		if crc(st) != c.CRC32C {
			return fmt.Errorf("checkpoint %s: %s chunk %d: shard %s at offset %d: checksum mismatch (corrupt data)", r.dir, what, i, shard, c.Offset)
		}
		if err := decodeChunk(r.dec, dst[lo:hi], st, nplanes, sc); err != nil {
			return fmt.Errorf("checkpoint %s: %s chunk %d: shard %s at offset %d: %w", r.dir, what, i, shard, c.Offset, err)
		}
		return nil
	}
	workers := min(r.workers, len(cs))
	if workers <= 1 {
		sc := r.scratch.Get().(*scratch)
		defer r.scratch.Put(sc)
		for i := range cs {
			if err := one(i, sc); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := r.scratch.Get().(*scratch)
			defer r.scratch.Put(sc)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cs) {
					return
				}
				if err := one(i, sc); err != nil {
					errOnce.Do(func() { first = err })
					next.Store(int64(len(cs)))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// Close releases the shard files.
func (r *Reader) Close() error {
	var errs []error
	for _, f := range r.files {
		errs = append(errs, f.Close())
	}
	r.files = nil
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	return errors.Join(errs...)
}
