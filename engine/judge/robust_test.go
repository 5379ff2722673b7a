package judge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestHTTPItemDeadline: the default settings give up on a server that never
// answers within 25 s (they took 123 s: 4 attempts of 30 s plus the
// backoffs), and the deadline, whatever the retries, bounds an item.
func TestHTTPItemDeadline(t *testing.T) {
	h, err := NewHTTP(HTTPConfig{URL: "http://x", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if h.deadline() != 25*time.Second || h.timeout() != 10*time.Second || h.cfg.Retries != 3 {
		t.Fatalf("defaults: deadline %v, timeout %v, retries %d", h.deadline(), h.timeout(), h.cfg.Retries)
	}
	if h, _ := NewHTTP(HTTPConfig{URL: "http://x", Model: "m", TimeoutS: 40}); h.deadline() != 40*time.Second {
		t.Fatalf("a longer request timeout lengthens the default deadline: %v", h.deadline())
	}
	if _, err := NewHTTP(HTTPConfig{URL: "http://x", Model: "m", DeadlineS: -1}); err == nil || !strings.Contains(err.Error(), "judge.http.deadline_s") {
		t.Fatalf("negative deadline: %v", err)
	}

	release := make(chan struct{})
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	h = newTestHTTP(t, srv.URL, func(c *HTTPConfig) { c.TimeoutS, c.DeadlineS, c.Retries, c.BackoffS = 0.2, 0.5, 10, 0.01 })
	h.sleep = sleepCtx
	t0 := time.Now()
	_, err = h.Score(context.Background(), []Item{{"q", "r"}, {"q2", "r2"}})
	if took := time.Since(t0); took > 3*time.Second {
		t.Fatalf("took %v with a 0.5 s deadline", took)
	}
	if err == nil || !strings.Contains(err.Error(), "judge http:guard: item ") || !strings.Contains(err.Error(), "no answer within the item deadline of 500ms") ||
		!strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() > 8 {
		t.Fatalf("%d requests for 2 items in 0.5 s of 0.2 s attempts", n.Load())
	}
}

// script writes an executable shell script.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "judge.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return err != nil && !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pidFile string) {
	t.Helper()
	var pid int
	for i := 0; i < 100; i++ {
		b, _ := os.ReadFile(pidFile)
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
			pid = p
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("the grandchild never wrote its pid")
	}
	for i := 0; i < 150; i++ {
		if !alive(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("grandchild %d outlived the command judge", pid)
}

// TestCommandKillsItsProcessGroup: a command judge that starts a sleeping
// grandchild is killed with it on a timeout, on cancellation, and after a
// normal exit.
func TestCommandKillsItsProcessGroup(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	for _, c := range []struct{ name, tail string }{{"timeout", "sleep 30\n"}, {"cancel", "sleep 30\n"},
		{"exit", `cat >/dev/null; echo '{"id": 0, "score": 0.5}'` + "\n"}} {
		t.Run(c.name, func(t *testing.T) {
			pidFile := filepath.Join(dir, c.name+".pid")
			sh := script(t, "sleep 30 >/dev/null 2>&1 </dev/null &\necho $! > "+pidFile+"\n"+c.tail)
			j, err := NewCommand(CommandConfig{Argv: []string{sh}, TimeoutS: 0.7, Retries: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.name == "cancel" {
				j.cfg.TimeoutS = 60
				go func() { time.Sleep(400 * time.Millisecond); cancel() }()
			}
			t0 := time.Now()
			s, err := j.Score(ctx, []Item{{"p", "r"}})
			switch c.name {
			case "timeout":
				if err == nil || !strings.Contains(err.Error(), "timed out after 700ms") || !strings.Contains(err.Error(), "judge command:") {
					t.Fatalf("err = %v", err)
				}
			case "cancel":
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v", err)
				}
			case "exit":
				if err != nil || s[0] != 0.5 {
					t.Fatalf("s = %v, err = %v", s, err)
				}
			}
			if took := time.Since(t0); took > 5*time.Second {
				t.Fatalf("took %v", took)
			}
			waitGone(t, pidFile)
		})
	}
}

// TestCommandBadOutputIsNamed: an over-long line, a repeated id and a NaN
// score are errors naming the judge, the item and the line.
func TestCommandBadOutputIsNamed(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	items := []Item{{"a", "x"}, {"b", "y"}, {"c", "z"}}
	for _, c := range []struct{ name, body, want string }{
		{"long", `cat >/dev/null; echo '{"id": 0, "score": 0}'; printf '{"id": 1, "score": 0.5, "pad": "'; head -c 2000000 /dev/zero | tr '\0' x; echo '"}'`,
			"items 3..5: item 4: stdout line 2 is 2000034 bytes, over the limit of 1048576"},
		{"duplicate", `cat >/dev/null; echo '{"id": 0, "score": 0}'; echo '{"id": 2, "score": 1}'; echo '{"id": 0, "score": 1}'`,
			"items 3..5: item 3: stdout line 3 repeats id 0, already scored on line 1"},
		{"nan", `cat >/dev/null; echo '{"id": 0, "score": NaN}'`, "items 3..5: stdout line 1: the score is NaN or infinite"},
		{"missing", `cat >/dev/null; echo '{"id": 0, "score": 0}'`, "no score for id 1 (item 4)"},
	} {
		j, err := NewCommand(CommandConfig{Argv: []string{script(t, c.body)}, Retries: -1, BatchSize: 3})
		if err != nil {
			t.Fatal(err)
		}
		// As the second batch of a call: errors name the call's items.
		_, err = j.batchFrom(context.Background(), items, 3)
		if err == nil || !strings.Contains(err.Error(), "judge command:") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

// batchFrom scores items as the call's items lo.. (the batch at lo).
func (c *Command) batchFrom(ctx context.Context, items []Item, lo int) ([]float64, error) {
	s, err := c.batch(ctx, items, lo)
	if err != nil {
		return nil, fmt.Errorf("judge %s: items %d..%d: %w", c.Name(), lo, lo+len(items)-1, err)
	}
	return s, nil
}

// TestCommandBatchSizeChecked: a negative judge.command.batch_size was
// taken as the default without a word; it is refused naming the key, as
// one past any sane batch is.
func TestCommandBatchSizeChecked(t *testing.T) {
	for _, n := range []int{-5, 1 << 30} {
		if _, err := NewCommand(CommandConfig{Argv: []string{"judge"}, BatchSize: n}); err == nil || !strings.Contains(err.Error(), "judge.command.batch_size") {
			t.Errorf("batch_size %d: %v", n, err)
		}
	}
	if _, err := NewCommand(CommandConfig{Argv: []string{"judge"}}); err != nil {
		t.Fatalf("default batch size: %v", err)
	}
}
