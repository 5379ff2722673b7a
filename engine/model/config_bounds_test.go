package model

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestConfigAbsurdSizesNamed: a config.json whose sizes no model has is
// refused naming the key: head_dim, num_key_value_heads and num_labels
// passed before (a negative num_key_value_heads divides any head count),
// and so did sizes each in range whose product is one matrix no machine
// holds; they failed later in an allocation that named no key.
func TestConfigAbsurdSizesNamed(t *testing.T) {
	base := map[string]any{"model_type": "llama", "vocab_size": 640, "hidden_size": 64, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 160, "max_position_embeddings": 160}
	parse := func(set map[string]any) error {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range set {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		_, err := ParseConfig(b)
		return err
	}
	if err := parse(nil); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct {
		set  map[string]any
		want string
	}{
		{map[string]any{"hidden_size": 1e12}, `"hidden_size"`},
		{map[string]any{"head_dim": 1e9}, `"head_dim" = 1000000000 is beyond`},
		{map[string]any{"head_dim": -2}, `"head_dim" must be positive`},
		{map[string]any{"num_key_value_heads": -1}, `"num_key_value_heads" must be positive`},
		{map[string]any{"num_labels": 1e9}, `"num_labels" = 1000000000 is beyond`},
		{map[string]any{"vocab_size": 1 << 24, "hidden_size": 1 << 14, "num_attention_heads": 128, "num_key_value_heads": 128}, "vocab_size × hidden_size"},
		{map[string]any{"intermediate_size": 1 << 24, "hidden_size": 1 << 14, "num_attention_heads": 128, "num_key_value_heads": 128}, "intermediate_size × hidden_size"},
	} {
		if err := parse(tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.set, err, tc.want)
		}
	}
}
