// Package torch is the engine's only cgo package: a thin, hand-written layer
// over libtorch through the C ABI in kernels/include/ares_torch.h.
//
// Errors. A failing op panics with a *Error that names the op and the
// problem (a shape mismatch, a bad dtype, an out-of-range index, use of a
// closed tensor). Model and loss code is written as plain expressions, like
// PyTorch; the boundary that runs it (a training step, a CLI command, a test)
// converts the panic back into an ordinary Go error with Try. Nothing in this
// package aborts the process on bad input.
//
// Memory. Tensors created while running a step belong to a Scope, freed all
// at once by Scope.Close; an op's result joins the scope of its first scoped
// input. Tensors made only from unscoped inputs (parameters, optimizer state,
// KV caches) are unscoped and closed by their owner. LiveTensors counts native
// handles, so leaks are testable.
//
// Threads. The thread counts are set explicitly at package start
// (defaultThreads: ARES_NUM_THREADS, ARES_BLAS_THREADS, or the layout
// measured fastest for how OpenBLAS runs its threads); SetNumThreads sets
// OpenBLAS's own pool to the intra-op count unless SetBLASThreads set it
// apart (libtorch alone leaves that pool at one worker per CPU, each
// yielding in a loop after every call, beside the OpenMP team). Autograd mode is
// per OS thread in libtorch; NoGrad locks the goroutine to its thread. So is
// the counter that orders the nodes of the backward pass: build and
// backpropagate a graph from one OS thread (runtime.LockOSThread; package
// train does) or gradients with several contributions may be summed in a
// different order from run to run.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/../../kernels/include
#cgo LDFLAGS: -L${SRCDIR}/../../build/lib -lares_torch -Wl,-rpath,${SRCDIR}/../../build/lib
#include <stdlib.h>
#include <malloc.h>
#include <dlfcn.h>
#include "ares_torch.h"

// 1 when the process's malloc is gperftools' tcmalloc (see malloc_tcmalloc.go).
static int ares_tcmalloc_active(void) {
	void *tc = dlsym(RTLD_DEFAULT, "tc_malloc");
	return tc != NULL && tc == dlsym(RTLD_DEFAULT, "malloc");
}

// Hands the allocator's free memory back to the kernel: tcmalloc's
// MallocExtension_ReleaseFreeMemory, or glibc's malloc_trim.
static void ares_release_free_memory(void) {
	if (ares_tcmalloc_active()) {
		void (*release)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
		if (release != NULL) {
			release();
			return;
		}
	}
	malloc_trim(0);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Code classifies an Error.
type Code int

const (
	CodeTorch    Code = C.ARES_ERR_TORCH    // libtorch rejected the call
	CodeInvalid  Code = C.ARES_ERR_INVALID  // an argument the engine rejects
	CodeOOM      Code = C.ARES_ERR_OOM      // out of host or device memory
	CodeInternal Code = C.ARES_ERR_INTERNAL // any other C++ exception
	CodeClosed   Code = 100                 // use of a closed tensor or generator
)

func (c Code) String() string {
	switch c {
	case CodeTorch:
		return "torch"
	case CodeInvalid:
		return "invalid argument"
	case CodeOOM:
		return "out of memory"
	case CodeInternal:
		return "internal"
	case CodeClosed:
		return "closed"
	case CodeDist:
		return "distributed"
	}
	return "code " + strconv.Itoa(int(c))
}

// Error is the error of a failed op.
type Error struct {
	Op   string // the op, as named in this package (e.g. "MatMul")
	Code Code
	Msg  string
}

func (e *Error) Error() string { return "torch." + e.Op + ": " + e.Msg }

// IsOOM reports whether err is (or wraps) an out-of-memory Error.
func IsOOM(err error) bool {
	var te *Error
	return errors.As(err, &te) && te.Code == CodeOOM
}

// nativeCalls counts the shim calls that return a status (see NativeCalls).
var nativeCalls atomic.Int64

// NativeCalls is the number of calls into the shim that returned a status
// since the process started: every op, fused op, query (shape, item, data
// copies) and autograd call, which all pass through check or statusErr. Frees
// (Tensor.Close, Scope.Close) and a few constant queries are not counted. Like
// LiveTensors it makes a cost testable: the difference across a piece of code
// is the number of cgo round trips it made (counted from every goroutine).
func NativeCalls() int64 { return nativeCalls.Load() }

// check converts a status from the shim into a panic with a *Error.
func check(op string, st *C.ares_status) {
	nativeCalls.Add(1)
	if e := injected(op, st != nil); e != nil {
		panic(e)
	}
	if st == nil {
		return
	}
	e := &Error{Op: op, Code: Code(C.ares_status_code(st)), Msg: C.GoString(C.ares_status_message(st))}
	C.ares_status_free(st)
	panic(e)
}

// statusErr converts a status into an error without panicking.
func statusErr(op string, st *C.ares_status) error {
	nativeCalls.Add(1)
	if e := injected(op, st != nil); e != nil {
		return e
	}
	if st == nil {
		return nil
	}
	e := &Error{Op: op, Code: Code(C.ares_status_code(st)), Msg: C.GoString(C.ares_status_message(st))}
	C.ares_status_free(st)
	return e
}

func fail(op string, code Code, format string, a ...any) {
	panic(&Error{Op: op, Code: code, Msg: fmt.Sprintf(format, a...)})
}

// Try runs f and returns the *Error it panicked with, if any. Other panics
// propagate unchanged: they are bugs, not bad input.
func Try(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if te, ok := r.(*Error); ok {
				err = te
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

// Try1 is Try for a function with one result.
func Try1[T any](f func() T) (v T, err error) {
	err = Try(func() { v = f() })
	return v, err
}

// waitPolicy is the OpenMP and OpenBLAS spin settings as libgomp and
// OpenBLAS read them: from the environment, once, when they were loaded
// (before any Go code ran), so only the environment a process starts with
// can change them.
var waitPolicy = readWaitPolicy()

func readWaitPolicy() string {
	var parts []string
	if v := os.Getenv("OMP_WAIT_POLICY"); v != "" {
		parts = append(parts, "OMP_WAIT_POLICY="+v)
	}
	if v := os.Getenv("GOMP_SPINCOUNT"); v != "" {
		parts = append(parts, "GOMP_SPINCOUNT="+v)
	}
	if v := os.Getenv("OPENBLAS_THREAD_TIMEOUT"); v != "" {
		parts = append(parts, "OPENBLAS_THREAD_TIMEOUT="+v)
	}
	if len(parts) == 0 {
		return "default (OpenMP workers spin, OpenBLAS workers yield, after each call before sleeping; OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT unset)"
	}
	return strings.Join(parts, " ")
}

// allocatorEnv are glibc's malloc tunables; when the environment sets any,
// the engine leaves the allocator as the user configured it.
var allocatorEnv = []string{"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES"}

// Allocator thresholds the engine sets (tuneAllocator).
const (
	mmapThreshold = 64 << 20  // blocks above this are mapped fresh from the kernel
	trimThreshold = 512 << 20 // free memory kept at the top of the heap
)

// allocatorPolicy says which host allocator runs and how it was set up, for
// `ares version`.
var allocatorPolicy string

// tuneAllocator keeps freed tensor memory in the process. With tcmalloc
// linked (malloc_tcmalloc.go, the default) there is nothing to set: it keeps
// freed memory in its caches. With glibc's malloc (-tags glibcmalloc) it sets
// two thresholds. glibc maps every block above a dynamic threshold (128 KiB
// at start) straight from the kernel and returns it on free; a Scope frees a
// step's activations all at once at its end, so every step would fault its
// activations in again page by page (3.5x the page faults of PyTorch's eager mode, which frees each
// intermediate as soon as it is dead and so reuses warm memory). A fixed
// mmap threshold and a large trim threshold keep the memory mapped between
// steps, as PyTorch's CUDA caching allocator does on the GPU.
func tuneAllocator() string {
	if C.ares_tcmalloc_active() != 0 {
		return "tcmalloc (gperftools, linked; build with -tags glibcmalloc for glibc's malloc)"
	}
	for _, k := range allocatorEnv {
		if _, ok := os.LookupEnv(k); ok {
			return "glibc malloc as the environment sets it (" + k + ")"
		}
	}
	if os.Getenv("ARES_MALLOC") == "default" {
		return "glibc malloc defaults (ARES_MALLOC=default)"
	}
	if C.mallopt(C.M_MMAP_THRESHOLD, C.int(mmapThreshold)) != 1 || C.mallopt(C.M_TRIM_THRESHOLD, C.int(trimThreshold)) != 1 {
		return "glibc malloc defaults (mallopt refused the engine's thresholds)"
	}
	return fmt.Sprintf("glibc malloc, mmap threshold %d MiB, trim threshold %d MiB (ARES_MALLOC=default keeps glibc's)", mmapThreshold>>20, trimThreshold>>20)
}

// ReleaseFreeMemory hands the host allocator's free memory back to the
// kernel (tcmalloc's MallocExtension_ReleaseFreeMemory, glibc's
// malloc_trim). Both keep freed memory for reuse, which is what a training
// step wants; after a one-off peak, such as building or loading a model
// (random initialisation, the file's bytes, dtype conversions), that memory
// would otherwise stay resident beside everything allocated after it.
func ReleaseFreeMemory() { C.ares_release_free_memory() }

// threadLayout says how the start-up thread counts were chosen, for `ares
// version`.
var threadLayout string

func init() {
	allocatorPolicy = tuneAllocator()
	threadLayout = defaultThreads()
}

// envCount is a positive integer environment variable, or 0.
func envCount(key string) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return 0
}

// defaultThreads sets the start-up thread layout. ARES_NUM_THREADS sets the
// intra-op count (and OpenBLAS's with it); ARES_BLAS_THREADS sets
// OpenBLAS's apart. Without them the layout depends on how OpenBLAS runs
// its threads. Built with OpenMP, it shares libtorch's OpenMP team: every
// CPU for both. Built with its own pthread pool (Debian's default), that
// pool and libtorch's OpenMP team would each want every CPU and spin while
// the other works; the fastest layout measured (bench/results/models-cpu.md:
// up to 2.8x the two-pools layout, on every line) is 1 intra-op thread and
// every CPU for OpenBLAS's matrix products, which is also what PyTorch runs
// after torch.set_num_threads(1).
func defaultThreads() string {
	cpus := runtime.NumCPU()
	n, blas, why := envCount("ARES_NUM_THREADS"), envCount("ARES_BLAS_THREADS"), "ARES_NUM_THREADS"
	if n == 0 {
		n, why = cpus, "one per CPU"
		if blas == 0 && openBLASMode() == 1 {
			n, blas, why = 1, cpus, "pthreads OpenBLAS: 1 intra-op thread, OpenBLAS one per CPU"
		}
	}
	// A failure here would only leave libtorch's default; report nothing.
	_ = SetNumThreads(n)
	if blas > 0 {
		_ = SetBLASThreads(blas)
	}
	if os.Getenv("ARES_BLAS_THREADS") != "" {
		why += ", ARES_BLAS_THREADS"
	}
	return why
}

// openBLASMode is openblas_get_parallel: 0 sequential, 1 pthreads, 2
// OpenMP, -1 not OpenBLAS.
func openBLASMode() int {
	var intra, omp, blas, mode C.int32_t
	if statusErr("ThreadInfo", C.ares_thread_info(&intra, &omp, &blas, &mode)) != nil {
		return -1
	}
	return int(mode)
}

// CallingThreads is the number of OS threads that have called into libtorch
// through the engine so far. Each has its own OpenMP team, so a run is
// driven from one (cmd/ares locks its main goroutine to the main thread).
func CallingThreads() int { return int(C.ares_calling_threads()) }

// SetNumThreads sets libtorch's intra-op thread count for every OS thread
// that calls into it afterwards.
func SetNumThreads(n int) error {
	if err := statusErr("SetNumThreads", C.ares_set_num_threads(C.int32_t(n))); err != nil {
		return err
	}
	if b := blasThreads.Load(); b > 0 {
		return statusErr("SetBLASThreads", C.ares_set_blas_threads(C.int32_t(b)))
	}
	return nil
}

// blasThreads is the OpenBLAS thread count set by SetBLASThreads (0: the
// intra-op count, which SetNumThreads also gives OpenBLAS).
var blasThreads atomic.Int32

// SetBLASThreads sets OpenBLAS's thread count apart from the intra-op count
// (ARES_BLAS_THREADS at start); later SetNumThreads calls keep it. It is
// process-wide; with another BLAS it does nothing.
func SetBLASThreads(n int) error {
	if err := statusErr("SetBLASThreads", C.ares_set_blas_threads(C.int32_t(n))); err != nil {
		return err
	}
	blasThreads.Store(int32(n))
	return nil
}

// NumThreads returns the intra-op thread count of the calling thread.
func NumThreads() int {
	var n C.int32_t
	check("NumThreads", C.ares_get_num_threads(&n))
	return int(n)
}

// ManualSeed seeds libtorch's default generators on every device.
func ManualSeed(seed uint64) { check("ManualSeed", C.ares_manual_seed(C.uint64_t(seed))) }

// LiveTensors is the number of native tensor handles not yet freed.
func LiveTensors() int64 { return int64(C.ares_live_tensors()) }

func cString(op string, f func(buf *C.char, n C.int64_t) *C.ares_status) string {
	buf := make([]byte, 256)
	check(op, f((*C.char)(unsafe.Pointer(&buf[0])), C.int64_t(len(buf))))
	return C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
}

// Info describes the libtorch the engine is built against and runs with.
type Info struct {
	CompiledVersion string // libtorch headers the shim was compiled against
	RuntimeVersion  string // libtorch loaded at run time
	Threads         int    // libtorch's intra-op threads (the calling OS thread's)
	OpenMPThreads   int    // omp_get_max_threads on the calling OS thread; -1 without OpenMP
	OpenBLASThreads int    // OpenBLAS's thread count; -1 when the BLAS is not OpenBLAS
	OpenBLASBuild   string // how OpenBLAS runs its threads: sequential, pthreads, OpenMP
	WaitPolicy      string // OpenMP / OpenBLAS spin settings from the start-up environment
	Allocator       string // how the host allocator was set up (tuneAllocator)
	ThreadLayout    string // how the start-up thread counts were chosen (defaultThreads)
	BuiltWithCUDA   bool
	CUDADevices     []string
}

// Describe returns the build and runtime facts `ares version` prints.
func Describe() (info Info, err error) {
	err = Try(func() {
		info.CompiledVersion = cString("Version", func(b *C.char, n C.int64_t) *C.ares_status { return C.ares_version_compiled(b, n) })
		info.RuntimeVersion = cString("Version", func(b *C.char, n C.int64_t) *C.ares_status { return C.ares_version_runtime(b, n) })
		var intra, omp, blas, mode C.int32_t
		check("ThreadInfo", C.ares_thread_info(&intra, &omp, &blas, &mode))
		info.Threads, info.OpenMPThreads, info.OpenBLASThreads = int(intra), int(omp), int(blas)
		switch mode {
		case 0:
			info.OpenBLASBuild = "sequential"
		case 1:
			info.OpenBLASBuild = "pthreads"
		case 2:
			info.OpenBLASBuild = "OpenMP"
		default:
			info.OpenBLASBuild = "unknown"
		}
		info.WaitPolicy = waitPolicy
		info.Allocator = allocatorPolicy
		info.ThreadLayout = threadLayout
		info.BuiltWithCUDA = C.ares_built_with_cuda() != 0
		for i := 0; i < CUDADeviceCount(); i++ {
			info.CUDADevices = append(info.CUDADevices, CUDADeviceName(i))
		}
	})
	return info, err
}
