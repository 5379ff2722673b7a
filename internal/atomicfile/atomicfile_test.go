package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// onlyFile checks that dir holds exactly the file name, with contents want.
func onlyFile(t *testing.T, dir, name, want string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Name() != name {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only %s", names, name)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || string(b) != want {
		t.Fatalf("%s: %q %v, want %q", name, b, err, want)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	if err := WriteFile(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	onlyFile(t, dir, "a.json", "one")
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
	}
	if err := WriteFile(p, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	onlyFile(t, dir, "a.json", "two")
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteWith(p, 0o644, func(w io.Writer) error {
		io.WriteString(w, strings.Repeat("new", 1<<20)) // past the buffer: the temporary file has data
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	onlyFile(t, dir, "a.txt", "old")

	// A rename that fails (the target is a non-empty directory).
	d := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(d, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(d, []byte("new"), 0o644); err == nil {
		t.Fatal("replacing a directory succeeded")
	}
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	onlyFile(t, dir, "a.txt", "old")

	// A directory that does not exist.
	if err := WriteFile(filepath.Join(dir, "no", "a.txt"), nil, 0o644); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func TestCreateAbortCommit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.jsonl")
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "partial")
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("target visible before commit: %v", err)
	}
	if err := f.Abort(); err != nil {
		t.Fatal(err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Fatalf("abort left %v", es)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("write after abort succeeded")
	}

	f, err = Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	io.WriteString(f, "done")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Fatalf("abort after commit: %v", err)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("a second commit succeeded")
	}
	onlyFile(t, dir, "s.jsonl", "done")
	if !strings.HasSuffix(f.Name(), "s.jsonl") {
		t.Fatal(f.Name())
	}
}
