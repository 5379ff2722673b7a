package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/tokenizer/pretok"
)

func TestHandwrittenHF(t *testing.T) {
	tok, err := Load("testdata/hf/handwritten.json")
	if err != nil {
		t.Fatal(err)
	}
	// Byte-level ids follow the alphabet order: t=83, h=71, e=68; merged
	// tokens follow: he=257, Ġthe=258, Ġworld=268; <|endoftext|>=269.
	cases := map[string][]int{
		"the world": {83, 257, 268},
		" the":      {258},
		"hi":        {71, 72},
	}
	for in, want := range cases {
		if got := tok.Encode(in); !slices.Equal(got, want) {
			t.Errorf("%q: got %v want %v", in, got, want)
		}
	}
	if id, err := tok.SpecialID("<|endoftext|>"); err != nil || id != 269 {
		t.Errorf("special: %d %v", id, err)
	}
	if tok.VocabSize() != 270 {
		t.Errorf("VocabSize %d", tok.VocabSize())
	}
	s := "the world, in the ring\n\xff"
	if tok.Decode(tok.Encode(s)) != s {
		t.Error("round trip")
	}
}

func trainCorpus(t testing.TB) []string {
	var texts []string
	for _, f := range []string{"prose_en.txt", "prose_multi.txt", "code.txt", "marks.txt", "emoji.txt", "digits.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata/corpus", f))
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	return texts
}

func TestTrainSaveLoad(t *testing.T) {
	texts := trainCorpus(t)
	for _, p := range []pretok.Pattern{pretok.GPT2, pretok.CL100K, pretok.O200K} {
		t.Run(p.String(), func(t *testing.T) {
			tok, err := Train(texts, TrainOptions{VocabSize: 700, Special: ChatSpecials, Pattern: p})
			if err != nil {
				t.Fatal(err)
			}
			if tok.VocabSize() != 700 {
				t.Errorf("VocabSize %d, want 700", tok.VocabSize())
			}
			path := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := tok.Save(path); err != nil {
				t.Fatal(err)
			}
			back, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if back.Pattern() != p || back.VocabSize() != tok.VocabSize() {
				t.Errorf("loaded pattern %v size %d", back.Pattern(), back.VocabSize())
			}
			total, n := 0, 0
			for _, doc := range append(texts, "\xff\xfe broken", "hello <|im_start|> there") {
				a, b := tok.Encode(doc), back.Encode(doc)
				if !slices.Equal(a, b) {
					t.Fatalf("ids differ after save/load for %.40q", doc)
				}
				if tok.Decode(a) != doc {
					t.Fatalf("round trip %.40q", doc)
				}
				total += len(doc)
				n += len(a)
			}
			if float64(total)/float64(n) < 1.5 { // tiny corpus: merges stop at frequency 2
				t.Errorf("only %.2f bytes per token on the training text", float64(total)/float64(n))
			}
			var w1, w2 bytes.Buffer
			if err := tok.WriteHF(&w1); err != nil {
				t.Fatal(err)
			}
			if err := back.WriteHF(&w2); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
				t.Error("written file changes on a second save")
			}
		})
	}
}

func TestTrainDeterministic(t *testing.T) {
	texts := trainCorpus(t)
	var outs []string
	for k := 0; k < 2; k++ {
		tok, err := Train(texts, TrainOptions{VocabSize: 400})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := tok.WriteHF(&b); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b.String())
	}
	if outs[0] != outs[1] {
		t.Error("two trainings on the same text differ")
	}
}

func TestTrainSpecialTokensNotLearned(t *testing.T) {
	text := strings.Repeat("<|im_start|>user\nhello<|im_end|>\n", 200)
	tok, err := Train([]string{text}, TrainOptions{VocabSize: 300, Special: ChatSpecials})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.TokenID("<|im_start|>"); ok {
		t.Error("special token text was learned as a regular token")
	}
	if _, err := Train(nil, TrainOptions{VocabSize: 100}); err == nil {
		t.Error("vocab below 256 accepted")
	}
}

func TestChat(t *testing.T) {
	tok, err := Train(trainCorpus(t), TrainOptions{VocabSize: 500, Special: ChatSpecials})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{"system", "Be safe."}, {"user", "Say <|im_end|> please"}}
	ids, err := tok.EncodeChat(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe safe.<|im_end|>\n<|im_start|>user\nSay <|im_end|> please<|im_end|>\n<|im_start|>assistant\n"
	if got := tok.Decode(ids); got != want {
		t.Errorf("decoded %q", got)
	}
	if r := ChatML.RenderChat(msgs, true); r != want {
		t.Errorf("rendered %q", r)
	}
	end, _ := tok.SpecialID("<|im_end|>")
	if count(ids, end) != 2 {
		t.Errorf("content forged a turn marker: %d <|im_end|>", count(ids, end))
	}
	if _, err := tok.EncodeChat([]Message{{"tool", "x"}}, false); err == nil {
		t.Error("bad role accepted")
	}
	gpt, _ := Builtin("cl100k_base")
	if _, err := gpt.EncodeChat(msgs, true); err == nil || !strings.Contains(err.Error(), "<|im_start|>") {
		t.Errorf("missing template token: %v", err)
	}
}

func count(ids []int, id int) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

func TestEncodeBatch(t *testing.T) {
	tok, _ := Builtin("cl100k_base")
	var docs []string
	for _, d := range corpus(t) {
		docs = append(docs, d)
	}
	got := tok.EncodeBatch(docs)
	for i, d := range docs {
		if !slices.Equal(got[i], tok.Encode(d)) {
			t.Fatalf("batch item %d differs", i)
		}
	}
	if back := tok.DecodeBatch(got); !slices.Equal(back, docs) {
		t.Error("DecodeBatch")
	}
}

// errorCase writes content to name in a temp dir, loads it and wants an
// error mentioning each of parts.
func errorCase(t *testing.T, name, content string, parts ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatalf("%s: no error", name)
	}
	for _, p := range append(parts, name) {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/hf/handwritten.json")
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	t.Run("malformed JSON", func(t *testing.T) {
		bad := strings.Replace(g, `"type": "BPE",`, `"type": "BPE",,`, 1)
		errorCase(t, "tokenizer.json", bad, ":13:", "malformed JSON")
	})
	t.Run("merge names unknown token", func(t *testing.T) {
		bad := strings.Replace(g, `["h", "e"]`, `["h", "zz"]`, 1)
		errorCase(t, "tokenizer.json", bad, ":293:", `"zz"`, "merge 1")
	})
	t.Run("merge result missing", func(t *testing.T) {
		bad := strings.Replace(g, `"Ġworld": 268`, `"Ġworlx": 268`, 1)
		errorCase(t, "tokenizer.json", bad, `"Ġworld"`, "not in the vocabulary")
	})
	t.Run("id near 2^62", func(t *testing.T) {
		// Sized a table by it before: a makeslice panic naming no file.
		bad := strings.Replace(g, `"!": 0,`, `"!": 4611686018427387904,`, 1)
		errorCase(t, "tokenizer.json", bad, ":21:", `"!"`, "beyond any vocabulary")
	})
	t.Run("wrong type", func(t *testing.T) {
		bad := strings.Replace(g, `"!": 0,`, `"!": "zero",`, 1)
		errorCase(t, "tokenizer.json", bad, ":21:")
	})
	t.Run("unsupported normalizer", func(t *testing.T) {
		bad := strings.Replace(g, `"normalizer": null`, `"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "BertNormalizer"}]}`, 1)
		errorCase(t, "tokenizer.json", bad, ":8:", "BertNormalizer", "not supported")
	})
	t.Run("bad split regex", func(t *testing.T) {
		bad := strings.Replace(g, `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
			`"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(\\d+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "use_regex": false}]}`, 1)
		errorCase(t, "tokenizer.json", bad, ":9:", `(\\d+`)
	})
	t.Run("unsupported pre-tokenizer", func(t *testing.T) {
		bad := strings.Replace(g, `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
			`"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}, {"type": "ByteLevel", "use_regex": false}]}`, 1)
		errorCase(t, "tokenizer.json", bad, ":9:", "UnicodeScripts", "not supported")
	})
	t.Run("bad split behavior", func(t *testing.T) {
		bad := strings.Replace(g, `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
			`"pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways", "invert": false}`, 1)
		errorCase(t, "tokenizer.json", bad, ":9:", "Sideways")
	})

	ranks, err := os.ReadFile("testdata/tiny.tiktoken")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(ranks), "\n")
	t.Run("rank file bad line", func(t *testing.T) {
		l := slices.Clone(lines)
		l[6] = "Zm9v"
		_, err := ParseTiktoken(strings.NewReader(strings.Join(l, "\n")), "x.tiktoken", TiktokenOptions{})
		if err == nil || !strings.Contains(err.Error(), "x.tiktoken:7:") {
			t.Errorf("got %v", err)
		}
		l[6] = "!!!! 6"
		_, err = ParseTiktoken(strings.NewReader(strings.Join(l, "\n")), "x.tiktoken", TiktokenOptions{})
		if err == nil || !strings.Contains(err.Error(), "x.tiktoken:7: bad base64") {
			t.Errorf("got %v", err)
		}
		l[6] = "Zm9v six"
		_, err = ParseTiktoken(strings.NewReader(strings.Join(l, "\n")), "x.tiktoken", TiktokenOptions{})
		if err == nil || !strings.Contains(err.Error(), `x.tiktoken:7: bad rank "six"`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("rank file missing byte", func(t *testing.T) {
		_, err := ParseTiktoken(strings.NewReader(strings.Join(lines[1:], "\n")), "x.tiktoken", TiktokenOptions{})
		if err == nil || !strings.Contains(err.Error(), "byte 0x00") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("unknown special token", func(t *testing.T) {
		tok, _ := Builtin("r50k_base")
		_, err := tok.SpecialID("<|im_start|>")
		if err == nil || !strings.Contains(err.Error(), `"<|im_start|>"`) || !strings.Contains(err.Error(), "<|endoftext|>") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("unknown encoding", func(t *testing.T) {
		if _, err := Builtin("gpt5_base"); err == nil || !strings.Contains(err.Error(), "gpt5_base") {
			t.Errorf("got %v", err)
		}
	})
}

func TestTinyTiktoken(t *testing.T) {
	tok, err := LoadTiktoken("testdata/tiny.tiktoken", &TiktokenOptions{Pattern: pretok.GPT2, Special: map[string]int{"<|end|>": 300}})
	if err != nil {
		t.Fatal(err)
	}
	// Ranks 256.. are "th", "the", " the" in testdata/tiny.tiktoken.
	if got := tok.Encode("the the"); !slices.Equal(got, []int{257, 258}) {
		t.Errorf("got %v", got)
	}
	if _, err := LoadTiktoken("testdata/tiny.tiktoken", nil); err == nil {
		t.Error("rank file with unknown pattern accepted")
	}
}

// TestTrainChunking: counting in chunks (on all cores) sees the same pieces
// as counting the whole text, for every pattern.
func TestTrainChunking(t *testing.T) {
	text := strings.Join(trainCorpus(t), "\n") + "\n" + benchText(t, 200000)
	defer func(old int) { trainChunk = old }(trainChunk)
	trainChunk = 1000
	for _, p := range []pretok.Pattern{pretok.GPT2, pretok.CL100K, pretok.Qwen2, pretok.O200K} {
		whole, _ := NewTrainer(TrainOptions{VocabSize: 300, Pattern: p})
		whole.countSegment(whole.words, text)
		chunked, _ := NewTrainer(TrainOptions{VocabSize: 300, Pattern: p})
		chunked.Add(text)
		if len(whole.words) != len(chunked.words) {
			t.Fatalf("%v: %d distinct pieces whole, %d chunked", p, len(whole.words), len(chunked.words))
		}
		for w, c := range whole.words {
			if chunked.words[w] != c {
				t.Fatalf("%v: piece %q counted %d whole, %d chunked", p, w, c, chunked.words[w])
			}
		}
	}
}
