package checkpoints

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
	"github.com/ares-rlhf/ares/internal/jsonfile"
)

// Format identification written into every manifest.
//
// Version 1: the original format. Version 2 adds the manifest checksum
// (Manifest.Checksum), which is required from version 2 on; version 1
// checkpoints, which have none, are still read.
const (
	FormatName    = "ares-checkpoint"
	FormatVersion = 2
	ManifestName  = "manifest.json"

	// MinFormatVersion is the oldest format version this build reads.
	MinFormatVersion = 1
	// checksumVersion is the first format version whose manifests must
	// carry a checksum.
	checksumVersion = 2
	// checksumPrefix names the algorithm of Manifest.Checksum.
	checksumPrefix = "sha256:"
)

// Codecs of a tensor's chunks.
const (
	CodecZstdPlanes = "zstd-planes" // floats: byte planes, each zstd or raw
	CodecZstd       = "zstd"        // everything else: one plane
)

// Limits on values read from a manifest, so that a corrupt one cannot make
// a reader allocate absurd buffers.
const (
	MinChunkSize = 4 << 10
	MaxChunkSize = 256 << 20
	maxRank      = 64
)

// Manifest is the table of contents of a checkpoint directory, stored as
// manifest.json. It is written last, so its presence marks a checkpoint
// complete.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Created string `json:"created,omitempty"` // RFC 3339, informational

	// Training state that is not tensors.
	Step         int64             `json:"step"`
	DataPosition json.RawMessage   `json:"data_position,omitempty"` // engine-defined JSON
	Metadata     map[string]string `json:"metadata,omitempty"`
	Extra        json.RawMessage   `json:"extra,omitempty"` // free-form JSON

	ChunkSize int64    `json:"chunk_size"` // raw bytes per chunk
	Shards    []Shard  `json:"shards"`
	Tensors   []Tensor `json:"tensors"`
	Blobs     []Blob   `json:"blobs,omitempty"`

	// Checksum is "sha256:" and the hex SHA-256 of the manifest's canonical
	// encoding (see CanonicalEncoding), so that a damaged manifest (a
	// flipped step, data position or chunk offset) is refused rather than
	// resumed from. Required from format version 2; absent in version 1.
	Checksum string `json:"checksum,omitempty"`
}

// Shard is one data file of the checkpoint.
type Shard struct {
	File string `json:"file"`
	Size int64  `json:"size"`
}

// Chunk locates one stored chunk: shard index, byte offset and length in
// that shard, and the CRC-32C of the stored bytes.
type Chunk struct {
	Shard  int    `json:"shard"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	CRC32C uint32 `json:"crc32c"`
}

// Tensor is one entry of the tensor index. Size is the raw byte size and
// CRC32C the checksum of the raw (decoded) bytes.
type Tensor struct {
	Name   string            `json:"name"`
	Group  string            `json:"group,omitempty"`
	DType  safetensors.DType `json:"dtype"`
	Shape  []int64           `json:"shape"`
	Size   int64             `json:"size"`
	Codec  string            `json:"codec"`
	CRC32C uint32            `json:"crc32c"`
	Chunks []Chunk           `json:"chunks"`
}

// Blob is a named byte string: config, tokenizer, RNG states.
type Blob struct {
	Name   string  `json:"name"`
	Size   int64   `json:"size"`
	CRC32C uint32  `json:"crc32c"`
	Chunks []Chunk `json:"chunks"`
}

// StoredSize sums the stored lengths of a tensor's chunks.
func (t *Tensor) StoredSize() int64 { return storedSize(t.Chunks) }

func storedSize(cs []Chunk) int64 {
	var n int64
	for _, c := range cs {
		n += c.Length
	}
	return n
}

// ParseManifest decodes a manifest, checks its checksum, and validates it.
// It checks everything that can be checked without the shard files: a
// manifest that passes cannot make a reader index out of range or leave
// the directory, and (from format version 2) is the one the writer wrote.
// The manifest of a delta checkpoint (written by an older version) is
// refused with an error wrapping ErrDelta.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := jsonfile.Decode(ManifestName, b, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	// Before the checksum: the fields of a delta are not in Manifest, so
	// its checksum would fail, which is not the cause.
	if base, ok := deltaBase(b); ok {
		if base != "" {
			return nil, fmt.Errorf("%w: this is a delta of checkpoint %q (%s)", ErrDelta, base, deltaHint)
		}
		return nil, fmt.Errorf("%w: this one has tensors stored as deltas (%s)", ErrDelta, deltaHint)
	}
	// The checksum first: when it fails, that is the cause of whatever
	// else looks wrong.
	if err := m.VerifyChecksum(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// ErrDelta is wrapped by the error of a delta checkpoint's manifest.
// Older versions could store a checkpoint as per-element differences from
// a base checkpoint (the manifest's "base" and its tensors' "delta"
// fields); this build reads only full checkpoints.
var ErrDelta = errors.New("delta checkpoints are no longer supported")

const deltaHint = "written by an older version of ARES, which can still read it, e.g. to export the weights with ares ckpt export"

// deltaBase reports whether the manifest JSON b is that of a delta
// checkpoint: it names a base, or has a tensor stored as a delta. base is
// the name of the base checkpoint, "" if none is named.
func deltaBase(b []byte) (base string, delta bool) {
	var probe struct {
		Base    json.RawMessage `json:"base"`
		Tensors []struct {
			Delta json.RawMessage `json:"delta"`
		} `json:"tensors"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return "", false // not a shape any version wrote; Validate says why
	}
	if present(probe.Base) {
		var ref struct {
			Name string `json:"name"`
		}
		json.Unmarshal(probe.Base, &ref)
		return ref.Name, true
	}
	for _, t := range probe.Tensors {
		if present(t.Delta) && string(t.Delta) != `""` {
			return "", true
		}
	}
	return "", false
}

// present reports whether a JSON field was given a value other than null.
func present(v json.RawMessage) bool { return len(v) > 0 && string(v) != "null" }

// CanonicalEncoding is the byte string the manifest checksum covers: the
// compact JSON encoding (encoding/json's Marshal: fields in declaration
// order, map keys sorted, embedded JSON compacted) of the manifest with
// Checksum empty. It does not depend on the file's whitespace or key
// order, only on the values; any change of a value changes it.
func (m *Manifest) CanonicalEncoding() ([]byte, error) {
	c := *m
	c.Checksum = ""
	return json.Marshal(&c)
}

// ComputeChecksum returns the checksum the manifest should carry.
func (m *Manifest) ComputeChecksum() (string, error) {
	b, err := m.CanonicalEncoding()
	if err != nil {
		return "", fmt.Errorf("manifest: canonical encoding: %w", err)
	}
	sum := sha256.Sum256(b)
	return checksumPrefix + hex.EncodeToString(sum[:]), nil
}

// ErrManifestChecksum is wrapped by the error of a manifest whose content
// does not match its checksum.
var ErrManifestChecksum = errors.New("manifest checksum mismatch")

// VerifyChecksum checks the manifest against its checksum. A manifest
// without one is accepted only below format version 2 (written before
// manifests had checksums); a manifest that carries one is always checked,
// whatever its version says.
func (m *Manifest) VerifyChecksum() error {
	if m.Checksum == "" {
		if m.Version >= checksumVersion {
			return fmt.Errorf("manifest: no checksum (format version %d requires one): damaged or altered", m.Version)
		}
		return nil
	}
	if !strings.HasPrefix(m.Checksum, checksumPrefix) {
		return fmt.Errorf("manifest: checksum %q: unknown algorithm (want %q)", m.Checksum, checksumPrefix+"<hex>")
	}
	want, err := m.ComputeChecksum()
	if err != nil {
		return err
	}
	if m.Checksum != want {
		return fmt.Errorf("%w: the content hashes to %s, the manifest records %s (the manifest was damaged or altered)", ErrManifestChecksum, want, m.Checksum)
	}
	return nil
}

// planesFor is the number of byte planes a tensor of dtype d is split into.
func planesFor(d safetensors.DType) int {
	if d.IsFloat() {
		return d.Size()
	}
	return 1
}

func codecFor(d safetensors.DType) string {
	if planesFor(d) > 1 {
		return CodecZstdPlanes
	}
	return CodecZstd
}

// Validate checks the manifest's internal consistency.
func (m *Manifest) Validate() error {
	if m.Format != FormatName {
		return fmt.Errorf("manifest: format %q is not %q", m.Format, FormatName)
	}
	if m.Version < MinFormatVersion || m.Version > FormatVersion {
		return fmt.Errorf("manifest: format version %d not supported (this build reads %d to %d)", m.Version, MinFormatVersion, FormatVersion)
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize || m.ChunkSize%8 != 0 {
		return fmt.Errorf("manifest: chunk_size %d must be a multiple of 8 in [%d, %d]", m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if len(m.DataPosition) > 0 && !json.Valid(m.DataPosition) {
		return errors.New("manifest: data_position is not JSON")
	}
	files := map[string]bool{ManifestName: true}
	for i, s := range m.Shards {
		if !safetensors.ValidFileName(s.File) {
			return fmt.Errorf("manifest: shard %d: file name %q leaves the checkpoint directory", i, s.File)
		}
		if files[s.File] {
			return fmt.Errorf("manifest: shard %d: file name %q used twice", i, s.File)
		}
		files[s.File] = true
		if s.Size < 0 {
			return fmt.Errorf("manifest: shard %s: negative size", s.File)
		}
	}
	names := map[string]bool{}
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if t.Name == "" || names[t.Name] {
			return fmt.Errorf("manifest: tensor %d: empty or duplicate name %q", i, t.Name)
		}
		names[t.Name] = true
		if len(t.Shape) > maxRank {
			return fmt.Errorf("manifest: tensor %q: rank %d", t.Name, len(t.Shape))
		}
		n, err := safetensors.NumBytes(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("manifest: tensor %q: %w", t.Name, err)
		}
		if n != t.Size {
			return fmt.Errorf("manifest: tensor %q: %s%v is %d bytes, size says %d", t.Name, t.DType, t.Shape, n, t.Size)
		}
		if t.Codec != codecFor(t.DType) {
			return fmt.Errorf("manifest: tensor %q: codec %q for dtype %s (want %q)", t.Name, t.Codec, t.DType, codecFor(t.DType))
		}
		if err := m.checkChunks(t.Chunks, numChunks(t.Size, m.ChunkSize)); err != nil {
			return fmt.Errorf("manifest: tensor %q: %w", t.Name, err)
		}
	}
	blobs := map[string]bool{}
	for i := range m.Blobs {
		b := &m.Blobs[i]
		if b.Name == "" || blobs[b.Name] {
			return fmt.Errorf("manifest: blob %d: empty or duplicate name %q", i, b.Name)
		}
		blobs[b.Name] = true
		if b.Size < 0 {
			return fmt.Errorf("manifest: blob %q: negative size", b.Name)
		}
		if err := m.checkChunks(b.Chunks, numChunks(b.Size, m.ChunkSize)); err != nil {
			return fmt.Errorf("manifest: blob %q: %w", b.Name, err)
		}
	}
	return nil
}

func numChunks(size, chunk int64) int {
	return int((size + chunk - 1) / chunk)
}

func (m *Manifest) checkChunks(cs []Chunk, want int) error {
	if len(cs) != want {
		return fmt.Errorf("%d chunks, want %d", len(cs), want)
	}
	// A stored chunk is at most its raw size plus zstd's worst-case framing;
	// anything bigger is corrupt and must not drive an allocation.
	maxStored := m.ChunkSize + m.ChunkSize/64 + 4096
	for j, c := range cs {
		if c.Shard < 0 || c.Shard >= len(m.Shards) {
			return fmt.Errorf("chunk %d: shard index %d out of range", j, c.Shard)
		}
		s := m.Shards[c.Shard]
		if c.Offset < 0 || c.Length < 2 || c.Length > maxStored || c.Offset > s.Size-c.Length {
			return fmt.Errorf("chunk %d: bytes [%d, +%d) outside shard %s of %d bytes", j, c.Offset, c.Length, s.File, s.Size)
		}
	}
	return nil
}
