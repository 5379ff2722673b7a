// Package cfgtest is for tests: it checks that a config loader refuses bad
// text with the error a user should see ("file:line: key: why").
package cfgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Case is the text of a config and the error refusing it must give. It is
// an alias of an unnamed struct so that tables may leave out the field
// names (go vet asks for them on an imported named struct).
type Case = struct{ Text, Want string }

// WantErrors checks that parse refuses each case's text with an error err
// for which match(err.Error(), Want) holds: strings.Contains,
// strings.HasPrefix, or Whole.
func WantErrors(t testing.TB, parse func(text string) error, match func(s, want string) bool, cases []Case) {
	t.Helper()
	for _, c := range cases {
		if err := parse(c.Text); err == nil || !match(err.Error(), c.Want) {
			t.Errorf("%q: error %v, want %q", c.Text, err, c.Want)
		}
	}
}

// WantLoadErrors writes each case's text to a file called name in a fresh
// directory and checks that load refuses it with an error containing Want.
func WantLoadErrors[T any](t testing.TB, name string, load func(path string) (T, error), cases []Case) {
	t.Helper()
	WantErrors(t, func(text string) error {
		_, err := load(Write(t, name, text))
		return err
	}, strings.Contains, cases)
}

// Whole is WantErrors's match for an error that must be want, whole.
func Whole(s, want string) bool { return s == want }

// Write writes text to a file called name in a fresh temporary directory
// and returns its path.
func Write(t testing.TB, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
