package safetensors

import (
	"fmt"
	"io"

	"github.com/ares-rlhf/ares/internal/atomicfile"
)

// Fetch returns the bytes of tensors[i]. It is called once per tensor, in
// order, and the bytes are not retained after it returns the next time, so
// a writer never holds more than one tensor.
type Fetch func(i int) ([]byte, error)

// Write streams a safetensors file to w: the header, then each tensor's
// bytes as fetch supplies them. Offsets are assigned in the order given.
func Write(w io.Writer, tensors []TensorInfo, metadata map[string]string, fetch Fetch) error {
	ts := append([]TensorInfo(nil), tensors...)
	prefix, err := EncodeHeader(ts, metadata)
	if err != nil {
		return err
	}
	if _, err := w.Write(prefix); err != nil {
		return err
	}
	for i, t := range ts {
		b, err := fetch(i)
		if err != nil {
			return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if int64(len(b)) != t.Len() {
			return fmt.Errorf("safetensors: tensor %q: %s%v needs %d bytes, got %d", t.Name, t.DType, t.Shape, t.Len(), len(b))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes a safetensors file atomically: to a temporary name in
// the same directory, synced, then renamed over path.
func WriteFile(path string, tensors []TensorInfo, metadata map[string]string, fetch Fetch) error {
	return atomicfile.WriteWith(path, 0o644, func(w io.Writer) error { return Write(w, tensors, metadata, fetch) })
}
