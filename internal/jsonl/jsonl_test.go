package jsonl

import (
	"errors"
	"strings"
	"testing"
)

type rec struct {
	A int `json:"a"`
}

func TestRead(t *testing.T) {
	in := "{\"a\":1}\n\n  {\"a\":2}  \n"
	vals, lines, err := Read[rec](strings.NewReader(in), "in", true, nil)
	if err != nil || len(vals) != 2 || vals[1].A != 2 || lines[0] != 1 || lines[1] != 3 {
		t.Fatalf("%v %v %v", vals, lines, err)
	}
	bad := errors.New("a must be positive")
	cases := map[string]struct {
		in     string
		strict bool
		want   string
	}{
		"malformed":       {"{\"a\":1}\n{\"a\": oops}\n", true, "in:2: invalid character"},
		"unknown field":   {"{\"a\":1,\"b\":2}\n", true, "in:1: json: unknown field \"b\""},
		"trailing text":   {"{\"a\":1} {\"a\":2}\n", false, "in:1: text after the JSON value"},
		"check":           {"{\"a\":1}\n{\"a\":-1}\n", false, "in:2: a must be positive"},
		"line too long":   {strings.Repeat(" ", MaxLine+1) + "\n", false, "in:1: bufio.Scanner: token too long"},
		"wrong JSON type": {"{\"a\":\"x\"}\n", false, "in:1: json: cannot unmarshal string"},
	}
	for name, c := range cases {
		_, _, err := Read(strings.NewReader(c.in), "in", c.strict, func(r *rec) error {
			if r.A < 0 {
				return bad
			}
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	// Lenient reading ignores unknown fields.
	if vals, _, err := Read[rec](strings.NewReader("{\"a\":5,\"b\":1}\n"), "in", false, nil); err != nil || vals[0].A != 5 {
		t.Fatalf("lenient: %v %v", vals, err)
	}
}

func TestInvalidUTF8IsNamed(t *testing.T) {
	in := "{\"a\": \"ok\"}\n{\"a\": \"bad \xff here\"}\n"
	_, _, err := Read[map[string]string](strings.NewReader(in), "x.jsonl", false, nil)
	if err == nil || !strings.Contains(err.Error(), "x.jsonl:2: invalid UTF-8 at byte 11") {
		t.Fatalf("got %v", err)
	}
}
