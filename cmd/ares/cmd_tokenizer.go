package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/internal/jsonl"
	"github.com/ares-rlhf/ares/tokenizer"
	"github.com/ares-rlhf/ares/tokenizer/pretok"
)

func init() {
	register(command{
		name:    "tokenizer",
		summary: "train, encode and decode byte-level BPE tokenizers",
		run: subcommands("tokenizer", tokenizerUsage, map[string]func([]string) error{
			"train":  tokenizerTrain,
			"encode": func(args []string) error { return tokenizerCode(args, true) },
			"decode": func(args []string) error { return tokenizerCode(args, false) },
			"chat":   tokenizerChat,
		}),
	})
}

const tokenizerUsage = `usage:
  ares tokenizer train --corpus FILE [--corpus FILE...] --vocab-size N [--special TOKEN...]
                       [--no-special] [--pattern gpt2|cl100k|qwen2|o200k] [--min-frequency 2]
                       --out tokenizer.json
  ares tokenizer encode (--tokenizer FILE | --encoding NAME) [--jsonl] [--special TOKEN|all ... | --hf]
  ares tokenizer decode (--tokenizer FILE | --encoding NAME) [--jsonl]
  ares tokenizer chat --tokenizer DIR|FILE [--add-generation-prompt] [--text]
FILE is a Hugging Face tokenizer.json or a tiktoken rank file (.tiktoken named after
an encoding); NAME is r50k_base, p50k_base, cl100k_base or o200k_base.
encode reads one document per line of standard input (the newline is not part of
it) and writes one JSON array of ids per line; with --jsonl each input line is a JSON
string (bytes that are not UTF-8 as \udc80-\udcff). decode does the reverse.
train's special tokens default to <|endoftext|> <|im_start|> <|im_end|>.
chat reads one {"messages": [{"role": ..., "content": ...}, ...]} per line and writes
one JSON array of ids per line (--text: the rendered text as a JSON string), with the
model's chat template (chat_template.jinja or tokenizer_config.json's chat_template
next to tokenizer.json; ChatML when there is none). Contents never become special
tokens.`

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func tokenizerTrain(args []string) error {
	fs := newFlagSet("tokenizer train")
	var corpus, special listFlag
	fs.Var(&corpus, "corpus", "training text `FILE` (repeatable)")
	fs.Var(&special, "special", "special `TOKEN` (repeatable)")
	noSpecial := fs.Bool("no-special", false, "train without special tokens")
	vocab := fs.Int("vocab-size", 0, "total vocabulary size: 256 bytes + merges + special tokens")
	pattern := fs.String("pattern", "gpt2", "pre-tokenizer: gpt2, cl100k, qwen2 or o200k")
	minFreq := fs.Int("min-frequency", 2, "stop when the best pair is rarer than this")
	out := fs.String("out", "", "output tokenizer.json `FILE`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected argument %q", fs.Arg(0))
	case len(corpus) == 0:
		return usagef("--corpus is required")
	case *vocab <= 0:
		return usagef("--vocab-size is required")
	case *out == "":
		return usagef("--out is required")
	case *noSpecial && len(special) > 0:
		return usagef("--no-special and --special exclude each other")
	}
	pat, err := pretok.ByName(*pattern)
	if err != nil {
		return usagef("%v", err)
	}
	specials := []string(special)
	if len(specials) == 0 && !*noSpecial {
		specials = tokenizer.ChatSpecials
	}
	tr, err := tokenizer.NewTrainer(tokenizer.TrainOptions{VocabSize: *vocab, Special: specials, Pattern: pat, MinFrequency: *minFreq})
	if err != nil {
		return usagef("%v", err)
	}
	start := time.Now()
	total := 0
	for _, f := range corpus {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		total += len(b)
		tr.Add(string(b))
	}
	tok, err := tr.Train()
	if err != nil {
		return err
	}
	if err := tok.Save(*out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "ares tokenizer: %d tokens from %.1f MB in %.2fs -> %s\n",
		tok.VocabSize(), float64(total)/1e6, time.Since(start).Seconds(), *out)
	if tok.VocabSize() < *vocab {
		fmt.Fprintf(os.Stderr, "ares tokenizer: stopped below --vocab-size %d: no pair seen %d times remains\n", *vocab, *minFreq)
	}
	return nil
}

func tokenizerCode(args []string, encode bool) error {
	name := "tokenizer decode"
	if encode {
		name = "tokenizer encode"
	}
	fs := newFlagSet(name)
	file := fs.String("tokenizer", "", "tokenizer.json or .tiktoken `FILE`")
	enc := fs.String("encoding", "", "built-in encoding `NAME`")
	jsonl := fs.Bool("jsonl", false, "documents are JSON strings, one per line")
	var special listFlag
	var hf *bool
	if encode {
		fs.Var(&special, "special", "recognise this special `TOKEN` in the text (repeatable; all for every one)")
		hf = fs.Bool("hf", false, "encode as Hugging Face's tokenizer.encode: added tokens by their own rules, the post-processor's special tokens (e.g. <bos>) added")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if (*file == "") == (*enc == "") {
		return usagef("give exactly one of --tokenizer FILE and --encoding NAME")
	}
	var tok *tokenizer.Tokenizer
	var err error
	if *file != "" {
		tok, err = tokenizer.Load(*file)
	} else {
		tok, err = tokenizer.Builtin(*enc)
	}
	if err != nil {
		return err
	}
	opt := tokenizer.StreamOptions{Name: "stdin", JSONL: *jsonl, Special: special}
	if encode {
		if *hf && len(special) > 0 {
			return usagef("--hf and --special exclude each other")
		}
		opt.HF = *hf
		return tok.EncodeStream(os.Stdin, os.Stdout, opt)
	}
	return tok.DecodeStream(os.Stdin, os.Stdout, opt)
}

func tokenizerChat(args []string) error {
	fs := newFlagSet("tokenizer chat")
	path := fs.String("tokenizer", "", "model `DIR` or its tokenizer.json")
	gen := fs.Bool("add-generation-prompt", false, "end with an open assistant turn")
	text := fs.Bool("text", false, "write the rendered template text instead of ids")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return usagef("--tokenizer is required")
	}
	tok, err := tokenizer.LoadWithChatTemplate(*path)
	if err != nil {
		return err
	}
	type chatLine struct {
		Messages []tokenizer.Message `json:"messages"`
	}
	ins, lines, err := jsonl.Read[chatLine](os.Stdin, "stdin", true, nil)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	enc := jsonl.NewWriter(w)
	for i, in := range ins {
		var v any
		if *text {
			v, err = tok.RenderChatText(in.Messages, *gen)
		} else {
			v, err = tok.EncodeChat(in.Messages, *gen)
		}
		if err != nil {
			w.Flush()
			return fmt.Errorf("stdin:%d: %w", lines[i], err)
		}
		if err := enc.Write(v); err != nil {
			return err
		}
	}
	return w.Flush()
}
