package checkpoints

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ares-rlhf/ares/internal/atomicfile"
)

// ManagerOptions configure a Manager. The zero value is usable.
type ManagerOptions struct {
	// Keep is how many of the newest checkpoints survive rotation
	// (default 3; negative keeps all).
	Keep   int
	Writer Options
	Open   OpenOptions
}

// Manager owns a run directory of checkpoints named step-NNNNNNNNNNNN, a
// `latest` pointer file, and rotation. One process writes a run directory
// at a time.
type Manager struct {
	dir  string
	opts ManagerOptions
}

// LatestName is the pointer file naming the most recent checkpoint.
const LatestName = "latest"

const (
	stepPrefix  = "step-"
	trashMarker = ".trash-"
)

// CheckpointName is the directory name of the checkpoint of a step.
func CheckpointName(step int64) string { return fmt.Sprintf("%s%012d", stepPrefix, step) }

// NewManager opens (creating if needed) a run directory and removes what
// interrupted saves and deletions left behind.
func NewManager(dir string, opts *ManagerOptions) (*Manager, error) {
	m := &Manager{dir: dir}
	if opts != nil {
		m.opts = *opts
	}
	if m.opts.Keep == 0 {
		m.opts.Keep = 3
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") && (strings.Contains(n, tmpMarker) || strings.Contains(n, trashMarker)) {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				return nil, fmt.Errorf("run directory %s: removing leftover %s: %w", dir, n, err)
			}
		}
	}
	return m, nil
}

// Dir is the run directory.
func (m *Manager) Dir() string { return m.dir }

// Save writes the checkpoint of step: fill adds tensors, blobs and state
// to the Writer (SetStep is done already). The checkpoint is committed
// atomically, then the latest pointer is updated, then old checkpoints are
// rotated out. It returns the checkpoint's directory.
func (m *Manager) Save(step int64, fill func(w *Writer) error) (string, error) {
	name := CheckpointName(step)
	final := filepath.Join(m.dir, name)
	if _, err := os.Lstat(final); err == nil {
		// Re-saving a step (after a resume): move the old one aside first.
		if err := m.trash(name); err != nil {
			return "", err
		}
	}
	o := m.opts.Writer
	w, err := Create(final, &o)
	if err != nil {
		return "", err
	}
	w.SetStep(step)
	if err := fill(w); err != nil {
		w.Abort()
		return "", fmt.Errorf("checkpoint %s: %w", final, err)
	}
	if err := w.Commit(); err != nil {
		return "", err
	}
	// atomicfile's temporary names carry tmpMarker: a crash leaves one that
	// the next NewManager removes.
	if err := atomicfile.WriteFile(filepath.Join(m.dir, LatestName), []byte(name+"\n"), 0o644); err != nil {
		return final, fmt.Errorf("run directory %s: latest pointer: %w", m.dir, err)
	}
	return final, m.rotate()
}

// Entry is a complete checkpoint of a run directory.
type Entry struct {
	Name string
	Step int64
	Dir  string
}

func validStepName(n string) bool {
	s, ok := strings.CutPrefix(n, stepPrefix)
	if !ok {
		return false
	}
	step, err := strconv.ParseInt(s, 10, 64)
	return err == nil && step >= 0 && CheckpointName(step) == n
}

// List returns the complete checkpoints (those with a manifest), oldest
// first. Temporary directories of interrupted saves are never listed.
func (m *Manager) List() ([]Entry, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", m.dir, err)
	}
	var out []Entry
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || !validStepName(n) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(m.dir, n, ManifestName)); err != nil {
			continue
		}
		step, _ := strconv.ParseInt(strings.TrimPrefix(n, stepPrefix), 10, 64)
		out = append(out, Entry{Name: n, Step: step, Dir: filepath.Join(m.dir, n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, nil
}

// incomplete returns the step directories that List leaves out for want of
// a manifest (errors reading the directory are List's to report).
func (m *Manager) incomplete() []Entry {
	ents, _ := os.ReadDir(m.dir)
	var out []Entry
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || !validStepName(n) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(m.dir, n, ManifestName)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		step, _ := strconv.ParseInt(strings.TrimPrefix(n, stepPrefix), 10, 64)
		out = append(out, Entry{Name: n, Step: step, Dir: filepath.Join(m.dir, n)})
	}
	return out
}

// Latest returns the name in the latest pointer ("" if there is none).
// OpenLatest does not depend on it: it is for people and tools.
func (m *Manager) Latest() (string, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, LatestName))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// ErrNoCheckpoint is returned by OpenLatest when nothing can be resumed.
var ErrNoCheckpoint = errors.New("no complete checkpoint")

// RejectedError is why OpenLatest passed over a checkpoint: Name is its
// directory name in the run directory, Err what failed (opening: a
// manifest that does not parse, fails its checksum, or names a missing or
// truncated shard; or, when verifying, every bad tensor and blob).
type RejectedError struct {
	Name string
	Dir  string
	Err  error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("checkpoint %s rejected: %v", e.Name, e.Err)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// OpenLatest opens the newest checkpoint that opens cleanly (and, with
// verify, passes Verify), passing over damaged ones; skipped has a
// *RejectedError for each newer one passed over, newest first, naming it
// and saying why, for the caller to log. When none can be opened the error
// wraps ErrNoCheckpoint and skipped lists every rejection.
//
// A step directory without a manifest is passed over too, and reported:
// a save is renamed into place only once its manifest is written, so such
// a directory is not an unfinished save but one damaged (or emptied)
// afterwards.
func (m *Manager) OpenLatest(verify bool) (r *Reader, skipped []error, err error) {
	list, err := m.List()
	if err != nil {
		return nil, nil, err
	}
	list = append(list, m.incomplete()...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Step < list[j].Step })
	for i := len(list) - 1; i >= 0; i-- {
		r, err := Open(list[i].Dir, &m.opts.Open)
		if err == nil && verify {
			if err = r.Verify(); err != nil {
				r.Close()
			}
		}
		if err == nil {
			return r, skipped, nil
		}
		skipped = append(skipped, &RejectedError{Name: list[i].Name, Dir: list[i].Dir, Err: err})
	}
	if len(skipped) > 0 {
		return nil, skipped, fmt.Errorf("run directory %s: %w: all %d were rejected: %w", m.dir, ErrNoCheckpoint, len(skipped), errors.Join(skipped...))
	}
	return nil, skipped, fmt.Errorf("run directory %s: %w", m.dir, ErrNoCheckpoint)
}

func (m *Manager) rotate() error {
	if m.opts.Keep < 0 {
		return nil
	}
	list, err := m.List()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for i := max(0, len(list)-m.opts.Keep); i < len(list); i++ {
		keep[list[i].Name] = true
		// A kept delta checkpoint (written by an older version, which
		// can still read it) keeps its base, so the pair stays readable.
		if raw, err := os.ReadFile(filepath.Join(list[i].Dir, ManifestName)); err == nil {
			if base, _ := deltaBase(raw); base != "" {
				keep[base] = true
			}
		}
	}
	for _, e := range list {
		if !keep[e.Name] {
			if err := m.trash(e.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// trash renames a checkpoint to a hidden name before deleting it, so that
// a crash mid-deletion never leaves a half-deleted directory that looks
// like a checkpoint.
func (m *Manager) trash(name string) error {
	t := filepath.Join(m.dir, "."+name+trashMarker+randSuffix())
	if err := os.Rename(filepath.Join(m.dir, name), t); err != nil {
		return fmt.Errorf("run directory %s: removing %s: %w", m.dir, name, err)
	}
	if err := atomicfile.SyncDir(m.dir); err != nil {
		return err
	}
	return os.RemoveAll(t)
}

// Close releases the Manager. It holds nothing open between calls, so
// this is a no-op, kept for callers that defer it.
func (m *Manager) Close() error { return nil }

func randSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
