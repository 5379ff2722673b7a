package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ares-rlhf/ares/internal/atomicfile"
	"github.com/ares-rlhf/ares/internal/jsonfile"
	"github.com/ares-rlhf/ares/tokenizer/pretok"
)

// Hugging Face byte-level BPE stores tokens as strings over a 256-character
// alphabet: printable Latin-1 bytes stand for themselves and the others
// (controls, space, 0x7f-0xa0, 0xad) for U+0100 onwards, in byte order.
var (
	byteChar [256]rune
	charByte = map[rune]byte{}
)

func init() {
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) {
			byteChar[b] = rune(b)
		} else {
			byteChar[b] = next
			next++
		}
		charByte[byteChar[b]] = byte(b)
	}
}

// toHF maps token bytes to the byte-level alphabet.
func toHF(tok string) string {
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		b.WriteRune(byteChar[tok[i]])
	}
	return b.String()
}

// fromHF maps a byte-level string back to bytes.
func fromHF(s string) (string, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := charByte[r]
		if !ok {
			return "", false
		}
		out = append(out, b)
	}
	return string(out), true
}

type hfFile struct {
	AddedTokens   []hfAdded       `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *hfModel        `json:"model"`
	PostProcessor json.RawMessage `json:"post_processor"`
}

type hfAdded struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	Special    bool   `json:"special"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
}

type hfModel struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	UnkToken                *string           `json:"unk_token"`
	FuseUnk                 bool              `json:"fuse_unk"`
	ByteFallback            bool              `json:"byte_fallback"`
	Vocab                   map[string]int    `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
}

// Load reads a tokenizer from a file: a Hugging Face tokenizer.json, or a
// tiktoken rank file (name ending in .tiktoken, named after a built-in
// encoding so that its pattern and special tokens are known).
func Load(path string) (*Tokenizer, error) {
	if strings.HasSuffix(path, ".tiktoken") {
		return LoadTiktoken(path, nil)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseHF(data, path)
}

// ParseHF reads a Hugging Face tokenizer.json holding a BPE model. name
// labels errors, which give the line and column of the culprit.
//
// Supported: model BPE, byte-level (a ByteLevel pre-tokenizer) or over
// characters (SentencePiece style: byte_fallback, unk_token, fuse_unk,
// continuing_subword_prefix, end_of_word_suffix), with ignore_merges;
// normalizers NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Prepend,
// Replace, Sequence; pre-tokenizers Split (string or regex, every behavior,
// invert), ByteLevel, Metaspace, Digits, Punctuation, Whitespace,
// WhitespaceSplit, Sequence; decoders ByteLevel, Metaspace, Replace,
// ByteFallback, Fuse, Strip, Sequence; post-processors TemplateProcessing,
// ByteLevel, RobertaProcessing, BertProcessing, Sequence (applied by
// EncodeHF). Split regexes that pretok knows (GPT-2, cl100k/Llama 3, Qwen2,
// o200k) use its scanners; others run on regexp2. Added tokens are special
// tokens (EncodeWithSpecial, EncodeHF).
func ParseHF(data []byte, name string) (*Tokenizer, error) {
	t, err := parseHF(data, name)
	if ce, ok := err.(*compErr); ok {
		return nil, fmt.Errorf("%s: %s", jsonfile.Where(name, data, ce.path...), ce.msg)
	}
	return t, err
}

func parseHF(data []byte, name string) (*Tokenizer, error) {
	var f hfFile
	if err := jsonfile.Decode(name, data, &f); err != nil {
		return nil, err
	}
	if f.Model == nil {
		return nil, fmt.Errorf("%s: no \"model\"", name)
	}
	mo := f.Model
	if mo.Type != "" && mo.Type != "BPE" {
		return nil, fmt.Errorf("%s: model type %q, only BPE is supported", jsonfile.Where(name, data, "model", "type"), mo.Type)
	}
	if mo.Dropout != nil && *mo.Dropout != 0 {
		return nil, fmt.Errorf("%s: BPE dropout %v is not supported (encoding would be random)", jsonfile.Where(name, data, "model", "dropout"), *mo.Dropout)
	}
	normFn, err := parseNormalizer(f.Normalizer, []any{"normalizer"})
	if err != nil {
		return nil, err
	}
	byteLevel := false
	steps, err := parsePreSteps(f.PreTokenizer, []any{"pre_tokenizer"}, nil, &byteLevel)
	if err != nil {
		return nil, err
	}
	decFn, stripFirst, err := parseDecoder(f.Decoder, []any{"decoder"})
	if err != nil {
		return nil, err
	}
	if byteLevel {
		for key, v := range map[string]*string{"continuing_subword_prefix": mo.ContinuingSubwordPrefix, "end_of_word_suffix": mo.EndOfWordSuffix} {
			if v != nil && *v != "" {
				return nil, fmt.Errorf("%s: %s %q is not supported by byte-level BPE", jsonfile.Where(name, data, "model", key), key, *v)
			}
		}
	}

	if len(mo.Vocab) == 0 {
		return nil, fmt.Errorf("%s: model.vocab is empty: a BPE model needs its vocabulary", name)
	}
	added := map[string]bool{}
	for _, a := range f.AddedTokens {
		added[a.Content] = true
	}
	m := model{encoder: make(map[string]int32, len(mo.Vocab)), merges: make(map[uint64]uint64, len(mo.Merges)), wholePiece: mo.IgnoreMerges, chars: !byteLevel}
	hfID := make(map[string]int32, len(mo.Vocab)) // vocabulary string -> id
	maxID := -1
	for s, id := range mo.Vocab {
		// Ids index a table: one past any vocabulary (the largest have some
		// 2^18 tokens) is a damaged file, not an allocation to attempt.
		if id > maxVocabID {
			return nil, fmt.Errorf("%s: token %q has id %d, beyond any vocabulary (ids up to %d)", jsonfile.Where(name, data, "model", "vocab", s), s, id, maxVocabID)
		}
		maxID = max(maxID, id)
	}
	m.tokens = make([]string, maxID+1)
	// Sorted so that errors are reproducible.
	keys := make([]string, 0, len(mo.Vocab))
	for s := range mo.Vocab {
		keys = append(keys, s)
	}
	sort.Strings(keys)
	for _, s := range keys {
		id := mo.Vocab[s]
		if id < 0 {
			return nil, fmt.Errorf("%s: token %q has negative id %d", jsonfile.Where(name, data, "model", "vocab", s), s, id)
		}
		b, ok := s, true
		if byteLevel {
			b, ok = fromHF(s)
		}
		if !ok {
			if added[s] {
				continue // an added token kept in the vocabulary, handled below
			}
			return nil, fmt.Errorf("%s: token %q (id %d) has characters outside the byte-level alphabet", jsonfile.Where(name, data, "model", "vocab", s), s, id)
		}
		if m.tokens[id] != "" {
			return nil, fmt.Errorf("%s: token %q has id %d, as does %q", jsonfile.Where(name, data, "model", "vocab", s), s, id, toHF(m.tokens[id]))
		}
		m.tokens[id] = b
		m.encoder[b] = int32(id)
		hfID[s] = int32(id)
	}
	for i, raw := range mo.Merges {
		a, b, err := parseMerge(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: merge %d: %v", jsonfile.Where(name, data, "model", "merges", i), i, err)
		}
		ia, oka := hfID[a]
		ib, okb := hfID[b]
		switch {
		case !oka:
			return nil, fmt.Errorf("%s: merge %d (%q %q) names unknown token %q", jsonfile.Where(name, data, "model", "merges", i), i, a, b, a)
		case !okb:
			return nil, fmt.Errorf("%s: merge %d (%q %q) names unknown token %q", jsonfile.Where(name, data, "model", "merges", i), i, a, b, b)
		}
		merged := a + b
		if !byteLevel && mo.ContinuingSubwordPrefix != nil && *mo.ContinuingSubwordPrefix != "" {
			merged = a + strings.TrimPrefix(b, *mo.ContinuingSubwordPrefix)
		}
		res, ok := hfID[merged]
		if !ok {
			return nil, fmt.Errorf("%s: merge %d (%q %q) makes %q, which is not in the vocabulary", jsonfile.Where(name, data, "model", "merges", i), i, a, b, merged)
		}
		// A repeated pair takes its last rank, as Hugging Face's map does.
		m.merges[uint64(uint32(ia))<<32|uint64(uint32(ib))] = uint64(i)<<32 | uint64(uint32(res))
	}
	special := map[string]int{}
	h := &hfInfo{norm: normFn, steps: steps, chars: !byteLevel, unk: -1, fuseUnk: mo.FuseUnk, byteFallback: mo.ByteFallback, stripFirstSpace: stripFirst}
	var rawToks, normToks []addedTok
	for k, a := range f.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf("%s: added token with empty content", jsonfile.Where(name, data, "added_tokens", k))
		}
		if id, ok := special[a.Content]; ok && id != a.ID {
			return nil, fmt.Errorf("%s: added token %q has ids %d and %d", jsonfile.Where(name, data, "added_tokens", k), a.Content, id, a.ID)
		}
		special[a.Content] = a.ID
		at := addedTok{content: a.Content, id: a.ID, lstrip: a.LStrip, rstrip: a.RStrip}
		// As tokenizers.js: normalized defaults to !special, and only
		// matters when there is a normalizer.
		normalized := !a.Special
		if a.Normalized != nil {
			normalized = *a.Normalized
		}
		if normalized && !isNull(f.Normalizer) {
			if normFn != nil {
				at.content = normFn(at.content)
			}
			if at.content != "" {
				normToks = append(normToks, at)
			}
		} else {
			rawToks = append(rawToks, at)
		}
	}
	h.added = append(rawToks, normToks...)
	h.rawSplit = newAddedSplitter(h.added[:len(rawToks)], 0)
	h.normSplit = newAddedSplitter(h.added, len(rawToks))
	if h.prefix, h.suffix, err = parsePost(f.PostProcessor, []any{"post_processor"}, special); err != nil {
		return nil, err
	}
	if !byteLevel {
		if mo.UnkToken != nil {
			id, ok := m.encoder[*mo.UnkToken]
			if !ok {
				return nil, fmt.Errorf("%s: unk_token %q is not in the vocabulary", jsonfile.Where(name, data, "model", "unk_token"), *mo.UnkToken)
			}
			h.unk = id
		}
		for b := 0; b < 256; b++ {
			h.byteTok[b] = -1
			if id, ok := m.encoder[fmt.Sprintf("<0x%02X>", b)]; ok {
				h.byteTok[b] = id
			}
		}
		if mo.ContinuingSubwordPrefix != nil {
			h.contPrefix = *mo.ContinuingSubwordPrefix
		}
		if mo.EndOfWordSuffix != nil {
			h.eowSuffix = *mo.EndOfWordSuffix
		}
	}
	// The fast path: no normalizer, byte-level, one known regex.
	pat, prefixSpace, fast := pretok.GPT2, false, false
	if normFn == nil && byteLevel && h.normSplit == nil && len(steps) == 1 {
		switch st := steps[0].(type) {
		case patternStep:
			pat, fast = st.p, true
		case byteLevelStep:
			pat, prefixSpace, fast = pretok.GPT2, st.prefixSpace, st.regex
		}
	}
	h.pipe = !fast
	t, err := build(name, pat, m, special, 0)
	if err != nil {
		return nil, err
	}
	t.prefixSpace = prefixSpace
	t.hf = h
	// Per-token decoding (ByteLevel for byte-level models is the default:
	// their tokens are bytes already).
	for id, tok := range m.tokens {
		if tok == "" {
			continue
		}
		switch {
		case !byteLevel && decFn != nil:
			t.dec[id] = decFn(tok)
		case byteLevel && decFn != nil && !isByteLevelDecoder(f.Decoder):
			t.dec[id] = decFn(toHF(tok))
		}
	}
	return t, nil
}

func isByteLevelDecoder(raw json.RawMessage) bool {
	var c struct{ Type string }
	return isNull(raw) || json.Unmarshal(raw, &c) == nil && c.Type == "ByteLevel"
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

func brief(raw json.RawMessage) string {
	s := strings.Join(strings.Fields(string(raw)), " ")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

func parseMerge(raw json.RawMessage) (string, string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return "", "", fmt.Errorf("%q is not two tokens separated by one space", s)
		}
		return a, b, nil
	}
	var pair []string
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		return pair[0], pair[1], nil
	}
	return "", "", fmt.Errorf("%s is neither \"a b\" nor [\"a\", \"b\"]", brief(raw))
}

// Save writes the tokenizer as a Hugging Face tokenizer.json, through a
// temporary file renamed into place.
func (t *Tokenizer) Save(path string) error {
	return atomicfile.WriteWith(path, 0o644, t.WriteHF)
}

// WriteHF writes the tokenizer.json text. Only tokenizers with a merge list
// (trained, or loaded from tokenizer.json) can be written; a tiktoken rank
// file has none.
func (t *Tokenizer) WriteHF(w io.Writer) error {
	if t.hf != nil && t.hf.pipe {
		return fmt.Errorf("%s: writing tokenizer.json is supported only for byte-level BPE without normalizer and with a known pre-tokenizer regex", t.name)
	}
	if t.m.merges == nil {
		return fmt.Errorf("%s: a tiktoken-ranked vocabulary has no merge list to write as tokenizer.json", t.name)
	}
	type merge struct {
		rank uint64
		a, b int32
	}
	merges := make([]merge, 0, len(t.m.merges))
	for k, v := range t.m.merges {
		merges = append(merges, merge{v >> 32, int32(k >> 32), int32(uint32(k))})
	}
	sort.Slice(merges, func(i, j int) bool { return merges[i].rank < merges[j].rank })

	var b bytes.Buffer
	je := json.NewEncoder(&b)
	je.SetEscapeHTML(false) // keep <|endoftext|> readable
	str := func(s string) {
		je.Encode(s) // cannot fail on a string
		b.Truncate(b.Len() - 1)
	}
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	for k, name := range t.SpecialTokens() {
		if k > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    {\"id\": %d, \"content\": ", t.special[name])
		str(name)
		b.WriteString(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}")
	}
	b.WriteString("\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": ")
	bl := func(prefix, regex bool) string {
		return fmt.Sprintf(`{"type": "ByteLevel", "add_prefix_space": %v, "trim_offsets": true, "use_regex": %v}`, prefix, regex)
	}
	if t.pattern == pretok.GPT2 {
		b.WriteString(bl(t.prefixSpace, true))
	} else {
		b.WriteString(`{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": `)
		str(t.pattern.Regex())
		b.WriteString(`}, "behavior": "Isolated", "invert": false}, ` + bl(t.prefixSpace, false) + `]}`)
	}
	b.WriteString(",\n  \"post_processor\": null,\n  \"decoder\": " + bl(true, true) + ",\n")
	fmt.Fprintf(&b, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": %v,\n    \"vocab\": {", t.m.wholePiece)
	first := true
	for id, tok := range t.m.tokens {
		if tok == "" {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString("\n      ")
		str(toHF(tok))
		b.WriteString(": " + strconv.Itoa(id))
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for k, mg := range merges {
		if k > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      ")
		str(toHF(t.m.tokens[mg.a]) + " " + toHF(t.m.tokens[mg.b]))
	}
	b.WriteString("\n    ]\n  }\n}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// maxVocabID bounds a token id of a tokenizer.json (2^24, as model
// configs bound vocab_size).
const maxVocabID = 1 << 24
