// Package tokenizer is a byte-level BPE tokenizer in pure Go: it trains
// vocabularies, writes and reads Hugging Face tokenizer.json files, reads
// tiktoken rank files, and ships the tiktoken encodings r50k_base,
// p50k_base, cl100k_base and o200k_base.
//
// Typical use:
//
//	tok, err := tokenizer.Builtin("cl100k_base") // or Load("tokenizer.json")
//	ids := tok.Encode("Hello world")             // special-token text is plain text
//	text := tok.Decode(ids)
//	eot, err := tok.SpecialID("<|endoftext|>")
//	prompt, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: "Hi"}}, true)
//
// A Tokenizer is immutable and safe for concurrent use. Encode never turns
// text into special tokens, so text taken from prompts or model output
// cannot forge control tokens; use EncodeWithSpecial where it should.
// Decode(Encode(x)) == x for every byte string x, valid UTF-8 or not.
package tokenizer

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ares-rlhf/ares/tokenizer/pretok"
)

// Tokenizer encodes text to token ids and back.
type Tokenizer struct {
	name    string
	pattern pretok.Pattern
	// prefixSpace mirrors Hugging Face ByteLevel add_prefix_space: a space is
	// prepended to text that does not start with one.
	prefixSpace  bool
	m            model
	dec          []string // id -> bytes, regular and special; "" = no such id
	special      map[string]int
	specialFirst [256]bool // first bytes of special tokens
	nVocab       int
	chat         ChatTemplate
	hf           *hfInfo         // tokenizer.json pipeline, added tokens, post-processor; nil otherwise
	hfChat       *HFChatTemplate // a model's Jinja chat template; nil: chat (ChatML)
}

// Name is the encoding's name (for example cl100k_base) or the file it was
// loaded from.
func (t *Tokenizer) Name() string { return t.name }

// Pattern is the pre-tokenizer the tokenizer splits text with.
func (t *Tokenizer) Pattern() pretok.Pattern { return t.pattern }

// VocabSize is one more than the largest token id (regular or special), the
// size of an embedding table that covers every id.
func (t *Tokenizer) VocabSize() int { return t.nVocab }

// Encode returns the ids of text. Special-token text is encoded as ordinary
// text.
func (t *Tokenizer) Encode(text string) []int {
	return t.appendOrdinary(make([]int, 0, len(text)/3+1), text)
}

// AppendEncode appends the ids of text to dst (see Encode).
func (t *Tokenizer) AppendEncode(dst []int, text string) []int {
	return t.appendOrdinary(dst, text)
}

func (t *Tokenizer) appendOrdinary(dst []int, text string) []int {
	if len(text) == 0 {
		return dst
	}
	if t.hf != nil && t.hf.pipe {
		return t.encodePipe(dst, text, true)
	}
	if t.prefixSpace && text[0] != ' ' {
		text = " " + text
	}
	p := t.pattern
	for i := 0; i < len(text); {
		j := p.Next(text, i)
		dst = t.m.encodePiece(dst, text[i:j])
		i = j
	}
	return dst
}

// EncodeWithSpecial is Encode, except that occurrences of the named special
// tokens (all of them if none are named) become their ids. Where two special
// tokens start at the same place the longer wins. It fails on an unknown
// name.
func (t *Tokenizer) EncodeWithSpecial(text string, allowed ...string) ([]int, error) {
	set, err := t.specialSet(allowed)
	if err != nil {
		return nil, err
	}
	return t.appendSpecial(make([]int, 0, len(text)/3+1), text, set), nil
}

// specialSet resolves names to a list sorted longest first; nil names means
// every special token.
func (t *Tokenizer) specialSet(names []string) ([]string, error) {
	if len(names) == 0 {
		names = t.SpecialTokens()
	}
	set := make([]string, 0, len(names))
	for _, n := range names {
		if _, ok := t.special[n]; !ok {
			return nil, t.unknownSpecial(n)
		}
		set = append(set, n)
	}
	sort.Slice(set, func(a, b int) bool { return len(set[a]) > len(set[b]) })
	return set, nil
}

func (t *Tokenizer) appendSpecial(dst []int, text string, set []string) []int {
	if len(set) == 0 {
		return t.appendOrdinary(dst, text)
	}
	start := 0
	for i := 0; i < len(text); i++ {
		if !t.specialFirst[text[i]] {
			continue
		}
		for _, name := range set {
			if strings.HasPrefix(text[i:], name) {
				dst = t.appendOrdinary(dst, text[start:i])
				dst = append(dst, t.special[name])
				start = i + len(name)
				i = start - 1
				break
			}
		}
	}
	return t.appendOrdinary(dst, text[start:])
}

// Decode returns the text of ids. Ids that are not in the vocabulary are
// skipped, as Hugging Face does (models often pad their vocabulary beyond
// the tokenizer's); use DecodeChecked to reject them.
func (t *Tokenizer) Decode(ids []int) string {
	b := make([]byte, 0, len(ids)*4)
	for _, id := range ids {
		if id >= 0 && id < len(t.dec) {
			b = append(b, t.dec[id]...)
		}
	}
	if t.hf != nil && t.hf.stripFirstSpace && len(b) > 0 && b[0] == ' ' && len(ids) > 0 && !t.IsSpecial(ids[0]) {
		b = b[1:]
	}
	return string(b)
}

// DecodeChecked is Decode that fails on an id outside the vocabulary.
func (t *Tokenizer) DecodeChecked(ids []int) (string, error) {
	b := make([]byte, 0, len(ids)*4)
	for k, id := range ids {
		if id < 0 || id >= len(t.dec) || t.dec[id] == "" {
			return "", fmt.Errorf("token id %d (position %d) is not in the vocabulary of %s", id, k, t.name)
		}
		b = append(b, t.dec[id]...)
	}
	if t.hf != nil && t.hf.stripFirstSpace && len(b) > 0 && b[0] == ' ' && !t.IsSpecial(ids[0]) {
		b = b[1:]
	}
	return string(b), nil
}

// Token returns the bytes of one id (regular or special).
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.dec) || t.dec[id] == "" {
		return "", false
	}
	return t.dec[id], true
}

// TokenID returns the id of a regular (non-special) token given its bytes.
func (t *Tokenizer) TokenID(token string) (int, bool) {
	id, ok := t.m.lookup(token)
	return int(id), ok
}

// SpecialID returns the id of a special token by name, e.g. "<|endoftext|>".
func (t *Tokenizer) SpecialID(name string) (int, error) {
	if id, ok := t.special[name]; ok {
		return id, nil
	}
	return 0, t.unknownSpecial(name)
}

func (t *Tokenizer) unknownSpecial(name string) error {
	known := t.SpecialTokens()
	if len(known) == 0 {
		return fmt.Errorf("unknown special token %q: %s has no special tokens", name, t.name)
	}
	return fmt.Errorf("unknown special token %q (%s has %s)", name, t.name, strings.Join(known, " "))
}

// IsSpecial reports whether id is a special token.
func (t *Tokenizer) IsSpecial(id int) bool {
	if id < 0 || id >= len(t.dec) {
		return false
	}
	v, ok := t.special[t.dec[id]]
	return ok && v == id
}

// SpecialTokens lists the special tokens' names in id order.
func (t *Tokenizer) SpecialTokens() []string {
	names := make([]string, 0, len(t.special))
	for n := range t.special {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool { return t.special[names[a]] < t.special[names[b]] })
	return names
}

// EncodeBatch encodes texts on all cores; out[i] == Encode(texts[i]).
func (t *Tokenizer) EncodeBatch(texts []string) [][]int {
	out := make([][]int, len(texts))
	parallel(len(texts), func(i int) { out[i] = t.Encode(texts[i]) })
	return out
}

// EncodeBatchWithSpecial is EncodeWithSpecial over texts, on all cores.
func (t *Tokenizer) EncodeBatchWithSpecial(texts []string, allowed ...string) ([][]int, error) {
	set, err := t.specialSet(allowed)
	if err != nil {
		return nil, err
	}
	out := make([][]int, len(texts))
	parallel(len(texts), func(i int) {
		out[i] = t.appendSpecial(make([]int, 0, len(texts[i])/3+1), texts[i], set)
	})
	return out, nil
}

// DecodeBatch decodes each list of ids on all cores (see Decode).
func (t *Tokenizer) DecodeBatch(batch [][]int) []string {
	out := make([]string, len(batch))
	parallel(len(batch), func(i int) { out[i] = t.Decode(batch[i]) })
	return out
}

// parallel runs fn(0..n-1) on GOMAXPROCS goroutines, handing out indices in
// small chunks so that uneven documents balance.
func parallel(n int, fn func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	chunk := n / (workers * 8)
	if chunk < 1 {
		chunk = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return
				}
				hi := min(lo+chunk, n)
				for i := lo; i < hi; i++ {
					fn(i)
				}
			}
		}()
	}
	wg.Wait()
}

// build finishes a tokenizer once m.tokens, m.encoder and specials are set:
// it fills the byte table, the decoding table and the vocabulary size.
func build(name string, p pretok.Pattern, m model, special map[string]int, nVocab int) (*Tokenizer, error) {
	for b := 0; b < 256 && !m.chars; b++ {
		id, ok := m.encoder[string([]byte{byte(b)})]
		if !ok {
			return nil, fmt.Errorf("%s: no token for byte 0x%02x; a byte-level vocabulary needs all 256", name, b)
		}
		m.byteID[b] = id
	}
	m.buildTables()
	size := len(m.tokens)
	for n, id := range special {
		if n == "" {
			return nil, fmt.Errorf("%s: empty special token (id %d)", name, id)
		}
		if id < 0 {
			return nil, fmt.Errorf("%s: special token %q has negative id %d", name, n, id)
		}
		if id < len(m.tokens) && m.tokens[id] != "" && m.tokens[id] != n {
			return nil, fmt.Errorf("%s: special token %q has id %d, which is the regular token %q", name, n, id, m.tokens[id])
		}
		size = max(size, id+1)
	}
	dec := make([]string, size)
	copy(dec, m.tokens)
	t := &Tokenizer{name: name, pattern: p, m: m, special: map[string]int{}, chat: ChatML}
	for n, id := range special {
		if dec[id] != "" && dec[id] != n {
			return nil, fmt.Errorf("%s: special tokens %q and %q share id %d", name, dec[id], n, id)
		}
		dec[id] = n
		t.special[n] = id
		t.specialFirst[n[0]] = true
	}
	t.dec = dec
	t.nVocab = max(size, nVocab)
	return t, nil
}
