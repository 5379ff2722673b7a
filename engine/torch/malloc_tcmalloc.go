//go:build !glibcmalloc

package torch

// The host allocator of every binary that links the engine is gperftools'
// tcmalloc (Debian's libtcmalloc-minimal4, which `make deps` installs): it is
// first among the binary's libraries, so libtorch's and the shim's
// allocations go to it too. Against glibc's malloc with the engine's tuning
// (tuneAllocator) it made one op 25-35% cheaper, and in Debian's OpenBLAS
// layout decode 4-10%, reward scoring 11% and the training step 5% faster on
// the same machine (equal or faster in the OpenMP layout); a scoped step
// faults no pages in again (bench/results/models-cpu.md,
// torch-ops-cpu.md). Build with -tags glibcmalloc for glibc's malloc (the
// Makefile does when the library is missing).

/*
#cgo LDFLAGS: -Wl,--no-as-needed -l:libtcmalloc_minimal.so.4
*/
import "C"
