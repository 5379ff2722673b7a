package torch

import (
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
