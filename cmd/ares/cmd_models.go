package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/config/placement"
	"github.com/ares-rlhf/ares/internal/jsonl"
	"github.com/ares-rlhf/ares/tokenizer"
)

func init() {
	register(command{name: "generate", summary: "sample responses to prompts (JSONL) with a model", run: runGenerate})
	register(command{name: "logprobs", summary: "teacher-forced token log-probabilities (JSONL)", run: runLogprobs})
	register(command{name: "score", summary: "reward-model scores of prompt/response pairs (JSONL)", run: runScore})
}

// modelFlags are the flags every model command shares.
type modelFlags struct {
	device, dtype, out string
	batch              int
}

func (f *modelFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
}) {
	fs.StringVar(&f.device, "device", "cpu", "cpu, cuda or cuda:N")
	fs.StringVar(&f.dtype, "dtype", "float32", "parameter dtype: float32, bfloat16 or float16")
	fs.StringVar(&f.out, "out", "-", "output JSONL file (- for standard output)")
	fs.IntVar(&f.batch, "batch-size", 16, "sequences per batch")
}

func (f *modelFlags) options() (model.Options, error) {
	dev, dt, err := placement.Spec{Device: f.device, DType: f.dtype, DeviceFlag: "--device", DTypeFlag: "--dtype"}.Resolve()
	if err != nil {
		return model.Options{}, usageError{err.Error()}
	}
	if f.batch <= 0 {
		return model.Options{}, usagef("--batch-size must be positive")
	}
	return model.Options{Device: dev, DType: dt}, nil
}

// openOut opens the JSONL output of a model command (--out; - for standard
// output) and returns the function that flushes and closes it.
func openOut(path string) (*jsonl.Writer, func() error, error) {
	var w io.Writer = os.Stdout
	closeOut := func() error { return nil }
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return nil, nil, err
		}
		bw := bufio.NewWriter(f)
		w, closeOut = bw, func() error {
			if err := bw.Flush(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}
	}
	enc := jsonl.NewWriter(w)
	enc.SetEscapeHTML(true) // the bytes these commands always wrote
	return enc, closeOut, nil
}

// readJSONL decodes every line of path into a fresh T, rejecting unknown
// fields, and returns the values with their line numbers.
func readJSONL[T any](path string) ([]T, []int, error) {
	return jsonl.ReadFile[T](path, true, nil)
}

type seqInput struct {
	InputIDs []int  `json:"input_ids,omitempty"`
	Prompt   string `json:"prompt,omitempty"`
	Response string `json:"response,omitempty"`
	ID       any    `json:"id,omitempty"`
}

// tokens turns one input into ids and the index of the first token whose
// log-probability is wanted (the first response token, or 1 for input_ids).
// With a codec the prompt is a user turn of the chat template with the
// assistant turn opened and the response ends with the end-of-turn token,
// as in training and red-teaming; without one (--raw) both are raw text.
func (in seqInput) tokens(tok *tokenizer.Tokenizer, codec *repair.Codec, where string) ([]int, int, error) {
	if in.InputIDs != nil {
		if in.Prompt != "" || in.Response != "" {
			return nil, 0, fmt.Errorf("%s: give input_ids or prompt/response, not both", where)
		}
		if len(in.InputIDs) < 2 {
			return nil, 0, fmt.Errorf("%s: input_ids needs at least 2 tokens", where)
		}
		return in.InputIDs, 1, nil
	}
	if tok == nil {
		return nil, 0, fmt.Errorf("%s: prompt/response input needs the model directory's tokenizer.json", where)
	}
	if in.Prompt == "" || in.Response == "" {
		return nil, 0, fmt.Errorf("%s: prompt and response must both be non-empty", where)
	}
	var p, r []int
	if codec != nil {
		var err error
		if p, err = codec.EncodePrompt(in.Prompt); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", where, err)
		}
		r = codec.Response(in.Response)
	} else {
		p, r = tok.Encode(in.Prompt), tok.Encode(in.Response)
	}
	return append(p, r...), len(p), nil
}

// loadChat loads the model directory's tokenizer and, unless raw, the codec
// that formats prompts and responses with its chat template as training
// does. tokErr says why text inputs cannot be encoded (input_ids still can).
func loadChat(dir string, raw bool) (tok *tokenizer.Tokenizer, codec *repair.Codec, tokErr error) {
	if tok, tokErr = model.LoadTokenizer(dir); tokErr != nil || raw {
		return tok, nil, tokErr
	}
	if codec, tokErr = repair.NewCodec(tok); tokErr != nil {
		tokErr = fmt.Errorf("%v (use --raw to encode text inputs as raw text)", tokErr)
	}
	return tok, codec, tokErr
}

// rawHelp documents --raw for score and logprobs.
const rawHelp = "encode prompt/response as raw text (default: the prompt as a user turn of the model's chat template, the response followed by the end-of-turn token, as in training)"

func runLogprobs(args []string) error {
	return runScoreLike(args, "logprobs", "model", "model directory (config.json, safetensors, tokenizer.json)",
		"input JSONL: {\"input_ids\": [...]} or {\"prompt\": ..., \"response\": ...} (log-probs of the response tokens, end-of-turn included unless --raw)",
		model.CausalLM)
}

func runScore(args []string) error {
	return runScoreLike(args, "score", "rm", "reward-model directory (config.json, safetensors, tokenizer.json)",
		"input JSONL: {\"prompt\": ..., \"response\": ...} (chat-formatted as in training unless --raw) or {\"input_ids\": [...]}",
		model.Reward)
}

// runScoreLike is the command name (logprobs or score): its model directory
// flag dirFlag, --input, --raw and the model flags, then scoreLike.
func runScoreLike(args []string, name, dirFlag, dirHelp, inputHelp string, kind model.Kind) error {
	fs := newFlagSet(name)
	var mf modelFlags
	mf.register(fs)
	dir := fs.String(dirFlag, "", dirHelp)
	input := fs.String("input", "", inputHelp)
	raw := fs.Bool("raw", false, rawHelp)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *input == "" {
		return usagef("--%s and --input are required", dirFlag)
	}
	opts, err := mf.options()
	if err != nil {
		return err
	}
	return scoreLike(*dir, *input, mf, opts, kind, *raw)
}

// scoreLike runs log-probabilities (CausalLM) or reward scores (Reward) over
// an input file in batches.
func scoreLike(dir, input string, mf modelFlags, opts model.Options, kind model.Kind, raw bool) error {
	m, err := model.Load(dir, kind, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, codec, tokErr := loadChat(dir, raw)
	ins, lines, err := readJSONL[seqInput](input)
	if err != nil {
		return err
	}
	seqs := make([][]int, len(ins))
	starts := make([]int, len(ins))
	for i, in := range ins {
		where := fmt.Sprintf("%s:%d", input, lines[i])
		if in.InputIDs == nil && tokErr != nil {
			return fmt.Errorf("%s: %v", where, tokErr)
		}
		if seqs[i], starts[i], err = in.tokens(tok, codec, where); err != nil {
			return err
		}
		if err := checkIDs(seqs[i], m.Cfg.VocabSize, where); err != nil {
			return err
		}
		if len(seqs[i]) > m.Cfg.MaxPos {
			return fmt.Errorf("%s: %d tokens exceed the model's context of %d", where, len(seqs[i]), m.Cfg.MaxPos)
		}
	}
	enc, closeOut, err := openOut(mf.out)
	if err != nil {
		return err
	}
	for lo := 0; lo < len(seqs); lo += mf.batch {
		hi := min(lo+mf.batch, len(seqs))
		var rows []any
		err := torch.Try(func() {
			torch.NoGrad(func() {
				s := torch.NewScope()
				defer s.Close()
				b, err := m.NewBatch(s, seqs[lo:hi], 0)
				if err != nil {
					panic(&torch.Error{Op: "batch", Code: torch.CodeInvalid, Msg: err.Error()})
				}
				if kind == model.Reward {
					for i, v := range m.Score(b).To(torch.Float32).Float32s() {
						rows = append(rows, map[string]any{"score": v, "line": lines[lo+i]})
					}
					return
				}
				lp := m.TokenLogProbs(b).To(torch.Float32)
				width := int(lp.Size(1))
				all := lp.Float32s()
				for i := range seqs[lo:hi] {
					n := len(seqs[lo+i])
					// logprob of token t sits at column t-1.
					rows = append(rows, map[string]any{"logprobs": all[i*width+starts[lo+i]-1 : i*width+n-1], "line": lines[lo+i]})
				}
			})
		})
		if err != nil {
			closeOut()
			return err
		}
		for _, r := range rows {
			delete(r.(map[string]any), "line")
			if err := enc.Write(r); err != nil {
				closeOut()
				return err
			}
		}
	}
	return closeOut()
}

type promptInput struct {
	Prompt   string              `json:"prompt,omitempty"`
	Messages []tokenizer.Message `json:"messages,omitempty"`
	InputIDs []int               `json:"input_ids,omitempty"`
	ID       any                 `json:"id,omitempty"`
}

func runGenerate(args []string) error {
	fs := newFlagSet("generate")
	var mf modelFlags
	mf.register(fs)
	dir := fs.String("model", "", "model directory (config.json, safetensors, tokenizer.json)")
	prompts := fs.String("prompts", "", "prompts JSONL: {\"prompt\": ...}, {\"messages\": [...]} or {\"input_ids\": [...]}")
	maxNew := fs.Int("max-new-tokens", 64, "maximum tokens generated per prompt")
	temp := fs.Float64("temperature", 1, "sampling temperature (0: greedy)")
	topP := fs.Float64("top-p", 1, "nucleus sampling mass (1: off)")
	topK := fs.Int("top-k", 0, "keep the k most likely tokens (0: off)")
	seed := fs.Uint64("seed", 0, "random seed")
	raw := fs.Bool("raw", false, "encode {\"prompt\"} as raw text, and stop only at the config's EOS ids (default: the prompt as a user turn of the model's chat template with the assistant turn opened, stopping also at its end-of-turn token, as in red-teaming)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *prompts == "" {
		return usagef("--model and --prompts are required")
	}
	if !(*topP > 0 && *topP <= 1) || *topK < 0 || !(*temp >= 0) || math.IsInf(*temp, 0) || *maxNew <= 0 {
		return usagef("need 0 < --top-p <= 1, --top-k >= 0, --temperature >= 0, --max-new-tokens > 0")
	}
	opts, err := mf.options()
	if err != nil {
		return err
	}
	m, err := model.Load(*dir, model.CausalLM, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, codec, tokErr := loadChat(*dir, *raw)
	ins, lines, err := readJSONL[promptInput](*prompts)
	if err != nil {
		return err
	}
	ids := make([][]int, len(ins))
	for i, in := range ins {
		where := fmt.Sprintf("%s:%d", *prompts, lines[i])
		switch {
		case in.InputIDs != nil:
			ids[i] = in.InputIDs
		case tokErr != nil:
			return fmt.Errorf("%s: %v", where, tokErr)
		case in.Messages != nil:
			if ids[i], err = tok.EncodeChat(in.Messages, true); err != nil {
				return fmt.Errorf("%s: %v", where, err)
			}
		case codec != nil:
			if ids[i], err = codec.EncodePrompt(in.Prompt); err != nil {
				return fmt.Errorf("%s: %v", where, err)
			}
		default:
			ids[i] = tok.Encode(in.Prompt)
		}
		if len(ids[i]) == 0 {
			return fmt.Errorf("%s: empty prompt", where)
		}
		if err := checkIDs(ids[i], m.Cfg.VocabSize, where); err != nil {
			return err
		}
	}
	var stops []int
	stops = append(stops, m.Cfg.EOSTokenIDs...)
	if codec != nil {
		stops = append(stops, codec.End)
	}
	pad := 0
	if m.Cfg.PadTokenID != nil {
		pad = *m.Cfg.PadTokenID
	}
	enc, closeOut, err := openOut(mf.out)
	if err != nil {
		return err
	}
	for lo := 0; lo < len(ids); lo += mf.batch {
		hi := min(lo+mf.batch, len(ids))
		g, err := m.Generate(ids[lo:hi], model.GenerateOptions{MaxNewTokens: *maxNew, Temperature: *temp,
			TopK: *topK, TopP: *topP, StopIDs: stops, Pad: pad, Seed: *seed + uint64(lo)})
		if err != nil {
			closeOut()
			return fmt.Errorf("%s:%d..%d: %w", *prompts, lines[lo], lines[hi-1], err)
		}
		for i := range g.Tokens {
			row := map[string]any{"tokens": g.Tokens[i], "logprobs": g.LogProbs[i], "stopped": g.Stopped[i]}
			if ins[lo+i].ID != nil {
				row["id"] = ins[lo+i].ID
			}
			if tok != nil {
				resp := g.Tokens[i]
				if g.Stopped[i] {
					resp = resp[:len(resp)-1]
				}
				row["prompt"] = ins[lo+i].Prompt
				row["response"] = tok.Decode(resp)
			}
			if err := enc.Write(row); err != nil {
				closeOut()
				return err
			}
		}
	}
	return closeOut()
}
