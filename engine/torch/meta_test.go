package torch

import (
	"reflect"
	"testing"
)

// TestMetaComesWithTheHandle checks that an op's result carries its dtype,
// device and shape in the handle: reading them makes no native call, and they
// equal what libtorch says when asked (ares_tensor_info + ares_tensor_shape).
// Tensors of more dimensions than the handle holds ask libtorch.
func TestMetaComesWithTheHandle(t *testing.T) {
	s := NewScope()
	defer s.Close()
	shapes := [][]int64{{}, {0}, {3}, {2, 0, 4}, {2, 3, 4, 5}, {1, 2, 1, 2, 1, 2, 1, 2}, {1, 2, 1, 2, 1, 2, 1, 2, 3}}
	for _, dt := range []DType{Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, Uint8, Bool} {
		for _, shape := range shapes {
			x := s.Own(Zeros(shape, dt, CPU))
			y := s.Own(x.Reshape(append([]int64{1}, shape...)...))
			for _, r := range []*Tensor{x, y} {
				c0 := NativeCalls()
				gotShape, gotDType, gotDev := r.Shape(), r.DType(), r.Device()
				calls := NativeCalls() - c0
				wantCalls := int64(0)
				if len(gotShape) > metaDims {
					wantCalls = 2
				}
				if calls != wantCalls {
					t.Errorf("%v %v: reading the metadata made %d native calls, want %d", dt, gotShape, calls, wantCalls)
				}
				asked := &Tensor{h: r.h}
				asked.askMeta()
				if !reflect.DeepEqual(gotShape, asked.shape) || gotDType != asked.dtype || gotDev != asked.device {
					t.Errorf("handle metadata %v %v %v, libtorch says %v %v %v", gotShape, gotDType, gotDev, asked.shape, asked.dtype, asked.device)
				}
				if gotDType != dt {
					t.Errorf("dtype %v, want %v", gotDType, dt)
				}
			}
			if want := append([]int64{1}, shape...); !reflect.DeepEqual(y.Shape(), want) {
				t.Errorf("reshape result has shape %v, want %v", y.Shape(), want)
			}
		}
	}
}
