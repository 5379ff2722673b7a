package torch

/*
#include <stdlib.h>
#include "ares_dist.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// This file binds the data-parallel layer of the shim (kernels/include/ares_dist.h):
// c10d's TCPStore, Gloo and NCCL process groups, and asynchronous collectives.
// Unlike the tensor ops, these return errors: a peer that dies, a network
// failure or a timeout is an expected outcome of distributed work, not bad input.
// The package engine/dist builds data-parallel training on top of them.

// CodeDist classifies the failure of a collective or a rendezvous: a peer
// died or disconnected, a timeout passed, or the ranks disagreed.
const CodeDist Code = C.ARES_ERR_DIST

// IsDistError reports whether err is (or wraps) a distributed failure.
func IsDistError(err error) bool {
	var te *Error
	return errors.As(err, &te) && te.Code == CodeDist
}

// Backend selects the c10d process-group implementation.
type Backend int

const (
	Gloo Backend = C.ARES_DIST_GLOO // CPU tensors (and CPU-side CUDA staging)
	NCCL Backend = C.ARES_DIST_NCCL // CUDA tensors
)

func (b Backend) String() string {
	switch b {
	case Gloo:
		return "gloo"
	case NCCL:
		return "nccl"
	}
	return fmt.Sprintf("backend(%d)", int(b))
}

// HasBackend reports whether the shim was built with the backend.
func HasBackend(b Backend) bool { return C.ares_dist_has_backend(C.int32_t(b)) != 0 }

// DistOp is the elementwise reduction of an all-reduce.
type DistOp int

const (
	DistSum DistOp = C.ARES_DIST_SUM
	DistAvg DistOp = C.ARES_DIST_AVG // sum divided by the world size
	DistMax DistOp = C.ARES_DIST_MAX
	DistMin DistOp = C.ARES_DIST_MIN
)

func millis(d time.Duration) C.int64_t {
	ms := d.Milliseconds()
	if d > 0 && ms == 0 {
		ms = 1
	}
	return C.int64_t(ms)
}

// Store is a c10d TCPStore: the key-value rendezvous of a process group.
type Store struct{ h C.ares_store }

// StoreOptions configure NewTCPStore.
type StoreOptions struct {
	Host string // the master's address (clients connect to it)
	Port int    // the master's port; 0 on the master picks a free one (see Port)
	// Master hosts the server in this process (rank 0 does).
	Master bool
	// WorldSize is the number of processes that connect, master included.
	WorldSize int
	// WaitWorkers makes the master's constructor wait for all of them.
	WaitWorkers bool
	// Timeout bounds connecting and every blocking get.
	Timeout time.Duration
}

// NewTCPStore creates a TCPStore server (Master) or connects a client to one.
// A client retries connecting until the timeout passes.
func NewTCPStore(o StoreOptions) (*Store, error) {
	host := C.CString(o.Host)
	defer C.free(unsafe.Pointer(host))
	var h C.ares_store
	st := C.ares_store_tcp_new(host, C.int32_t(o.Port), bool32(o.Master), C.int32_t(o.WorldSize),
		bool32(o.WaitWorkers), millis(o.Timeout), &h)
	if err := statusErr("NewTCPStore", st); err != nil {
		return nil, err
	}
	return &Store{h: h}, nil
}

func (s *Store) handle(op string) (C.ares_store, error) {
	if s == nil || s.h == nil {
		return nil, &Error{Op: op, Code: CodeClosed, Msg: "use of closed store"}
	}
	return s.h, nil
}

// Port is the port the store listens on (the master's, on a client).
func (s *Store) Port() int {
	h, err := s.handle("Store.Port")
	if err != nil {
		return 0
	}
	var p C.int32_t
	if statusErr("Store.Port", C.ares_store_port(h, &p)) != nil {
		return 0
	}
	return int(p)
}

// Set stores value at key.
func (s *Store) Set(key string, value []byte) error {
	h, err := s.handle("Store.Set")
	if err != nil {
		return err
	}
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	var p unsafe.Pointer
	if len(value) > 0 {
		p = C.CBytes(value)
		defer C.free(p)
	}
	return statusErr("Store.Set", C.ares_store_set(h, k, p, C.int64_t(len(value))))
}

// Get waits for key (up to the store's timeout) and returns its value.
func (s *Store) Get(key string) ([]byte, error) {
	h, err := s.handle("Store.Get")
	if err != nil {
		return nil, err
	}
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	buf := make([]byte, 256)
	for {
		var n C.int64_t
		if err := statusErr("Store.Get", C.ares_store_get(h, k, unsafe.Pointer(&buf[0]), C.int64_t(len(buf)), &n)); err != nil {
			return nil, err
		}
		if int(n) <= len(buf) {
			return buf[:n], nil
		}
		buf = make([]byte, int(n)) // the value grew past the first buffer: read again
	}
}

// Add atomically adds delta to the integer counter at key and returns the new value.
func (s *Store) Add(key string, delta int64) (int64, error) {
	h, err := s.handle("Store.Add")
	if err != nil {
		return 0, err
	}
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	var v C.int64_t
	err = statusErr("Store.Add", C.ares_store_add(h, k, C.int64_t(delta), &v))
	return int64(v), err
}

// Close releases the store (the master stops serving).
func (s *Store) Close() {
	if s != nil && s.h != nil {
		C.ares_store_free(s.h)
		s.h = nil
	}
}

// ProcessGroupOptions configure NewProcessGroup.
type ProcessGroupOptions struct {
	Backend   Backend
	Rank      int
	WorldSize int
	// Prefix namespaces the group's keys in the store (several groups can
	// share one store).
	Prefix string
	// Timeout bounds connecting and every collective.
	Timeout time.Duration
	// Gloo only: bind to network interface Iface when set (GLOO_SOCKET_IFNAME),
	// else to the address Host resolves to, else to this machine's hostname.
	Iface, Host string
	// Gloo only: worker threads (0: libtorch's default, 2).
	Threads int
}

// ProcessGroup is a c10d process group: one member of a set of processes
// that run collectives together. Every rank must issue the same collectives
// in the same order with the same sizes.
type ProcessGroup struct {
	h     C.ares_pg
	rank  int
	world int
}

// NewProcessGroup joins the group through store. It returns when every rank
// has joined, or fails when the timeout passes.
func NewProcessGroup(store *Store, o ProcessGroupOptions) (*ProcessGroup, error) {
	sh, err := store.handle("NewProcessGroup")
	if err != nil {
		return nil, err
	}
	cs := func(s string) *C.char { return C.CString(s) }
	pre, ifn, host := cs(o.Prefix), cs(o.Iface), cs(o.Host)
	defer C.free(unsafe.Pointer(pre))
	defer C.free(unsafe.Pointer(ifn))
	defer C.free(unsafe.Pointer(host))
	var h C.ares_pg
	st := C.ares_pg_new(sh, pre, C.int32_t(o.Backend), C.int32_t(o.Rank), C.int32_t(o.WorldSize),
		millis(o.Timeout), ifn, host, C.int32_t(o.Threads), &h)
	if err := statusErr("NewProcessGroup", st); err != nil {
		return nil, err
	}
	return &ProcessGroup{h: h, rank: o.Rank, world: o.WorldSize}, nil
}

// Rank is this process's rank in the group.
func (pg *ProcessGroup) Rank() int { return pg.rank }

// Size is the number of processes in the group.
func (pg *ProcessGroup) Size() int { return pg.world }

// Close waits for queued collectives (bounded by the group's timeout) and
// leaves the group.
func (pg *ProcessGroup) Close() {
	if pg != nil && pg.h != nil {
		C.ares_pg_free(pg.h)
		pg.h = nil
	}
}

func (pg *ProcessGroup) handle(op string) C.ares_pg {
	if pg == nil || pg.h == nil {
		fail(op, CodeClosed, "use of closed process group")
	}
	return pg.h
}

// Work is an asynchronous collective in flight. Its tensors must not be
// closed or modified until Wait returns.
type Work struct {
	h       C.ares_work
	op      string
	tensors []*Tensor // the inputs; the result of an all-gather joins their scope
}

func (pg *ProcessGroup) launch(op string, ts []*Tensor, f func(hs []C.ares_tensor, w *C.ares_work) *C.ares_status) (*Work, error) {
	var w C.ares_work
	err := Try(func() {
		pg.handle(op)
		if len(ts) == 0 && op != "Barrier" {
			fail(op, CodeInvalid, "no tensors")
		}
		var hs []C.ares_tensor
		if len(ts) > 0 {
			hs = handles(op, ts)
		}
		check(op, f(hs, &w))
	})
	if err != nil {
		return nil, err
	}
	return &Work{h: w, op: op, tensors: ts}, nil
}

// AllReduceAsync starts an in-place all-reduce of ts (flattened into one
// buffer when there are several: they must share dtype and device).
func (pg *ProcessGroup) AllReduceAsync(ts []*Tensor, op DistOp) (*Work, error) {
	return pg.launch("AllReduce", ts, func(hs []C.ares_tensor, w *C.ares_work) *C.ares_status {
		return C.ares_pg_allreduce(pg.h, &hs[0], C.int64_t(len(hs)), C.int32_t(op), w)
	})
}

// AllReduce is AllReduceAsync followed by Wait.
func (pg *ProcessGroup) AllReduce(ts []*Tensor, op DistOp) error {
	return waitAndClose(pg.AllReduceAsync(ts, op))
}

// waitAndClose waits for a collective that started (err nil) and releases it.
func waitAndClose(w *Work, err error) error {
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Wait()
}

// BroadcastAsync starts overwriting ts on every rank with root's values.
func (pg *ProcessGroup) BroadcastAsync(ts []*Tensor, root int) (*Work, error) {
	return pg.launch("Broadcast", ts, func(hs []C.ares_tensor, w *C.ares_work) *C.ares_status {
		return C.ares_pg_broadcast(pg.h, &hs[0], C.int64_t(len(hs)), C.int32_t(root), w)
	})
}

// Broadcast is BroadcastAsync followed by Wait.
func (pg *ProcessGroup) Broadcast(ts []*Tensor, root int) error {
	return waitAndClose(pg.BroadcastAsync(ts, root))
}

// AllGather returns t from every rank stacked along a new first dimension
// ([world, t.shape...]); it joins t's scope, or is owned by the caller.
// Every rank must pass the same shape and dtype.
func (pg *ProcessGroup) AllGather(t *Tensor) (*Tensor, error) {
	w, err := pg.launch("AllGather", []*Tensor{t}, func(hs []C.ares_tensor, w *C.ares_work) *C.ares_status {
		return C.ares_pg_allgather(pg.h, hs[0], w)
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := w.Wait(); err != nil {
		return nil, err
	}
	var out C.ares_tensor
	if err := statusErr("AllGather", C.ares_work_result(w.h, &out)); err != nil {
		return nil, err
	}
	return wrap(out, t), nil
}

// BarrierAsync starts a barrier.
func (pg *ProcessGroup) BarrierAsync() (*Work, error) {
	return pg.launch("Barrier", nil, func(_ []C.ares_tensor, w *C.ares_work) *C.ares_status {
		return C.ares_pg_barrier(pg.h, w)
	})
}

// Barrier returns when every rank has reached it.
func (pg *ProcessGroup) Barrier() error { return waitAndClose(pg.BarrierAsync()) }

// Wait blocks until the collective completes, fails, or the group's timeout
// passes, then finishes it (copies a bucket back into its tensors, averages).
func (w *Work) Wait() error { return w.WaitTimeout(0) }

// WaitTimeout is Wait with its own timeout (<= 0: the group's).
func (w *Work) WaitTimeout(d time.Duration) error {
	if w == nil || w.h == nil {
		return &Error{Op: "Work.Wait", Code: CodeClosed, Msg: "use of closed work"}
	}
	var ms C.int64_t
	if d > 0 {
		ms = millis(d)
	}
	return statusErr(w.op, C.ares_work_wait(w.h, ms))
}

// Done reports whether the collective has completed (successfully or not)
// without blocking.
func (w *Work) Done() bool {
	if w == nil || w.h == nil {
		return true
	}
	var d C.int32_t
	if statusErr(w.op, C.ares_work_poll(w.h, &d)) != nil {
		return true
	}
	return d != 0
}

// Close releases the work handle (it does not cancel the collective).
func (w *Work) Close() {
	if w != nil && w.h != nil {
		C.ares_work_free(w.h)
		w.h = nil
	}
}
