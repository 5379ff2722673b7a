package jsonfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type conf struct {
	Name string `json:"name"`
	Size int    `json:"size"`
	Mode mode   `json:"mode"`
}

type mode string

func (m *mode) UnmarshalJSON(b []byte) error {
	if string(b) != `"fast"` {
		return errors.New("mode must be \"fast\"")
	}
	*m = "fast"
	return nil
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"{\n  \"name\": \"a\",\n  \"size\": 4\n}\n":        "",
		"{\n  \"name\": \"a\",\n  \"size\": 4,\n}\n":       "c.json:4:1: malformed JSON: invalid character '}' looking for beginning of object key string",
		"{\n  \"name\": \"a\",\n  \"size\": \"four\"\n}\n": "c.json:3:16: size holds string, want int",
		"{\n  \"name\": \"a\",\n  \"size\": [4]\n}\n":      "c.json:3:11: size holds array, want int",
		"[\n  1\n]\n": "c.json:1:1: the top-level value holds array, want jsonfile.conf",
		"{\n  \"name\": \"a\",\n  \"mode\": \"slow\"\n}\n": "c.json: mode must be \"fast\"",
	}
	for in, want := range cases {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		var c conf
		err := Read(p, &c)
		if want == "" {
			if err != nil || c.Name != "a" || c.Size != 4 {
				t.Errorf("%q: %+v, %v", in, c, err)
			}
			continue
		}
		if err == nil || !strings.HasSuffix(err.Error(), want) || !strings.HasPrefix(err.Error(), p) {
			t.Errorf("%q: error %v, want %s", in, err, filepath.Join(dir, want))
		}
	}
	if err := Read(filepath.Join(dir, "none.json"), new(conf)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestWhere(t *testing.T) {
	data := []byte("{\n  \"a\": [1,\n    {\"b\": true}]\n}\n")
	for want, path := range map[string][]any{
		"f:1:1":  nil,
		"f:2:8":  {"a"},
		"f:3:5":  {"a", 1},
		"f:3:11": {"a", 1, "b"},
		"f":      {"a", 2},
	} {
		if got := Where("f", data, path...); got != want {
			t.Errorf("Where(%v) = %s, want %s", path, got, want)
		}
	}
}
