package dist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// LaunchOptions configure Launch.
type LaunchOptions struct {
	NProc int // number of local workers (ranks 0..NProc-1)
	// MasterAddr and MasterPort locate rank 0's store; port 0 picks a free
	// one on the loopback interface (torchrun --standalone).
	MasterAddr string
	MasterPort int
	// Command is the worker's argv (argv[0] is looked up in PATH).
	Command []string
	// Env is the base environment of the workers (nil: this process's).
	Env []string
	// Stdout and Stderr receive the workers' output, every line prefixed
	// with "[rank N] " (nil: this process's).
	Stdout, Stderr io.Writer
	// Grace is how long workers get between SIGTERM and SIGKILL when the job
	// stops (default 5s).
	Grace time.Duration
	// Signals, if set, are forwarded to every worker (SIGINT, SIGTERM); the
	// launch then ends with an error naming the signal.
	Signals <-chan os.Signal
}

// WorkerError is the failure of one worker, the first one observed.
type WorkerError struct {
	Rank int
	Err  error // from exec: *exec.ExitError carries the exit status
}

func (e *WorkerError) Error() string {
	return fmt.Sprintf("dist: worker rank %d failed: %v", e.Rank, e.Err)
}

func (e *WorkerError) Unwrap() error { return e.Err }

// ExitCode is the worker's exit status (-1 when it was killed by a signal or
// did not start).
func (e *WorkerError) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// SignalError reports that the launch was interrupted by a forwarded signal.
type SignalError struct{ Signal os.Signal }

func (e *SignalError) Error() string { return "dist: launch interrupted by " + e.Signal.String() }

// FreePort returns a TCP port that was free on the loopback interface.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Launch starts NProc workers on this machine with torchrun's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// and ARES_NUM_THREADS / OMP_NUM_THREADS / OPENBLAS_NUM_THREADS = cores /
// NProc unless set: OpenMP and OpenBLAS size their pools from the environment
// when they are loaded, before the worker can set them), and
// waits for them. When a worker fails, the others are stopped (SIGTERM,
// then SIGKILL after Grace) and the error names the failing rank. Cancelling
// ctx stops them the same way.
func Launch(ctx context.Context, o LaunchOptions) error {
	if o.NProc < 1 {
		return fmt.Errorf("dist: --nproc must be >= 1, got %d", o.NProc)
	}
	if len(o.Command) == 0 {
		return errors.New("dist: no worker command")
	}
	if o.MasterAddr == "" {
		o.MasterAddr = "127.0.0.1"
	}
	if o.MasterPort == 0 {
		p, err := FreePort()
		if err != nil {
			return fmt.Errorf("dist: no free port for the store: %w", err)
		}
		o.MasterPort = p
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Second
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	base := o.Env
	if base == nil {
		base = os.Environ()
	}
	threads := max(1, runtime.NumCPU()/o.NProc)
	var outMu sync.Mutex
	type result struct {
		rank int
		err  error
	}
	results := make(chan result, o.NProc)
	cmds := make([]*exec.Cmd, o.NProc)
	var writers []*prefixWriter
	for r := 0; r < o.NProc; r++ {
		env := Env{Rank: r, WorldSize: o.NProc, LocalRank: r, LocalWorldSize: o.NProc, MasterAddr: o.MasterAddr, MasterPort: o.MasterPort}
		vars := append(append([]string(nil), base...), env.Vars()...)
		if !hasVar(base, "ARES_NUM_THREADS") {
			vars = append(vars, "ARES_NUM_THREADS="+strconv.Itoa(threads))
		}
		if !hasVar(base, "OMP_NUM_THREADS") {
			vars = append(vars, "OMP_NUM_THREADS="+strconv.Itoa(threads))
		}
		if !hasVar(base, "OPENBLAS_NUM_THREADS") {
			vars = append(vars, "OPENBLAS_NUM_THREADS="+strconv.Itoa(threads))
		}
		cmd := exec.Command(o.Command[0], o.Command[1:]...)
		cmd.Env = vars
		pre := fmt.Sprintf("[rank %d] ", r)
		so := &prefixWriter{w: o.Stdout, mu: &outMu, prefix: pre}
		se := &prefixWriter{w: o.Stderr, mu: &outMu, prefix: pre}
		writers = append(writers, so, se)
		cmd.Stdout, cmd.Stderr = so, se
		// Its own process group: a worker and its children are signalled together.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = o.Grace
		if err := cmd.Start(); err != nil {
			for _, c := range cmds[:r] {
				signalGroup(c, syscall.SIGKILL)
				_ = c.Wait()
			}
			return &WorkerError{Rank: r, Err: err}
		}
		cmds[r] = cmd
		go func(r int, cmd *exec.Cmd) { results <- result{r, cmd.Wait()} }(r, cmd)
	}
	defer func() {
		for _, w := range writers {
			w.Flush()
		}
	}()

	running := o.NProc
	var first error
	var killTimer <-chan time.Time
	stopping := false
	exited := make([]bool, o.NProc)
	stop := func(sig syscall.Signal) {
		for r, c := range cmds {
			if !exited[r] {
				signalGroup(c, sig)
			}
		}
	}
	beginStop := func() {
		if stopping {
			return
		}
		stopping = true
		stop(syscall.SIGTERM)
		killTimer = time.After(o.Grace)
	}
	done := ctx.Done()
	for running > 0 {
		select {
		case res := <-results:
			running--
			exited[res.rank] = true
			if res.err != nil && first == nil && !stopping {
				first = &WorkerError{Rank: res.rank, Err: res.err}
				beginStop()
			}
		case sig := <-o.Signals:
			if first == nil {
				first = &SignalError{Signal: sig}
			}
			if s, ok := sig.(syscall.Signal); ok && !stopping {
				stop(s)
				stopping = true
				killTimer = time.After(o.Grace)
			} else {
				beginStop()
			}
		case <-done:
			done = nil
			if first == nil {
				first = ctx.Err()
			}
			beginStop()
		case <-killTimer:
			killTimer = nil
			stop(syscall.SIGKILL)
		}
	}
	return first
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if len(kv) > len(name) && kv[:len(name)] == name && kv[len(name)] == '=' {
			return true
		}
	}
	return false
}

func signalGroup(c *exec.Cmd, sig syscall.Signal) {
	if c == nil || c.Process == nil {
		return
	}
	if err := syscall.Kill(-c.Process.Pid, sig); err != nil {
		_ = c.Process.Signal(sig)
	}
}

// prefixWriter writes complete lines with a prefix; a partial last line is
// kept until the next newline or Flush.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	var out bytes.Buffer
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		out.WriteString(p.prefix)
		out.Write(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
	if out.Len() > 0 {
		if _, err := p.w.Write(out.Bytes()); err != nil {
			return len(b), nil // the launcher's output is gone; keep the worker running
		}
	}
	return len(b), nil
}

// Flush writes a pending partial line.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}
