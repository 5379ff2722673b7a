// Command ares is the one CLI of the ARES engine: red-teaming and repair of
// coupled failures in RLHF systems. Each subcommand lives in its own cmd_*.go
// file and registers itself in init, so that packages stay independent.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/progress"
)

// Exit codes: 0 success, 1 the command failed (a recovered panic included),
// 2 bad usage, 128+n interrupted by signal n (130 SIGINT, 143 SIGTERM; see
// signals.go), or a command's own (exitCodeError).
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// command is one subcommand. run receives the arguments after the subcommand
// name; it returns a usageError for bad flags or arguments.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("ares: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

// usageError marks an error caused by how the command was called (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitCodeError lets a command choose its exit status (for example `ckpt diff`,
// which exits 1 when tensors differ) while still printing a message.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string { return e.err.Error() }
func (e exitCodeError) Unwrap() error { return e.err }

// newFlagSet returns a flag set that reports errors instead of exiting, so
// that every subcommand maps bad flags to exit status 2 the same way.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ares "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// parseFlags parses args into fs and converts flag errors to usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{"help requested"}
		}
		return usageError{err.Error()}
	}
	return nil
}

// parseNoArgs is parseFlags for a command that takes no positional
// arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil || fs.NArg() == 0 {
		return err
	}
	return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
}

// parseFlagsN is parseFlags for a command that takes exactly n positional
// arguments; msg is the usage error for any other number.
func parseFlagsN(fs *flag.FlagSet, args []string, n int, msg string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != n {
		return usageError{msg}
	}
	return nil
}

// isHelp reports whether arg asks for help instead of naming a subcommand.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// subcommands is the run function of a command made of subcommands (ares
// ckpt inspect, ...): it runs the one args[0] names with the arguments
// after it. With no arguments it prints usage and fails; with -h, --help
// or help it prints usage.
func subcommands(name, usage string, subs map[string]func(args []string) error) func(args []string) error {
	return func(args []string) error {
		if len(args) == 0 || isHelp(args[0]) {
			fmt.Fprintln(os.Stderr, usage)
			if len(args) == 0 {
				return usagef("missing subcommand")
			}
			return nil
		}
		if run, ok := subs[args[0]]; ok {
			return run(args[1:])
		}
		return usagef("unknown %s subcommand %q\n%s", name, args[0], usage)
	}
}

func printUsage() {
	fmt.Fprintln(os.Stderr, "usage: ares <command> [arguments]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'ares <command> -h' for a command's flags.")
}

// One OS thread drives libtorch for the whole command: the main goroutine
// stays on the main thread, so that libtorch's OpenMP team (one per calling
// thread), autograd's thread-local state and glibc's malloc arena are those
// of one thread, not of whichever thread the Go scheduler picked for each
// call. Commands do their libtorch work on the main goroutine; helpers on
// other goroutines (checkpoint compression, judges, tokenizing) do not call
// it. ARES_REPORT_THREADS=1 prints how many threads called it, at exit.
func init() { runtime.LockOSThread() }

func main() { os.Exit(runMain(os.Args[1:])) }

func runMain(args []string) int {
	if len(args) == 0 || isHelp(args[0]) {
		printUsage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "ares: unknown command %q\n", args[0])
		printUsage()
		return exitUsage
	}
	if os.Getenv("ARES_REPORT_THREADS") == "1" {
		defer func() {
			fmt.Fprintf(os.Stderr, "ares: libtorch was called from %d OS thread(s)\n", torch.CallingThreads())
		}()
	}
	in := newInterrupter()
	setActive(in)
	defer func() {
		setActive(nil)
		in.stop()
	}()
	if stopsCleanly[c.name] {
		in.start() // a signal while loading waits for the loop's check
	}
	err := callCommand(c, args[1:])
	// What follows goes through progress.Fprintf: a command that failed or
	// was interrupted may have left a progress bar's line open on the
	// terminal, and the message must start on a line of its own.
	if pe, ok := err.(*panicError); ok {
		progress.Fprintf(os.Stderr, "ares %s: internal error: %v\n", c.name, pe.value)
		if os.Getenv("ARES_DEBUG") == "1" {
			os.Stderr.Write(pe.stack)
		}
		return exitFail
	}
	if sig := in.signal(); sig != nil {
		// Interrupted: whatever the command returned, say what was saved
		// and exit as a shell reports that signal.
		reportInterrupt(os.Stderr, c.name, err, sig)
		return signalExitCode(sig)
	}
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		if ue.msg != "help requested" {
			progress.Fprintf(os.Stderr, "ares %s: %s\n", c.name, strings.TrimSpace(ue.msg))
		}
		return exitUsage
	}
	progress.Fprintf(os.Stderr, "ares %s: %v\n", c.name, err)
	var ce exitCodeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitFail
}
