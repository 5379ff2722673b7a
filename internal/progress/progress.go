// Package progress shows how far a long loop has come: on a terminal a bar
// (github.com/schollz/progressbar/v3) redrawn in place,
//
//	45% [##########..............] sft 54/120 loss 1.2345 0.12s/step, ETA 8s
//
// and anywhere else (CI logs, files, pipes) a plain line at every tenth of
// the way, at least every 30 seconds, and at the end, with no carriage
// returns:
//
//	sft 54/120 loss 1.2345 0.12s/step (45%), 6s elapsed, ETA 8s
//	sft 120/120 loss 0.9876 0.12s/step (100%) in 14s
//
// A bar drawn on a terminal leaves the cursor on its line until Finish.
// Anything else written meanwhile must first end that line: Fprintf (and
// Break) do so, so that messages and errors always start on a line of their
// own. All bars share one lock, so a message written with Fprintf from
// another goroutine (a signal handler) never lands inside a bar's line.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Options describe a bar.
type Options struct {
	Label string // what is being done ("sft", "red-team")
	Total int64  // the count at the end
	// Start is the count already done when the bar starts (a resumed run):
	// the speed and the time left count from it.
	Start int64
	// Unit names what is counted ("step", "rollouts"). The speed reads
	// "0.12s/step", or with PerSecond "37 rollouts/s".
	Unit      string
	PerSecond bool
	// LogEvery is the longest time between two plain lines (default 30 s).
	LogEvery time.Duration
}

// Bar is one progress display. A nil *Bar (from New with a nil writer)
// does nothing.
type Bar struct {
	w   io.Writer
	o   Options
	tty bool
	pb  *progressbar.ProgressBar
	t0  time.Time

	done   int64
	detail string
	ended  bool

	// terminal: the last redraw and whether the cursor is on the bar's line
	drawn time.Time
	open  bool

	// plain lines: the last one's time and tenth, and whether it showed the
	// current count
	logged     time.Time
	loggedTick int64
	current    bool
}

var (
	mu   sync.Mutex
	open = map[*Bar]struct{}{} // bars whose line is unfinished on a terminal
)

// redraw is the least time between two redraws of a terminal bar.
const redraw = 250 * time.Millisecond

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New starts a bar on w: a redrawn bar when w is a terminal, plain lines
// otherwise. It returns nil when w is nil.
func New(w io.Writer, o Options) *Bar {
	if w == nil {
		return nil
	}
	return newBar(w, o, IsTerminal(w))
}

func newBar(w io.Writer, o Options, tty bool) *Bar {
	if o.LogEvery <= 0 {
		o.LogEvery = 30 * time.Second
	}
	b := &Bar{w: w, o: o, tty: tty, t0: time.Now(), done: o.Start, logged: time.Now(), loggedTick: tick(o.Start, o.Total)}
	if tty {
		// The bar's count is the absolute one (a resumed run starts part
		// full); the speed and the time left are this package's, counted
		// from Start, as the bar's own would count the resumed part.
		b.pb = progressbar.NewOptions64(max(o.Total, 1),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(24),
			progressbar.OptionSetTheme(progressbar.Theme{Saucer: "#", SaucerPadding: ".", BarStart: "[", BarEnd: "]"}),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionShowDescriptionAtLineEnd(),
		)
	}
	mu.Lock()
	// A new bar starts on a line of its own.
	breakLocked()
	mu.Unlock()
	return b
}

// tick is the tenth of the way that done is in.
func tick(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return 10 * done / total
}

// Update sets the count to done, with detail (the caller's metrics, e.g.
// "loss 0.1234 reward 0.500") shown after the count.
func (b *Bar) Update(done int64, detail string) {
	if b == nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if b.ended {
		return
	}
	b.done, b.detail, b.current = done, detail, false
	now := time.Now()
	if b.tty {
		if done >= b.o.Total || now.Sub(b.drawn) >= redraw {
			b.draw(now)
		}
		return
	}
	if t := tick(done, b.o.Total); t > b.loggedTick || done >= b.o.Total || now.Sub(b.logged) >= b.o.LogEvery {
		b.logLine(now, t)
	}
}

// Finish ends the bar: on a terminal it draws the last state and ends the
// line; otherwise it writes the last plain line unless the last one
// written already showed it. Further updates do nothing.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if b.ended {
		return
	}
	now := time.Now()
	if b.tty {
		b.draw(now)
		b.endLine()
	} else if !b.current {
		b.logLine(now, tick(b.done, b.o.Total))
	}
	b.ended = true
}

func breakLocked() {
	for b := range open {
		b.endLine()
	}
}

// Fprintf is fmt.Fprintf on a line of its own: it ends any unfinished bar
// line first, and no bar is drawn while it writes.
func Fprintf(w io.Writer, format string, a ...any) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	breakLocked()
	return fmt.Fprintf(w, format, a...)
}

func (b *Bar) endLine() {
	if b.open {
		io.WriteString(b.w, "\n")
		b.open = false
	}
	delete(open, b)
}

// status is "label 45/100 detail 0.12s/step".
func (b *Bar) status() string {
	var s strings.Builder
	s.WriteString(b.o.Label)
	fmt.Fprintf(&s, " %d/%d", b.done, b.o.Total)
	if b.detail != "" {
		s.WriteString(" ")
		s.WriteString(b.detail)
	}
	if sp := b.speed(); sp != "" {
		s.WriteString(" ")
		s.WriteString(sp)
	}
	return s.String()
}

// times is ", 6s elapsed, ETA 8s" before the end and " in 14s" at the end
// (no elapsed time on a terminal bar, whose line is short of room).
func (b *Bar) times(now time.Time, elapsed bool) string {
	el := now.Sub(b.t0)
	n := b.done - b.o.Start
	switch {
	case b.done >= b.o.Total:
		return fmt.Sprintf(" in %s", round(el))
	case n <= 0:
		return ""
	}
	left := round(time.Duration(float64(el) / float64(n) * float64(b.o.Total-b.done)))
	if elapsed {
		return fmt.Sprintf(", %s elapsed, ETA %s", round(el), left)
	}
	return fmt.Sprintf(", ETA %s", left)
}

func (b *Bar) speed() string {
	n := b.done - b.o.Start
	el := time.Since(b.t0).Seconds()
	if n <= 0 || el <= 0 {
		return ""
	}
	if b.o.PerSecond {
		if b.o.Unit == "" {
			return fmt.Sprintf("%.0f/s", float64(n)/el)
		}
		return fmt.Sprintf("%.0f %s/s", float64(n)/el, b.o.Unit)
	}
	unit := b.o.Unit
	if unit == "" {
		unit = "it"
	}
	return fmt.Sprintf("%.2fs/%s", el/float64(n), unit)
}

// draw redraws the terminal bar.
func (b *Bar) draw(now time.Time) {
	desc := b.status() + b.times(now, false)
	if f, ok := b.w.(*os.File); ok {
		// The percentage and the bar take 32 columns: a line longer than
		// the terminal would wrap, and redrawing in place would then leave
		// a trail of lines.
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 40 && len(desc) > cols-33 {
			desc = desc[:cols-34] + "~"
		}
	}
	// Describe redraws; Set64 redraws again only when the percentage moves.
	b.pb.Describe(desc)
	b.pb.Set64(max(min(b.done, b.o.Total), 0))
	b.drawn = now
	b.open = true
	open[b] = struct{}{}
}

// logLine writes the plain line for the current count.
func (b *Bar) logLine(now time.Time, t int64) {
	line := b.status()
	if b.o.Total > 0 {
		line += fmt.Sprintf(" (%d%%)", 100*b.done/b.o.Total)
	}
	fmt.Fprintln(b.w, line+b.times(now, true))
	b.logged, b.loggedTick, b.current = now, t, true
}

// round shows a duration to the second (to the millisecond under one).
func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
