// Command repair benchmarks one policy-repair step of the engine (Dr. GRPO
// against the RM, as `ares repair --stage policy` runs it: generation,
// scoring, old and reference log-probabilities, then updates with the
// clipped policy gradient, k3 KL, unlikelihood and replay losses, clipping
// and AdamW) side by side with a PyTorch-for-Python peer (peer.py) doing the
// same work on the same weights and data:
//
//	go run ./bench/repair [-threads N] [-batches K] [-out FILE]
//
// The engine side is repair.RepairPolicy itself, timed from its per-phase
// metrics; the first rollout batch of each side is a warm-up.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/child"
	"github.com/ares-rlhf/ares/bench/internal/policystep"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/synth"
	"github.com/ares-rlhf/ares/engine/torch"
)

// workload is what the peer needs to do the same work: the step's settings
// and the token ids of every data set.
type workload struct {
	Threads        int        `json:"threads"`
	Batches        int        `json:"batches"`
	Prompts        int        `json:"prompts"`
	Group          int        `json:"group"`
	Updates        int        `json:"updates"`
	MaxNew         int        `json:"max_new"`
	Temperature    float64    `json:"temperature"`
	ClipEps        float64    `json:"clip_eps"`
	Unlikelihood   float64    `json:"unlikelihood"`
	KL             float64    `json:"kl"`
	Replay         float64    `json:"replay"`
	ReplayBatch    int        `json:"replay_batch"`
	LookalikeRatio float64    `json:"lookalike_ratio"`
	LR             float64    `json:"lr"`
	Clip           float64    `json:"clip"`
	End            int        `json:"end"`
	Pad            int        `json:"pad"`
	FindingPrompts [][]int    `json:"finding_prompts"`
	Lookalikes     [][]int    `json:"lookalikes"`
	Harmful        [][2][]int `json:"harmful"`
	ReplayData     [][2][]int `json:"replay_data"`
}

type peerOut struct {
	Torch       string             `json:"torch"`
	Phases      map[string]float64 `json:"phases"` // seconds per rollout batch (Updates optimizer steps)
	ResponseLen float64            `json:"response_len"`
}

// Same shape as bench/models: Llama family, 4 layers, hidden 256.
const configJSON = `{"model_type":"llama","vocab_size":%d,"hidden_size":256,"num_hidden_layers":4,
"num_attention_heads":8,"num_key_value_heads":4,"intermediate_size":704,"max_position_embeddings":256,
"tie_word_embeddings":false,"rope_theta":10000,"eos_token_id":%d,"pad_token_id":%d}`

// The engine's own way: one OS thread drives libtorch (as cmd/ares does).
func init() { runtime.LockOSThread() }

func main() {
	threads := flag.Int("threads", runtime.NumCPU(), "intra-op threads on both sides")
	blasThreads := flag.Int("blas-threads", runtime.NumCPU(), "OpenBLAS threads on both sides (PyTorch leaves OpenBLAS at one per CPU)")
	batches := flag.Int("batches", 3, "timed rollout batches (after one warm-up batch)")
	out := flag.String("out", "", "also write the markdown table here")
	flag.Parse()
	if err := run(*threads, *blasThreads, *batches, *out); err != nil {
		fmt.Fprintln(os.Stderr, "repair bench:", err)
		os.Exit(1)
	}
}

func run(threads, blasThreads, batches int, outPath string) error {
	if err := torch.SetNumThreads(threads); err != nil {
		return err
	}
	if err := torch.SetBLASThreads(blasThreads); err != nil {
		return err
	}
	pd, codec, err := policystep.Data()
	if err != nil {
		return err
	}
	cfg, err := model.ParseConfig([]byte(fmt.Sprintf(configJSON, codec.Tok.VocabSize(), codec.End, codec.Pad)))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "ares-bench-repair")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	polDir, rmDir := filepath.Join(tmp, "policy"), filepath.Join(tmp, "rm")
	for _, x := range []struct {
		dir  string
		kind model.Kind
		seed uint64
	}{{polDir, model.CausalLM, 1}, {rmDir, model.Reward, 2}} {
		m, err := model.Init(cfg, x.kind, x.seed, model.Options{})
		if err != nil {
			return err
		}
		err = m.Save(x.dir, x.kind, codec.Tok)
		m.Close()
		if err != nil {
			return err
		}
	}
	o := synth.DefaultConfig(false).PolicyRepair
	o.Steps = int64((batches + 1) * o.UpdatesPerBatch)
	o.Warmup = 0

	load := func(dir string, kind model.Kind) *model.Transformer {
		m, e := model.Load(dir, kind, model.Options{})
		if e != nil && err == nil {
			err = e
		}
		return m
	}
	pol, ref, rm := load(polDir, model.CausalLM), load(polDir, model.CausalLM), load(rmDir, model.Reward)
	if err != nil {
		return err
	}
	defer pol.Close()
	defer ref.Close()
	defer rm.Close()
	var metrics bytes.Buffer
	fmt.Fprintf(os.Stderr, "engine: %d rollout batches of %d prompts x %d samples, %d updates each\n", batches+1, o.Prompts, o.Group, o.UpdatesPerBatch)
	t0 := time.Now()
	if _, err := repair.RepairPolicy(pol, ref, rm, codec, pd, o, nil, 7, repair.RunIO{Metrics: &metrics, Progress: os.Stderr, Label: "engine"}); err != nil {
		return err
	}
	goWall := time.Since(t0)
	goPh, goLen, err := policystep.Times(&metrics, o.UpdatesPerBatch)
	if err != nil {
		return err
	}

	wl := workload{Threads: threads, Batches: batches, Prompts: o.Prompts, Group: o.Group, Updates: o.UpdatesPerBatch,
		MaxNew: o.MaxNewTokens, Temperature: o.Temperature, ClipEps: o.ClipEps, Unlikelihood: o.Unlikelihood, KL: o.KL,
		Replay: o.Replay, ReplayBatch: o.ReplayBatch, LookalikeRatio: o.LookalikeRatio, LR: o.LR, Clip: o.Clip,
		End: codec.End, Pad: codec.Pad}
	for _, p := range pd.Prompts {
		wl.FindingPrompts = append(wl.FindingPrompts, codec.Prompt(p))
	}
	for _, p := range pd.Lookalikes {
		wl.Lookalikes = append(wl.Lookalikes, codec.Prompt(p))
	}
	for _, e := range pd.Harmful {
		wl.Harmful = append(wl.Harmful, [2][]int{codec.Prompt(e.Prompt), codec.Response(e.Response)})
	}
	for _, e := range pd.Replay {
		wl.ReplayData = append(wl.ReplayData, [2][]int{codec.Prompt(e.Prompt), codec.Response(e.Response)})
	}
	wlPath := filepath.Join(tmp, "workload.json")
	b, _ := json.Marshal(wl)
	if err := os.WriteFile(wlPath, b, 0o644); err != nil {
		return err
	}
	_, self, _, _ := runtime.Caller(0)
	var peer peerOut
	if err := child.Peer(&peer, filepath.Join(filepath.Dir(self), "peer.py"), []string{"OPENBLAS_NUM_THREADS=" + strconv.Itoa(blasThreads)},
		polDir, rmDir, wlPath); err != nil {
		return err
	}

	info, _ := torch.Describe()
	var md bytes.Buffer
	fmt.Fprintf(&md, "# One policy-repair step: Go engine against PyTorch for Python (CPU)\n\n")
	fmt.Fprintf(&md, "Measured %s by `go run ./bench/repair -threads %d -blas-threads %d -batches %d`, %d CPUs, libtorch %s, PyTorch %s, %d intra-op threads and %d OpenBLAS threads on both sides. "+
		"Models: policy, frozen reference and RM of the Llama family, vocab %d (BPE trained on the synthetic world), hidden %d, %d layers, %d heads / %d KV heads, %d parameters each, float32, the same safetensors on both sides. "+
		"One rollout batch = %d prompts (%.0f%% look-alikes) x %d samples, temperature %.1f, at most %d new tokens (stop at end of turn); RM scoring; old and reference log-probabilities; "+
		"then %d optimizer steps, each: clipped Dr. GRPO policy gradient + %.2f k3 KL + %.1f unlikelihood on %d harmful responses + %.1f replay LM loss on %d benign examples, backward, global-norm clip, AdamW. "+
		"Mean over %d rollout batches after one warm-up batch. The engine side is `repair.RepairPolicy` (timed from its per-phase metrics, %.1f s wall in all); mean response length %.1f tokens (engine) and %.1f (peer): both sample from the same weights, so lengths agree only in expectation.\n\n",
		time.Now().UTC().Format("2006-01-02"), threads, blasThreads, batches, runtime.NumCPU(), info.RuntimeVersion, peer.Torch, threads, blasThreads,
		cfg.VocabSize, cfg.Hidden, cfg.Layers, cfg.Heads, cfg.KVHeads, pol.NumParams(),
		o.Prompts, 100*o.LookalikeRatio, o.Group, o.Temperature, o.MaxNewTokens, o.UpdatesPerBatch, o.KL, o.Unlikelihood, o.Prompts, o.Replay, o.ReplayBatch,
		batches, goWall.Seconds(), goLen, peer.ResponseLen)
	fmt.Fprintf(&md, "| phase, seconds per rollout batch | Go engine | PyTorch peer | peer / Go (speed-up) |\n|---|---:|---:|---:|\n")
	for _, ph := range []struct{ key, label string }{
		{"generation", "generation (sampling with KV cache)"},
		{"scoring", "RM scoring"},
		{"reference", "old + reference log-probs"},
		{"update_forward", "update: forward and losses"},
		{"backward", "update: backward"},
		{"update", "update: clip + AdamW"},
		{"step", "**whole repair step**"},
	} {
		g, p := goPh[ph.key], peer.Phases[ph.key]
		fmt.Fprintf(&md, "| %s | %.3f | %.3f | %.2f |\n", ph.label, g, p, p/g)
	}
	os.Stdout.Write(md.Bytes())
	if outPath != "" {
		return os.WriteFile(outPath, md.Bytes(), 0o644)
	}
	return nil
}
