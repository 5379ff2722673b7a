package checkpoints

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"
)

// A chunk is the unit of compression, checksumming and parallel work: a
// tensor is cut into chunks of Manifest.ChunkSize raw bytes (the last one
// shorter). A stored chunk is self-describing:
//
//	byte 0     flags, always 0 (bit 0 marked a delta chunk, written by older
//	           versions; delta checkpoints are no longer supported)
//	byte 1     number of byte planes P (1 for plain zstd)
//	P times    plane mode byte, uvarint stored length
//	P payloads
//
// Plane k holds byte k of every element. For floats this separates the
// sign/exponent bytes, which are highly skewed and compress well, from the
// mantissa bytes, which are close to random and are stored raw rather than
// run through zstd for nothing.
const (
	modeRaw  = 0
	modeZstd = 1
	modeZero = 2 // every byte of the plane is zero

	maxPlanes = 8
)

// Entropy above which a plane is stored raw without trying zstd (bits per
// byte). Mantissa planes of trained weights sit near 8.
const rawEntropy = 7.9

// Entropy below which a plane goes through zstd's match finder; above it,
// literal-only zstd frames (see appendLiteralFrame).
const matchEntropy = 2.0

type encoder struct {
	z      *zstd.Encoder
	huff   huff0.Scratch
	planes []byte
	hist   [256]int
}

// encodeChunk appends the stored form of raw, split into nplanes byte
// planes, to dst.
func (e *encoder) encodeChunk(dst, raw []byte, nplanes int) []byte {
	n := len(raw) / nplanes
	if cap(e.planes) < len(raw) {
		e.planes = make([]byte, len(raw))
	}
	planes := e.planes[:len(raw)]
	splitPlanes(planes, raw, nplanes)
	dst = append(dst, 0, byte(nplanes))
	// Reserve the plane table at its largest; it is compacted below.
	tableAt := len(dst)
	dst = append(dst, make([]byte, nplanes*(1+binary.MaxVarintLen64))...)
	type planeOut struct {
		mode byte
		at   int
		n    int
	}
	var outs [maxPlanes]planeOut
	for k := 0; k < nplanes; k++ {
		p := planes[k*n : (k+1)*n]
		at := len(dst)
		switch {
		case allZero(p):
			outs[k] = planeOut{modeZero, at, 0}
		default:
			h := e.entropy(p)
			if h > rawEntropy {
				dst = append(dst, p...)
				outs[k] = planeOut{modeRaw, at, n}
				continue
			}
			if h < matchEntropy {
				// Mostly one byte value (sparse data): runs
				// and repeats matter, use zstd's match finder.
				dst = e.z.EncodeAll(p, dst)
			} else {
				dst = appendLiteralFrame(dst, p, &e.huff)
			}
			if len(dst)-at >= n {
				dst = append(dst[:at], p...)
				outs[k] = planeOut{modeRaw, at, n}
			} else {
				outs[k] = planeOut{modeZstd, at, len(dst) - at}
			}
		}
	}
	// Write the table, then move the payloads down over the unused space.
	t := tableAt
	for k := 0; k < nplanes; k++ {
		dst[t] = outs[k].mode
		t++
		t += binary.PutUvarint(dst[t:], uint64(outs[k].n))
	}
	payloadStart := tableAt + nplanes*(1+binary.MaxVarintLen64)
	m := copy(dst[t:], dst[payloadStart:])
	return dst[:t+m]
}

func (e *encoder) entropy(p []byte) float64 {
	h := &e.hist
	*h = [256]int{}
	// A sample is enough to tell random bytes from skewed ones.
	step := 1
	if len(p) > 1<<16 {
		step = len(p) >> 16
	}
	cnt := 0
	for i := 0; i < len(p); i += step {
		h[p[i]]++
		cnt++
	}
	var ent float64
	for _, c := range h {
		if c > 0 {
			q := float64(c) / float64(cnt)
			ent -= q * math.Log2(q)
		}
	}
	return ent
}

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if binary.LittleEndian.Uint64(p) != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

var errCorrupt = errors.New("corrupt chunk")

// scratch holds per-worker decode buffers.
type scratch struct {
	stored, planes []byte
}

// decodeChunk decodes a stored chunk into dst (its raw size). sc is reused
// between calls.
func decodeChunk(dec *zstd.Decoder, dst, stored []byte, wantPlanes int, sc *scratch) error {
	if len(stored) < 2 {
		return fmt.Errorf("%w: %d bytes", errCorrupt, len(stored))
	}
	flags, nplanes := stored[0], int(stored[1])
	if flags != 0 || nplanes != wantPlanes || len(dst)%nplanes != 0 {
		return fmt.Errorf("%w: flags %#x, %d planes (want %d)", errCorrupt, flags, nplanes, wantPlanes)
	}
	n := len(dst) / nplanes
	var modes [maxPlanes]byte
	var lens [maxPlanes]int
	pos := 2
	total := 0
	for k := 0; k < nplanes; k++ {
		if pos >= len(stored) {
			return fmt.Errorf("%w: truncated plane table", errCorrupt)
		}
		modes[k] = stored[pos]
		pos++
		l, w := binary.Uvarint(stored[pos:])
		if w <= 0 || l > uint64(len(stored)) {
			return fmt.Errorf("%w: bad plane length", errCorrupt)
		}
		pos += w
		lens[k] = int(l)
		total += int(l)
	}
	if pos+total != len(stored) {
		return fmt.Errorf("%w: plane lengths sum to %d, payload is %d bytes", errCorrupt, total, len(stored)-pos)
	}
	if cap(sc.planes) < len(dst) {
		sc.planes = make([]byte, len(dst))
	}
	planes := sc.planes[:len(dst)]
	for k := 0; k < nplanes; k++ {
		src := stored[pos : pos+lens[k]]
		pos += lens[k]
		p := planes[k*n : (k+1)*n]
		switch modes[k] {
		case modeZero:
			if len(src) != 0 {
				return fmt.Errorf("%w: zero plane with payload", errCorrupt)
			}
			clear(p)
		case modeRaw:
			if len(src) != n {
				return fmt.Errorf("%w: raw plane of %d bytes, want %d", errCorrupt, len(src), n)
			}
			copy(p, src)
		case modeZstd:
			out, err := dec.DecodeAll(src, p[:0:n])
			if err != nil {
				return fmt.Errorf("%w: zstd: %v", errCorrupt, err)
			}
			if len(out) != n || (n > 0 && &out[0] != &p[0]) {
				return fmt.Errorf("%w: plane decodes to %d bytes, want %d", errCorrupt, len(out), n)
			}
		default:
			return fmt.Errorf("%w: unknown plane mode %d", errCorrupt, modes[k])
		}
	}
	mergePlanes(dst, planes, nplanes)
	return nil
}

// splitPlanes writes plane k of raw to planes[k*n:(k+1)*n].
func splitPlanes(planes, raw []byte, nplanes int) {
	n := len(raw) / nplanes
	switch nplanes {
	case 1:
		copy(planes, raw)
	case 2:
		p0, p1 := planes[:n], planes[n:2*n]
		src := raw[:2*n]
		i := 0
		// Four elements per step: gather even and odd bytes of a word.
		for ; i+4 <= n; i += 4 {
			v := binary.LittleEndian.Uint64(src[2*i:])
			binary.LittleEndian.PutUint32(p0[i:], gather(v))
			binary.LittleEndian.PutUint32(p1[i:], gather(v>>8))
		}
		for ; i < n; i++ {
			p0[i] = src[2*i]
			p1[i] = src[2*i+1]
		}
	case 4:
		p0, p1, p2, p3 := planes[:n], planes[n:2*n], planes[2*n:3*n], planes[3*n:4*n]
		src := raw[:4*n]
		for i := range p0 {
			v := binary.LittleEndian.Uint32(src[4*i:])
			p0[i] = byte(v)
			p1[i] = byte(v >> 8)
			p2[i] = byte(v >> 16)
			p3[i] = byte(v >> 24)
		}
	default:
		for k := 0; k < nplanes; k++ {
			p := planes[k*n : (k+1)*n]
			for i := range p {
				p[i] = raw[i*nplanes+k]
			}
		}
	}
}

// mergePlanes interleaves planes back into dst.
func mergePlanes(dst, planes []byte, nplanes int) {
	n := len(dst) / nplanes
	switch nplanes {
	case 1:
		copy(dst, planes)
	case 2:
		p0, p1 := planes[:n], planes[n:2*n]
		d := dst[:2*n]
		i := 0
		for ; i+4 <= n; i += 4 {
			lo := spread(binary.LittleEndian.Uint32(p0[i:]))
			hi := spread(binary.LittleEndian.Uint32(p1[i:]))
			binary.LittleEndian.PutUint64(d[2*i:], lo|hi<<8)
		}
		for ; i < n; i++ {
			d[2*i] = p0[i]
			d[2*i+1] = p1[i]
		}
	case 4:
		p0, p1, p2, p3 := planes[:n], planes[n:2*n], planes[2*n:3*n], planes[3*n:4*n]
		d := dst[:4*n]
		for i := range p0 {
			binary.LittleEndian.PutUint32(d[4*i:], uint32(p0[i])|uint32(p1[i])<<8|uint32(p2[i])<<16|uint32(p3[i])<<24)
		}
	default:
		for k := 0; k < nplanes; k++ {
			p := planes[k*n : (k+1)*n]
			for i := range p {
				dst[i*nplanes+k] = p[i]
			}
		}
	}
}

// gather packs bytes 0, 2, 4, 6 of v into a uint32.
func gather(v uint64) uint32 {
	v &= 0x00ff00ff00ff00ff
	v = (v | v>>8) & 0x0000ffff0000ffff
	return uint32(v | v>>16)
}

// spread is the inverse of gather: byte k of x goes to byte 2k.
func spread(x uint32) uint64 {
	v := uint64(x)
	v = (v | v<<16) & 0x0000ffff0000ffff
	return (v | v<<8) & 0x00ff00ff00ff00ff
}
