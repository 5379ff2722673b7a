package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"
)

// Writer writes JSON Lines: each record compact on a line of its own. Every
// record reaches the underlying writer in one Write call, whole or not at
// all (a record that fails to encode writes nothing), so that a file
// appended to by one Writer never holds half a record from an encoding
// error; for many small records wrap the destination in a bufio.Writer and
// flush it yourself.
//
// By default '<', '>' and '&' are written as themselves (JSON Lines is
// data, not HTML); SetEscapeHTML(true) gives encoding/json's escaping.
type Writer struct {
	w       io.Writer
	buf     bytes.Buffer
	enc     *json.Encoder
	marshal func(any) ([]byte, error)
	n       int
}

// NewWriter writes records to w.
func NewWriter(w io.Writer) *Writer {
	jw := &Writer{w: w}
	jw.enc = json.NewEncoder(&jw.buf)
	jw.enc.SetEscapeHTML(false)
	return jw
}

// SetEscapeHTML sets whether '<', '>' and '&' are escaped in strings.
func (w *Writer) SetEscapeHTML(on bool) { w.enc.SetEscapeHTML(on) }

// SetMarshal encodes records with f (which returns one JSON value, without
// the newline) instead of encoding/json: for records with their own
// encoding, such as metrics that write NaN as null.
func (w *Writer) SetMarshal(f func(any) ([]byte, error)) { w.marshal = f }

// Write appends one record. An encoding error is a *RecordError naming the
// record's 1-based number among this Writer's records and, for a NaN or
// infinite float, the field that holds it.
func (w *Writer) Write(v any) error {
	w.buf.Reset()
	var err error
	if w.marshal != nil {
		var b []byte
		if b, err = w.marshal(v); err == nil {
			if bytes.ContainsAny(b, "\n\r") {
				err = errors.New("the encoding spans more than one line")
			} else {
				w.buf.Write(b)
				w.buf.WriteByte('\n')
			}
		}
	} else {
		err = w.enc.Encode(v)
	}
	if err != nil {
		re := &RecordError{Record: w.n + 1, Err: err}
		var ue *json.UnsupportedValueError
		if errors.As(err, &ue) {
			re.Field, re.Value = NonFinitePath(v, ""), ue.Str
		}
		return re
	}
	if _, err := w.w.Write(w.buf.Bytes()); err != nil {
		return err
	}
	w.n++
	return nil
}

// Flush flushes the underlying writer when it has a Flush method (a
// bufio.Writer, say).
func (w *Writer) Flush() error {
	if f, ok := w.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// RecordError is a record that could not be encoded.
type RecordError struct {
	Record int    // 1-based, among the Writer's records
	Field  string // the NaN or infinite float's path ("samples[0].rm"; "" when unknown or the record itself)
	Value  string // what it is: "NaN", "+Inf", "-Inf"
	Err    error
}

func (e *RecordError) Error() string {
	switch {
	case e.Value != "" && e.Field != "":
		return fmt.Sprintf("record %d: field %s is %s: JSON has no encoding for it", e.Record, e.Field, e.Value)
	case e.Value != "":
		return fmt.Sprintf("record %d: the value is %s: JSON has no encoding for it", e.Record, e.Value)
	}
	return fmt.Sprintf("record %d: %v", e.Record, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// NonFinitePath is the path below root of the first NaN or infinite float
// in v ("root.cells[3].rate", "root.totals.loss"), in the order JSON
// would write it (struct fields as declared, named by their json tags, map
// keys sorted), or "" when v holds none. With root "" the path has no
// leading dot ("cells[3].rate"), and a float v itself gives "".
func NonFinitePath(v any, root string) string {
	p, ok := nonFinite(reflect.ValueOf(v), root)
	if !ok {
		return ""
	}
	return strings.TrimPrefix(p, ".")
}

func nonFinite(v reflect.Value, path string) (string, bool) {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return path, true
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return nonFinite(v.Elem(), path)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == "-" {
				continue
			} else if tag != "" {
				name = tag
			}
			if p, ok := nonFinite(v.Field(i), path+"."+name); ok {
				return p, true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if p, ok := nonFinite(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			kp := fmt.Sprintf("%s[%v]", path, k)
			if k.Kind() == reflect.String {
				kp = path + "." + k.String()
			}
			if p, ok := nonFinite(v.MapIndex(k), kp); ok {
				return p, true
			}
		}
	}
	return "", false
}

// WriteFile writes xs to a new file at path (truncating one that exists),
// one record per line; errors read "path: record N: ...".
func WriteFile[T any](path string, xs []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	w := NewWriter(bw)
	for i := range xs {
		if err := w.Write(&xs[i]); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
