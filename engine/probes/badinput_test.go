package probes

import (
	"strings"
	"testing"
)

// TestImportUnclosedQuote: a parse error is an error naming the line, not a
// panic from reading the failed record's field position.
func TestImportUnclosedQuote(t *testing.T) {
	_, err := Import(strings.NewReader("goal,target\n\"how to,x\n"), ImportOptions{Format: "advbench", Name: "q.csv"})
	if err == nil || !strings.Contains(err.Error(), "q.csv:2:") {
		t.Fatalf("unclosed quote: %v", err)
	}
}
