package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/ares-rlhf/ares/engine/train"
	"github.com/ares-rlhf/ares/internal/progress"
)

// Interruption. A command that can stop cleanly asks for commandContext();
// from then on the first SIGINT or SIGTERM cancels that context (its cause
// is a *signalError naming the signal) instead of killing the process: the
// training loop finishes the step in progress, checkpoints it and returns,
// and runMain prints what was saved and how to resume, then exits 128+n
// (130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed by
// that signal. A second signal exits at once with the same kind of code.
//
// The handler is installed on first use, not for every command: a command
// that never asks for the context (and never checks it) keeps the default
// behaviour, so Ctrl-C still stops it, and `ares launch` keeps its own
// handling (it forwards signals to its workers). The commands that stop
// cleanly (stopsCleanly) install it before they start: a signal that comes
// while they load models and data is then held until their loop checks the
// context (which stops it before its first step, with what can be resumed
// saved and nothing half-written), not the default death part-way through.

// interrupter is the signal handling of one runMain call.
type interrupter struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelCauseFunc
	ch      chan os.Signal
	quit    chan struct{}
	started bool
	sig     os.Signal // the first signal received (nil: none)

	exit   func(int) // exitNow
	stderr io.Writer
}

// exitNow ends the process on a second signal (tests replace it).
var exitNow = os.Exit

func newInterrupter() *interrupter {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &interrupter{ctx: ctx, cancel: cancel, ch: make(chan os.Signal, 2), quit: make(chan struct{}), exit: exitNow, stderr: os.Stderr}
}

var (
	activeMu sync.Mutex
	active   *interrupter // the running command's, nil outside runMain
)

func setActive(in *interrupter) {
	activeMu.Lock()
	active = in
	activeMu.Unlock()
}

// commandContext is the process-wide context of the running command: it is
// cancelled by the first SIGINT or SIGTERM once a command has asked for it.
// Outside runMain (a test calling a command's function) it is
// context.Background().
func commandContext() context.Context {
	activeMu.Lock()
	in := active
	activeMu.Unlock()
	if in == nil {
		return context.Background()
	}
	return in.start()
}

// start installs the handler (once) and returns the context.
func (in *interrupter) start() context.Context {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.started {
		in.started = true
		signal.Notify(in.ch, syscall.SIGINT, syscall.SIGTERM)
		go in.loop()
	}
	return in.ctx
}

func (in *interrupter) loop() {
	for {
		select {
		case s := <-in.ch:
			in.mu.Lock()
			first := in.sig == nil
			if first {
				in.sig = s
			}
			in.mu.Unlock()
			// On a line of its own: after a progress bar's line, and on a
			// terminal after the "^C" it echoed.
			nl := ""
			if progress.IsTerminal(in.stderr) {
				nl = "\n"
			}
			if first {
				progress.Fprintf(in.stderr, nl+"ares: %s: stopping after the current step, saving what can be resumed (send it again to exit at once)\n", signalName(s))
				in.cancel(&signalError{sig: s})
				continue
			}
			progress.Fprintf(in.stderr, nl+"ares: second signal (%s): exiting at once; the newest complete checkpoint is kept\n", signalName(s))
			in.exit(signalExitCode(s))
			return
		case <-in.quit:
			return
		}
	}
}

// stop removes the handler (the default behaviour returns) and releases the
// context.
func (in *interrupter) stop() {
	in.mu.Lock()
	started := in.started
	in.mu.Unlock()
	if started {
		signal.Stop(in.ch)
		close(in.quit)
	}
	in.cancel(context.Canceled)
}

// signal is the first signal received, or nil.
func (in *interrupter) signal() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// signalError is the cause of a context cancelled by a signal. It is a
// context.Canceled, so errors.Is(err, context.Canceled) holds for it too.
type signalError struct{ sig os.Signal }

func (e *signalError) Error() string        { return "interrupted by " + signalName(e.sig) }
func (e *signalError) Is(target error) bool { return target == context.Canceled }

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// signalExitCode is a shell's status for a process killed by s: 128+n.
func signalExitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitFail
}

// stopsCleanly are the commands whose every path checks the command
// context; runMain installs their handler before they start.
var stopsCleanly = map[string]bool{"sft": true, "train-rm": true, "repair": true, "redteam": true, "demo": true, "bench": true}

// resumable are the commands whose work --resume continues.
var resumable = map[string]bool{"sft": true, "train-rm": true, "repair": true, "redteam": true}

// reportInterrupt prints, on its own line, how a command interrupted by sig
// ended: the stage and step saved, the checkpoint directory and how to
// resume (from err, the command's result).
func reportInterrupt(w io.Writer, name string, err error, sig os.Signal) {
	var ie *train.Interrupted
	switch {
	case err != nil && !resumable[name]:
		// demo, bench study: their runs are not checkpointed.
		at := ""
		if errors.As(err, &ie) {
			at = fmt.Sprintf(" during %s (step %d of %d)", ie.Label, ie.Step, ie.Steps)
		}
		progress.Fprintf(w, "ares %s: interrupted by %s%s; this command does not resume: run it again\n", name, signalName(sig), at)
	case err == nil:
		progress.Fprintf(w, "ares %s: %s received; the command had finished its work\n", name, signalName(sig))
	case errors.As(err, &ie):
		stage := ie.Label
		if stage == "" {
			stage = name
		}
		saved := fmt.Sprintf("checkpoint of step %d in %s", ie.Step, ie.Dir)
		switch {
		case ie.SaveErr != nil:
			saved = fmt.Sprintf("its checkpoint could not be saved (%v); the newest complete checkpoint is kept", ie.SaveErr)
		case ie.Dir == "":
			saved = "this process wrote no checkpoint (in a data-parallel job rank 0 writes it)"
		}
		progress.Fprintf(w, "ares %s: interrupted by %s: stage %s stopped after step %d of %d; %s; run the same command with --resume to continue\n",
			name, signalName(sig), stage, ie.Step, ie.Steps, saved)
	case errors.Is(err, context.Canceled):
		progress.Fprintf(w, "ares %s: interrupted by %s outside a training loop (%v); what completed is saved; run the same command with --resume to continue\n", name, signalName(sig), err)
	default:
		progress.Fprintf(w, "ares %s: %v (after %s)\n", name, err, signalName(sig))
	}
}

// panicError is a command's panic, recovered by runMain.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("internal error: %v", e.value) }

// callCommand runs c, turning a panic in its goroutine into a *panicError
// (the last resort: commands return errors).
func callCommand(c command, args []string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return c.run(args)
}
