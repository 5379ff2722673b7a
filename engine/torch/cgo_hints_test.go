package torch

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestCgoHintsCoverTheABI checks that cgo_hints.go names every entry point of
// ares_torch.h and ares_fused.h as noescape and nocallback, so that a new op
// does not silently pay a heap allocation per call.
func TestCgoHintsCoverTheABI(t *testing.T) {
	hints, err := os.ReadFile("cgo_hints.go")
	if err != nil {
		t.Fatal(err)
	}
	comments := regexp.MustCompile(`(?s)/\*.*?\*/`)
	decl := regexp.MustCompile(`\b(ares_[a-z0-9_]+)\s*\(`)
	n := 0
	for _, h := range []string{"ares_torch.h", "ares_fused.h"} {
		src, err := os.ReadFile("../../kernels/include/" + h)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(comments.ReplaceAllString(string(src), ""), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "static inline") {
				continue // read from Go without a call
			}
			for _, m := range decl.FindAllStringSubmatch(line, -1) {
				n++
				for _, d := range []string{"noescape", "nocallback"} {
					if !strings.Contains(string(hints), "#cgo "+d+" "+m[1]+"\n") {
						t.Errorf("%s: %s is not marked #cgo %s in cgo_hints.go", h, m[1], d)
					}
				}
			}
		}
	}
	if n < 80 {
		t.Fatalf("found only %d entry points in the headers: the parser is broken", n)
	}
}
