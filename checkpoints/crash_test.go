package checkpoints

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ares-rlhf/ares/checkpoints/safetensors"
)

// crashEnv makes the test binary act as a trainer that saves forever into
// the run directory it names (see TestCrashHelperProcess).
const crashEnv = "ARES_CKPT_CRASH_RUN"

// crashState is the training state of a step, derived from the step alone
// so the parent can check what it loads. "w" is a fine-tuned copy of the
// step-0 weights, "m" changes wholesale.
func crashState(step int64) []testTensor {
	rng := rand.New(rand.NewPCG(1, 0))
	w := randomTensor(rng, safetensors.BF16, 40000)
	if step > 0 {
		r := rand.New(rand.NewPCG(uint64(step), 2))
		for k := 0; k < 500; k++ {
			i := 2 * r.IntN(40000)
			binary.LittleEndian.PutUint16(w[i:], binary.LittleEndian.Uint16(w[i:])^1)
		}
	}
	m := randomTensor(rand.New(rand.NewPCG(uint64(step), 3)), safetensors.F32, 30000)
	return []testTensor{
		{TensorInfo{Name: "w", DType: safetensors.BF16, Shape: []int64{200, 200}}, w},
		{TensorInfo{Name: "m", Group: GroupOptim, DType: safetensors.F32, Shape: []int64{30000}}, m},
	}
}

func crashManager(t testing.TB, run string) *Manager {
	m, err := NewManager(run, &ManagerOptions{Keep: 2, Writer: Options{Workers: 2, ChunkSize: 16 << 10, ShardSize: 64 << 10}})
	must(t, err)
	return m
}

func saveCrashState(m *Manager, step int64) error {
	_, err := m.Save(step, func(w *Writer) error {
		for _, tt := range crashState(step) {
			if err := w.AddTensor(tt.info, tt.data); err != nil {
				return err
			}
		}
		w.SetDataPosition([]byte(fmt.Sprintf(`{"step":%d}`, step)))
		return w.AddBlob(BlobRNGPrefix+"cpu", []byte(fmt.Sprint(step)))
	})
	return err
}

// TestCrashHelperProcess is the child of TestSIGKILLDuringSave: it resumes
// from the newest checkpoint and saves step after step until killed.
func TestCrashHelperProcess(t *testing.T) {
	run := os.Getenv(crashEnv)
	if run == "" {
		t.Skip("helper process for TestSIGKILLDuringSave")
	}
	m := crashManager(t, run)
	r, _, err := m.OpenLatest(false)
	must(t, err)
	step := r.Manifest().Step + 1
	r.Close()
	fmt.Println("ready")
	for ; ; step++ {
		if err := saveCrashState(m, step); err != nil {
			fmt.Fprintln(os.Stderr, "save:", err)
			os.Exit(3)
		}
	}
}

// TestSIGKILLDuringSave kills a saving process at random moments, many
// times. After every kill the newest complete checkpoint must open, verify,
// and hold exactly the state of its step; progress must never go back.
// (SIGKILL loses nothing already written to the page cache, so this tests
// process crashes; power loss is covered by the fsync discipline, not here.)
func TestSIGKILLDuringSave(t *testing.T) {
	kills := 120
	if testing.Short() {
		kills = 25
	}
	run := t.TempDir()
	m := crashManager(t, run)
	t0 := time.Now()
	must(t, saveCrashState(m, 0))
	// Kill within about two save durations of the helper being ready, so
	// kills land both inside saves and between them, whatever the speed of
	// the machine (or -race).
	window := 2*time.Since(t0) + time.Millisecond
	m.Close()
	// The kill times are random; the seed is logged (and the test can be
	// rerun with it) so that a failure can be reproduced as far as timing
	// allows.
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with %s=%d), kill window %v", seed, crashSeedEnv, seed, window)
	rng := rand.New(rand.NewPCG(seed, 7))
	var last int64
	inSave, inDelete := 0, 0
	for k := 0; k < kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+run)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("seed %d: helper did not start: %q %s", seed, line, stderr.String())
		}
		time.Sleep(time.Duration(rng.Int64N(int64(window))))
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("seed %d, kill %d: helper exited on its own (%v): %s", seed, k, err, stderr.String())
		}

		save, del := leftovers(t, run)
		if save {
			inSave++
		}
		if del {
			inDelete++
		}
		m := crashManager(t, run) // as a resuming trainer would
		r, skipped, err := m.OpenLatest(true)
		if err != nil || len(skipped) > 0 {
			t.Fatalf("seed %d, kill %d: resume failed: %v, skipped %v", seed, k, err, skipped)
		}
		step := r.Manifest().Step
		if step < last {
			t.Fatalf("seed %d, kill %d: resumed step %d after step %d", seed, k, step, last)
		}
		last = step
		checkAll(t, r, crashState(step))
		rngBlob, err := r.Blob(BlobRNGPrefix + "cpu")
		if err != nil || string(rngBlob) != fmt.Sprint(step) {
			t.Fatalf("seed %d, kill %d: rng blob %q %v", seed, k, rngBlob, err)
		}
		r.Close()
		m.Close()
	}
	t.Logf("seed %d: %d kills, %d inside a save, %d inside a deletion, reached step %d", seed, kills, inSave, inDelete, last)
	// A test that never killed a save would pass without testing anything.
	if inSave == 0 {
		t.Fatalf("seed %d: none of %d kills landed inside a save (a temporary checkpoint directory left behind); the kill window %v is too short", seed, kills, window)
	}
}

// crashSeedEnv sets the seed of TestSIGKILLDuringSave's kill times.
const crashSeedEnv = "ARES_CRASH_SEED"

// leftovers reports whether a kill left a temporary checkpoint directory
// (killed inside a save, before its rename) or a trash directory (killed
// inside a rotation's deletion).
func leftovers(t *testing.T, run string) (save, del bool) {
	ents, err := os.ReadDir(run)
	must(t, err)
	for _, e := range ents {
		switch n := e.Name(); {
		case strings.Contains(n, tmpMarker) && !strings.HasPrefix(n, "."+LatestName):
			save = true
		case strings.Contains(n, trashMarker):
			del = true
		}
	}
	return save, del
}
