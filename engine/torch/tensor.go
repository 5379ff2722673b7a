package torch

/*
#include "ares_torch.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Tensor is a handle to a libtorch tensor. Its shape, dtype and device come
// with the handle (the shim writes them beside it when an op returns it) and
// are copied once into the Tensor on first use; the engine exposes no op that
// changes them in place.
type Tensor struct {
	h     C.ares_tensor
	scope *Scope

	meta   bool
	dtype  DType
	device Device
	shape  []int64
}

// leakCheck turns on the leak alarm: a tensor collected by the Go garbage
// collector while still open is counted (and reported with ARES_TORCH_LEAKCHECK=2).
// Finalizers never free memory here; Close and Scope.Close do.
var leakCheck = os.Getenv("ARES_TORCH_LEAKCHECK") != ""
var leaked atomic.Int64

// LeakedTensors is the number of open tensors the garbage collector found
// unreachable (only counted with ARES_TORCH_LEAKCHECK set).
func LeakedTensors() int64 { return leaked.Load() }

// wrap makes a Tensor for a new handle. It joins the scope of the first
// scoped input; with no scoped input it is unscoped and owned by the caller.
func wrap(h C.ares_tensor, inputs ...*Tensor) *Tensor {
	t := &Tensor{h: h}
	for _, in := range inputs {
		if in != nil && in.scope != nil {
			in.scope.add(t)
			break
		}
	}
	if leakCheck {
		runtime.SetFinalizer(t, func(t *Tensor) {
			if t.h != nil {
				leaked.Add(1)
				if os.Getenv("ARES_TORCH_LEAKCHECK") == "2" {
					fmt.Fprintf(os.Stderr, "torch: leaked tensor %v\n", t.shape)
				}
			}
		})
	}
	return t
}

// handle returns the native handle or panics if t is nil or closed.
func (t *Tensor) handle(op string) C.ares_tensor {
	if t == nil {
		fail(op, CodeInvalid, "nil tensor")
	}
	if t.h == nil {
		fail(op, CodeClosed, "use of closed tensor")
	}
	return t.h
}

// optHandle is handle for an optional argument: nil means absent.
func (t *Tensor) optHandle(op string) C.ares_tensor {
	if t == nil {
		return nil
	}
	return t.handle(op)
}

// Close frees the native tensor. Closing twice is a no-op. A scoped tensor
// may be closed early; its scope then skips it.
func (t *Tensor) Close() {
	if t == nil || t.h == nil {
		return
	}
	C.ares_tensor_free(t.h)
	t.h = nil
}

// Scope is the scope that owns t, or nil when t is unscoped.
func (t *Tensor) Scope() *Scope { return t.scope }

// Closed reports whether t has been freed.
func (t *Tensor) Closed() bool { return t == nil || t.h == nil }

// Keep takes t out of its scope: it survives the scope's Close and is owned
// by the caller from now on. It returns t.
func (t *Tensor) Keep() *Tensor {
	if t != nil && t.scope != nil {
		t.scope.release(t)
	}
	return t
}

// loadMeta reads t's dtype, device and shape from the metadata at the start
// of its native handle (ares_tensor_meta), written when the op made the
// handle: no native call. Only a tensor of more than ARES_META_DIMS
// dimensions, or of a dtype the engine does not support (for the error), asks
// libtorch.
func (t *Tensor) loadMeta() {
	if t.meta {
		return
	}
	// The handle points at its metadata (ares_tensor_meta_of in C); the cast
	// here reads it without a cgo call.
	m := (*C.ares_tensor_meta)(unsafe.Pointer(t.handle("Shape")))
	nd := int(m.ndim)
	if m.dtype < 0 || nd > metaDims {
		t.askMeta()
		return
	}
	shape := make([]int64, nd)
	for i := range shape {
		shape[i] = int64(m.shape[i])
	}
	t.dtype, t.device, t.shape = DType(m.dtype), Device{Kind: DeviceKind(m.device_kind), Index: int(m.device_index)}, shape
	t.meta = true
}

// metaDims is how many sizes a handle's metadata holds.
const metaDims = C.ARES_META_DIMS

// askMeta is loadMeta by two native calls.
func (t *Tensor) askMeta() {
	var dt, kind, idx, nd C.int32_t
	check("Shape", C.ares_tensor_info(t.handle("Shape"), &dt, &kind, &idx, &nd))
	shape := make([]int64, int(nd))
	if nd > 0 {
		check("Shape", C.ares_tensor_shape(t.h, (*C.int64_t)(unsafe.Pointer(&shape[0])), nd))
	}
	t.dtype, t.device, t.shape = DType(dt), Device{Kind: DeviceKind(kind), Index: int(idx)}, shape
	t.meta = true
}

// Shape returns the sizes of t's dimensions. The caller must not modify it.
func (t *Tensor) Shape() []int64 { t.loadMeta(); return t.shape }

// Dim is the number of dimensions.
func (t *Tensor) Dim() int { return len(t.Shape()) }

// Size returns the size of dimension d (negative counts from the end).
func (t *Tensor) Size(d int) int64 {
	s := t.Shape()
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		fail("Size", CodeInvalid, "dimension %d out of range for a %d-d tensor", d, len(s))
	}
	return s[d]
}

// Numel is the number of elements.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, s := range t.Shape() {
		n *= s
	}
	return n
}

// DType is t's element type.
func (t *Tensor) DType() DType { t.loadMeta(); return t.dtype }

// Device is where t lives.
func (t *Tensor) Device() Device { t.loadMeta(); return t.device }

func (t *Tensor) String() string {
	if t == nil || t.h == nil {
		return "Tensor(closed)"
	}
	return fmt.Sprintf("Tensor(%v, %v, %v)", t.Shape(), t.DType(), t.Device())
}

// Item returns the value of a one-element tensor as a float64.
func (t *Tensor) Item() float64 {
	var v C.double
	check("Item", C.ares_tensor_item(t.handle("Item"), &v))
	return float64(v)
}

func shapePtr(shape []int64) (*C.int64_t, C.int32_t) {
	if len(shape) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&shape[0])), C.int32_t(len(shape))
}

// Elem are the Go element types that map one to one onto a DType.
type Elem interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~int16 | ~int8 | ~uint8 | ~bool
}

func dtypeOf[T Elem]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	case int32:
		return Int32
	case int16:
		return Int16
	case int8:
		return Int8
	case uint8:
		return Uint8
	case bool:
		return Bool
	}
	panic("unreachable")
}

// FromSlice copies data into a new unscoped CPU tensor of the given shape
// (a 1-d tensor when shape is empty).
func FromSlice[T Elem](data []T, shape ...int64) *Tensor {
	if len(shape) == 0 {
		shape = []int64{int64(len(data))}
	}
	var z T
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return fromBytes("FromSlice", p, len(data)*int(unsafe.Sizeof(z)), dtypeOf[T](), shape, CPU)
}

// FromBytes copies raw little-endian element bytes into a new unscoped tensor
// of the given dtype and shape on dev. It is how bf16 and f16 data (and
// checkpoint shards) come in.
func FromBytes(data []byte, dtype DType, shape []int64, dev Device) *Tensor {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return fromBytes("FromBytes", p, len(data), dtype, shape, dev)
}

func fromBytes(op string, p unsafe.Pointer, n int, dtype DType, shape []int64, dev Device) *Tensor {
	sp, nd := shapePtr(shape)
	var out C.ares_tensor
	check(op, C.ares_from_data(p, C.int64_t(n), C.int32_t(dtype), sp, nd, C.int32_t(dev.Kind), C.int32_t(dev.Index), &out))
	return wrap(out)
}

// Scalar makes a 0-d tensor.
func Scalar[T Elem](v T) *Tensor {
	return fromBytes("Scalar", unsafe.Pointer(&v), int(unsafe.Sizeof(v)), dtypeOf[T](), nil, CPU)
}

// Bytes copies t's elements (C order, moved to the host) into a new byte slice.
func (t *Tensor) Bytes() []byte {
	b := make([]byte, int(t.Numel())*t.DType().Size())
	t.CopyTo(b)
	return b
}

// CopyTo copies t's elements (C order, moved to the host) into dst, whose
// length must be exactly the tensor's byte size.
func (t *Tensor) CopyTo(dst []byte) {
	var p unsafe.Pointer
	if len(dst) > 0 {
		p = unsafe.Pointer(&dst[0])
	}
	check("CopyTo", C.ares_to_data(t.handle("CopyTo"), p, C.int64_t(len(dst))))
}

// Data copies t's elements into a new Go slice. T must match t's dtype.
func Data[T Elem](t *Tensor) []T {
	if want := dtypeOf[T](); t.DType() != want {
		fail("Data", CodeInvalid, "tensor is %v, asked for %v", t.DType(), want)
	}
	out := make([]T, t.Numel())
	var z T
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	check("Data", C.ares_to_data(t.h, p, C.int64_t(len(out)*int(unsafe.Sizeof(z)))))
	return out
}

// Float32s copies a float32 tensor into a Go slice.
func (t *Tensor) Float32s() []float32 { return Data[float32](t) }

// Int64s copies an int64 tensor into a Go slice.
func (t *Tensor) Int64s() []int64 { return Data[int64](t) }

// Bools copies a bool tensor into a Go slice.
func (t *Tensor) Bools() []bool { return Data[bool](t) }

// Full makes an unscoped tensor filled with v.
func Full(shape []int64, v float64, dtype DType, dev Device) *Tensor {
	return full("Full", shape, v, dtype, dev)
}

func full(op string, shape []int64, v float64, dtype DType, dev Device) *Tensor {
	sp, nd := shapePtr(shape)
	var out C.ares_tensor
	check(op, C.ares_full(sp, nd, C.double(v), C.int32_t(dtype), C.int32_t(dev.Kind), C.int32_t(dev.Index), &out))
	return wrap(out)
}

// Zeros makes an unscoped tensor of zeros.
func Zeros(shape []int64, dtype DType, dev Device) *Tensor {
	return full("Zeros", shape, 0, dtype, dev)
}

// Ones makes an unscoped tensor of ones.
func Ones(shape []int64, dtype DType, dev Device) *Tensor { return full("Ones", shape, 1, dtype, dev) }

// Arange makes the unscoped 1-d tensor start, start+step, ... < end.
func Arange(start, end, step float64, dtype DType, dev Device) *Tensor {
	var out C.ares_tensor
	check("Arange", C.ares_arange(C.double(start), C.double(end), C.double(step), C.int32_t(dtype), C.int32_t(dev.Kind), C.int32_t(dev.Index), &out))
	return wrap(out)
}

func random(op string, normal bool, shape []int64, dtype DType, dev Device, g *Generator) *Tensor {
	sp, nd := shapePtr(shape)
	var out C.ares_tensor
	n := C.int32_t(0)
	if normal {
		n = 1
	}
	check(op, C.ares_random(sp, nd, n, C.int32_t(dtype), C.int32_t(dev.Kind), C.int32_t(dev.Index), g.handle(op), &out))
	return wrap(out)
}

// Randn makes an unscoped tensor of standard normal samples drawn from g
// (libtorch's default generator when g is nil).
func Randn(shape []int64, dtype DType, dev Device, g *Generator) *Tensor {
	return random("Randn", true, shape, dtype, dev, g)
}

// Rand makes an unscoped tensor of uniform samples in [0, 1) drawn from g
// (libtorch's default generator when g is nil).
func Rand(shape []int64, dtype DType, dev Device, g *Generator) *Tensor {
	return random("Rand", false, shape, dtype, dev, g)
}
