package torch

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// TestScopedStepsReuseMemory checks the host allocator: steps that free
// their activations all at once, at Scope.Close, reuse the memory the step
// before them freed instead of faulting it in again from the kernel. With
// glibc's defaults (-tags glibcmalloc, ARES_MALLOC=default) each step below
// faulted in 1,691 pages when this was written, 256 with the engine's
// thresholds, and 0 with tcmalloc linked.
func TestScopedStepsReuseMemory(t *testing.T) {
	if !strings.HasPrefix(allocatorPolicy, "glibc malloc, mmap threshold") && !strings.HasPrefix(allocatorPolicy, "tcmalloc") {
		t.Skipf("allocator not tuned by the engine: %s", allocatorPolicy)
	}
	runtime.LockOSThread() // one malloc arena, as a run driven from one thread
	defer runtime.UnlockOSThread()
	x := Ones([]int64{512, 512}, Float32, CPU) // 1 MiB
	defer x.Close()
	step := func() {
		s := NewScope()
		defer s.Close()
		y := s.Own(x.Add(x))
		for i := 0; i < 8; i++ {
			y = y.Add(x) // each a fresh 1 MiB block, all alive until Close
		}
		_ = y.Sum().Item()
	}
	step()
	step()
	before := minorFaults(t)
	const steps = 10
	for i := 0; i < steps; i++ {
		step()
	}
	per := float64(minorFaults(t)-before) / steps
	t.Logf("%.0f minor page faults per step (%s)", per, allocatorPolicy)
	if per > 800 {
		t.Errorf("%.0f minor page faults per step of 9 MiB of activations: freed blocks go back to the kernel (ARES_MALLOC=%q)", per, os.Getenv("ARES_MALLOC"))
	}
}

// vmRSS is the process's resident set in bytes (/proc/self/status).
func vmRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscan(rest, &kb); err == nil {
				return kb << 10
			}
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}

// TestReleaseFreeMemory: tcmalloc keeps a freed 128 MiB tensor resident for
// reuse, and ReleaseFreeMemory hands it back to the kernel (model.Init and
// model.Load call it, so their one-off copies do not stay resident).
func TestReleaseFreeMemory(t *testing.T) {
	if !strings.HasPrefix(allocatorPolicy, "tcmalloc") {
		t.Skipf("checks tcmalloc's release; the allocator is %s", allocatorPolicy)
	}
	x := Zeros([]int64{32 << 20}, Float32, CPU) // 128 MiB, written
	x.Close()
	before := vmRSS(t)
	ReleaseFreeMemory()
	after := vmRSS(t)
	t.Logf("resident set %d MiB before the release, %d MiB after", before>>20, after>>20)
	if before-after < 100<<20 {
		t.Errorf("ReleaseFreeMemory returned %d MiB of a freed 128 MiB tensor", (before-after)>>20)
	}
}
