package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/ares-rlhf/ares/internal/atomicfile"
)

// ResumeConfigFree are the dotted config keys (and, with their sub-keys,
// tables) that may change when a run resumes, because they only say where
// and how often state is written, or when a run gives up, never what an
// optimizer step computes: the output directory (a run directory may be
// moved), the checkpoint interval and retention, and the limit on
// consecutive non-finite steps (raised to get past a stop). Every other key
// changes the run, so a change is refused unless Trainer.ForceConfig.
var ResumeConfigFree = []string{"run.out", "run.checkpoint_every", "run.keep_last", "run.max_nonfinite"}

// ConfigChange is one config key whose value differs between a checkpoint
// and the current run (nil: absent on that side).
type ConfigChange struct {
	Key          string
	Saved, Value any
}

// ConfigChangedError refuses to resume a checkpoint written with another
// config.
type ConfigChangedError struct {
	Dir     string // the checkpoint
	Changes []ConfigChange
}

func (e *ConfigChangedError) Error() string {
	parts := make([]string, len(e.Changes))
	for i, c := range e.Changes {
		parts[i] = fmt.Sprintf("%s (%s in the checkpoint, %s now)", c.Key, showValue(c.Saved), showValue(c.Value))
	}
	return fmt.Sprintf("%s: the config differs from the one this checkpoint was written with: %s; resuming with a changed config needs --force",
		e.Dir, strings.Join(parts, ", "))
}

func showValue(v any) string {
	if v == nil {
		return "unset"
	}
	s := fmt.Sprint(v)
	if str, ok := v.(string); ok {
		s = fmt.Sprintf("%q", str)
	} else if b, err := json.Marshal(v); err == nil {
		s = string(b)
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// CheckResumeConfig compares the config TOML a checkpoint (dir) was written
// with and the current one, and returns a *ConfigChangedError naming every
// key that differs, apart from ResumeConfigFree.
func CheckResumeConfig(dir string, saved, current []byte) error {
	changes, err := ConfigDiff(saved, current, ResumeConfigFree)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if len(changes) > 0 {
		return &ConfigChangedError{Dir: dir, Changes: changes}
	}
	return nil
}

// ConfigDiff parses two TOML texts and returns the keys whose values differ,
// as dotted names of the leaves ("sft.lr"; an array is one value), sorted. A
// key in ignore, or under a table in ignore, is left out.
func ConfigDiff(a, b []byte, ignore []string) ([]ConfigChange, error) {
	var ma, mb map[string]any
	if err := toml.Unmarshal(a, &ma); err != nil {
		return nil, fmt.Errorf("the checkpoint's config: %w", err)
	}
	if err := toml.Unmarshal(b, &mb); err != nil {
		return nil, fmt.Errorf("the current config: %w", err)
	}
	var out []ConfigChange
	diffTables("", ma, mb, ignore, &out)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func diffTables(prefix string, a, b map[string]any, ignore []string, out *[]ConfigChange) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for k := range keys {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if ignored(key, ignore) {
			continue
		}
		va, oka := a[k]
		vb, okb := b[k]
		ta, istA := va.(map[string]any)
		tb, istB := vb.(map[string]any)
		switch {
		case istA && istB:
			diffTables(key, ta, tb, ignore, out)
		case istA && !okb:
			diffTables(key, ta, map[string]any{}, ignore, out)
		case istB && !oka:
			diffTables(key, map[string]any{}, tb, ignore, out)
		case !sameValue(va, vb):
			*out = append(*out, ConfigChange{Key: key, Saved: va, Value: vb})
		}
	}
}

func ignored(key string, ignore []string) bool {
	for _, p := range ignore {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// sameValue compares two decoded TOML values; NaN equals NaN (a config
// that had nan has it still).
func sameValue(a, b any) bool {
	if fa, ok := a.(float64); ok {
		if fb, ok := b.(float64); ok && math.IsNaN(fa) && math.IsNaN(fb) {
			return true
		}
	}
	return reflect.DeepEqual(a, b)
}

// MetricsTruncater is a metrics writer that Trainer.Resume can cut back to
// the resumed step.
type MetricsTruncater interface {
	// TruncateMetrics removes the records of step and later.
	TruncateMetrics(step int64) error
}

// MetricsFile is a metrics JSONL file opened for appending; it implements
// MetricsTruncater, so a resumed Trainer with it as Metrics logs no step
// twice.
type MetricsFile struct {
	path string
	f    *os.File
}

// OpenMetrics opens (appending, creating dir and the file when missing) the
// metrics JSONL file name in dir.
func OpenMetrics(dir, name string) (*MetricsFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &MetricsFile{path: filepath.Join(dir, name)}
	if err := m.open(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *MetricsFile) open() error {
	f, err := os.OpenFile(m.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	m.f = f
	return nil
}

// Path is the file's path.
func (m *MetricsFile) Path() string { return m.path }

func (m *MetricsFile) Write(p []byte) (int, error) {
	if m.f == nil {
		return 0, fmt.Errorf("metrics %s: closed", m.path)
	}
	return m.f.Write(p)
}

// Close closes the file.
func (m *MetricsFile) Close() error {
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

// TruncateMetrics cuts the file back to the records before step (see
// TruncateMetrics) and reopens it for appending.
func (m *MetricsFile) TruncateMetrics(step int64) error {
	if err := m.Close(); err != nil {
		return fmt.Errorf("metrics %s: %w", m.path, err)
	}
	err := TruncateMetrics(m.path, step)
	if oerr := m.open(); err == nil {
		err = oerr
	}
	return err
}

// TruncateMetrics removes from the metrics JSONL file at path every record
// whose "step" is step or later, so that a run resumed at step does not log
// those steps twice. A last line without its newline (a write cut short by
// a crash) that is not a JSON record goes too; other lines are kept as they
// are. The file is replaced atomically (a temporary file in the same
// directory, synced, then renamed), and only when something changes. A
// missing file is not an error.
func TruncateMetrics(path string, step int64) error {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("metrics %s: %w", path, err)
	}
	var out bytes.Buffer
	changed := false
	for rest := data; len(rest) > 0; {
		line := rest
		complete := false
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest, complete = rest[:i], rest[i+1:], true
		} else {
			rest = nil
		}
		var rec struct {
			Step *json.Number `json:"step"`
		}
		perr := json.Unmarshal(line, &rec)
		if perr != nil && !complete {
			changed = true // a torn last write
			continue
		}
		if perr == nil && rec.Step != nil {
			if s, err := rec.Step.Int64(); err == nil && s >= step {
				changed = true
				continue
			}
		}
		out.Write(line)
		out.WriteByte('\n')
		if !complete {
			changed = true // the newline it lacked
		}
	}
	if !changed {
		return nil
	}
	if err := replaceFile(path, out.Bytes()); err != nil {
		return fmt.Errorf("metrics %s: %w", path, err)
	}
	return nil
}

// replaceFile atomically replaces path's contents with b, keeping its mode.
func replaceFile(path string, b []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	return atomicfile.WriteFile(path, b, mode)
}
