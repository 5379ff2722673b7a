// Package config is the one strict TOML decoder of every config file (the
// run config of `ares sft`, `ares train-rm` and `ares repair`, the red-team
// config, the study config, the world's component library): unknown keys,
// type errors and renamed keys are errors that name the file, the line and
// the key ("r.toml:3: run.out_dir: renamed to run.out"). docs/config.md lists
// every table and key. Device and dtype names are parsed once, in
// internal/config/placement.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Error is a bad key of a config file; it names file, line and key.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
}

// At is an *Error for key of the TOML text data read from file, on the line
// that sets key (0 when the file does not set it); with data nil the file is
// read.
func At(file string, data []byte, key, format string, a ...any) *Error {
	if data == nil {
		data, _ = os.ReadFile(file)
	}
	return &Error{File: file, Line: KeyLine(data, key), Key: key, Msg: fmt.Sprintf(format, a...)}
}

// RelativeTo makes each non-empty relative path of paths relative to the
// folder of the config file at file, where the user who wrote it meant it.
func RelativeTo(file string, paths ...*string) {
	base := filepath.Dir(file)
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// DecodeStrict decodes TOML into v, rejecting unknown keys; every error
// names the file (name), line and key.
func DecodeStrict(data []byte, name string, v any) error {
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tomlError(name, err)
	}
	return nil
}

// Decode is DecodeStrict for a config of kind: a key that kind's table of
// renamed keys (Renamed) lists is refused first, with its new name, each
// renamed key once, in the order of the lines.
func Decode(data []byte, name string, kind Kind, v any) error {
	if err := checkRenamed(data, name, kind); err != nil {
		return err
	}
	return DecodeStrict(data, name, v)
}

// tomlError converts go-toml's errors into file:line: key: message form.
func tomlError(name string, err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		var errs []error
		for i := range sm.Errors {
			de := &sm.Errors[i]
			line, _ := de.Position()
			errs = append(errs, &Error{File: name, Line: line, Key: strings.Join(de.Key(), "."), Msg: "unknown key"})
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if key == "" {
			key = "(document)"
		}
		return &Error{File: name, Line: line, Key: key, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// checkRenamed refuses every key of kind's renamed-key table that data sets.
func checkRenamed(data []byte, name string, kind Kind) error {
	pos := Index(data)
	type hit struct {
		line int
		r    Rename
	}
	var hits []hit
	for _, r := range Renamed {
		if r.In&kind == 0 {
			continue
		}
		line := 0
		for k, l := range pos {
			if k == r.Old || strings.HasPrefix(k, r.Old+".") || strings.HasPrefix(k, r.Old+"[") {
				if line == 0 || l < line {
					line = l
				}
			}
		}
		if line > 0 {
			hits = append(hits, hit{line, r})
		}
	}
	// Map iteration found each key's first line; the order is the file's.
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].line < hits[j].line })
	var errs []error
	for _, h := range hits {
		errs = append(errs, &Error{File: name, Line: h.line, Key: h.r.Old, Msg: h.r.message()})
	}
	return errors.Join(errs...)
}
