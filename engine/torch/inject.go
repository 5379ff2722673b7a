package torch

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// Failure injection, for tests: InjectFailure arms a fault that makes the
// n-th native call counted from then on (see NativeCalls) fail with an
// out-of-memory *Error, exactly where a real allocation failure would be
// reported (check panics with it, statusErr returns it). Tests use it to
// walk a failure through every op of a training step, a generation or a
// model set-up and to check that the error comes back as a Go error and that
// every scope opened on the way is closed (LiveTensors back to its value).
//
// The call itself has already run when check sees its status, so a call
// that succeeded may have created result handles that nobody will wrap:
// InjectedOrphans reports how many, so that a test can subtract them. It is
// the number of tensors the op returns (resultCount: the ops of this package
// return one, a few return two or none), or the live count at the failure
// minus the live count after the previous counted call when that is larger
// (tensors freed in between make the latter too low).
//
// A fault due on NoGrad's switch of the autograd mode moves to the next
// call: that switch has no result and cannot run out of memory, and failing
// it after it ran would leave the thread with recording off, a state a real
// failure cannot reach.
//
// Disarmed (the default), the hook costs one atomic load per call.

type injector struct {
	mu       sync.Mutex
	armed    bool
	left     int64 // calls to let through before the failing one
	lastLive int64 // live handles after the previous counted call
	fired    bool
	firedOp  string
	orphans  int64
}

var inj injector

// injectArmed is read on every counted call; the mutex is only taken when
// a fault is armed.
var injectArmed atomic.Bool

// InjectFailure arms a fault: the n-th counted native call from now (n >= 1)
// fails with an out-of-memory error. It replaces any fault still armed.
func InjectFailure(n int64) {
	if n < 1 {
		panic(fmt.Sprintf("torch.InjectFailure: n must be >= 1, got %d", n))
	}
	inj.mu.Lock()
	inj.armed, inj.left, inj.fired, inj.firedOp, inj.orphans = true, n-1, false, "", 0
	inj.lastLive = LiveTensors()
	inj.mu.Unlock()
	injectArmed.Store(true)
}

// DisarmFailure cancels an armed fault and reports whether one fired since
// InjectFailure, and in which op.
func DisarmFailure() (fired bool, op string) {
	injectArmed.Store(false)
	inj.mu.Lock()
	defer inj.mu.Unlock()
	inj.armed = false
	return inj.fired, inj.firedOp
}

// InjectedOrphans is the number of result handles that the call failed by
// the last fault had created before it was made to fail (see InjectFailure).
func InjectedOrphans() int64 {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	return inj.orphans
}

// injected is called by check and statusErr after every counted call. It
// returns the error to report in place of a successful status when the
// armed fault is due, and nil otherwise. failed says whether the call failed
// by itself (then nothing is injected and the count goes on).
func injected(op string, failed bool) *Error {
	if !injectArmed.Load() {
		return nil
	}
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if !inj.armed {
		return nil
	}
	live := LiveTensors()
	if inj.left > 0 || failed || op == "NoGrad" {
		if !failed && inj.left > 0 {
			inj.left--
		}
		inj.lastLive = live
		return nil
	}
	inj.armed, inj.fired, inj.firedOp = false, true, op
	inj.orphans = max(0, live-inj.lastLive, resultCount(op))
	injectArmed.Store(false)
	return &Error{Op: op, Code: CodeOOM, Msg: "injected failure: out of memory (torch.InjectFailure)"}
}

// resultCount is the number of new tensor handles a successful call of op
// returns, for the ops whose count is fixed; -1 for the others (measured).
func resultCount(op string) int64 {
	switch op {
	case "Shape", "Item", "Data", "CopyTo", "CopyInto", "ZeroGrad", "Backward",
		"SetRequiresGrad", "RequiresGrad", "GradEnabled", "NoGrad", "ManualSeed",
		"NumThreads", "SetNumThreads", "SetBLASThreads", "ThreadInfo", "Synchronize", "SetFusedKernels",
		"ClipGradNorm", "AdamW.Step", "Generator.SetState", "NewGenerator", "Version",
		"CUDAResetPeak", "CUDAMemory", "CUDAEmptyCache", "CUDADeviceName", "CUDADeviceCount":
		return 0
	case "TopK", "Sort", "Max", "RewardBTLoss":
		return 2
	case "Grad":
		return -1 // none when the tensor has no gradient
	}
	if strings.HasPrefix(op, "Store.") || strings.HasPrefix(op, "New") || strings.HasPrefix(op, "CUDA") {
		return -1
	}
	switch op {
	case "AllReduce", "AllGather", "Broadcast", "Barrier", "Wait":
		return -1
	}
	return 1
}
