package model

import (
	"fmt"
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

// decodeCalls builds a Llama-shaped model of the given depth, prefills a KV
// cache with a 4-token prompt per sequence and returns the native calls
// (torch.NativeCalls) of one cached decode step: Forward of one token per
// sequence, in no-grad mode, inputs made beforehand.
func decodeCalls(t *testing.T, layers int) int64 {
	t.Helper()
	cfg := parseConfig(t, fmt.Sprintf(`{"model_type":"llama","vocab_size":67,"hidden_size":32,`+
		`"num_hidden_layers":%d,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":48,`+
		`"max_position_embeddings":64,"tie_word_embeddings":false,"rope_theta":500}`, layers))
	m, err := Init(cfg, CausalLM, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const B, prompt = 2, 4
	cache := m.NewKVCache(B, 16)
	defer cache.Close()
	var n int64
	mustTry(t, func() {
		torch.NoGrad(func() {
			valid := make([][]bool, B)
			ids, pos := make([]int64, 0, B*prompt), make([]int64, 0, B*prompt)
			for b := range valid {
				valid[b] = []bool{true, true, true, true}
				for j := 0; j < prompt; j++ {
					ids, pos = append(ids, int64(3+b+j)), append(pos, int64(j))
				}
			}
			s := torch.NewScope()
			defer s.Close()
			m.Forward(s.Own(torch.FromSlice(ids, B, prompt)), s.Own(torch.FromSlice(pos, B, prompt)),
				s.Own(attentionMask(valid, prompt)), cache)

			for b := range valid {
				valid[b] = append(valid[b], true)
			}
			d := torch.NewScope()
			defer d.Close()
			idT := d.Own(torch.FromSlice([]int64{7, 9}, B, 1))
			posT := d.Own(torch.FromSlice([]int64{prompt, prompt}, B, 1))
			mask := d.Own(attentionMask(valid, 1))
			before := torch.NativeCalls()
			h := m.Forward(idT, posT, mask, cache)
			n = torch.NativeCalls() - before
			if got := h.Shape(); len(got) != 3 || got[0] != B || got[1] != 1 || got[2] != 32 {
				t.Fatalf("decode output shape %v", got)
			}
		})
	})
	return n
}

// TestNativeCallsPerDecodeLayer pins the number of cgo calls one decode
// layer makes, as TestLiveTensorsAfterGenerateAndStep pins leaks: each call
// costs a cgo round trip (and a handle), so a change that adds or removes
// calls on the decode hot path must update these numbers consciously.
//
// One Llama layer with a KV cache (grouped-query attention with 2 query
// heads per KV head, no biases, no q/k norm, plain RoPE, SwiGLU) makes 10
// calls (60 before the fused model ops of torch/model_ops.go):
//
//	RMSNorm before attention                                    1
//	q, k, v: Linear                                             3
//	GQAttention: heads, RoPE of q and k, KV-cache append,       1
//	  grouped attention over the cache, merged heads
//	o projection Linear, residual Add                           2
//	RMSNorm before the MLP                                      1
//	GatedMLP: gate, SiLU, up, product, down                     1
//	residual Add                                                1
//
// Outside the layers, 3 (8 before the fused ops, 5 before handles carried
// their shape): Embedding of the ids; RopeGather of the cos and sin tables
// (1); the final RMSNorm. The shape of ids for the cache's begin is read from
// the handle's metadata, not asked for.
func TestNativeCallsPerDecodeLayer(t *testing.T) {
	c1, c2, c3 := decodeCalls(t, 1), decodeCalls(t, 2), decodeCalls(t, 3)
	perLayer := c2 - c1
	if c3-c2 != perLayer {
		t.Fatalf("native calls per layer are not constant: 1 layer %d, 2 layers %d, 3 layers %d", c1, c2, c3)
	}
	const wantPerLayer, wantOutside = 10, 3
	if perLayer != wantPerLayer || c1-perLayer != wantOutside {
		t.Fatalf("one cached decode step makes %d native calls per layer and %d outside the layers, pinned %d and %d: "+
			"update the pins and the breakdown in the comment if the change is meant", perLayer, c1-perLayer, wantPerLayer, wantOutside)
	}
}
