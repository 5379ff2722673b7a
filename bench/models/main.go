// Command models benchmarks the engine's models side by side with a
// PyTorch-for-Python peer (peer.py) on the same weights and the same work:
//
//	go run ./bench/models [-threads N] [-runs N] [-batches 1,8,32] [-decode-only] [-cpuprofile FILE] [-out FILE]
//
// decode tokens/s (greedy, KV cache) at batch 1, 8 and 32; reward-model
// sequences/s; and a language-model training step (forward, loss, backward,
// AdamW) in tokens/s. Each figure is the median of -runs runs on each side
// (the engine's runs first, then the peer's, in one invocation); decode also
// reports the process CPU time (user + system) per generated token, which a
// loaded machine disturbs less than wall time.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ares-rlhf/ares/bench/internal/child"
	"github.com/ares-rlhf/ares/bench/internal/measure"
	"github.com/ares-rlhf/ares/engine/model"
	"github.com/ares-rlhf/ares/engine/torch"
)

type spec struct {
	Threads       int   `json:"threads"`
	DecodeBatches []int `json:"decode_batches"`
	Prompt        int   `json:"prompt"`
	New           int   `json:"new"`
	RMBatch       int   `json:"rm_batch"`
	RMLen         int   `json:"rm_len"`
	RMIters       int   `json:"rm_iters"`
	TrainBatch    int   `json:"train_batch"`
	TrainLen      int   `json:"train_len"`
	TrainIters    int   `json:"train_iters"`
	Runs          int   `json:"runs"`
	DecodeOnly    bool  `json:"decode_only"`
}

type peerOut struct {
	Torch        string               `json:"torch"`
	Decode       map[string][]float64 `json:"decode"`     // tokens/s per run
	DecodeCPU    map[string][]float64 `json:"decode_cpu"` // CPU seconds per token per run
	RMSeqPerS    []float64            `json:"rm_seq_per_s"`
	TrainTokPerS []float64            `json:"train_tok_per_s"`
}

const configJSON = `{"model_type":"llama","vocab_size":4096,"hidden_size":256,"num_hidden_layers":4,
"num_attention_heads":8,"num_key_value_heads":4,"intermediate_size":704,"max_position_embeddings":256,
"tie_word_embeddings":false,"rope_theta":10000}`

// The engine's own way: one OS thread drives libtorch (as cmd/ares does).
func init() { runtime.LockOSThread() }

func main() {
	threads := flag.Int("threads", runtime.NumCPU(), "intra-op threads on both sides")
	blasThreads := flag.Int("blas-threads", runtime.NumCPU(), "OpenBLAS threads on both sides (PyTorch leaves OpenBLAS at one per CPU)")
	out := flag.String("out", "", "also write the markdown table here")
	runs := flag.Int("runs", 3, "runs per figure on each side (the median is reported)")
	decodeOnly := flag.Bool("decode-only", false, "only the decode figures")
	batches := flag.String("batches", "1,8,32", "decode batch sizes")
	cpuProfile := flag.String("cpuprofile", "", "write a pprof CPU profile of the engine's decode runs here")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "models bench:", err)
			os.Exit(1)
		}
		defer f.Close()
		profile = f
	}
	var bs []int
	for _, f := range strings.Split(*batches, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || b <= 0 {
			fmt.Fprintln(os.Stderr, "models bench: bad -batches", *batches)
			os.Exit(2)
		}
		bs = append(bs, b)
	}
	if err := run(*threads, *blasThreads, max(*runs, 1), bs, *decodeOnly, *out); err != nil {
		fmt.Fprintln(os.Stderr, "models bench:", err)
		os.Exit(1)
	}
}

func randomPrompts(B, L, V int, r *rand.Rand) [][]int {
	out := make([][]int, B)
	for i := range out {
		out[i] = make([]int, L)
		for j := range out[i] {
			out[i][j] = r.Intn(V)
		}
	}
	return out
}

// profile, when set, receives a CPU profile of the engine's decode runs.
var profile *os.File

func run(threads, blasThreads, runs int, batches []int, decodeOnly bool, outPath string) error {
	if err := torch.SetNumThreads(threads); err != nil {
		return err
	}
	if err := torch.SetBLASThreads(blasThreads); err != nil {
		return err
	}
	sp := spec{Threads: threads, DecodeBatches: batches, Prompt: 16, New: 64,
		RMBatch: 32, RMLen: 64, RMIters: 5, TrainBatch: 8, TrainLen: 64, TrainIters: 5,
		Runs: runs, DecodeOnly: decodeOnly}
	cfg, err := model.ParseConfig([]byte(configJSON))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "ares-bench-models")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	lmDir, rmDir := filepath.Join(tmp, "lm"), filepath.Join(tmp, "rm")
	lm, err := model.Init(cfg, model.CausalLM, 1, model.Options{})
	if err != nil {
		return err
	}
	defer lm.Close()
	rm, err := model.Init(cfg, model.Reward, 2, model.Options{})
	if err != nil {
		return err
	}
	defer rm.Close()
	if err := lm.Save(lmDir, model.CausalLM, nil); err != nil {
		return err
	}
	if err := rm.Save(rmDir, model.Reward, nil); err != nil {
		return err
	}
	r := rand.New(rand.NewSource(0))
	goDecode, goCPU := map[int][]float64{}, map[int][]float64{}
	prompts := map[int][][]int{}
	for _, B := range sp.DecodeBatches {
		prompts[B] = randomPrompts(B, sp.Prompt, cfg.VocabSize, r)
		if _, err := lm.Generate(prompts[B], model.GenerateOptions{MaxNewTokens: 4}); err != nil {
			return err
		}
	}
	if profile != nil {
		if err := pprof.StartCPUProfile(profile); err != nil {
			return err
		}
	}
	for i := 0; i < runs; i++ {
		for _, B := range sp.DecodeBatches {
			c0, t0 := measure.CPUSeconds(), time.Now()
			if _, err := lm.Generate(prompts[B], model.GenerateOptions{MaxNewTokens: sp.New}); err != nil {
				return err
			}
			wall, cpu := time.Since(t0).Seconds(), measure.CPUSeconds()-c0
			goDecode[B] = append(goDecode[B], float64(B*sp.New)/wall)
			goCPU[B] = append(goCPU[B], cpu/float64(B*sp.New))
		}
	}
	if profile != nil {
		pprof.StopCPUProfile()
	}
	var rmRate, trainRate []float64
	err = torch.Try(func() {
		if decodeOnly {
			return
		}
		seqs := randomPrompts(sp.RMBatch, sp.RMLen, cfg.VocabSize, r)
		torch.NoGrad(func() {
			for run := 0; run < runs; run++ {
				var t0 time.Time
				for i := 0; i < sp.RMIters+2; i++ {
					if i == 2 {
						t0 = time.Now()
					}
					s := torch.NewScope()
					b, _ := rm.NewBatch(s, seqs, 0)
					rm.Score(b).Float32s()
					s.Close()
				}
				rmRate = append(rmRate, float64(sp.RMBatch*sp.RMIters)/time.Since(t0).Seconds())
			}
		})
		lm.SetTrainable(true)
		opt := torch.NewAdamW(lm.Tensors(), 1e-4, 0)
		defer opt.Close()
		train := randomPrompts(sp.TrainBatch, sp.TrainLen, cfg.VocabSize, r)
		step := func() {
			s := torch.NewScope()
			defer s.Close()
			b, _ := lm.NewBatch(s, train, 0)
			logits := lm.Logits(lm.Forward(b.IDs, b.Pos, b.Mask, nil))
			L := int64(sp.TrainLen)
			loss := torch.CrossEntropy(logits.Narrow(1, 0, L-1).Reshape(-1, int64(cfg.VocabSize)), b.IDs.Narrow(1, 1, L-1).Reshape(-1))
			opt.ZeroGrad()
			loss.Backward()
			opt.Step()
		}
		step()
		for run := 0; run < runs; run++ {
			t0 := time.Now()
			for i := 0; i < sp.TrainIters; i++ {
				step()
			}
			trainRate = append(trainRate, float64(sp.TrainBatch*sp.TrainLen*sp.TrainIters)/time.Since(t0).Seconds())
		}
	})
	if err != nil {
		return err
	}
	specJSON, _ := json.Marshal(sp)
	_, self, _, _ := runtime.Caller(0)
	var peer peerOut
	if err := child.Peer(&peer, filepath.Join(filepath.Dir(self), "peer.py"), []string{"OPENBLAS_NUM_THREADS=" + strconv.Itoa(blasThreads)},
		lmDir, rmDir, string(specJSON)); err != nil {
		return err
	}
	info, _ := torch.Describe()
	var md bytes.Buffer
	fmt.Fprintf(&md, "# Models: Go engine against PyTorch for Python (CPU)\n\n")
	fmt.Fprintf(&md, "Measured %s by `go run ./bench/models -threads %d -blas-threads %d -runs %d`, %d CPUs, libtorch %s, PyTorch %s, %d intra-op threads and %d OpenBLAS threads on both sides. "+
		"Model: Llama-family, vocab %d, hidden %d, %d layers, %d heads / %d KV heads, %d parameters, float32, same safetensors weights on both sides.\n\n",
		time.Now().UTC().Format("2006-01-02"), threads, blasThreads, runs, runtime.NumCPU(), info.RuntimeVersion, peer.Torch, threads, blasThreads,
		cfg.VocabSize, cfg.Hidden, cfg.Layers, cfg.Heads, cfg.KVHeads, lm.NumParams())
	fmt.Fprintf(&md, "| work | Go engine | PyTorch peer | Go / peer |\n|---|---:|---:|---:|\n")
	for _, B := range sp.DecodeBatches {
		g, p := measure.Median(goDecode[B]), measure.Median(peer.Decode[fmt.Sprint(B)])
		fmt.Fprintf(&md, "| greedy decode, batch %d, %d+%d tokens (tokens/s) | %.0f | %.0f | %.2f |\n", B, sp.Prompt, sp.New, g, p, g/p)
	}
	if !decodeOnly {
		g, p := measure.Median(rmRate), measure.Median(peer.RMSeqPerS)
		fmt.Fprintf(&md, "| reward model, batch %d x %d tokens (sequences/s) | %.1f | %.1f | %.2f |\n", sp.RMBatch, sp.RMLen, g, p, g/p)
		g, p = measure.Median(trainRate), measure.Median(peer.TrainTokPerS)
		fmt.Fprintf(&md, "| LM training step, batch %d x %d, AdamW (tokens/s) | %.0f | %.0f | %.2f |\n", sp.TrainBatch, sp.TrainLen, g, p, g/p)
	}
	fmt.Fprintf(&md, "\nDecode CPU time (user + system, whole process) per generated token, median of the same runs:\n\n")
	fmt.Fprintf(&md, "| decode | Go engine (ms CPU/token) | PyTorch peer (ms CPU/token) | peer / Go |\n|---|---:|---:|---:|\n")
	for _, B := range sp.DecodeBatches {
		g, p := measure.Median(goCPU[B])*1e3, measure.Median(peer.DecodeCPU[fmt.Sprint(B)])*1e3
		fmt.Fprintf(&md, "| batch %d | %.3f | %.3f | %.2f |\n", B, g, p, p/g)
	}
	fmt.Fprintf(&md, "\nAll runs (tokens/s), engine: %v; peer: %v\n", fmtRuns(goDecode), fmtRuns(byBatch(peer.Decode)))
	os.Stdout.Write(md.Bytes())
	if outPath != "" {
		return os.WriteFile(outPath, md.Bytes(), 0o644)
	}
	return nil
}

// fmtRuns prints per-batch run lists with whole tokens/s.
func fmtRuns(m map[int][]float64) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d:[", k)
		for j, v := range m[k] {
			if j > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%.0f", v)
		}
		b.WriteString("]")
	}
	return b.String()
}

// byBatch keys the peer's per-batch lists by batch size.
func byBatch(m map[string][]float64) map[int][]float64 {
	out := map[int][]float64{}
	for k, v := range m {
		var b int
		fmt.Sscan(k, &b)
		out[b] = v
	}
	return out
}
