package checkpoints

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// VerifyError lists every problem found by Verify, one per tensor or blob.
type VerifyError struct {
	Dir      string
	Problems []error
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint %s: %d problem(s):", e.Dir, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Verify decodes every tensor and blob and checks every checksum (the
// manifest's, stored chunks and decoded bytes).
// It reports all problems, not just the first, naming tensor, chunk and
// shard. The manifest's own checksum was checked by Open; Verify reads the
// file again and checks it is still the one that was opened.
func (r *Reader) Verify() error {
	var problems []error
	if err := r.verifyManifestFile(); err != nil {
		problems = append(problems, err)
	}
	var buf []byte
	for _, t := range r.m.Tensors {
		if int64(cap(buf)) < t.Size {
			buf = make([]byte, t.Size)
		}
		if err := r.ReadTensor(t.Name, buf[:t.Size]); err != nil {
			problems = append(problems, err)
		}
	}
	for _, b := range r.m.Blobs {
		if _, err := r.Blob(b.Name); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return &VerifyError{Dir: r.dir, Problems: problems}
	}
	return nil
}

// verifyManifestFile checks that manifest.json still holds the bytes the
// reader opened (and, if not, why the new ones are bad).
func (r *Reader) verifyManifestFile() error {
	raw, err := os.ReadFile(filepath.Join(r.dir, ManifestName))
	if err != nil {
		return fmt.Errorf("checkpoint %s: %s: %w", r.dir, ManifestName, err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) == r.manifestSHA {
		return nil
	}
	if _, err := ParseManifest(raw); err != nil {
		return fmt.Errorf("checkpoint %s: %s changed since it was opened: %w", r.dir, ManifestName, err)
	}
	return fmt.Errorf("checkpoint %s: %s changed since it was opened", r.dir, ManifestName)
}
