package tokenizer

import (
	"encoding/json"
	"reflect"
	"testing"
)

func preSplit(t *testing.T, js string, text string) []string {
	t.Helper()
	bl := false
	steps, err := parsePreSteps(json.RawMessage(js), nil, nil, &bl)
	if err != nil {
		t.Fatal(err)
	}
	pieces := []string{text}
	firsts := []bool{true}
	for _, st := range steps {
		var next []string
		var nf []bool
		for k, p := range pieces {
			st.split(p, firsts[k], func(s string, f bool) { next = append(next, s); nf = append(nf, f) })
		}
		pieces, firsts = next, nf
	}
	return pieces
}

func TestSplitBehaviors(t *testing.T) {
	// The example of Hugging Face's SplitDelimiterBehavior documentation.
	for behavior, want := range map[string][]string{
		"Removed":            {"the", "final", "countdown"},
		"Isolated":           {"the", "-", "final", "-", "-", "countdown"},
		"MergedWithPrevious": {"the-", "final-", "-", "countdown"},
		"MergedWithNext":     {"the", "-final", "-", "-countdown"},
		"Contiguous":         {"the", "-", "final", "--", "countdown"},
	} {
		for _, pat := range []string{`{"String": "-"}`, `{"Regex": "-"}`} {
			got := preSplit(t, `{"type": "Split", "pattern": `+pat+`, "behavior": "`+behavior+`", "invert": false}`, "the-final--countdown")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: got %q, want %q", behavior, pat, got, want)
			}
		}
	}
	got := preSplit(t, `{"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Removed", "invert": true}`, "ab, cd!")
	if want := []string{"ab", "cd"}; !reflect.DeepEqual(got, want) {
		t.Errorf("invert: got %q, want %q", got, want)
	}
	// Lookahead, which Go's regexp lacks, through regexp2.
	got = preSplit(t, `{"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}`, "a   b")
	if want := []string{"a", "  ", " ", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("lookahead: got %q, want %q", got, want)
	}
}

func TestPreTokenizers(t *testing.T) {
	for _, c := range []struct {
		js, text string
		want     []string
	}{
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`, "Hey friend", []string{"▁Hey", "▁friend"}},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}`, "Hey friend", []string{"Hey▁friend"}},
		{`{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "|"}, "behavior": "Removed", "invert": false}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}]}`, "a b|c", []string{"▁a", "▁b", "c"}},
		{`{"type": "Digits", "individual_digits": true}`, "a123b", []string{"a", "1", "2", "3", "b"}},
		{`{"type": "Digits", "individual_digits": false}`, "a123b4", []string{"a", "123", "b", "4"}},
		{`{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}`, "Hello world", []string{" Hello", " world"}},
		{`{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}`, "Hello world", []string{"Hello world"}},
		{`{"type": "Whitespace"}`, "Hey, you!", []string{"Hey", ",", "you", "!"}},
		{`{"type": "Punctuation"}`, "a,b", []string{"a", ",", "b"}},
	} {
		if got := preSplit(t, c.js, c.text); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s on %q: got %q, want %q", c.js, c.text, got, c.want)
		}
	}
}

func TestNormalizers(t *testing.T) {
	for _, c := range []struct{ js, in, want string }{
		{`{"type": "NFC"}`, "e\u0301", "é"},
		{`{"type": "NFD"}`, "é", "e\u0301"},
		{`{"type": "NFKC"}`, "ﬁ①", "fi1"},
		{`{"type": "Lowercase"}`, "ÀB", "àb"},
		{`{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}`, "a b c", "a▁b▁c"},
		{`{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}`, "a   b", "a b"},
		{`{"type": "Prepend", "prepend": "▁"}`, "ab", "▁ab"},
		{`{"type": "Prepend", "prepend": "▁"}`, "", ""},
		{`{"type": "Strip", "strip_left": true, "strip_right": false}`, "  a  ", "a  "},
		{`{"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]}`, "Écolé", "ecole"},
	} {
		fn, err := parseNormalizer(json.RawMessage(c.js), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := fn(c.in); got != c.want {
			t.Errorf("%s(%q) = %q, want %q", c.js, c.in, got, c.want)
		}
	}
	if fn, err := parseNormalizer(json.RawMessage(`{"type": "Sequence", "normalizers": []}`), nil); err != nil || fn != nil {
		t.Errorf("empty Sequence: %v %v", fn != nil, err)
	}
}

func TestDecoders(t *testing.T) {
	for _, c := range []struct {
		js, in, want string
		strip        bool
	}{
		{`{"type": "ByteFallback"}`, "<0x41>", "A", false},
		{`{"type": "ByteLevel"}`, "Ġhi", " hi", false},
		{`{"type": "Strip", "content": " ", "start": 1, "stop": 0}`, "  a ", " a ", false},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}`, "▁a▁b", " a b", true},
		{`{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]}`, "▁x", " x", false},
	} {
		fn, strip, err := parseDecoder(json.RawMessage(c.js), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := fn(c.in); got != c.want || strip != c.strip {
			t.Errorf("%s(%q) = %q %v, want %q %v", c.js, c.in, got, strip, c.want, c.strip)
		}
	}
}

// A SentencePiece-style BPE: Metaspace, byte_fallback, unk, a BOS template.
const spTok = `{
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true, "rstrip": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": %s,
    "vocab": {"<unk>": 0, "<s>": 1, "<0xC3>": 2, "<0xA9>": 3, "▁": 4, "a": 5, "b": 6, "ab": 7, "▁ab": 8, "▁a": 9},
    "merges": ["a b", "▁ ab", "▁ a"]}
}`

func TestCharBPE(t *testing.T) {
	tok, err := ParseHF([]byte(fmtSP("true")), "sp.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.EncodeHF("ab aé", true), []int{1, 8, 9, 2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("EncodeHF = %v, want %v", got, want)
	}
	if got := tok.Decode(tok.EncodeHF("ab aé", false)); got != "ab aé" {
		t.Errorf("Decode = %q", got)
	}
	// rstrip on <s> eats the following space; no prefix after a token (first only).
	if got, want := tok.EncodeHF("<s>  ab", false), []int{1, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("rstrip: %v, want %v", got, want)
	}
	// Without byte_fallback unknown characters become one fused <unk>.
	tok, err = ParseHF([]byte(fmtSP("false")), "sp.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Encode("aéé"), []int{9, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("fuse_unk: %v, want %v", got, want)
	}
}

func fmtSP(fallback string) string {
	return replaceOnce(spTok, "%s", fallback)
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

func TestDropoutRefused(t *testing.T) {
	js := replaceOnce(fmtSP("true"), `"type": "BPE",`, `"type": "BPE", "dropout": 0.1,`)
	if _, err := ParseHF([]byte(js), "sp.json"); err == nil {
		t.Error("dropout accepted")
	}
}
