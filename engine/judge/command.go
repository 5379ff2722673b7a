package judge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/ares-rlhf/ares/internal/jsonl"
)

// CommandConfig configures a judge run as a local command. The command reads
// JSONL on stdin, one {"id": N, "prompt": ..., "response": ...} per line, and
// writes JSONL on stdout, one {"id": N, "score": S} per input line, S in
// [0, 1], in any order. It is started once per batch, in a process group
// of its own: on a timeout or cancellation the whole group is killed, so
// what it started does not outlive it.
type CommandConfig struct {
	// Argv is the command and its arguments (no shell).
	Argv []string `toml:"argv"`
	// BatchSize caps items per invocation (default 256).
	BatchSize int `toml:"batch_size"`
	// TimeoutS bounds one invocation (default 25); Retries is the number of
	// extra attempts after a failure (default 1); DeadlineS bounds one
	// batch, all attempts together (default 25, or TimeoutS when that is
	// longer).
	TimeoutS  float64 `toml:"timeout_s"`
	Retries   int     `toml:"retries"`
	DeadlineS float64 `toml:"deadline_s"`
}

// Command is the external-command judge.
type Command struct{ cfg CommandConfig }

const (
	defaultCommandTimeout = 25 * time.Second
	defaultDeadline       = 25 * time.Second
	// maxOutputLine bounds one line of a command judge's stdout.
	maxOutputLine = 1 << 20
	// maxOutput bounds a command judge's stdout for one batch.
	maxOutput = 256 << 20
)

// NewCommand validates a config and builds the judge.
func NewCommand(cfg CommandConfig) (*Command, error) {
	if len(cfg.Argv) == 0 || cfg.Argv[0] == "" {
		return nil, badKey("judge.command.argv", "missing")
	}
	if cfg.BatchSize < 0 || cfg.BatchSize > 1<<20 {
		return nil, badKey("judge.command.batch_size", "%d is not in [0, %d] (0: the default, 256)", cfg.BatchSize, 1<<20)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 256
	}
	if cfg.Retries == 0 {
		cfg.Retries = 1
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"timeout_s", cfg.TimeoutS}, {"deadline_s", cfg.DeadlineS}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return nil, badKey("judge.command."+f.key, "%v is not a non-negative number of seconds", f.v)
		}
	}
	return &Command{cfg: cfg}, nil
}

func (c *Command) Name() string { return "command:" + c.cfg.Argv[0] }

func (c *Command) timeout() time.Duration { return seconds(c.cfg.TimeoutS, defaultCommandTimeout) }

// deadline is the bound on one batch, all attempts together.
func (c *Command) deadline() time.Duration {
	if c.cfg.DeadlineS > 0 {
		return seconds(c.cfg.DeadlineS, 0)
	}
	return max(defaultDeadline, c.timeout())
}

type cmdIn struct {
	ID       int    `json:"id"`
	Prompt   string `json:"prompt"`
	Response string `json:"response"`
}

type cmdOut struct {
	ID    *int     `json:"id"`
	Score *float64 `json:"score"`
}

func (c *Command) Score(ctx context.Context, items []Item) ([]float64, error) {
	out := make([]float64, 0, len(items))
	for lo := 0; lo < len(items); lo += c.cfg.BatchSize {
		hi := min(lo+c.cfg.BatchSize, len(items))
		s, err := c.batch(ctx, items[lo:hi], lo)
		if err != nil {
			return nil, fmt.Errorf("judge %s: items %d..%d: %w", c.Name(), lo, hi-1, err)
		}
		out = append(out, s...)
	}
	return out, nil
}

// batch runs one batch with retries, within the deadline.
func (c *Command) batch(parent context.Context, items []Item, lo int) ([]float64, error) {
	ctx, cancel := context.WithTimeout(parent, c.deadline())
	defer cancel()
	var err error
	for attempt := 0; attempt <= c.cfg.Retries; attempt++ {
		var s []float64
		if s, err = c.run(ctx, items, lo); err == nil {
			return s, nil
		}
		if parent.Err() != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no answer within the deadline of %v (judge.command.deadline_s) after %d attempt(s): %w", c.deadline(), attempt+1, err)
		}
	}
	return nil, err
}

func (c *Command) run(ctx context.Context, items []Item, lo int) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	var in bytes.Buffer
	enc := jsonl.NewWriter(&in)
	enc.SetEscapeHTML(true) // what the protocol always carried
	for i, it := range items {
		if err := enc.Write(cmdIn{i, it.Prompt, it.Response}); err != nil {
			return nil, fmt.Errorf("item %d: %w", lo+i, err)
		}
	}
	cmd := exec.CommandContext(ctx, c.cfg.Argv[0], c.cfg.Argv[1:]...)
	cmd.Stdin = &in
	stdout, stderr := &cappedBuffer{max: maxOutput}, &cappedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, killed whole on timeout or cancellation (and
	// after it exits, for anything it left behind).
	ownGroup(cmd)
	// Do not wait forever for grandchildren holding the pipes open.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
		killGroup(cmd)
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil // it exited 0; what it left behind held the pipes and is gone
	}
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(context.Cause(ctx), context.Canceled):
			return nil, fmt.Errorf("timed out after %v (judge.command.timeout_s; the command and its process group were killed)", c.timeout())
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w (the command and its process group were killed)", context.Cause(ctx))
		}
		return nil, fmt.Errorf("%v: %s", err, snippet(stderr.Bytes()))
	}
	if stdout.over {
		return nil, fmt.Errorf("stdout is over %d MiB", maxOutput>>20)
	}
	return parseScores(stdout.Bytes(), items, lo)
}

var idPrefix = regexp.MustCompile(`^\s*\{\s*"id"\s*:\s*(-?[0-9]+)`)

// parseScores reads the command's JSONL answer for items[0:], which are
// items lo.. of the call; errors name the line and the item.
func parseScores(out []byte, items []Item, lo int) ([]float64, error) {
	scores := make([]float64, len(items))
	seen := make([]int, len(items)) // the line that scored the item, 0: none
	for line := 1; len(out) > 0; line++ {
		raw := out
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			raw, out = out[:i], out[i+1:]
		} else {
			out = nil
		}
		if len(raw) > maxOutputLine {
			which := ""
			if m := idPrefix.FindSubmatch(raw[:200]); m != nil {
				if id, err := strconv.Atoi(string(m[1])); err == nil && id >= 0 && id < len(items) {
					which = fmt.Sprintf("item %d: ", lo+id)
				}
			}
			return nil, fmt.Errorf("%sstdout line %d is %d bytes, over the limit of %d: %s", which, line, len(raw), maxOutputLine, snippet(raw[:200]))
		}
		t := bytes.TrimSpace(raw)
		if len(t) == 0 {
			continue
		}
		var o cmdOut
		if err := json.Unmarshal(t, &o); err != nil {
			if nonNumber.Match(t) {
				return nil, fmt.Errorf("stdout line %d: the score is NaN or infinite (JSON has neither), want a number in [0, 1]: %s", line, snippet(t))
			}
			return nil, fmt.Errorf("stdout line %d: %v: %s", line, err, snippet(t))
		}
		if o.ID == nil || o.Score == nil {
			return nil, fmt.Errorf("stdout line %d: want {\"id\": N, \"score\": S}, got %s", line, snippet(t))
		}
		id, s := *o.ID, *o.Score
		if id < 0 || id >= len(items) {
			return nil, fmt.Errorf("stdout line %d: id %d out of range 0..%d", line, id, len(items)-1)
		}
		if seen[id] != 0 {
			return nil, fmt.Errorf("item %d: stdout line %d repeats id %d, already scored on line %d", lo+id, line, id, seen[id])
		}
		if s < 0 || s > 1 || math.IsNaN(s) {
			return nil, fmt.Errorf("item %d: stdout line %d: score %v is not in [0, 1]", lo+id, line, s)
		}
		scores[id], seen[id] = s, line
	}
	for i, l := range seen {
		if l == 0 {
			return nil, fmt.Errorf("no score for id %d (item %d)", i, lo+i)
		}
	}
	return scores, nil
}

var nonNumber = regexp.MustCompile(`"score"\s*:\s*-?(NaN|nan|Inf|inf|Infinity)`)

// cappedBuffer keeps the first max bytes written to it and drops the rest.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
