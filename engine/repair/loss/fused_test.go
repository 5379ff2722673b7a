package loss

import (
	"fmt"
	"math"
	"testing"

	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/torch"
)

// stepResult is what one policy-repair-like step produces: the token
// log-probabilities, the composite loss and every parameter's gradient.
type stepResult struct {
	logp  []float64
	loss  float64
	parts map[string]float64
	grads map[string][]float64
}

// policyStep runs a joint policy-repair step on m: token log-probabilities
// of a ragged batch by logProbs, then Dr. GRPO + KL (k3) + unlikelihood +
// LM replay composed by Weighted, and the backward pass into m's parameters.
func policyStep(t *testing.T, m *model.Transformer, logProbs func(*model.Batch) *torch.Tensor) stepResult {
	t.Helper()
	seqs := [][]int{{5, 9, 2, 7, 1, 3, 8, 11}, {4, 4, 6}, {1, 2, 3, 4, 5, 40}}
	var r stepResult
	must(t, func() {
		s := torch.NewScope()
		defer s.Close()
		torch.ZeroGrad(m.Tensors())
		b, err := m.NewBatch(s, seqs, 0)
		if err != nil {
			t.Fatal(err)
		}
		N, T := int64(len(seqs)), int64(b.Width-1)
		mask := make([]float32, N*T)
		old := make([]float32, N*T)
		for i, q := range seqs {
			for j := 1; j < len(q)-1; j++ { // the response: all but the first target
				mask[int64(i)*T+int64(j)] = 1
			}
			for j := range T {
				old[int64(i)*T+j] = -4 + 0.1*float32(j%5) - 0.2*float32(i)
			}
		}
		mt := s.Own(torch.FromSlice(mask, N, T))
		oldT := s.Own(torch.FromSlice(old, N, T))
		adv := s.Own(torch.FromSlice([]float32{0.5, -1, 0.25}, N))
		logp := logProbs(b)
		dt := logp.DType()
		mt, oldT, adv = s.Own(mt.To(dt)), s.Own(oldT.To(dt)), s.Own(adv.To(dt))
		pg, _ := PolicyGradient(logp, oldT, adv, mt, PGOptions{ClipEps: 0.2, NormConst: 8})
		total, parts := Weighted(
			Term{Name: "policy", Weight: 1, Loss: pg},
			Term{Name: "kl", Weight: 0.1, Loss: KL(logp, oldT, mt, K3, 8)},
			Term{Name: "unlikelihood", Weight: 0.5, Loss: Unlikelihood(logp, mt, 8)},
			Term{Name: "replay", Weight: 0.3, Loss: LanguageModel(logp, mt, PerToken)},
		)
		total.Backward()
		r.logp = torch.Data[float64](s.Own(logp.Detach().To(torch.Float64)))
		r.loss, r.parts = parts["total"], parts
		r.grads = map[string][]float64{}
		for _, p := range m.Params() {
			g := p.T.Grad()
			if g == nil {
				t.Fatalf("%s: no gradient", p.Name)
			}
			s.Own(g)
			r.grads[p.Name] = torch.Data[float64](s.Own(g.To(torch.Float64)))
		}
	})
	return r
}

// TestFusedLogProbsEqualPlain: the model's token log-probabilities through
// the fused, vocabulary-chunked op (torch.TokenLogProbs) equal those through
// the full logits, and so do the repair losses built on them and the
// gradients of every parameter (the tied head's embedding gets both of its
// contributions), for a head untied (llama) and tied (qwen2), in float64 and
// float32, with chunks that split the vocabulary unevenly and with one chunk.
func TestFusedLogProbsEqualPlain(t *testing.T) {
	configs := map[string]string{
		"llama": `{"model_type":"llama","vocab_size":67,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":48,"max_position_embeddings":64,"tie_word_embeddings":false,"rope_theta":500}`,
		"qwen2": `{"model_type":"qwen2","vocab_size":53,"hidden_size":24,"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"intermediate_size":40,"max_position_embeddings":64,"tie_word_embeddings":true}`,
	}
	for name, js := range configs {
		for _, dt := range []torch.DType{torch.Float64, torch.Float32} {
			tol := 1e-10
			if dt == torch.Float32 {
				tol = 2e-5
			}
			t.Run(fmt.Sprintf("%s/%s", name, dt), func(t *testing.T) {
				cfg, err := model.ParseConfig([]byte(js))
				if err != nil {
					t.Fatal(err)
				}
				m, err := model.Init(cfg, model.CausalLM, 7, model.Options{DType: dt})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				m.SetTrainable(true)
				live := torch.LiveTensors()
				plain := policyStep(t, m, m.TokenLogProbsPlain)
				for _, chunk := range []int64{16, 0} {
					fused := policyStep(t, m, func(b *model.Batch) *torch.Tensor { return m.TokenLogProbsFused(b, chunk) })
					where := fmt.Sprintf("chunk %d", chunk)
					nearAll(t, where+": logp", fused.logp, plain.logp, tol)
					for k, v := range plain.parts {
						near(t, where+": loss "+k, fused.parts[k], v, tol)
					}
					for _, p := range m.Params() {
						nearAll(t, where+": grad "+p.Name, fused.grads[p.Name], plain.grads[p.Name], tol)
					}
				}
				// The default path is one of the two (plain at this size).
				auto := policyStep(t, m, m.TokenLogProbs)
				nearAll(t, "auto: logp", auto.logp, plain.logp, tol)
				if math.IsNaN(auto.loss) || math.Abs(auto.loss-plain.loss) > tol*(1+math.Abs(plain.loss)) {
					t.Fatalf("auto: loss %v, plain %v", auto.loss, plain.loss)
				}
				torch.ZeroGrad(m.Tensors())
				if d := torch.LiveTensors() - live; d != 0 {
					t.Fatalf("%d tensors more alive after the steps", d)
				}
			})
		}
	}
}

// TestTokenLogProbsRouting: model.TokenLogProbs takes the fused path from
// model.FusedLogitsMin logits up and the plain path below, told apart by
// their native calls (the same code makes the same calls, once the
// parameters' shapes are cached).
func TestTokenLogProbsRouting(t *testing.T) {
	const js = `{"model_type":"llama","vocab_size":%d,"hidden_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":32,"max_position_embeddings":64,"tie_word_embeddings":true}`
	seqs := make([][]int, 3)
	for i := range seqs {
		for j := range 25 {
			seqs[i] = append(seqs[i], (i*31+j*17)%97)
		}
	}
	n := int64(len(seqs) * 24)
	for _, vocab := range []int64{model.FusedLogitsMin/n + 1, model.FusedLogitsMin/n - 1} {
		cfg, err := model.ParseConfig([]byte(fmt.Sprintf(js, vocab)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.Init(cfg, model.CausalLM, 3, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		calls := map[string]int64{}
		var vals = map[string][]float64{}
		for name, f := range map[string]func(*model.Batch) *torch.Tensor{
			"auto":  m.TokenLogProbs,
			"plain": m.TokenLogProbsPlain,
			"fused": func(b *model.Batch) *torch.Tensor { return m.TokenLogProbsFused(b, 0) },
		} {
			must(t, func() {
				torch.NoGrad(func() {
					s := torch.NewScope()
					defer s.Close()
					b, err := m.NewBatch(s, seqs, 0)
					if err != nil {
						t.Fatal(err)
					}
					f(b) // the first call reads the weights' shapes once (cached)
					c0 := torch.NativeCalls()
					lp := f(b)
					calls[name] = torch.NativeCalls() - c0
					vals[name] = torch.Data[float64](s.Own(lp.To(torch.Float64)))
				})
			})
		}
		m.Close()
		want := "plain"
		if n*vocab >= model.FusedLogitsMin {
			want = "fused"
		}
		if calls["plain"] == calls["fused"] {
			t.Fatalf("vocab %d: the paths make the same number of calls (%d); the test cannot tell them apart", vocab, calls["plain"])
		}
		if calls["auto"] != calls[want] {
			t.Fatalf("vocab %d (N x V = %d): TokenLogProbs made %d calls, the %s path %d (plain %d, fused %d)",
				vocab, n*vocab, calls["auto"], want, calls[want], calls["plain"], calls["fused"])
		}
		nearAll(t, fmt.Sprintf("vocab %d: fused vs plain", vocab), vals["fused"], vals["plain"], 2e-5)
	}
}
