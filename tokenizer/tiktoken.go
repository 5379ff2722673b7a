package tokenizer

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ares-rlhf/ares/tokenizer/pretok"
	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// TiktokenOptions say what a tiktoken rank file does not: how to split text
// and which special tokens exist.
type TiktokenOptions struct {
	Pattern pretok.Pattern
	Special map[string]int
	// VocabSize, if larger than the ids need, is reported by VocabSize
	// (p50k_base declares 50281).
	VocabSize int
}

type builtin struct {
	opts TiktokenOptions
	once sync.Once
	tok  *Tokenizer
	err  error
}

// The special tokens and patterns of the tiktoken encodings, as tiktoken
// defines them (tiktoken_ext/openai_public.py).
var builtins = map[string]*builtin{
	"r50k_base": {opts: TiktokenOptions{Pattern: pretok.GPT2, VocabSize: 50257,
		Special: map[string]int{"<|endoftext|>": 50256}}},
	"p50k_base": {opts: TiktokenOptions{Pattern: pretok.GPT2, VocabSize: 50281,
		Special: map[string]int{"<|endoftext|>": 50256}}},
	"cl100k_base": {opts: TiktokenOptions{Pattern: pretok.CL100K, Special: map[string]int{
		"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
		"<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}}},
	"o200k_base": {opts: TiktokenOptions{Pattern: pretok.O200K, Special: map[string]int{
		"<|endoftext|>": 199999, "<|endofprompt|>": 200018}}},
}

// BuiltinNames lists the built-in encodings.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Builtin returns a built-in tiktoken encoding: r50k_base, p50k_base,
// cl100k_base or o200k_base. The rank files come embedded in the module
// github.com/pkoukk/tiktoken-go-loader; each is parsed once per process.
func Builtin(name string) (*Tokenizer, error) {
	b, ok := builtins[name]
	if !ok {
		return nil, fmt.Errorf("unknown encoding %q (known: %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	b.once.Do(func() {
		data, err := assets.Assets.ReadFile(name + ".tiktoken")
		if err != nil {
			b.err = fmt.Errorf("encoding %s: %w", name, err)
			return
		}
		b.tok, b.err = ParseTiktoken(bytes.NewReader(data), name, b.opts)
	})
	return b.tok, b.err
}

// LoadTiktoken reads a tiktoken rank file. With opts nil the file must be
// named after a built-in encoding (cl100k_base.tiktoken, ...), whose pattern
// and special tokens are then used.
func LoadTiktoken(path string, opts *TiktokenOptions) (*Tokenizer, error) {
	if opts == nil {
		base := strings.TrimSuffix(filepath.Base(path), ".tiktoken")
		b, ok := builtins[base]
		if !ok {
			return nil, fmt.Errorf("%s: cannot tell the pre-tokenizer pattern and special tokens of a rank file not named after a built-in encoding (%s); give them explicitly", path, strings.Join(BuiltinNames(), ", "))
		}
		opts = &b.opts
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseTiktoken(f, path, *opts)
}

// ParseTiktoken reads a rank file: one "base64(token) rank" per line. name
// labels errors, which give the line number.
func ParseTiktoken(r io.Reader, name string, opts TiktokenOptions) (*Tokenizer, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m := model{encoder: make(map[string]int32, bytes.Count(data, []byte{'\n'})+1), wholePiece: true}
	var tokens []string
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if k := bytes.IndexByte(data, '\n'); k >= 0 {
			l, data = data[:k], data[k+1:]
		} else {
			l, data = data, nil
		}
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if len(l) == 0 {
			continue
		}
		sp := bytes.IndexByte(l, ' ')
		if sp < 0 || bytes.IndexByte(l[sp+1:], ' ') >= 0 {
			return nil, fmt.Errorf("%s:%d: want \"base64-token rank\", got %q", name, line, clip(l))
		}
		tok, err := base64.StdEncoding.DecodeString(string(l[:sp]))
		if err != nil || len(tok) == 0 {
			return nil, fmt.Errorf("%s:%d: bad base64 token %q", name, line, clip(l[:sp]))
		}
		rank, err := strconv.ParseInt(string(l[sp+1:]), 10, 32)
		if err != nil || rank < 0 || rank > int64(line+len(data)) { // ranks beyond the file's size would allocate gigabytes
			return nil, fmt.Errorf("%s:%d: bad rank %q", name, line, clip(l[sp+1:]))
		}
		if prev, dup := m.encoder[string(tok)]; dup {
			return nil, fmt.Errorf("%s:%d: token %q already has rank %d", name, line, tok, prev)
		}
		for int(rank) >= len(tokens) {
			tokens = append(tokens, "")
		}
		if tokens[rank] != "" {
			return nil, fmt.Errorf("%s:%d: rank %d already belongs to token %q", name, line, rank, tokens[rank])
		}
		tokens[rank] = string(tok)
		m.encoder[tokens[rank]] = int32(rank)
	}
	m.tokens = tokens
	return build(name, opts.Pattern, m, opts.Special, opts.VocabSize)
}

func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
