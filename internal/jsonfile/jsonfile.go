// Package jsonfile reads whole JSON files with errors that give the file,
// line and column of the culprit.
package jsonfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Read decodes the JSON file path into v. A read error is returned as is
// (it names the file); a decode error is as Decode's.
func Read(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return Decode(path, data, v)
}

// Decode decodes data, the contents of the file name, into v. Its errors
// read "name:line:col: malformed JSON: ..." for a syntax error,
// "name:line:col: field holds value, want type" for a value of the wrong
// type, and "name: ..." otherwise. line:col is the last byte the decoder
// read: the offending character of a syntax error; the opening bracket, or
// the last character, of a value of the wrong type.
func Decode(name string, data []byte, v any) error {
	err := json.Unmarshal(data, v)
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		l, c := lineCol(data, se.Offset-1)
		return fmt.Errorf("%s:%d:%d: malformed JSON: %v", name, l, c, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "the top-level value"
		}
		l, c := lineCol(data, te.Offset-1)
		return fmt.Errorf("%s:%d:%d: %s holds %s, want %s", name, l, c, field, te.Value, te.Type)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// lineCol converts a byte offset in data to a 1-based line and column.
func lineCol(data []byte, off int64) (int, int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// Where returns "name:line:col" of the value in data found by following
// path (object keys as strings, array indices as ints), or just name if it
// is missing. It decodes data again, so it is meant for error messages.
func Where(name string, data []byte, path ...any) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	if off, ok := seek(dec, data, path); ok {
		l, c := lineCol(data, off)
		return fmt.Sprintf("%s:%d:%d", name, l, c)
	}
	return name
}

// seek advances dec to the value at path and returns its start offset.
func seek(dec *json.Decoder, data []byte, path []any) (int64, bool) {
	if len(path) == 0 {
		off := dec.InputOffset()
		for off < int64(len(data)) && bytes.IndexByte([]byte(" \t\r\n:,"), data[off]) >= 0 {
			off++
		}
		return off, true
	}
	tok, err := dec.Token()
	if err != nil {
		return 0, false
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return 0, false
	}
	switch d {
	case '{':
		key, _ := path[0].(string)
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return 0, false
			}
			if k == key {
				return seek(dec, data, path[1:])
			}
			if skip(dec) != nil {
				return 0, false
			}
		}
	case '[':
		idx, isInt := path[0].(int)
		for i := 0; dec.More(); i++ {
			if isInt && i == idx {
				return seek(dec, data, path[1:])
			}
			if skip(dec) != nil {
				return 0, false
			}
		}
	}
	return 0, false
}

// skip reads past one value.
func skip(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}
