package dist

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ares-rlhf/ares/engine/torch"
)

func lookupIn(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFromLookup(t *testing.T) {
	good := map[string]string{"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
		"MASTER_ADDR": "node-0", "MASTER_PORT": "29500"}
	e, err := FromLookup(lookupIn(good))
	if err != nil || e != (Env{Rank: 1, WorldSize: 4, LocalRank: 1, LocalWorldSize: 2, MasterAddr: "node-0", MasterPort: 29500}) {
		t.Fatalf("%+v %v", e, err)
	}
	if e, err := FromLookup(lookupIn(nil)); err != nil || e.WorldSize != 1 || e.Distributed() {
		t.Fatalf("empty environment: %+v %v", e, err)
	}
	// Only the global variables (some Slurm setups): local ones default.
	e, err = FromLookup(lookupIn(map[string]string{"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "h", "MASTER_PORT": "1"}))
	if err != nil || e.LocalRank != 3 || e.LocalWorldSize != 4 {
		t.Fatalf("defaults: %+v %v", e, err)
	}
	bad := []struct {
		set, del string
		val      string
		want     string
	}{
		{set: "RANK", val: "x", want: `RANK="x" is not an integer`},
		{set: "RANK", val: "4", want: "RANK=\"4\" must be < WORLD_SIZE"},
		{set: "RANK", val: "-1", want: "RANK=\"-1\" must be >= 0"},
		{set: "WORLD_SIZE", val: "0", want: "WORLD_SIZE=\"0\" must be >= 1"},
		{del: "WORLD_SIZE", want: "WORLD_SIZE is not set"},
		{del: "MASTER_ADDR", want: "MASTER_ADDR is not set"},
		{set: "MASTER_ADDR", val: "tcp://h:1", want: "MASTER_ADDR=\"tcp://h:1\" is not a host"},
		{del: "MASTER_PORT", want: "MASTER_PORT is not set"},
		{set: "MASTER_PORT", val: "70000", want: "MASTER_PORT=\"70000\" must be <= 65535"},
		{set: "LOCAL_RANK", val: "2", want: "LOCAL_RANK=\"2\" must be < LOCAL_WORLD_SIZE"},
		{set: "LOCAL_WORLD_SIZE", val: "8", want: "LOCAL_WORLD_SIZE=\"8\" must be <= WORLD_SIZE"},
	}
	for _, c := range bad {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		if c.set != "" {
			m[c.set] = c.val
		}
		if c.del != "" {
			delete(m, c.del)
		}
		_, err := FromLookup(lookupIn(m))
		var ee *EnvError
		if err == nil || !errors.As(err, &ee) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c, err, c.want)
		}
	}
}

func TestSharder(t *testing.T) {
	for _, n := range []int{10, 11, 16} {
		for _, drop := range []bool{false, true} {
			seen := map[int]int{}
			per := -1
			for r := 0; r < 3; r++ {
				s := &Sharder{N: n, Rank: r, World: 3, Shuffle: true, Seed: 7, DropLast: drop}
				idx := s.Indices(2)
				again := (&Sharder{N: n, Rank: r, World: 3, Shuffle: true, Seed: 7, DropLast: drop}).Indices(2)
				if !slices.Equal(idx, again) {
					t.Fatalf("not deterministic: %v %v", idx, again)
				}
				if per >= 0 && len(idx) != per || len(idx) != s.PerRank() {
					t.Fatalf("n=%d drop=%v: rank %d has %d items, others %d", n, drop, r, len(idx), per)
				}
				per = len(idx)
				for _, i := range idx {
					seen[i]++
				}
			}
			if !drop && len(seen) != n {
				t.Fatalf("n=%d: union covers %d items", n, len(seen))
			}
			if drop && per != n/3 {
				t.Fatalf("drop: %d per rank", per)
			}
		}
	}
	a := (&Sharder{N: 50, World: 2, Shuffle: true, Seed: 1}).Indices(0)
	b := (&Sharder{N: 50, World: 2, Shuffle: true, Seed: 1}).Indices(1)
	if slices.Equal(a, b) {
		t.Fatal("epochs shuffle identically")
	}
	if lo, hi, err := SplitBatch(32, 1, 2); err != nil || lo != 16 || hi != 32 {
		t.Fatal(lo, hi, err)
	}
	if _, _, err := SplitBatch(33, 0, 2); err == nil {
		t.Fatal("uneven batch accepted")
	}
}

func TestBuckets(t *testing.T) {
	var ps []*torch.Tensor
	for _, n := range []int64{10, 10, 100, 5, 5} {
		ps = append(ps, torch.Zeros([]int64{n}, torch.Float32, torch.CPU))
	}
	ps = append(ps, torch.Zeros([]int64{3}, torch.Float64, torch.CPU))
	defer func() {
		for _, p := range ps {
			p.Close()
		}
	}()
	bs := makeBuckets(ps, 80) // 20 float32
	var got [][]int
	for _, b := range bs {
		got = append(got, b.idx)
	}
	want := [][]int{{5}, {4, 3}, {2}, {1, 0}}
	if len(got) != len(want) {
		t.Fatalf("buckets %v, want %v", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("buckets %v, want %v", got, want)
		}
	}
}

// workerCmd is this test binary as a worker.
func workerCmd(name string, extra ...string) LaunchOptions {
	return LaunchOptions{
		Command: []string{os.Args[0]},
		Env:     append(append(os.Environ(), workerVar+"="+name, "ARES_NUM_THREADS=1"), extra...),
		Grace:   3 * time.Second,
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func launch(t *testing.T, o LaunchOptions, nproc int) (string, error) {
	t.Helper()
	var out syncBuf
	o.NProc, o.Stdout, o.Stderr = nproc, &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	err := Launch(ctx, o)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("launch hung:\n%s", out.String())
	}
	return out.String(), err
}

func TestLaunchPrefixesOutput(t *testing.T) {
	out, err := launch(t, workerCmd("echo"), 2)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"[rank 0] hello from 0\n", "[rank 1] hello from 1\n", "[rank 1] partial line without newline\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLaunchStopsOthersWhenOneFails(t *testing.T) {
	start := time.Now()
	out, err := launch(t, workerCmd("fail1"), 2)
	var we *WorkerError
	if !errors.As(err, &we) || we.Rank != 1 || we.ExitCode() != 3 {
		t.Fatalf("got %v, want rank 1 exit 3\n%s", err, out)
	}
	if !strings.Contains(err.Error(), "worker rank 1 failed") {
		t.Fatal(err)
	}
	// Rank 0 sleeps for 60 s; it must have been stopped, not waited for.
	if d := time.Since(start); d > 50*time.Second {
		t.Fatalf("rank 0 was not stopped (%v)", d)
	}
}

func TestLaunchForwardsSignals(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	o := workerCmd("sleep")
	o.Signals = sigs
	go func() { time.Sleep(300 * time.Millisecond); sigs <- syscall.SIGTERM }()
	out, err := launch(t, o, 2)
	var se *SignalError
	if !errors.As(err, &se) || se.Signal != syscall.SIGTERM {
		t.Fatalf("got %v\n%s", err, out)
	}
}

// compareStates returns the largest |a-b| / (1 + |b|) over every float tensor.
func compareStates(t *testing.T, a, b state) float64 {
	t.Helper()
	if a.Step != b.Step || len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("states differ: step %d vs %d, %d vs %d tensors", a.Step, b.Step, len(a.Tensors), len(b.Tensors))
	}
	var names []string
	for k := range a.Tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	worst := 0.0
	for _, k := range names {
		x, y := a.Tensors[k], b.Tensors[k]
		if len(x.Data) != len(y.Data) || x.DType != torch.Float32 {
			t.Fatalf("%s: %d vs %d bytes, %v", k, len(x.Data), len(y.Data), x.DType)
		}
		for i := 0; i+4 <= len(x.Data); i += 4 {
			u := float64(math.Float32frombits(binary.LittleEndian.Uint32(x.Data[i:])))
			v := float64(math.Float32frombits(binary.LittleEndian.Uint32(y.Data[i:])))
			worst = max(worst, math.Abs(u-v)/(1+math.Abs(v)))
		}
	}
	return worst
}

// equalityTol bounds |w2 - w1| / (1 + |w1|) over every weight and AdamW
// moment after the run: the two runs differ only in float32 summation order
// (a mean over 32 rows versus the average of two means over 16).
const equalityTol = 1e-5

const kSteps = 20

// trainTwoProcesses trains steps [0, to) in two launched worker processes
// and returns the state they end with.
func trainTwoProcesses(t *testing.T, to int) state {
	t.Helper()
	out := filepath.Join(t.TempDir(), "two.state")
	o := workerCmd("train", "ARES_DT_FROM=0", fmt.Sprintf("ARES_DT_TO=%d", to), "ARES_DT_OUT="+out)
	if log, err := launch(t, o, 2); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	st, err := readState(out)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestTwoProcessesMatchOne(t *testing.T) {
	two := trainTwoProcesses(t, kSteps)
	one := trainSingle(t, 0, kSteps, nil)
	d := compareStates(t, two, one)
	t.Logf("after %d AdamW steps: max |w2-w1|/(1+|w1|) = %.3g (tolerance %g)", kSteps, d, equalityTol)
	if d > equalityTol {
		t.Fatalf("2 processes diverge from 1: %g", d)
	}
	// Sanity: the runs really trained (the state moved from the initial one).
	init := trainSingle(t, 0, 0, nil)
	init.Step = one.Step
	if compareStates(t, init, one) < 1e-3 {
		t.Fatal("training did not change the weights")
	}
}

func TestResumeTwoProcessRunWithOne(t *testing.T) {
	st := trainTwoProcesses(t, 10)
	if st.Step != 10 {
		t.Fatalf("checkpoint at step %d", st.Step)
	}
	resumed := trainSingle(t, 10, kSteps, &st)
	straight := trainSingle(t, 0, kSteps, nil)
	d := compareStates(t, resumed, straight)
	t.Logf("2-process run resumed by 1 process vs uninterrupted: %.3g", d)
	if d > equalityTol {
		t.Fatalf("resumed run diverges: %g", d)
	}
}

// TestWorkerDeathFailsPeerFast starts two workers directly (no launcher, so
// nothing kills the survivor); rank 1 exits at step 3. Rank 0 must stop with
// an error naming the failed collective, long before the 60 s timeout.
func TestWorkerDeathFailsPeerFast(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var cmds [2]*exec.Cmd
	var outs [2]syncBuf
	for r := 0; r < 2; r++ {
		env := Env{Rank: r, WorldSize: 2, LocalRank: r, LocalWorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port}
		c := exec.Command(os.Args[0])
		c.Env = append(append(os.Environ(), env.Vars()...), workerVar+"=train", "ARES_NUM_THREADS=1",
			"ARES_DT_TO=1000", "ARES_DT_DIE_RANK=1", "ARES_DT_DIE_STEP=3")
		c.Stdout, c.Stderr = &outs[r], &outs[r]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = c
	}
	done := make(chan error, 2)
	go func() { done <- cmds[0].Wait() }()
	err1 := cmds[1].Wait()
	var err0 error
	select {
	case err0 = <-done:
	case <-time.After(90 * time.Second):
		_ = cmds[0].Process.Kill()
		<-done
		t.Fatalf("rank 0 hung after rank 1 died:\n%s", outs[0].String())
	}
	if err1 == nil || cmds[1].ProcessState.ExitCode() != 7 {
		t.Fatalf("rank 1: %v\n%s", err1, outs[1].String())
	}
	if err0 == nil {
		t.Fatalf("rank 0 succeeded without its peer:\n%s", outs[0].String())
	}
	log0 := outs[0].String()
	if !strings.Contains(log0, "dist: rank 0:") {
		t.Fatalf("rank 0's error is unclear:\n%s", log0)
	}
	t.Logf("rank 0 reported: %s", strings.TrimSpace(log0[strings.LastIndex(log0, "worker error:"):]))
}
