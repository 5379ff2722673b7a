// Package child runs a benchmark's measurements in fresh child processes
// (the benchmark's own binary re-executed with its -child flag), so that each
// measurement's peak memory is its own, and reads the memory counters of the
// running process.
//
// A child prints its result with Report; the parent gets it, with its wall
// time and peak resident set, from Run.
package child

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const prefix = "RESULT "

// Report prints v, JSON-encoded, as the child's result line on stdout.
func Report(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(prefix + string(b))
	return err
}

// Serve is a child's whole work: it decodes its JSON config arg (the -child
// flag's value, as the parent passed it to Run) into a C, runs run on it and
// reports the result.
func Serve[C, R any](arg string, run func(C) (R, error)) error {
	var c C
	if err := json.Unmarshal([]byte(arg), &c); err != nil {
		return fmt.Errorf("child config: %w", err)
	}
	r, err := run(c)
	if err != nil {
		return err
	}
	return Report(r)
}

// Stats are the parent's view of a finished child.
type Stats struct {
	Wall   time.Duration // set-up included
	MaxRSS int64         // the child's ru_maxrss (getrusage), bytes
}

// Run runs this binary with args, its stderr passed through, and decodes the
// last result line (see Report) of its stdout into out.
func Run(out any, args ...string) (Stats, error) {
	self, err := os.Executable()
	if err != nil {
		return Stats{}, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	stdout, err := cmd.Output()
	st := Stats{Wall: time.Since(t0)}
	if err != nil {
		return st, fmt.Errorf("child %v: %w", args, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		st.MaxRSS = ru.Maxrss << 10 // kilobytes on Linux
	}
	lines := strings.Split(string(stdout), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if res, ok := strings.CutPrefix(lines[i], prefix); ok {
			if err := json.Unmarshal([]byte(res), out); err != nil {
				return st, fmt.Errorf("child %v: result: %w", args, err)
			}
			return st, nil
		}
	}
	return st, fmt.Errorf("child %v: no result line", args)
}

// RunConfig is Run for a child that Serve answers: it runs this binary with
// -child and cfg, JSON-encoded.
func RunConfig(out, cfg any) (Stats, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return Stats{}, err
	}
	return Run(out, "-child", string(b))
}

// Status is a kB field of /proc/self/status ("VmRSS", "VmHWM") in bytes, or
// -1 when it cannot be read.
func Status(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return v << 10
				}
			}
		}
	}
	return -1
}

// ResetPeak resets the peak resident set (VmHWM) to the current one
// (writing 5 to /proc/self/clear_refs, Linux 4.0+).
func ResetPeak() error { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// Python is the interpreter Debian's python3-torch installs into (not the
// python3 that may come first on PATH).
const Python = "/usr/bin/python3"

// Peer runs the PyTorch peer script (a path) with args under Python, its
// stderr passed through and extra added to the environment, and decodes its
// stdout, one JSON value, into out.
func Peer(out any, script string, extra []string, args ...string) error {
	cmd := exec.Command(Python, append([]string{script}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), extra...)
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("PyTorch peer %s: %w (install python3-torch)", script, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("PyTorch peer %s: output: %w", script, err)
	}
	return nil
}
