package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/ardanlabs/jinja"
	"github.com/ares-rlhf/ares/internal/jsonfile"
)

// HFChatTemplate is a Hugging Face chat template: the Jinja source of a
// model's tokenizer_config.json "chat_template" (or chat_template.jinja)
// with the special-token strings it is rendered with.
type HFChatTemplate struct {
	Source string
	// Tokens are the special-token strings passed to the template
	// (bos_token, eos_token, unk_token, pad_token), as in transformers.
	Tokens map[string]string
	tmpl   *jinja.Template
	eot    string // end-of-turn token, set when bound to a tokenizer
}

// ParseHFChatTemplate compiles a Jinja chat template. tokens are the
// template variables bos_token, eos_token, ... (absent ones stay undefined).
func ParseHFChatTemplate(src string, tokens map[string]string) (*HFChatTemplate, error) {
	tm, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &HFChatTemplate{Source: src, Tokens: tokens, tmpl: tm}, nil
}

// hfTokenizerConfig is the part of tokenizer_config.json a chat template needs.
type hfTokenizerConfig struct {
	ChatTemplate json.RawMessage `json:"chat_template"`
	Bos          json.RawMessage `json:"bos_token"`
	Eos          json.RawMessage `json:"eos_token"`
	Unk          json.RawMessage `json:"unk_token"`
	Pad          json.RawMessage `json:"pad_token"`
}

// tokenString reads a special token given as a string or as an
// AddedToken-like object {"content": ...}; "" for null or absent.
func tokenString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var o struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Content == nil {
		return "", fmt.Errorf("special token %s is neither a string nor {\"content\": ...}", brief(raw))
	}
	return *o.Content, nil
}

// LoadHFChatTemplate reads the chat template of the model directory dir:
// chat_template.jinja if present (it takes precedence, as in transformers),
// else tokenizer_config.json's "chat_template" (a string, or a list of
// {name, template} of which "default" is used). The special-token strings
// come from tokenizer_config.json. It returns nil, nil when dir has no
// template.
func LoadHFChatTemplate(dir string) (*HFChatTemplate, error) {
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	var cfg hfTokenizerConfig
	if err := jsonfile.Read(cfgPath, &cfg); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	tokens := map[string]string{}
	for name, raw := range map[string]json.RawMessage{"bos_token": cfg.Bos, "eos_token": cfg.Eos, "unk_token": cfg.Unk, "pad_token": cfg.Pad} {
		s, err := tokenString(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", cfgPath, name, err)
		}
		if s != "" {
			tokens[name] = s
		}
	}
	src, where := "", ""
	jinjaPath := filepath.Join(dir, "chat_template.jinja")
	if jb, err := os.ReadFile(jinjaPath); err == nil {
		src, where = string(jb), jinjaPath
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else if len(cfg.ChatTemplate) > 0 && !isNull(cfg.ChatTemplate) {
		where = cfgPath
		if json.Unmarshal(cfg.ChatTemplate, &src) != nil {
			var list []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			if err := json.Unmarshal(cfg.ChatTemplate, &list); err != nil {
				return nil, fmt.Errorf("%s: chat_template is neither a string nor a list of {name, template}", cfgPath)
			}
			found := false
			for _, e := range list {
				if e.Name == "default" {
					src, found = e.Template, true
				}
			}
			if !found {
				return nil, fmt.Errorf("%s: chat_template list has no template named \"default\"", cfgPath)
			}
		}
	}
	if where == "" {
		return nil, nil
	}
	ct, err := ParseHFChatTemplate(src, tokens)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return ct, nil
}

// Render renders the conversation as the template does in transformers'
// apply_chat_template (tools and documents are None).
func (c *HFChatTemplate) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	return c.render(msgs, addGenerationPrompt, nil)
}

func (c *HFChatTemplate) render(msgs []Message, addGenerationPrompt bool, extra map[string]any) (string, error) {
	ms := make([]any, len(msgs))
	for i, m := range msgs {
		ms[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	data := map[string]any{
		"messages":              ms,
		"add_generation_prompt": addGenerationPrompt,
		"tools":                 nil,
		"documents":             nil,
	}
	for k, v := range c.Tokens {
		data[k] = v
	}
	for k, v := range extra {
		data[k] = v
	}
	s, err := c.tmpl.Render(data)
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	return s, nil
}

// WithHFChatTemplate returns a copy of t whose EncodeChat renders ct. It
// derives the end-of-turn token from the template (the special token that
// follows an assistant message's content) and fails if there is none.
func (t *Tokenizer) WithHFChatTemplate(ct *HFChatTemplate) (*Tokenizer, error) {
	c := *t
	if ct == nil {
		c.hfChat = nil
		return &c, nil
	}
	b := *ct
	eot, err := t.deriveEndOfTurn(&b)
	if err != nil {
		return nil, err
	}
	b.eot = eot
	c.hfChat = &b
	return &c, nil
}

// HFChatTemplate returns the Jinja chat template, nil when the tokenizer
// uses its built-in ChatTemplate (ChatML by default).
func (t *Tokenizer) HFChatTemplate() *HFChatTemplate { return t.hfChat }

// EndOfTurn is the special token that closes an assistant turn: derived
// from the Jinja template when there is one, else ChatTemplate().End.
func (t *Tokenizer) EndOfTurn() string {
	if t.hfChat != nil {
		return t.hfChat.eot
	}
	return t.chat.End
}

// RenderChatText renders the conversation as text with the tokenizer's chat
// template (Jinja or built-in).
func (t *Tokenizer) RenderChatText(msgs []Message, addGenerationPrompt bool) (string, error) {
	if t.hfChat != nil {
		return t.hfChat.Render(msgs, addGenerationPrompt)
	}
	return t.chat.RenderChat(msgs, addGenerationPrompt), nil
}

func (t *Tokenizer) deriveEndOfTurn(ct *HFChatTemplate) (string, error) {
	sent := newSentinels(ct.Source, "hi", "hello")
	out, err := ct.Render([]Message{{Role: "user", Content: sent.mark(0)}, {Role: "assistant", Content: sent.mark(1)}}, false)
	if err != nil {
		return "", fmt.Errorf("chat template: deriving the end-of-turn token: %w", err)
	}
	i := strings.LastIndex(out, sent.mark(1))
	if i < 0 {
		return "", fmt.Errorf("chat template: deriving the end-of-turn token: the assistant's content is not in the rendered text")
	}
	rest := out[i+len(sent.mark(1)):]
	names := t.specialsLongestFirst()
	for k := 0; k < len(rest); k++ {
		if name := t.specialAt(rest, k, names); name != "" {
			return name, nil
		}
	}
	return "", fmt.Errorf("chat template: no special token of %s follows an assistant message (rendered %q)", t.name, rest)
}

// specialsLongestFirst lists the special tokens, longest first.
func (t *Tokenizer) specialsLongestFirst() []string {
	set, _ := t.specialSet(nil)
	return set
}

// specialAt returns the special token at text[i:], "" if none.
func (t *Tokenizer) specialAt(text string, i int, names []string) string {
	if !t.specialFirst[text[i]] {
		return ""
	}
	for _, n := range names {
		if strings.HasPrefix(text[i:], n) {
			return n
		}
	}
	return ""
}

// sentinels are unique strings standing in for message contents.
type sentinels struct{ base string }

func newSentinels(src string, contents ...string) sentinels {
	for n := 0; ; n++ {
		base := "\ue000ares" + strconv.Itoa(n) + "#"
		ok := !strings.Contains(src, base)
		for _, c := range contents {
			ok = ok && !strings.Contains(c, base)
		}
		if ok {
			return sentinels{base}
		}
	}
}

func (s sentinels) mark(k int) string { return s.base + strconv.Itoa(k) + "\ue001" }

// sentinelPad surrounds each sentinel so that a template that trims content
// can be told from one that does not. It has no newline, so templates that
// only strip newlines (Qwen3's content.lstrip('\n')) leave it whole; where
// such stripping changes a real content, the check against the real
// rendering fails with an error.
const sentinelPad = " \t "

// encodeHFChat renders msgs with each content replaced by a sentinel,
// encodes the template's text with special-token recognition and the
// contents as ordinary text (so a message cannot forge turn markers), and
// checks that the result is the rendering of the real conversation.
func (t *Tokenizer) encodeHFChat(msgs []Message, addGenerationPrompt bool) ([]int, error) {
	ct := t.hfChat
	contents := make([]string, len(msgs))
	for i, m := range msgs {
		contents[i] = m.Content
	}
	sent := newSentinels(ct.Source, contents...)
	masked := make([]Message, len(msgs))
	for i, m := range msgs {
		masked[i] = Message{Role: m.Role, Content: sentinelPad + sent.mark(i) + sentinelPad}
	}
	out, err := ct.Render(masked, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	real, err := ct.Render(msgs, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	names := t.specialsLongestFirst()
	var ids []int
	var ordinary strings.Builder // ordinary text not yet encoded
	flush := func() {
		ids = t.appendOrdinary(ids, ordinary.String())
		ordinary.Reset()
	}
	var rebuilt strings.Builder
	seen := make([]bool, len(msgs))
	// template appends template text, turning special tokens into ids.
	template := func(s string) {
		rebuilt.WriteString(s)
		start := 0
		for k := 0; k < len(s); k++ {
			if n := t.specialAt(s, k, names); n != "" {
				ordinary.WriteString(s[start:k])
				flush()
				ids = append(ids, t.special[n])
				start = k + len(n)
				k = start - 1
			}
		}
		ordinary.WriteString(s[start:])
	}
	for len(out) > 0 {
		i := strings.Index(out, sent.base)
		if i < 0 {
			template(out)
			break
		}
		end := strings.Index(out[i:], "\ue001")
		if end < 0 {
			return nil, fmt.Errorf("chat template mangles message contents (a sentinel was cut)")
		}
		k, err := strconv.Atoi(out[i+len(sent.base) : i+end])
		if err != nil || k < 0 || k >= len(msgs) {
			return nil, fmt.Errorf("chat template mangles message contents (a sentinel was changed)")
		}
		seen[k] = true
		after := i + end + len("\ue001")
		c := contents[k]
		lo, hi := i, after
		if strings.HasSuffix(out[:i], sentinelPad) {
			lo = i - len(sentinelPad)
		} else {
			c = strings.TrimLeftFunc(c, unicode.IsSpace)
		}
		if strings.HasPrefix(out[after:], sentinelPad) {
			hi = after + len(sentinelPad)
		} else {
			c = strings.TrimRightFunc(c, unicode.IsSpace)
		}
		template(out[:lo])
		rebuilt.WriteString(c)
		ordinary.WriteString(c)
		out = out[hi:]
	}
	flush()
	for k, ok := range seen {
		if !ok && msgs[k].Content != "" {
			return nil, fmt.Errorf("chat template does not render message %d's content as a whole (it may transform or drop it), so it cannot be kept apart from the template's own tokens", k)
		}
	}
	if rebuilt.String() != real {
		return nil, fmt.Errorf("chat template renders a message's content in a way that depends on the content (more than trimming it), so it cannot be kept apart from the template's own tokens")
	}
	return ids, nil
}

// SaveHFChatTemplate sets the chat template and its special-token strings
// in dir/tokenizer_config.json (keeping the file's other fields) when t has
// a Jinja template; otherwise it does nothing.
func (t *Tokenizer) SaveHFChatTemplate(dir string) error {
	if t.hfChat == nil {
		return nil
	}
	cfg := map[string]any{}
	p := filepath.Join(dir, "tokenizer_config.json")
	if err := jsonfile.Read(p, &cfg); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(filepath.Join(dir, "chat_template.jinja")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cfg["chat_template"] = t.hfChat.Source
	for k, v := range t.hfChat.Tokens {
		cfg[k] = v
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, append(b, '\n'), 0o644)
}

// LoadWithChatTemplate loads a tokenizer.json (or a directory holding one)
// with the chat template of the same directory, if it has one.
func LoadWithChatTemplate(path string) (*Tokenizer, error) {
	file, dir := path, filepath.Dir(path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file, dir = filepath.Join(path, "tokenizer.json"), path
	}
	tok, err := Load(file)
	if err != nil {
		return nil, err
	}
	ct, err := LoadHFChatTemplate(dir)
	if err != nil || ct == nil {
		return tok, err
	}
	return tok.WithHFChatTemplate(ct)
}
