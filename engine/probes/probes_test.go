package probes

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func mustImport(t *testing.T, format, file string) []Probe {
	t.Helper()
	ps, err := ImportFile(filepath.Join("testdata", file), ImportOptions{Format: format})
	if err != nil {
		t.Fatalf("import %s: %v", file, err)
	}
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: invalid probe: %v", file, err)
		}
		if p.Source != format || p.Split != "eval" {
			t.Fatalf("%s: source/split = %q/%q", file, p.Source, p.Split)
		}
	}
	return ps
}

func TestImportHarmBench(t *testing.T) {
	ps := mustImport(t, "harmbench", "harmbench.csv")
	if len(ps) != 3 {
		t.Fatalf("got %d probes", len(ps))
	}
	if ps[0].ID != "placeholder_alpha" || ps[0].Category != "chemical_biological" || ps[0].Kind != KindHarm {
		t.Fatalf("first probe: %+v", ps[0])
	}
	want := "Placeholder context paragraph one.\nIt spans two lines, with a comma.\n\n---\n\nPlaceholder request beta that refers to the context"
	if ps[1].Prompt != want {
		t.Fatalf("contextual prompt = %q", ps[1].Prompt)
	}
	if ps[2].Meta["tags"] != "book, hash_check" || ps[2].Meta["functional_category"] != "copyright" {
		t.Fatalf("meta = %v", ps[2].Meta)
	}
	if ps[0].YSafe != DefaultSafeResponse {
		t.Fatalf("y_safe = %q", ps[0].YSafe)
	}
}

func TestImportAdvBenchJBBStrongReject(t *testing.T) {
	a := mustImport(t, "advbench", "advbench.csv")
	if len(a) != 2 || a[1].YHarm != "Sure, here is placeholder target two" || a[1].ID != "advbench-2" {
		t.Fatalf("advbench: %+v", a)
	}
	j := mustImport(t, "jbb", "jbb.csv")
	if len(j) != 2 || j[0].ID != "jbb-1" || j[1].Category != "Malware/Hacking" || j[1].Meta["origin"] != "TDC/HarmBench" {
		t.Fatalf("jbb: %+v", j)
	}
	s := mustImport(t, "strongreject", "strongreject.csv")
	if len(s) != 2 || s[1].Prompt != "Placeholder forbidden prompt number two, with a comma." || s[0].Category != "Disinformation and deception" {
		t.Fatalf("strongreject: %+v", s)
	}
}

func TestImportXSTest(t *testing.T) {
	x := mustImport(t, "xstest", "xstest.csv")
	kinds := []string{x[0].Kind, x[1].Kind, x[2].Kind}
	if strings.Join(kinds, ",") != "lookalike,harm,lookalike" {
		t.Fatalf("kinds = %v", kinds)
	}
	if x[0].ID != "xstest-1" || x[1].Label != "unsafe" || x[1].YSafe == "" || x[0].YSafe != "" {
		t.Fatalf("xstest: %+v", x)
	}
	old := mustImport(t, "xstest", "xstest_v1.csv")
	if old[0].Kind != KindLookalike || old[1].Kind != KindHarm {
		t.Fatalf("old layout kinds: %+v", old)
	}
}

func TestImportErrors(t *testing.T) {
	cases := []struct{ format, file, want string }{
		{"advbench", "bad_missing_column.csv", "bad_missing_column.csv:1: advbench layout needs column(s) goal"},
		{"advbench", "bad_ragged.csv", "bad_ragged.csv:3: row has 1 fields, header has 2"},
		{"nope", "advbench.csv", `unknown format "nope"`},
	}
	for _, c := range cases {
		_, err := ImportFile(filepath.Join("testdata", c.file), ImportOptions{Format: c.format})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s/%s: err = %v, want %q", c.format, c.file, err, c.want)
		}
	}
	if _, err := Import(strings.NewReader(""), ImportOptions{Format: "jbb", Name: "empty.csv"}); err == nil || !strings.Contains(err.Error(), "empty.csv: empty file") {
		t.Errorf("empty: %v", err)
	}
	if _, err := Import(strings.NewReader("goal,target\n,x\n"), ImportOptions{Format: "advbench", Name: "e.csv"}); err == nil || !strings.Contains(err.Error(), "e.csv:2: empty prompt") {
		t.Errorf("empty prompt: %v", err)
	}
}

func TestImportOptionsAndDedupe(t *testing.T) {
	in := "Index,Goal,Target,Behavior,Category,Source\n1,a,b,c,d,e\n2,f,g,h,i,j\n"
	ps, err := Import(strings.NewReader(in), ImportOptions{Format: "jbb", Kind: KindBenign, SafeResponse: "-", Split: "train"})
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].ID != "jbb-1" || ps[1].ID != "jbb-2" || ps[0].Kind != KindBenign || ps[0].YSafe != "" || ps[0].Split != "train" {
		t.Fatalf("%+v", ps)
	}
	// A set's own id twice is refused, naming the line and the first use
	// (it was renamed jbb-1-2 before: one behaviour counted twice).
	in = "Index,Goal,Target,Behavior,Category,Source\n1,a,b,c,d,e\n1,f,g,h,i,j\n"
	if _, err := Import(strings.NewReader(in), ImportOptions{Format: "jbb", Name: "j.csv"}); err == nil ||
		!strings.Contains(err.Error(), `j.csv:3: duplicate id "jbb-1" (first on line 2)`) {
		t.Fatalf("duplicate id: %v", err)
	}
	// Generated ids (no id column) step around the ids given.
	in = "Index,Goal\n2,a\n,b\n"
	if ps, err := Import(strings.NewReader(in), ImportOptions{Format: "jbb"}); err != nil || ps[0].ID != "jbb-2" || ps[1].ID != "jbb-2-2" {
		t.Fatalf("generated ids: %v %+v", err, ps)
	}
	ps, err = Import(strings.NewReader("goal,target\na,b\nc,d\n"), ImportOptions{Format: "advbench"})
	if err != nil || ps[0].ID == ps[1].ID {
		t.Fatalf("generated ids: %v %+v", err, ps)
	}
	// A field longer than any context is refused where it is.
	big := strings.Repeat("x", MaxPromptBytes+1)
	if _, err := Import(strings.NewReader("goal,target\n"+big+",b\n"), ImportOptions{Format: "advbench", Name: "a.csv"}); err == nil ||
		!strings.Contains(err.Error(), "a.csv:2: prompt of") {
		t.Fatalf("huge prompt: %v", err)
	}
	// Probes JSONL: a repeated id is refused with both lines.
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, []Probe{ps[0], ps[1], ps[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJSONL(&buf, "p.jsonl"); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("p.jsonl:3: duplicate probe id %q (first on line 1)", ps[0].ID)) {
		t.Fatalf("JSONL duplicate: %v", err)
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	ps := mustImport(t, "harmbench", "harmbench.csv")
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, ps); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSONL(&buf, "mem")
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(ps) || back[1].Prompt != ps[1].Prompt || back[2].Meta["tags"] != ps[2].Meta["tags"] {
		t.Fatalf("round trip lost data: %+v", back)
	}
	_, err = ReadJSONL(strings.NewReader("{\"id\":\"a\",\"kind\":\"harm\",\"prompt\":\"p\"}\n{\"id\":\"b\",\"kind\":\"harm\",\"prompt\":\"p\",\"bogus\":1}\n"), "x.jsonl")
	if err == nil || !strings.Contains(err.Error(), "x.jsonl:2:") || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown field: %v", err)
	}
}
