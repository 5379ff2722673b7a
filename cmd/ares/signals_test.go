package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ares-rlhf/ares/checkpoints"
	"github.com/ares-rlhf/ares/engine/train"
)

// captureStderr runs f with os.Stderr going to a pipe and returns what was
// written.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	defer func() {
		os.Stderr = old
	}()
	f()
	w.Close()
	return string(<-got)
}

// withCommand registers a command for one test.
func withCommand(t *testing.T, name string, run func(args []string) error) {
	t.Helper()
	register(command{name: name, summary: "test", run: run})
	t.Cleanup(func() { delete(commands, name) })
}

// TestPanicExitsOne: a panicking command exits 1 with "ares <cmd>: internal
// error: <value>", not 2 with a goroutine trace; the stack only with
// ARES_DEBUG=1.
func TestPanicExitsOne(t *testing.T) {
	withCommand(t, "test-panic", func(args []string) error {
		var m map[string]int
		m["x"] = 1 // a runtime panic: assignment to a nil map
		return nil
	})
	for _, debug := range []string{"", "1"} {
		t.Setenv("ARES_DEBUG", debug)
		var code int
		out := captureStderr(t, func() { code = runMain([]string{"test-panic"}) })
		if code != exitFail {
			t.Fatalf("ARES_DEBUG=%q: exit %d, want 1", debug, code)
		}
		if !strings.HasPrefix(out, "ares test-panic: internal error: assignment to entry in nil map\n") {
			t.Fatalf("ARES_DEBUG=%q: stderr %q", debug, out)
		}
		if hasStack := strings.Contains(out, "goroutine ") && strings.Contains(out, "signals_test.go"); hasStack != (debug == "1") {
			t.Fatalf("ARES_DEBUG=%q: stack shown %v:\n%s", debug, hasStack, out)
		}
	}
	t.Setenv("ARES_DEBUG", "")
	withCommand(t, "test-panic-value", func(args []string) error { panic("boom") })
	var code int
	out := captureStderr(t, func() { code = runMain([]string{"test-panic-value"}) })
	if code != exitFail || out != "ares test-panic-value: internal error: boom\n" {
		t.Fatalf("exit %d, stderr %q", code, out)
	}
}

// TestSignalExitCodes: a command that takes the command context and is sent
// SIGTERM (or SIGINT) sees the context cancelled with the signal as cause;
// runMain reports the checkpoint on its own line and exits 143 (130). A
// second signal exits at once with the same code. Bad usage stays 2.
func TestSignalExitCodes(t *testing.T) {
	resumable["test-interrupt"] = true // it stands for a training command
	defer delete(resumable, "test-interrupt")
	withCommand(t, "test-interrupt", func(args []string) error {
		ctx := commandContext()
		sig := syscall.SIGTERM
		if args[0] == "int" {
			sig = syscall.SIGINT
		}
		syscall.Kill(os.Getpid(), sig)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			return errors.New("the context was not cancelled")
		}
		if !errors.Is(context.Cause(ctx), context.Canceled) || !strings.Contains(context.Cause(ctx).Error(), "interrupted by SIG") {
			return errors.New("cause is not the signal")
		}
		return &train.Interrupted{Label: "rm", Step: 7, Steps: 20, Dir: "/out/checkpoints/rm/step-7", Cause: context.Cause(ctx)}
	})
	for _, c := range []struct {
		arg  string
		code int
		name string
	}{{"term", 143, "SIGTERM"}, {"int", 130, "SIGINT"}} {
		var code int
		out := captureStderr(t, func() { code = runMain([]string{"test-interrupt", c.arg}) })
		want := "\nares test-interrupt: interrupted by " + c.name + ": stage rm stopped after step 7 of 20; checkpoint of step 7 in /out/checkpoints/rm/step-7; run the same command with --resume to continue\n"
		if code != c.code || !strings.HasSuffix(out, want) {
			t.Fatalf("%s: exit %d, stderr %q", c.name, code, out)
		}
	}

	// A second signal: exitNow with the same code, at once.
	exited := make(chan int, 1)
	old := exitNow
	exitNow = func(code int) { exited <- code }
	defer func() { exitNow = old }()
	withCommand(t, "test-twice", func(args []string) error {
		ctx := commandContext()
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-ctx.Done()
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		select {
		case code := <-exited:
			exited <- code
		case <-time.After(10 * time.Second):
		}
		return ctx.Err()
	})
	var code int
	out := captureStderr(t, func() { code = runMain([]string{"test-twice"}) })
	select {
	case c := <-exited:
		if c != 130 || code != 130 || !strings.Contains(out, "second signal (SIGINT): exiting at once") {
			t.Fatalf("second signal: exit %d then %d, stderr %q", c, code, out)
		}
	default:
		t.Fatalf("a second signal did not exit: stderr %q", out)
	}

	// A command that never asks for the context installs no handler; a
	// usage error is still 2.
	if code := runMain([]string{"sft", "--no-such-flag"}); code != exitUsage {
		t.Fatalf("bad usage: exit %d", code)
	}
}

// TestSFTInterruptAndResume: `ares sft` sent SIGINT mid-run stops after the
// current step with a checkpoint of that step, says so on its own line and
// exits 130; a resume with a changed config is refused naming the key; the
// real resume ends bit-identical to an uninterrupted run, with every step in
// the metrics file once.
func TestSFTInterruptAndResume(t *testing.T) {
	const steps = 120
	body := strings.Replace(strings.Replace(sftConfig, "steps = 8", "steps = 120", 1), "checkpoint_every = 2", "checkpoint_every = 1000", 1)
	cfg := writeConfig(t, body)
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	if code := runMain([]string{"sft", "--config", cfg, "--out", a}); code != 0 {
		t.Fatalf("uninterrupted run: exit %d", code)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ARES_TEST_RUN_MAIN="+strings.Join([]string{"sft", "--config", cfg, "--out", b}, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	metrics := filepath.Join(b, "metrics-sft.jsonl")
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m, err := os.ReadFile(metrics); err == nil && bytes.Count(m, []byte("\n")) >= 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, want exit 130; stderr:\n%s", err, stderr.String())
	}
	mgr, err := checkpoints.NewManager(filepath.Join(b, "checkpoints", "sft"), &checkpoints.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es, err := mgr.List()
	mgr.Close()
	if err != nil || len(es) != 1 || es[0].Step < 3 || es[0].Step >= steps {
		t.Fatalf("checkpoints after SIGINT: %v %v", es, err)
	}
	step := es[0].Step
	want := "\nares sft: interrupted by SIGINT: stage sft stopped after step " + strconv.FormatInt(step, 10) + " of 120; checkpoint of step " + strconv.FormatInt(step, 10) + " in " +
		filepath.Join(b, "checkpoints", "sft", checkpoints.CheckpointName(step)) + "; run the same command with --resume to continue\n"
	if !strings.HasSuffix(stderr.String(), want) {
		t.Fatalf("stderr does not end with %q:\n%s", want, stderr.String())
	}

	changed := writeConfig(t, strings.Replace(body, "lr = 3e-3", "lr = 2e-3", 1))
	var code int
	out := captureStderr(t, func() { code = runMain([]string{"sft", "--config", changed, "--out", b, "--resume"}) })
	if code != exitFail || !strings.Contains(out, "sft.lr (0.003 in the checkpoint, 0.002 now)") || !strings.Contains(out, "--force") {
		t.Fatalf("changed config: exit %d, stderr %q", code, out)
	}
	if code := runMain([]string{"sft", "--config", cfg, "--out", b, "--resume"}); code != 0 {
		t.Fatalf("resume: exit %d", code)
	}
	if code := runMain([]string{"ckpt", "diff", filepath.Join(a, "checkpoints", "sft", checkpoints.CheckpointName(steps)), filepath.Join(b, "checkpoints", "sft", checkpoints.CheckpointName(steps))}); code != 0 {
		t.Fatal("interrupted and resumed run differs from the uninterrupted one")
	}
	m, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(m), "\n"), "\n")
	for i, l := range lines {
		var rec struct{ Step int64 }
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Step != int64(i) {
			t.Fatalf("metrics line %d: %q (%v)", i+1, l, err)
		}
	}
	if len(lines) != steps {
		t.Fatalf("%d metrics lines, want %d", len(lines), steps)
	}
}

// TestOneThreadDrivesLibtorch: a whole sft run (data, training steps,
// checkpoints, the saved model) calls libtorch from the main thread alone,
// so there is one OpenMP team and one malloc arena per run.
func TestOneThreadDrivesLibtorch(t *testing.T) {
	cfg := writeConfig(t, sftConfig)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ARES_REPORT_THREADS=1", "ARES_NUM_THREADS=2",
		"ARES_TEST_RUN_MAIN="+strings.Join([]string{"sft", "--config", cfg, "--out", filepath.Join(t.TempDir(), "o")}, "\x1f"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sft: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "libtorch was called from 1 OS thread(s)") {
		t.Fatalf("want every libtorch call on one OS thread; output:\n%s", out)
	}
}

// TestSignalBeforeLoopIsHeld: a SIGINT that comes while a training command
// still loads its models and data (before it asks for the command context)
// killed the process at once; the commands that stop cleanly have the
// handler from their start, so the signal cancels the context their loop
// then checks, and runMain exits 130 with its message.
func TestSignalBeforeLoopIsHeld(t *testing.T) {
	for _, n := range []string{"sft", "train-rm", "repair", "redteam", "demo", "bench"} {
		if !stopsCleanly[n] {
			t.Errorf("%s does not install its handler at start", n)
		}
	}
	// The test binary's own handler: without the fix the signal would
	// otherwise kill it rather than fail the test.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGINT)
	defer signal.Stop(guard)
	stopsCleanly["test-early"], resumable["test-early"] = true, true
	defer func() { delete(stopsCleanly, "test-early"); delete(resumable, "test-early") }()
	withCommand(t, "test-early", func(args []string) error {
		syscall.Kill(os.Getpid(), syscall.SIGINT) // while "loading"
		<-guard
		ctx := commandContext() // the loop starts
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			return errors.New("the signal that came before the loop was lost")
		}
		return &train.Interrupted{Label: "sft", Step: 0, Steps: 8, Dir: "/out/checkpoints/sft/step-0", Cause: context.Cause(ctx)}
	})
	var code int
	out := captureStderr(t, func() { code = runMain([]string{"test-early"}) })
	if code != 130 || !strings.Contains(out, "ares test-early: interrupted by SIGINT: stage sft stopped after step 0 of 8") {
		t.Fatalf("exit %d, stderr %q", code, out)
	}
}
