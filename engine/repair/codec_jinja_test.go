package repair

import (
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/tokenizer"
)

// A model's own Jinja template drives the codec: the prompt is its user
// turn, the response ends with the template's end-of-turn token.
func TestCodecJinjaTemplate(t *testing.T) {
	tok, err := tokenizer.Train([]string{strings.Repeat("the cat sat on the mat. ", 40)},
		tokenizer.TrainOptions{VocabSize: 300, Special: []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := tokenizer.ParseHFChatTemplate(`{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>

{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}`, map[string]string{"bos_token": "<|begin_of_text|>"})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = tok.WithHFChatTemplate(ct); err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(tok)
	if err != nil {
		t.Fatal(err)
	}
	if eot, _ := tok.SpecialID("<|eot_id|>"); c.End != eot {
		t.Errorf("end %d, want <|eot_id|> %d", c.End, eot)
	}
	p := c.Prompt(" the cat <|eot_id|> ")
	if got, want := tok.Decode(p), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nthe cat <|eot_id|><|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"; got != want {
		t.Errorf("prompt %q, want %q", got, want)
	}
	n := 0
	for _, id := range p {
		if id == c.End {
			n++
		}
	}
	if n != 1 {
		t.Errorf("prompt content forged the end of turn: %v", p)
	}
	if r := c.Response("the mat"); r[len(r)-1] != c.End || c.Text(r) != "the mat" {
		t.Errorf("response %v", r)
	}
}
