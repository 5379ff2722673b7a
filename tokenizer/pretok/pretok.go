// Package pretok splits text into pre-tokens the way the GPT-2, cl100k
// (Llama 3), Qwen2 and o200k regular expressions do, with hand-written
// scanners instead of a backtracking regex engine.
//
// Each scanner reproduces leftmost-first alternation with greedy quantifiers
// and the (?!\S) look-ahead exactly; the reasoning for each alternative is
// written next to its code. The patterns cover every character, so the
// pieces tile the input: Next(s, i) is always > i.
//
// Invalid UTF-8: each invalid byte is one "character" of class
// [^\s\p{L}\p{N}], like U+FFFD (tiktoken-go converts the text to runes, which
// turns each invalid byte into U+FFFD; Rust strings cannot hold it). The
// byte itself stays in the piece, so encoding stays lossless.
//
// Case-insensitive contractions (?i:'s|...) use Unicode simple case folding as
// the Rust regex crate does (so "'ſ", long s, is a contraction in cl100k and
// o200k); regexp2, used by tiktoken-go, lower-cases instead and does not match
// it. That is the one known difference from tiktoken-go.
package pretok

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Pattern names a pre-tokenization regular expression.
type Pattern uint8

const (
	// GPT2 is the pattern of GPT-2, r50k_base, p50k_base and of Hugging
	// Face's ByteLevel pre-tokenizer with use_regex.
	GPT2 Pattern = iota
	// CL100K is the pattern of cl100k_base, also used by Llama 3.
	CL100K
	// Qwen2 is CL100K with single digits (\p{N} instead of \p{N}{1,3}).
	Qwen2
	// O200K is the pattern of o200k_base.
	O200K
)

// Regex texts. The first of each list is the canonical form written to
// tokenizer.json; the others are equivalent spellings found in the wild.
var regexes = map[Pattern][]string{
	GPT2: {
		`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
		`'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
		`'s|'t|'re|'ve|'m|'ll|'d| ?[\p{L}]+| ?[\p{N}]+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
	},
	CL100K: {
		`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
		`'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`,
	},
	Qwen2: {
		`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
	},
	O200K: {
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
	},
}

var names = map[Pattern]string{GPT2: "gpt2", CL100K: "cl100k", Qwen2: "qwen2", O200K: "o200k"}

// String returns the short name: gpt2, cl100k, qwen2 or o200k.
func (p Pattern) String() string {
	if n, ok := names[p]; ok {
		return n
	}
	return fmt.Sprintf("Pattern(%d)", uint8(p))
}

// Regex returns the regular expression the pattern implements.
func (p Pattern) Regex() string { return regexes[p][0] }

// ByName returns the pattern with the given short name.
func ByName(name string) (Pattern, error) {
	for p, n := range names {
		if n == name {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown pre-tokenizer pattern %q (known: gpt2, cl100k, qwen2, o200k)", name)
}

// ByRegex recognises a regular expression as one of the implemented patterns.
func ByRegex(re string) (Pattern, bool) {
	for p, list := range regexes {
		for _, r := range list {
			if r == re {
				return p, true
			}
		}
	}
	return 0, false
}

// Next returns the end (exclusive byte offset) of the piece that starts at
// s[i]; i must be < len(s).
func (p Pattern) Next(s string, i int) int {
	switch p {
	case GPT2:
		return nextGPT2(s, i)
	case CL100K:
		return nextCL100K(s, i, 3)
	case Qwen2:
		return nextCL100K(s, i, 1)
	case O200K:
		return nextO200K(s, i)
	}
	panic("pretok: unknown pattern")
}

// Split calls fn for each piece of s in order.
func (p Pattern) Split(s string, fn func(piece string)) {
	for i := 0; i < len(s); {
		j := p.Next(s, i)
		fn(s[i:j])
		i = j
	}
}

// Pieces returns the pieces of s.
func (p Pattern) Pieces(s string) []string {
	var out []string
	p.Split(s, func(x string) { out = append(out, x) })
	return out
}

// run returns the end of the longest run of runes from i whose class has
// any of the bits in mask.
func run(s string, i int, mask uint8) int {
	for i < len(s) {
		c, w := at(s, i)
		if c&mask == 0 {
			break
		}
		i += w
	}
	return i
}

// digits returns the end of \p{N}{1,max} from i: at most max runes of
// class cN (none when s[i] is not one).
func digits(s string, i, max int) int {
	for k := 0; k < max && i < len(s); k++ {
		c, w := at(s, i)
		if c&cN == 0 {
			break
		}
		i += w
	}
	return i
}

const other = cL | cN | cS // a rune with none of these is [^\s\p{L}\p{N}]

// otherRun returns the end of the run of [^\s\p{L}\p{N}] runes from i.
func otherRun(s string, i int) int {
	for i < len(s) {
		c, w := at(s, i)
		if c&other != 0 {
			break
		}
		i += w
	}
	return i
}

// spaceTail handles the three whitespace alternatives shared by all patterns
// at a position holding whitespace that no earlier alternative took:
//
//	\s*[\r\n]+  (cl100k, o200k only: withNewline) greedy \s* backs off to the
//	            last \r or \n of the whitespace run, and [\r\n]+ cannot go
//	            further, so the match ends just after that last newline;
//	\s+(?!\S)   the whole run at end of text, else the run minus its last
//	            rune (which is followed by \S), if that leaves one or more;
//	\s+         the whole run (only reached for a single rune).
func spaceTail(s string, i int, withNewline bool) int {
	end, lastStart, afterNL, n := i, i, -1, 0
	for end < len(s) {
		c, w := at(s, end)
		if c&cS == 0 {
			break
		}
		if c&cCRLF != 0 {
			afterNL = end + w
		}
		lastStart = end
		end += w
		n++
	}
	if withNewline && afterNL >= 0 {
		return afterNL
	}
	if end == len(s) || n == 1 {
		return end
	}
	return lastStart
}

// nextGPT2 implements
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func nextGPT2(s string, i int) int {
	if s[i] == '\'' {
		if n := contraction(s, i+1); n > 0 {
			return i + 1 + n
		}
	}
	// " ?X+" for the three disjoint classes X. Taking the optional space is
	// tried first; without it the space itself would have to be in X, which
	// it never is, so only the class of the rune after the space matters.
	j := i
	if s[i] == ' ' && i+1 < len(s) {
		j = i + 1
	}
	c, _ := at(s, j)
	switch {
	case c&cL != 0:
		return run(s, j, cL)
	case c&cN != 0:
		return run(s, j, cN)
	case c&other == 0:
		return otherRun(s, j)
	}
	return spaceTail(s, i, false)
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d (case-sensitive) after the
// apostrophe at s[j-1] and returns the matched length without it.
func contraction(s string, j int) int {
	if j >= len(s) {
		return 0
	}
	switch s[j] {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if j+1 < len(s) && s[j+1] == 'e' {
			return 2
		}
	case 'l':
		if j+1 < len(s) && s[j+1] == 'l' {
			return 2
		}
	}
	return 0
}

// foldOrbit holds the simple case-folding orbit of each letter used by the
// case-insensitive contractions (s also matches U+017F, long s).
var foldOrbit = map[byte][]rune{}

func init() {
	for _, b := range []byte("stmdrevl") {
		r0 := rune(b)
		orbit := []rune{r0}
		for r := unicode.SimpleFold(r0); r != r0; r = unicode.SimpleFold(r) {
			orbit = append(orbit, r)
		}
		foldOrbit[b] = orbit
	}
}

// foldIs reports whether the rune at s[j] folds to the ASCII letter lc and
// returns its width.
func foldIs(s string, j int, lc byte) (int, bool) {
	if j >= len(s) {
		return 0, false
	}
	b := s[j]
	if b < utf8.RuneSelf {
		return 1, b == lc || b == lc-'a'+'A'
	}
	r, w := utf8.DecodeRuneInString(s[j:])
	for _, o := range foldOrbit[lc] {
		if o == r {
			return w, true
		}
	}
	return 0, false
}

// contractionFold matches (?i:'s|'t|'re|'ve|'m|'ll|'d) with the apostrophe
// at s[i]; it returns the length including the apostrophe, or 0.
func contractionFold(s string, i int) int {
	if i >= len(s) || s[i] != '\'' {
		return 0
	}
	j := i + 1
	for _, lc := range []byte("stmd") {
		if w, ok := foldIs(s, j, lc); ok {
			return 1 + w
		}
	}
	for _, two := range [...][2]byte{{'r', 'e'}, {'v', 'e'}, {'l', 'l'}} {
		if w1, ok := foldIs(s, j, two[0]); ok {
			if w2, ok := foldIs(s, j+w1, two[1]); ok {
				return 1 + w1 + w2
			}
		}
	}
	return 0
}

// nextCL100K implements, with maxDigits 3 (cl100k) or 1 (Qwen2),
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func nextCL100K(s string, i int, maxDigits int) int {
	if n := contractionFold(s, i); n > 0 {
		return i + n
	}
	c0, w0 := at(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+ : with the optional rune taken, a letter must
	// follow; without it, s[i] must be a letter. Both cannot apply at once.
	if c0&(cCRLF|cL|cN) == 0 && i+w0 < len(s) {
		if c1, _ := at(s, i+w0); c1&cL != 0 {
			return run(s, i+w0, cL)
		}
	}
	if c0&cL != 0 {
		return run(s, i, cL)
	}
	if c0&cN != 0 {
		return digits(s, i, maxDigits)
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	if j, ok := punct(s, i, c0); ok {
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	return spaceTail(s, i, true)
}

// punct matches ` ?[^\s\p{L}\p{N}]+` at i (c0 is the class of s[i]).
func punct(s string, i int, c0 uint8) (int, bool) {
	if s[i] == ' ' && i+1 < len(s) {
		if c1, _ := at(s, i+1); c1&other == 0 {
			return otherRun(s, i+1), true
		}
	}
	if c0&other == 0 {
		return otherRun(s, i), true
	}
	return 0, false
}

// nextO200K implements
//
//	A1 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?
//	A2 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?
//	|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// The upper set U and lower set W share Lm, Lo and M ("both" runes B).
// A1 from a start s0: U* first takes the maximal U run [s0,e). If s[e] is in
// W (it can only be Ll there), W+ takes the maximal W run from e. Otherwise
// U* backs off one rune at a time until W+ can start, i.e. to the last B
// rune of the run; W+ then ends right after it (the next rune is Lu/Lt or
// e). With no B rune A1 fails for this start. The optional prefix is tried
// taken first, then not taken (that only matters when s[i] is a mark, which
// is both a valid prefix and a U/W rune). A2 succeeds whenever the U run
// from a start is non-empty, ending after the W run that follows it.
func nextO200K(s string, i int) int {
	c0, w0 := at(s, i)
	starts := [2]int{-1, i}
	if c0&(cCRLF|cL|cN) == 0 {
		starts[0] = i + w0
	}
	for _, s0 := range starts {
		if s0 < 0 || s0 >= len(s) {
			continue
		}
		e, lastB := s0, -1
		for e < len(s) {
			c, w := at(s, e)
			if c&cUpper == 0 {
				break
			}
			if c&cLower != 0 {
				lastB = e + w
			}
			e += w
		}
		end := -1
		if e < len(s) {
			if c, _ := at(s, e); c&cLower != 0 {
				end = run(s, e, cLower)
			}
		}
		if end < 0 {
			end = lastB
		}
		if end >= 0 {
			return end + contractionFold(s, end)
		}
	}
	for _, s0 := range starts {
		if s0 < 0 || s0 >= len(s) {
			continue
		}
		if e := run(s, s0, cUpper); e > s0 {
			end := run(s, e, cLower)
			return end + contractionFold(s, end)
		}
	}
	if c0&cN != 0 {
		return digits(s, i, 3)
	}
	if j, ok := punct(s, i, c0); ok {
		for j < len(s) && (s[j] == '\r' || s[j] == '\n' || s[j] == '/') {
			j++
		}
		return j
	}
	return spaceTail(s, i, true)
}
