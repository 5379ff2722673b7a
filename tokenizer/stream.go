package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// StreamOptions configure EncodeStream and DecodeStream, the line-oriented
// forms behind `ares tokenizer encode|decode`.
type StreamOptions struct {
	// Name labels the input in errors (default "input").
	Name string
	// JSONL: each document is a JSON string on its own line, so documents can
	// hold newlines. Arbitrary bytes travel as Python's surrogateescape
	// does: \udc80-\udcff stand for the bytes 0x80-0xff that are not valid
	// UTF-8. Otherwise a document is a raw line without its "\n".
	JSONL bool
	// Special lists the special tokens EncodeStream recognises in text;
	// "all" means every one. Empty: special-token text is plain text.
	Special []string
	// HF encodes as Hugging Face's Tokenizer.encode does (EncodeHF with
	// add_special_tokens): added tokens recognised with their own rules and
	// the post-processor's tokens (Gemma's <bos>) added. Excludes Special.
	HF bool
}

const (
	streamLines = 4096
	streamBytes = 8 << 20
)

// EncodeStream reads documents from r and writes one JSON array of ids per
// document to w, encoding batches on all cores.
func (t *Tokenizer) EncodeStream(r io.Reader, w io.Writer, opt StreamOptions) error {
	name := opt.Name
	if name == "" {
		name = "input"
	}
	if opt.HF && len(opt.Special) > 0 {
		return fmt.Errorf("%s: the Hugging Face mode recognises the added tokens itself; give no special tokens with it", name)
	}
	var set []string
	if len(opt.Special) > 0 {
		names := opt.Special
		if len(names) == 1 && names[0] == "all" {
			names = nil
		}
		var err error
		if set, err = t.specialSet(names); err != nil {
			return err
		}
	}
	br := bufio.NewReaderSize(r, 1<<16)
	bw := bufio.NewWriterSize(w, 1<<16)
	line := 0
	for {
		docs, err := readBatch(br, &line, name, opt.JSONL)
		if err != nil {
			return err
		}
		if len(docs) == 0 {
			break
		}
		out := make([][]int, len(docs))
		parallel(len(docs), func(i int) {
			if opt.HF {
				out[i] = t.EncodeHF(docs[i], true)
				return
			}
			out[i] = t.appendSpecial(make([]int, 0, len(docs[i])/3+1), docs[i], set)
		})
		var buf []byte
		for _, ids := range out {
			buf = append(buf[:0], '[')
			for k, id := range ids {
				if k > 0 {
					buf = append(buf, ',')
				}
				buf = strconv.AppendInt(buf, int64(id), 10)
			}
			buf = append(buf, ']', '\n')
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// readBatch reads up to streamLines documents (or streamBytes).
func readBatch(br *bufio.Reader, line *int, name string, jsonl bool) ([]string, error) {
	var docs []string
	size := 0
	for len(docs) < streamLines && size < streamBytes {
		l, err := br.ReadString('\n')
		if err == io.EOF && l == "" {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		*line++
		if len(l) > 0 && l[len(l)-1] == '\n' {
			l = l[:len(l)-1]
		}
		if jsonl {
			s, derr := unquoteJSON(l)
			if derr != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, *line, derr)
			}
			l = s
		}
		docs = append(docs, l)
		size += len(l)
		if err == io.EOF {
			break
		}
	}
	return docs, nil
}

// DecodeStream reads one JSON array of ids per line from r and writes each
// decoded document to w: raw text and "\n", or a JSON string per line with
// JSONL. An id outside the vocabulary is an error naming the line.
func (t *Tokenizer) DecodeStream(r io.Reader, w io.Writer, opt StreamOptions) error {
	name := opt.Name
	if name == "" {
		name = "input"
	}
	br := bufio.NewReaderSize(r, 1<<16)
	bw := bufio.NewWriterSize(w, 1<<16)
	var buf []byte
	for line := 1; ; line++ {
		l, err := br.ReadString('\n')
		if err == io.EOF && l == "" {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: %w", name, err)
		}
		var ids []int
		if jerr := json.Unmarshal([]byte(l), &ids); jerr != nil || ids == nil {
			return fmt.Errorf("%s:%d: want a JSON array of token ids, got %.60q", name, line, l)
		}
		text, derr := t.DecodeChecked(ids)
		if derr != nil {
			return fmt.Errorf("%s:%d: %v", name, line, derr)
		}
		if opt.JSONL {
			buf = appendJSONString(buf[:0], text)
		} else {
			buf = append(buf[:0], text...)
		}
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		if err == io.EOF {
			break
		}
	}
	return bw.Flush()
}

// unquoteJSON decodes one JSON string, mapping lone surrogates \udc80-\udcff
// to the raw bytes 0x80-0xff (Python's surrogateescape).
func unquoteJSON(s string) (string, error) {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", fmt.Errorf("want a JSON string, got %.60q", s)
	}
	s = s[1 : len(s)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return "", fmt.Errorf("unescaped quote at byte %d of the string", i+1)
		case c < 0x20:
			return "", fmt.Errorf("raw control character 0x%02x in a JSON string", c)
		case c != '\\':
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("string ends in a backslash")
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return "", fmt.Errorf("bad \\u escape %.6q", s[i-1:])
			}
			i += 4
			switch {
			case r >= 0xd800 && r < 0xdc00:
				r2, ok := rune(0), false
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2, ok = hex4(s, i+3)
				}
				if !ok || r2 < 0xdc00 || r2 >= 0xe000 {
					return "", fmt.Errorf("high surrogate \\u%04x without its low half", r)
				}
				i += 6
				out = utf8.AppendRune(out, 0x10000+(r-0xd800)<<10+(r2-0xdc00))
			case r >= 0xdc80 && r < 0xdd00:
				out = append(out, byte(r-0xdc00))
			case r >= 0xdc00 && r < 0xe000:
				return "", fmt.Errorf("lone low surrogate \\u%04x (only \\udc80-\\udcff stand for bytes)", r)
			default:
				out = utf8.AppendRune(out, r)
			}
		default:
			return "", fmt.Errorf("bad escape \\%c", s[i])
		}
	}
	return string(out), nil
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(s[i:i+4], 16, 32)
	return rune(v), err == nil
}

// appendJSONString quotes s as JSON; bytes that are not valid UTF-8 become
// \udc80-\udcff (see unquoteJSON).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			dst = append(dst, '\\', 'u', 'd', 'c', hex[c>>4], hex[c&15])
		} else {
			dst = append(dst, s[i:i+w]...)
		}
		i += w
	}
	return append(dst, '"')
}
