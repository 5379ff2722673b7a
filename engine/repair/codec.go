// Package repair is the repair half of ARES: supervised
// fine-tuning and reward-model training (how the synthetic world's weakened
// starting models are made), stage 1 (reward-model repair: Bradley-Terry on
// y_safe over y_harm from Type A and C findings, replay, an anchor against
// drift), stage 2 (policy repair: Dr. GRPO against the repaired RM on Type B
// and C prompts, unlikelihood on harmful responses, KL to the reference
// policy, replay), the joint mode that updates both at once, and evaluation.
package repair

import (
	"fmt"
	"math/rand"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/tokenizer"
)

// Codec turns prompts and responses into token ids: the prompt as a user
// turn of the tokenizer's chat template (the model's own Jinja template when
// its directory has one, else ChatML) with the assistant turn opened, the
// response followed by the end-of-turn token (the stop token of generation).
type Codec struct {
	Tok      *tokenizer.Tokenizer
	End, Pad int
}

// NewCodec needs a tokenizer with the chat template's special tokens.
func NewCodec(tok *tokenizer.Tokenizer) (*Codec, error) {
	end, err := tok.SpecialID(tok.EndOfTurn())
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", tok.Name(), err)
	}
	if _, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: "Hi"}}, true); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", tok.Name(), err)
	}
	pad, err := tok.SpecialID("<|endoftext|>")
	if err != nil {
		pad = end
	}
	return &Codec{Tok: tok, End: end, Pad: pad}, nil
}

// EncodePrompt encodes a user prompt, ready for the assistant's answer; a
// Jinja template may reject a content (raise_exception).
func (c *Codec) EncodePrompt(p string) ([]int, error) {
	return c.Tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: p}}, true)
}

// Prompt is EncodePrompt for prompts the caller knows the template accepts.
func (c *Codec) Prompt(p string) []int {
	ids, err := c.EncodePrompt(p)
	if err != nil {
		// The template was checked in NewCodec; a Jinja template can still
		// reject a content (raise_exception), which is a caller's bug here.
		panic(err)
	}
	return ids
}

// Response encodes a response and closes the turn.
func (c *Codec) Response(r string) []int { return append(c.Tok.Encode(r), c.End) }

// Text decodes generated tokens, dropping a final end-of-turn token.
func (c *Codec) Text(ids []int) string {
	if n := len(ids); n > 0 && ids[n-1] == c.End {
		ids = ids[:n-1]
	}
	return c.Tok.Decode(ids)
}

// Seqs is a batch of prompt+response sequences with the mask that selects
// the response tokens' columns of model.TokenLogProbs.
type Seqs struct {
	Batch *model.Batch
	Mask  *torch.Tensor // [B, L-1] float32: 1 on response-token columns
}

// Sequences builds the batch of prompt+response pairs, truncating responses
// that would overflow the context.
func Sequences(s *torch.Scope, m *model.Transformer, c *Codec, prompts, responses [][]int) (*Seqs, error) {
	seqs := make([][]int, len(prompts))
	spans := make([][2]int, len(prompts))
	for i := range prompts {
		r := responses[i]
		if room := m.Cfg.MaxPos - len(prompts[i]); len(r) > room {
			if room < 1 {
				return nil, fmt.Errorf("prompt %d has %d tokens, the context is %d", i, len(prompts[i]), m.Cfg.MaxPos)
			}
			r = r[:room]
		}
		seqs[i] = append(append([]int{}, prompts[i]...), r...)
		spans[i] = [2]int{len(prompts[i]), len(seqs[i])}
	}
	b, err := m.NewBatch(s, seqs, c.Pad)
	if err != nil {
		return nil, err
	}
	L := b.Width
	mask := make([]float32, len(seqs)*(L-1))
	for i, sp := range spans {
		for t := sp[0]; t < sp[1]; t++ { // token t's log-prob is column t-1
			mask[i*(L-1)+t-1] = 1
		}
	}
	var mt *torch.Tensor
	err = torch.Try(func() { mt = s.Own(torch.FromSlice(mask, int64(len(seqs)), int64(L-1))).ToDevice(m.Device) })
	return &Seqs{Batch: b, Mask: mt}, err
}

// stepRand is the random stream of one micro-batch of one step: a pure
// function of the run seed, the step and the micro-batch, which is what makes
// a resumed run equal an uninterrupted one.
func stepRand(seed, step int64, micro int) *rand.Rand {
	return rand.New(rand.NewSource(seed*1_000_003 + step*97 + int64(micro)))
}
