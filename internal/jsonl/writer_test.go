package jsonl

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

type row struct {
	Name  string               `json:"name"`
	Score float64              `json:"score"`
	Cells []map[string]any     `json:"cells,omitempty"`
	Skip  float64              `json:"-"`
	Inner *struct{ X float32 } `json:"inner,omitempty"`
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Write(row{Name: "<a&b>", Score: 1.5, Skip: math.NaN()}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(map[string]int{"b": 2, "a": 1}); err != nil {
		t.Fatal(err)
	}
	want := "{\"name\":\"<a&b>\",\"score\":1.5}\n{\"a\":1,\"b\":2}\n"
	if buf.String() != want {
		t.Fatalf("%q, want %q", buf.String(), want)
	}

	// A NaN: the error names the record and the field, and nothing is written.
	err := w.Write(row{Name: "x", Cells: []map[string]any{{"ok": 1.0}, {"rate": math.Inf(-1)}}})
	var re *RecordError
	if !errors.As(err, &re) || re.Record != 3 || re.Field != "cells[1].rate" || re.Value != "-Inf" ||
		err.Error() != "record 3: field cells[1].rate is -Inf: JSON has no encoding for it" {
		t.Fatalf("%v", err)
	}
	if err := w.Write(math.NaN()); err == nil || err.Error() != "record 3: the value is NaN: JSON has no encoding for it" {
		t.Fatalf("%v", err)
	}
	if buf.String() != want {
		t.Fatalf("a failed record wrote %q", buf.String()[len(want):])
	}

	// HTML escaping on request.
	buf.Reset()
	w = NewWriter(&buf)
	w.SetEscapeHTML(true)
	w.Write("<x>")
	if buf.String() != "\"\\u003cx\\u003e\"\n" {
		t.Fatalf("%q", buf.String())
	}

	// A marshaller of one's own (metrics writing NaN as null).
	buf.Reset()
	w = NewWriter(&buf)
	w.SetMarshal(func(v any) ([]byte, error) { return []byte(`{"loss":null}`), nil })
	if err := w.Write(nil); err != nil || buf.String() != "{\"loss\":null}\n" {
		t.Fatalf("%q %v", buf.String(), err)
	}
	w.SetMarshal(func(v any) ([]byte, error) { return []byte("{\n}"), nil })
	if err := w.Write(nil); err == nil || !strings.Contains(err.Error(), "record 2: ") {
		t.Fatalf("a two-line record: %v", err)
	}
}

func TestNonFinitePath(t *testing.T) {
	v := &row{Inner: &struct{ X float32 }{X: float32(math.NaN())}}
	if p := NonFinitePath(v, "finding"); p != "finding.inner.X" {
		t.Fatal(p)
	}
	if p := NonFinitePath(row{Score: 1}, "r"); p != "" {
		t.Fatal(p)
	}
}
