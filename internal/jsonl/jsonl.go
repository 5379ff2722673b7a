// Package jsonl reads JSON Lines: one JSON value per line, blank lines
// skipped, every error naming the source and the line.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// MaxLine is the longest line a reader accepts.
const MaxLine = 64 << 20

// Read decodes each non-blank line of r into a T and returns the values
// with their 1-based line numbers. strict rejects fields T does not have;
// check (nil: none) validates each value. Errors read "name:line: ...".
func Read[T any](r io.Reader, name string, strict bool, check func(*T) error) ([]T, []int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	var vals []T
	var lines []int
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		// encoding/json would turn invalid UTF-8 into U+FFFD without a word.
		if !utf8.Valid(b) {
			return nil, nil, fmt.Errorf("%s:%d: invalid UTF-8 at byte %d of the line", name, line, invalidAt(b))
		}
		var v T
		dec := json.NewDecoder(bytes.NewReader(b))
		if strict {
			dec.DisallowUnknownFields()
		}
		err := dec.Decode(&v)
		if err == nil && dec.More() {
			err = fmt.Errorf("text after the JSON value")
		}
		if err == nil && check != nil {
			err = check(&v)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		vals = append(vals, v)
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return vals, lines, nil
}

// ReadFile is Read on the file at path.
func ReadFile[T any](path string, strict bool, check func(*T) error) ([]T, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return Read(f, path, strict, check)
}

// invalidAt is the offset of the first byte of b that is not valid UTF-8.
func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}
