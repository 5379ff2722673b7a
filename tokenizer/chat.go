package tokenizer

import "fmt"

// Message is one turn of a conversation.
type Message struct {
	Role    string // "system", "user" or "assistant"
	Content string
}

// ChatTemplate lays out a conversation as
//
//	<Start>role\ncontent<End>\n   for each message, then
//	<Start>assistant\n            if a generation prompt is asked for,
//
// where Start and End are special tokens (ChatML when they are
// <|im_start|> and <|im_end|>). Contents are encoded as ordinary text, so a
// message cannot forge turn markers.
type ChatTemplate struct {
	Start, End string
}

// ChatML is the default template: <|im_start|> and <|im_end|>.
var ChatML = ChatTemplate{Start: "<|im_start|>", End: "<|im_end|>"}

// ChatSpecials are the special tokens to train a tokenizer with so that it
// has an end-of-text marker and can use the default chat template.
var ChatSpecials = []string{"<|endoftext|>", ChatML.Start, ChatML.End}

// WithChatTemplate returns a copy of t that uses ct in EncodeChat.
func (t *Tokenizer) WithChatTemplate(ct ChatTemplate) *Tokenizer {
	c := *t
	c.chat = ct
	return &c
}

// ChatTemplate returns the template EncodeChat uses.
func (t *Tokenizer) ChatTemplate() ChatTemplate { return t.chat }

// EncodeChat encodes a conversation with the tokenizer's chat template (the
// model's Jinja template when it has one, see WithHFChatTemplate, else
// ChatTemplate); with addGenerationPrompt it ends with an open assistant turn
// for the model to complete. Contents are encoded as ordinary text. With the
// built-in template it fails if the template's special tokens are not in the
// vocabulary or a role is not system, user or assistant.
func (t *Tokenizer) EncodeChat(msgs []Message, addGenerationPrompt bool) ([]int, error) {
	if t.hfChat != nil {
		return t.encodeHFChat(msgs, addGenerationPrompt)
	}
	start, err := t.SpecialID(t.chat.Start)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	end, err := t.SpecialID(t.chat.End)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	var ids []int
	for k, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return nil, fmt.Errorf("chat message %d: role %q is not system, user or assistant", k, m.Role)
		}
		ids = append(ids, start)
		ids = t.appendOrdinary(ids, m.Role+"\n"+m.Content)
		ids = append(ids, end)
		ids = t.appendOrdinary(ids, "\n")
	}
	if addGenerationPrompt {
		ids = append(ids, start)
		ids = t.appendOrdinary(ids, "assistant\n")
	}
	return ids, nil
}

// RenderChat returns the conversation as text, the string whose
// EncodeWithSpecial equals EncodeChat's ids (for logs and debugging).
func (ct ChatTemplate) RenderChat(msgs []Message, addGenerationPrompt bool) string {
	var s []byte
	for _, m := range msgs {
		s = append(s, ct.Start+m.Role+"\n"+m.Content+ct.End+"\n"...)
	}
	if addGenerationPrompt {
		s = append(s, ct.Start+"assistant\n"...)
	}
	return string(s)
}
