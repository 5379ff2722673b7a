package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainLines(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, Options{Label: "sft", Total: 100, Unit: "step"}, false)
	for i := int64(1); i <= 100; i++ {
		b.Update(i, "loss 0.5000")
	}
	b.Finish()
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Fatalf("carriage return in plain output:\n%q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 10 { // 10%, 20%, ..., 100%: the end once
		t.Fatalf("%d lines, want 10:\n%s", len(lines), out)
	}
	if !strings.HasPrefix(lines[0], "sft 10/100 loss 0.5000 ") || !strings.Contains(lines[0], "s/step (10%), ") || !strings.Contains(lines[0], " ETA ") {
		t.Fatalf("first line %q", lines[0])
	}
	if !strings.HasPrefix(lines[9], "sft 100/100 loss 0.5000 ") || !strings.Contains(lines[9], "(100%) in ") {
		t.Fatalf("last line %q", lines[9])
	}
}

func TestPlainLinesTimeAndStop(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, Options{Label: "red-team", Total: 1000, Start: 500, Unit: "rollouts", PerSecond: true, LogEvery: time.Nanosecond}, false)
	b.Update(501, "A 0 B 1 C 2")
	time.Sleep(time.Millisecond)
	b.Update(502, "A 0 B 1 C 3")
	b.Finish() // interrupted: the last state was written already
	b.Update(503, "")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "red-team 502/1000 A 0 B 1 C 3 ") || !strings.Contains(lines[1], " rollouts/s (50%)") {
		t.Fatalf("lines %q", lines)
	}

	// Finish writes the last state when no line showed it.
	buf.Reset()
	b = newBar(&buf, Options{Label: "rm", Total: 100}, false)
	b.Update(3, "loss 1")
	b.Finish()
	if out := buf.String(); !strings.HasPrefix(out, "rm 3/100 loss 1 ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("%q", out)
	}
}

func TestTerminalBar(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, Options{Label: "sft", Total: 4, Start: 1, Unit: "step"}, true)
	b.Update(2, "loss 0.2500")
	if out := buf.String(); !strings.Contains(out, "\r") || !strings.Contains(out, "[############............]  sft 2/4 loss 0.2500 ") || strings.HasSuffix(out, "\n") {
		t.Fatalf("%q", out)
	}
	// A message ends the bar's line first; the bar goes on below it.
	Fprintf(&buf, "warning\n")
	if out := buf.String(); !strings.HasSuffix(out, "\nwarning\n") {
		t.Fatalf("%q", out)
	}
	Fprintf(&buf, "again\n")
	if out := buf.String(); !strings.HasSuffix(out, "\nwarning\nagain\n") {
		t.Fatalf("a second message: %q", out)
	}
	b.Update(4, "loss 0.1250")
	b.Finish()
	out := buf.String()
	if !strings.Contains(out, "100% [########################]  sft 4/4 loss 0.1250 ") || !strings.HasSuffix(out, "\n") || strings.Contains(out, "\n\n") {
		t.Fatalf("%q", out)
	}
	n := len(out)
	Fprintf(&buf, "done\n")
	if buf.String()[n:] != "done\n" {
		t.Fatalf("after Finish: %q", buf.String()[n:])
	}
}

func TestNil(t *testing.T) {
	b := New(nil, Options{Label: "x", Total: 1})
	b.Update(1, "")
	b.Finish()
}
