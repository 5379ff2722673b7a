package mentor

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/internal/atomicfile"
	"github.com/ares-rlhf/ares/internal/jsonfile"
	"github.com/ares-rlhf/ares/internal/jsonl"
)

// Resumable is implemented by a Policy (or a RewardModel) whose random
// state a resumed run must carry for it to equal an uninterrupted one (the
// simulated policy's random source, a model's sampling-call counter).
// SaveState is called at each checkpoint, between rounds; LoadState once
// when a run resumes.
type Resumable interface {
	SaveState() ([]byte, error)
	LoadState([]byte) error
}

// PromptChecker is implemented by a Policy (or a RewardModel) that can tell
// before sampling that a prompt does not fit: longer, with the tokens it
// generates, than the model's context. RedTeam skips such a probe and
// records it in Result.Skipped (and summary.json) instead of failing the
// round.
type PromptChecker interface {
	CheckPrompt(prompt string) error
}

// Skipped is a probe RedTeam did not run.
type Skipped struct {
	ID     string `json:"id"`
	Round  int    `json:"round"`
	Reason string `json:"reason"`
}

// Run status in a State file.
const (
	StatusRunning     = "running"     // in progress, or killed without a chance to say so
	StatusInterrupted = "interrupted" // cancelled (a signal); resumable
	StatusFailed      = "failed"      // an error; resumable once its cause is fixed
	StatusComplete    = "complete"    // budget spent, every output written
)

const stateVersion = 1

// State is a red-team run's progress at a round boundary: written
// atomically next to findings.jsonl (StatePath) after every round, it is
// what `ares redteam --resume` continues from, and its Status says whether
// the findings file is complete.
type State struct {
	Version int    `json:"version"`
	Status  string `json:"status"`
	// Message says why a run stopped (status interrupted or failed).
	Message string `json:"message,omitempty"`

	Run        string            `json:"run,omitempty"`
	Sampler    string            `json:"sampler"`
	Judge      string            `json:"judge"`
	Config     Config            `json:"config"`
	Thresholds detect.Thresholds `json:"thresholds"`

	// Round is the next round to run; Rollouts the policy rollouts spent.
	Round      int       `json:"round"`
	Rollouts   int       `json:"rollouts"`
	Budget     int       `json:"budget"`
	Aggregate  aggState  `json:"aggregate"`
	Skipped    []Skipped `json:"skipped,omitempty"`
	EmptyRound int       `json:"empty_rounds,omitempty"`

	// Findings is the number of findings written; FindingsBytes and
	// FindingsSHA256 the length and digest of the findings file's prefix
	// that holds them (a resumed run truncates the file there).
	Findings       int    `json:"findings"`
	FindingsBytes  int64  `json:"findings_bytes"`
	FindingsSHA256 string `json:"findings_sha256"`

	SamplerState json.RawMessage `json:"sampler_state"`
	PolicyState  []byte          `json:"policy_state,omitempty"`
	RMState      []byte          `json:"rm_state,omitempty"`

	// findings are the findings so far, read back from the findings file
	// on resume.
	findings []detect.Finding
}

// aggState is a detect.Aggregate in a JSON-friendly, ordered form.
type aggState struct {
	Total   detect.Counts `json:"total"`
	Cells   []keyCounts   `json:"cells"`
	Persona []keyCounts   `json:"tactic_persona"`
}

type keyCounts struct {
	Key    [2]string     `json:"key"`
	Counts detect.Counts `json:"counts"`
}

func saveAgg(a *detect.Aggregate) aggState {
	st := aggState{Total: a.Total, Cells: []keyCounts{}, Persona: []keyCounts{}}
	for k, c := range a.Cells {
		st.Cells = append(st.Cells, keyCounts{[2]string{k.Tactic, k.Topic}, *c})
	}
	for k, c := range a.ByTacticPersona {
		st.Persona = append(st.Persona, keyCounts{k, *c})
	}
	for _, l := range [][]keyCounts{st.Cells, st.Persona} {
		sort.Slice(l, func(i, j int) bool {
			return l[i].Key[0] < l[j].Key[0] || l[i].Key[0] == l[j].Key[0] && l[i].Key[1] < l[j].Key[1]
		})
	}
	return st
}

func (st aggState) restore() *detect.Aggregate {
	a := detect.NewAggregate()
	a.Total = st.Total
	for _, kc := range st.Cells {
		c := kc.Counts
		a.Cells[detect.CellKey{Tactic: kc.Key[0], Topic: kc.Key[1]}] = &c
	}
	for _, kc := range st.Persona {
		c := kc.Counts
		a.ByTacticPersona[kc.Key] = &c
	}
	return a
}

// StatePath is the state file of a findings file: "findings.jsonl" ->
// "findings.state.json" in the same directory.
func StatePath(findings string) string {
	return strings.TrimSuffix(findings, ".jsonl") + ".state.json"
}

// ReadState reads a state file; errors name the file.
func ReadState(path string) (*State, error) {
	var st State
	if err := jsonfile.Read(path, &st); err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: version %d is not supported (want %d)", path, st.Version, stateVersion)
	}
	switch st.Status {
	case StatusRunning, StatusInterrupted, StatusFailed, StatusComplete:
	default:
		return nil, fmt.Errorf("%s: status %q is not running, interrupted, failed or complete", path, st.Status)
	}
	if st.Round < 0 || st.Rollouts < 0 || st.Findings < 0 || st.FindingsBytes < 0 {
		return nil, fmt.Errorf("%s: negative round, rollouts, findings or findings_bytes", path)
	}
	return &st, nil
}

// WriteState writes a state file atomically: a temporary file in the same
// directory, fsynced, renamed over path, and the directory fsynced, so a
// crash leaves either the old state or the new one.
func WriteState(path string, st *State) error {
	b, err := marshalJSON("state", st)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// CheckFindings refuses a findings file whose red-team run did not finish:
// its state file (StatePath) says running, interrupted or failed. A
// findings file without a state file (imported, or written before state
// files existed) passes. Repair and audit commands call it before
// detect.ReadFindings.
func CheckFindings(path string) error {
	sp := StatePath(path)
	st, err := ReadState(sp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Status == StatusComplete {
		return nil
	}
	why := ""
	if st.Message != "" {
		why = " (" + st.Message + ")"
	}
	return fmt.Errorf("%s is incomplete: its red-team run is %s at rollout %d of %d%s, per %s; finish it with `ares redteam --resume`",
		path, st.Status, st.Rollouts, st.Budget, why, sp)
}

// hashWriter counts and hashes what goes through it to a file.
type hashWriter struct {
	w io.Writer
	h hashState
	n int64
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

func newHashWriter(w io.Writer) *hashWriter { return &hashWriter{w: w, h: sha256.New()} }

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

func (hw *hashWriter) sum() string { return hex.EncodeToString(hw.h.Sum(nil)) }

// openForResume opens the findings file of an interrupted run, checks that
// its first st.FindingsBytes bytes are what the state recorded, reads the
// findings in them, truncates what a later, unfinished round appended, and
// returns the file positioned at its end with a hashWriter primed with the
// prefix.
func openForResume(path string, st *State) (*os.File, *hashWriter, []detect.Finding, error) {
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("resume: %w", err)
	}
	fail := func(err error) (*os.File, *hashWriter, []detect.Finding, error) {
		fh.Close()
		return nil, nil, nil, err
	}
	info, err := fh.Stat()
	if err != nil {
		return fail(err)
	}
	if info.Size() < st.FindingsBytes {
		return fail(fmt.Errorf("resume: %s has %d bytes, fewer than the %d its state file records", path, info.Size(), st.FindingsBytes))
	}
	prefix := make([]byte, st.FindingsBytes)
	if _, err := io.ReadFull(fh, prefix); err != nil {
		return fail(fmt.Errorf("resume: %s: %w", path, err))
	}
	hw := newHashWriter(fh)
	hw.h.Write(prefix)
	hw.n = st.FindingsBytes
	if got := hw.sum(); got != st.FindingsSHA256 {
		return fail(fmt.Errorf("resume: the first %d bytes of %s have SHA-256 %s, the state file records %s (the file was changed)", st.FindingsBytes, path, got, st.FindingsSHA256))
	}
	var fs []detect.Finding
	sc := bufio.NewScanner(bytes.NewReader(prefix))
	sc.Buffer(nil, len(prefix)+1)
	for line := 1; sc.Scan(); line++ {
		var f detect.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return fail(fmt.Errorf("resume: %s:%d: %w", path, line, err))
		}
		fs = append(fs, f)
	}
	if len(fs) != st.Findings {
		return fail(fmt.Errorf("resume: %s holds %d findings in its first %d bytes, the state file records %d", path, len(fs), st.FindingsBytes, st.Findings))
	}
	if err := fh.Truncate(st.FindingsBytes); err != nil {
		return fail(fmt.Errorf("resume: %s: %w", path, err))
	}
	if _, err := fh.Seek(st.FindingsBytes, io.SeekStart); err != nil {
		return fail(err)
	}
	return fh, hw, fs, nil
}

// marshalJSON marshals v, indented; when a float is NaN or infinite the
// error names the field that holds it ("what.aggregate.cells[3]...")
// instead of encoding/json's bare "unsupported value: NaN".
func marshalJSON(what string, v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		return append(b, '\n'), nil
	}
	var ue *json.UnsupportedValueError
	if errors.As(err, &ue) {
		if p := jsonl.NonFinitePath(v, what); p != "" {
			return nil, fmt.Errorf("%s is %s: JSON has no encoding for it", p, ue.Str)
		}
	}
	return nil, fmt.Errorf("%s: %w", what, err)
}
