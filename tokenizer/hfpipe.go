package tokenizer

// The general Hugging Face pipeline: normalizer, pre-tokenizers, BPE over
// bytes (byte-level) or over characters (SentencePiece style, with
// byte_fallback), added tokens, post-processor and decoders. Files whose
// pipeline is one of the known regexes over byte-level BPE keep the fast
// path of tokenizer.go (pattern scanner straight into the merge loop).

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"

	"github.com/ares-rlhf/ares/tokenizer/pretok"
)

// hfInfo is what a tokenizer loaded from tokenizer.json adds to the fast
// path.
type hfInfo struct {
	pipe  bool                // ordinary text goes through norm/steps/model below
	norm  func(string) string // nil: none
	steps []preStep
	chars bool // model over characters rather than bytes

	// character model options
	unk          int32 // -1: none
	fuseUnk      bool
	byteFallback bool
	byteTok      [256]int32 // <0xXX> ids, -1 where missing
	contPrefix   string
	eowSuffix    string

	// added tokens: raw ones match the text before normalization, the
	// others (normalized: true, with a normalizer) after it.
	rawSplit, normSplit *addedSplitter

	added []addedTok

	prefix, suffix  []int // post-processor ids around the text
	stripFirstSpace bool  // Metaspace decoder: the first token loses a leading space
}

// ---- normalizers ----

type hfComp struct {
	Type          string            `json:"type"`
	Normalizers   []json.RawMessage `json:"normalizers"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	Processors    []json.RawMessage `json:"processors"`
	Pattern       json.RawMessage   `json:"pattern"`
	Content       *string           `json:"content"`
	Prepend       string            `json:"prepend"`
	StripLeft     bool              `json:"strip_left"`
	StripRight    bool              `json:"strip_right"`
	Start         int               `json:"start"`
	Stop          int               `json:"stop"`
	Behavior      string            `json:"behavior"`
	Invert        bool              `json:"invert"`
	AddPrefixSp   *bool             `json:"add_prefix_space"`
	UseRegex      *bool             `json:"use_regex"`
	Replacement   string            `json:"replacement"`
	PrependScheme string            `json:"prepend_scheme"`
	Split         *bool             `json:"split"`
	Individual    bool              `json:"individual_digits"`
	Single        []json.RawMessage `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
	Sep *[2]json.RawMessage `json:"sep"`
	Cls *[2]json.RawMessage `json:"cls"`
}

// compErr names the component at path.
type compErr struct {
	path []any
	msg  string
}

func (e *compErr) Error() string { return e.msg }

func errAt(path []any, format string, a ...any) error {
	return &compErr{append([]any(nil), path...), fmt.Sprintf(format, a...)}
}

func sub(path []any, more ...any) []any { return append(append([]any(nil), path...), more...) }

func parseComp(raw json.RawMessage, path []any) (hfComp, error) {
	var c hfComp
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, errAt(path, "%v", err)
	}
	return c, nil
}

// hfPattern is a Split/Replace pattern: {"String": s} or {"Regex": r}.
func hfPattern(raw json.RawMessage, path []any) (lit string, re string, isRe bool, err error) {
	var p struct {
		String *string
		Regex  *string
	}
	if json.Unmarshal(raw, &p) != nil || (p.String == nil) == (p.Regex == nil) {
		return "", "", false, errAt(sub(path, "pattern"), "pattern %s is neither {\"String\": ...} nor {\"Regex\": ...}", brief(raw))
	}
	if p.String != nil {
		return *p.String, "", false, nil
	}
	return "", *p.Regex, true, nil
}

func compileRe(re string, path []any) (*regexp2.Regexp, error) {
	r, err := regexp2.Compile(re, regexp2.None)
	if err != nil {
		return nil, errAt(sub(path, "pattern"), "regex %q: %v", re, err)
	}
	return r, nil
}

func parseNormalizer(raw json.RawMessage, path []any) (func(string) string, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComp(raw, path)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "NFC":
		return norm.NFC.String, nil
	case "NFD":
		return norm.NFD.String, nil
	case "NFKC":
		return norm.NFKC.String, nil
	case "NFKD":
		return norm.NFKD.String, nil
	case "Lowercase":
		return strings.ToLower, nil
	case "StripAccents":
		return func(s string) string {
			return strings.Map(func(r rune) rune {
				if unicode.Is(unicode.Mn, r) {
					return -1
				}
				return r
			}, s)
		}, nil
	case "Strip":
		l, r := c.StripLeft, c.StripRight
		return func(s string) string {
			if l {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if r {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
			return s
		}, nil
	case "Prepend":
		p := c.Prepend
		return func(s string) string {
			if s == "" {
				return s
			}
			return p + s
		}, nil
	case "Replace":
		if c.Content == nil {
			return nil, errAt(path, "Replace normalizer without \"content\"")
		}
		return replacer(c.Pattern, *c.Content, path)
	case "Sequence":
		var fns []func(string) string
		for i, r := range c.Normalizers {
			fn, err := parseNormalizer(r, sub(path, "normalizers", i))
			if err != nil {
				return nil, err
			}
			if fn != nil {
				fns = append(fns, fn)
			}
		}
		switch len(fns) {
		case 0:
			return nil, nil
		case 1:
			return fns[0], nil
		}
		return func(s string) string {
			for _, fn := range fns {
				s = fn(s)
			}
			return s
		}, nil
	}
	return nil, errAt(path, "normalizer %s is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Prepend, Replace, Sequence)", brief(raw))
}

func replacer(pattern json.RawMessage, content string, path []any) (func(string) string, error) {
	lit, re, isRe, err := hfPattern(pattern, path)
	if err != nil {
		return nil, err
	}
	if !isRe {
		if lit == "" {
			return func(s string) string { return s }, nil
		}
		return func(s string) string { return strings.ReplaceAll(s, lit, content) }, nil
	}
	r, err := compileRe(re, path)
	if err != nil {
		return nil, err
	}
	return func(s string) string {
		out, err := r.ReplaceFunc(s, func(regexp2.Match) string { return content }, -1, -1)
		if err != nil {
			return s
		}
		return out
	}, nil
}

// ---- pre-tokenizers ----

// preStep splits one piece. first says the piece starts the text (for
// Metaspace's prepend_scheme "first").
type preStep interface {
	split(s string, first bool, emit func(piece string, first bool))
}

const (
	bRemoved = iota
	bIsolated
	bMergedWithPrevious
	bMergedWithNext
	bContiguous
)

var behaviors = map[string]int{"Removed": bRemoved, "Isolated": bIsolated, "MergedWithPrevious": bMergedWithPrevious, "MergedWithNext": bMergedWithNext, "Contiguous": bContiguous}

// patternStep is a known regex, scanned by pretok (Isolated, not inverted).
type patternStep struct{ p pretok.Pattern }

func (ps patternStep) split(s string, first bool, emit func(string, bool)) {
	for i := 0; i < len(s); {
		j := ps.p.Next(s, i)
		emit(s[i:j], first && i == 0)
		i = j
	}
}

type span struct {
	a, b  int
	match bool
}

// splitStep finds matches (a literal, a regex or single characters) and
// applies a behavior, as Hugging Face's NormalizedString::split does.
type splitStep struct {
	lit      string
	re       *regexp2.Regexp
	char     func(rune) bool
	behavior int
	invert   bool
}

func (st *splitStep) matches(s string) []span {
	var out []span
	last := 0
	add := func(a, b int) {
		if last < a {
			out = append(out, span{last, a, false})
		}
		out = append(out, span{a, b, true})
		last = b
	}
	switch {
	case st.char != nil:
		for i, r := range s {
			if st.char(r) {
				add(i, i+utf8.RuneLen(r))
			}
		}
		// utf8.RuneLen(RuneError) is 3; invalid bytes never match a class here.
	case st.re != nil:
		runes := []rune(s)
		off := make([]int, 0, len(runes)+1)
		for i := 0; i < len(s); {
			_, w := utf8.DecodeRuneInString(s[i:])
			off = append(off, i)
			i += w
		}
		off = append(off, len(s))
		m, _ := st.re.FindRunesMatch(runes)
		for m != nil {
			add(off[m.Index], off[m.Index+m.Length])
			m, _ = st.re.FindNextMatch(m)
		}
	case st.lit != "":
		for i := 0; ; {
			k := strings.Index(s[i:], st.lit)
			if k < 0 {
				break
			}
			add(i+k, i+k+len(st.lit))
			i += k + len(st.lit)
		}
	}
	if last < len(s) {
		out = append(out, span{last, len(s), false})
	}
	if st.invert {
		for i := range out {
			out[i].match = !out[i].match
		}
	}
	return out
}

func (st *splitStep) split(s string, first bool, emit func(string, bool)) {
	var out []span
	ms := st.matches(s)
	switch st.behavior {
	case bRemoved:
		for _, m := range ms {
			if !m.match {
				out = append(out, m)
			}
		}
	case bIsolated:
		out = ms
	case bMergedWithPrevious:
		prev := false
		for _, m := range ms {
			if m.match && !prev && len(out) > 0 {
				out[len(out)-1].b = m.b
			} else {
				out = append(out, m)
			}
			prev = m.match
		}
	case bMergedWithNext:
		prev := false
		for k := len(ms) - 1; k >= 0; k-- {
			m := ms[k]
			if m.match && !prev && len(out) > 0 {
				out[len(out)-1].a = m.a
			} else {
				out = append(out, m)
			}
			prev = m.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case bContiguous:
		prev := false
		for _, m := range ms {
			if m.match == prev && len(out) > 0 {
				out[len(out)-1].b = m.b
			} else {
				out = append(out, m)
			}
			prev = m.match
		}
	}
	for _, m := range out {
		if m.a < m.b {
			emit(s[m.a:m.b], first && m.a == 0)
		}
	}
}

// byteLevelStep is ByteLevel: the byte mapping itself is implicit (the
// model works on bytes).
type byteLevelStep struct{ prefixSpace, regex bool }

func (bl byteLevelStep) split(s string, first bool, emit func(string, bool)) {
	if bl.prefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if bl.regex {
		patternStep{pretok.GPT2}.split(s, first, emit)
		return
	}
	emit(s, first)
}

type metaspaceStep struct {
	repl    string
	scheme  string // always, first, never
	doSplit bool
}

func (ms metaspaceStep) split(s string, first bool, emit func(string, bool)) {
	s = strings.ReplaceAll(s, " ", ms.repl)
	if !strings.HasPrefix(s, ms.repl) && (ms.scheme == "always" || ms.scheme == "first" && first) {
		s = ms.repl + s
	}
	if !ms.doSplit {
		emit(s, first)
		return
	}
	(&splitStep{lit: ms.repl, behavior: bMergedWithNext}).split(s, first, emit)
}

func isPunct(r rune) bool {
	return unicode.IsPunct(r) || r < 0x80 && strings.ContainsRune("$+<=>^`|~", r)
}

// parsePreSteps flattens a pre_tokenizer into steps; byteLevel reports a
// ByteLevel step (the model then works on bytes).
func parsePreSteps(raw json.RawMessage, path []any, steps []preStep, byteLevel *bool) ([]preStep, error) {
	if isNull(raw) {
		return steps, nil
	}
	c, err := parseComp(raw, path)
	if err != nil {
		return nil, err
	}
	behavior := func() (int, error) {
		b, ok := behaviors[c.Behavior]
		if !ok {
			return 0, errAt(sub(path, "behavior"), "Split behavior %q is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous", c.Behavior)
		}
		return b, nil
	}
	switch c.Type {
	case "Sequence":
		for i, r := range c.Pretokenizers {
			if steps, err = parsePreSteps(r, sub(path, "pretokenizers", i), steps, byteLevel); err != nil {
				return nil, err
			}
		}
		return steps, nil
	case "ByteLevel":
		*byteLevel = true
		st := byteLevelStep{prefixSpace: c.AddPrefixSp != nil && *c.AddPrefixSp, regex: c.UseRegex == nil || *c.UseRegex}
		if !st.prefixSpace && !st.regex {
			return steps, nil // the mapping alone: nothing to split
		}
		return append(steps, st), nil
	case "Split":
		b, err := behavior()
		if err != nil {
			return nil, err
		}
		lit, re, isRe, err := hfPattern(c.Pattern, path)
		if err != nil {
			return nil, err
		}
		if isRe && b == bIsolated && !c.Invert {
			if p, ok := pretok.ByRegex(re); ok {
				return append(steps, patternStep{p}), nil
			}
		}
		st := &splitStep{lit: lit, behavior: b, invert: c.Invert}
		if isRe {
			if st.re, err = compileRe(re, path); err != nil {
				return nil, err
			}
		}
		return append(steps, st), nil
	case "Metaspace":
		st := metaspaceStep{repl: c.Replacement, scheme: c.PrependScheme, doSplit: c.Split == nil || *c.Split}
		if st.repl == "" {
			st.repl = "\u2581"
		}
		if st.scheme == "" {
			st.scheme = "always"
			if c.AddPrefixSp != nil && !*c.AddPrefixSp {
				st.scheme = "never"
			}
		}
		if st.scheme != "always" && st.scheme != "first" && st.scheme != "never" {
			return nil, errAt(sub(path, "prepend_scheme"), "Metaspace prepend_scheme %q is not always, first or never", st.scheme)
		}
		return append(steps, st), nil
	case "Digits":
		b := bContiguous
		if c.Individual {
			b = bIsolated
		}
		return append(steps, &splitStep{char: unicode.IsNumber, behavior: b}), nil
	case "Punctuation":
		b := bIsolated
		if c.Behavior != "" {
			if b, err = behavior(); err != nil {
				return nil, err
			}
		}
		return append(steps, &splitStep{char: isPunct, behavior: b}), nil
	case "WhitespaceSplit":
		return append(steps, &splitStep{char: unicode.IsSpace, behavior: bRemoved}), nil
	case "Whitespace":
		r, err := compileRe(`\w+|[^\w\s]+`, path)
		if err != nil {
			return nil, err
		}
		return append(steps, &splitStep{re: r, behavior: bRemoved, invert: true}), nil
	}
	return nil, errAt(path, "pre-tokenizer %s is not supported (supported: Sequence, Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit)", brief(raw))
}

// ---- decoders ----

// parseDecoder returns the per-token decoding and whether the first
// token loses a leading space (Metaspace).
func parseDecoder(raw json.RawMessage, path []any) (func(string) string, bool, error) {
	if isNull(raw) {
		return nil, false, nil
	}
	c, err := parseComp(raw, path)
	if err != nil {
		return nil, false, err
	}
	switch c.Type {
	case "ByteLevel":
		return func(s string) string {
			if b, ok := fromHF(s); ok {
				return b
			}
			return s
		}, false, nil
	case "Fuse":
		return nil, false, nil
	case "ByteFallback":
		return func(s string) string {
			if b, ok := byteToken(s); ok {
				return string([]byte{b})
			}
			return s
		}, false, nil
	case "Replace":
		if c.Content == nil {
			return nil, false, errAt(path, "Replace decoder without \"content\"")
		}
		fn, err := replacer(c.Pattern, *c.Content, path)
		return fn, false, err
	case "Strip":
		if c.Content == nil || utf8.RuneCountInString(*c.Content) != 1 {
			return nil, false, errAt(path, "Strip decoder needs a one-character \"content\"")
		}
		content, start, stop := *c.Content, c.Start, c.Stop
		return func(s string) string {
			for k := 0; k < start && strings.HasPrefix(s, content); k++ {
				s = s[len(content):]
			}
			for k := 0; k < stop && strings.HasSuffix(s, content); k++ {
				s = s[:len(s)-len(content)]
			}
			return s
		}, false, nil
	case "Metaspace":
		repl := c.Replacement
		if repl == "" {
			repl = "\u2581"
		}
		strip := c.PrependScheme != "never"
		if c.PrependScheme == "" && c.AddPrefixSp != nil {
			strip = *c.AddPrefixSp
		}
		return func(s string) string { return strings.ReplaceAll(s, repl, " ") }, strip, nil
	case "Sequence":
		var fns []func(string) string
		strip := false
		for i, r := range c.Decoders {
			fn, st, err := parseDecoder(r, sub(path, "decoders", i))
			if err != nil {
				return nil, false, err
			}
			strip = strip || st
			if fn != nil {
				fns = append(fns, fn)
			}
		}
		return func(s string) string {
			for _, fn := range fns {
				s = fn(s)
			}
			return s
		}, strip, nil
	}
	return nil, false, errAt(path, "decoder %s is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)", brief(raw))
}

// byteToken parses "<0xXX>".
func byteToken(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(s[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// ---- post-processors ----

func parsePost(raw json.RawMessage, path []any, added map[string]int) (prefix, suffix []int, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	c, err := parseComp(raw, path)
	if err != nil {
		return nil, nil, err
	}
	tokID := func(p *[2]json.RawMessage, key string) (int, error) {
		var id int
		if p == nil || json.Unmarshal(p[1], &id) != nil {
			return 0, errAt(sub(path, key), "%s: want [\"token\", id]", key)
		}
		return id, nil
	}
	switch c.Type {
	case "ByteLevel":
		return nil, nil, nil
	case "RobertaProcessing", "BertProcessing":
		cls, err := tokID(c.Cls, "cls")
		if err != nil {
			return nil, nil, err
		}
		sep, err := tokID(c.Sep, "sep")
		if err != nil {
			return nil, nil, err
		}
		return []int{cls}, []int{sep}, nil
	case "TemplateProcessing":
		seen := false
		for i, r := range c.Single {
			var piece struct {
				SpecialToken *struct{ ID string } `json:"SpecialToken"`
				Sequence     *struct{ ID string } `json:"Sequence"`
			}
			if json.Unmarshal(r, &piece) != nil || (piece.SpecialToken == nil) == (piece.Sequence == nil) {
				return nil, nil, errAt(sub(path, "single", i), "template piece %s is neither SpecialToken nor Sequence", brief(r))
			}
			if piece.Sequence != nil {
				if seen || piece.Sequence.ID != "A" {
					return nil, nil, errAt(sub(path, "single", i), "template sequence %q: want one $A", piece.Sequence.ID)
				}
				seen = true
				continue
			}
			st, ok := c.SpecialTokens[piece.SpecialToken.ID]
			if !ok {
				return nil, nil, errAt(sub(path, "single", i), "template names special token %q, missing from special_tokens", piece.SpecialToken.ID)
			}
			if seen {
				suffix = append(suffix, st.IDs...)
			} else {
				prefix = append(prefix, st.IDs...)
			}
		}
		return prefix, suffix, nil
	case "Sequence":
		for i, r := range c.Processors {
			p, s, err := parsePost(r, sub(path, "processors", i), added)
			if err != nil {
				return nil, nil, err
			}
			prefix = append(prefix, p...)
			suffix = append(s, suffix...)
		}
		return prefix, suffix, nil
	}
	return nil, nil, errAt(path, "post-processor %s is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)", brief(raw))
}

// ---- added tokens ----

type addedTok struct {
	content        string
	id             int
	lstrip, rstrip bool
}

// addedSplitter finds added tokens, leftmost then longest, with a byte trie.
type addedSplitter struct {
	first [256]bool
	nodes []trieNode
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into toks + 1; 0 = none
}

// newAddedSplitter indexes all[from:]; matches name indices into all.
func newAddedSplitter(all []addedTok, from int) *addedSplitter {
	if len(all) <= from {
		return nil
	}
	a := &addedSplitter{nodes: []trieNode{{}}}
	for k := from; k < len(all); k++ {
		t := all[k]
		n := int32(0)
		for i := 0; i < len(t.content); i++ {
			c := t.content[i]
			if a.nodes[n].next == nil {
				a.nodes[n].next = map[byte]int32{}
			}
			nx, ok := a.nodes[n].next[c]
			if !ok {
				nx = int32(len(a.nodes))
				a.nodes = append(a.nodes, trieNode{})
				a.nodes[n].next[c] = nx
			}
			n = nx
		}
		if a.nodes[n].tok == 0 {
			a.nodes[n].tok = int32(k + 1)
		}
		a.first[t.content[0]] = true
	}
	return a
}

// section is a stretch of text (tok < 0) or an added token.
type section struct {
	text string
	tok  int
}

func (a *addedSplitter) split(s string, toks []addedTok, out []section) []section {
	if a == nil {
		return append(out, section{s, -1})
	}
	start := len(out)
	last := 0
	for i := 0; i < len(s); {
		if !a.first[s[i]] {
			i++
			continue
		}
		n, best, end := int32(0), int32(0), 0
		for j := i; j < len(s); j++ {
			nx, ok := a.nodes[n].next[s[j]]
			if !ok {
				break
			}
			n = nx
			if a.nodes[n].tok != 0 {
				best, end = a.nodes[n].tok, j+1
			}
		}
		if best == 0 {
			i++
			continue
		}
		if last < i {
			out = append(out, section{s[last:i], -1})
		}
		out = append(out, section{s[i:end], int(best - 1)})
		i, last = end, end
	}
	if last < len(s) {
		out = append(out, section{s[last:], -1})
	}
	// lstrip/rstrip trim the neighbouring text, as tokenizers.js does.
	secs := out[start:]
	for k, sc := range secs {
		if sc.tok < 0 {
			continue
		}
		t := toks[sc.tok]
		if t.lstrip && k > 0 && secs[k-1].tok < 0 {
			secs[k-1].text = strings.TrimRightFunc(secs[k-1].text, unicode.IsSpace)
		}
		if t.rstrip && k+1 < len(secs) && secs[k+1].tok < 0 {
			secs[k+1].text = strings.TrimLeftFunc(secs[k+1].text, unicode.IsSpace)
		}
	}
	return out
}

// ---- encoding ----

// encodePipe encodes ordinary text: normalizer, pre-tokenizers, model.
func (t *Tokenizer) encodePipe(dst []int, text string, first bool) []int {
	h := t.hf
	if h.norm != nil {
		text = h.norm(text)
	}
	return t.encodeNormalized(dst, text, first)
}

func (t *Tokenizer) encodeNormalized(dst []int, text string, first bool) []int {
	h := t.hf
	var walk func(k int, s string, first bool)
	walk = func(k int, s string, first bool) {
		if k == len(h.steps) {
			if s == "" {
				return
			}
			if h.chars {
				dst = t.encodeChars(dst, s)
			} else {
				dst = t.m.encodePiece(dst, s)
			}
			return
		}
		h.steps[k].split(s, first, func(p string, f bool) { walk(k+1, p, f) })
	}
	walk(0, text, first)
	return dst
}

// encodeChars is BPE over characters: each character is its token or,
// failing that, its <0xXX> byte tokens (byte_fallback) or unk.
func (t *Tokenizer) encodeChars(dst []int, word string) []int {
	h, m := t.hf, &t.m
	if m.wholePiece {
		if id, ok := m.lookup(word); ok {
			return append(dst, int(id))
		}
	}
	ids := make([]int32, 0, len(word))
	pendingUnk := false
	for i := 0; i < len(word); {
		_, w := utf8.DecodeRuneInString(word[i:])
		s := word[i : i+w]
		if h.contPrefix != "" && i > 0 {
			s = h.contPrefix + s
		}
		if h.eowSuffix != "" && i+w == len(word) {
			s += h.eowSuffix
		}
		i += w
		if id, ok := m.lookup(s); ok {
			ids = append(ids, id)
			pendingUnk = false
			continue
		}
		if h.byteFallback {
			ok := true
			for k := 0; k < len(s); k++ {
				ok = ok && h.byteTok[s[k]] >= 0
			}
			if ok {
				for k := 0; k < len(s); k++ {
					ids = append(ids, h.byteTok[s[k]])
				}
				pendingUnk = false
				continue
			}
		}
		if h.unk >= 0 {
			if !(h.fuseUnk && pendingUnk) {
				ids = append(ids, h.unk)
			}
			pendingUnk = true
		}
	}
	return m.mergeLinked(dst, ids, "")
}

// EncodeHF encodes text the way Hugging Face's tokenizer.encode does (in
// tokenizers.js and the Rust tokenizers): added tokens written in the text
// become their ids, and with addSpecialTokens the post-processor's tokens
// (for example a BOS id from TemplateProcessing) are added around the text.
// Hugging Face's default is addSpecialTokens = true. Unlike Encode, text
// can therefore produce control tokens: use it on trusted text only.
//
// For tokenizers not loaded from tokenizer.json every special token is
// recognised and nothing is added.
func (t *Tokenizer) EncodeHF(text string, addSpecialTokens bool) []int {
	dst := make([]int, 0, len(text)/3+4)
	h := t.hf
	if h == nil {
		set, _ := t.specialSet(nil)
		return t.appendSpecial(dst, text, set)
	}
	if addSpecialTokens {
		dst = append(dst, h.prefix...)
	}
	toks := h.added
	secs := h.rawSplit.split(text, toks, nil)
	for k, sc := range secs {
		if sc.tok >= 0 {
			dst = append(dst, toks[sc.tok].id)
			continue
		}
		if sc.text == "" {
			continue
		}
		if !h.pipe {
			dst = t.appendOrdinary(dst, sc.text)
			continue
		}
		s := sc.text
		if h.norm != nil {
			s = h.norm(s)
		}
		for _, ss := range h.normSplit.split(s, toks, nil) {
			if ss.tok >= 0 {
				dst = append(dst, toks[ss.tok].id)
			} else if ss.text != "" {
				dst = t.encodeNormalized(dst, ss.text, k == 0)
			}
		}
	}
	if addSpecialTokens {
		dst = append(dst, h.suffix...)
	}
	return dst
}

// SpecialAffixes returns the ids EncodeHF adds around the text when asked
// to (a tokenizer.json post-processor's, e.g. Gemma's BOS); none for other
// tokenizers.
func (t *Tokenizer) SpecialAffixes() (prefix, suffix []int) {
	if t.hf == nil {
		return nil, nil
	}
	return append([]int(nil), t.hf.prefix...), append([]int(nil), t.hf.suffix...)
}
