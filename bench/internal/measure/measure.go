// Package measure holds what the bench programs share to measure a run and
// describe the machine it ran on.
package measure

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Median of xs (the mean of the middle two for an even count; 0 when empty).
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// CPUSeconds is the process's user + system CPU time so far, which other
// work on a shared machine disturbs less than wall time.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// CPUModel is the CPU's model name from /proc/cpuinfo, or GOOS/GOARCH where
// it names none.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOOS + "/" + runtime.GOARCH
}
