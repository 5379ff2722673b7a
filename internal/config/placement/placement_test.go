package placement

import (
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/torch"
)

func TestSpec(t *testing.T) {
	data := []byte("[run]\ndevice = \"gpu\"\ndtype = \"int8\"\n")
	for _, tc := range []struct {
		s    Spec
		want string
	}{
		{Spec{Device: "gpu", DType: "float32", File: "r.toml", Data: data, DeviceKey: "run.device"}, `r.toml:2: run.device: bad device "gpu": want cpu, cuda or cuda:N`},
		{Spec{Device: "cpu", DType: "int8", File: "r.toml", Data: data, DTypeKey: "run.dtype"}, `r.toml:3: run.dtype: "int8" is not float32, bfloat16 or float16`},
		{Spec{Device: "gpu", DType: "float32", DeviceFlag: "--device", File: "r.toml", Data: data, DeviceKey: "run.device"}, `--device: bad device "gpu"`},
		{Spec{Device: "cuda:9", DType: "float32", DeviceFlag: "--device"}, "--device: cuda:9: no "},
	} {
		_, _, err := tc.s.Resolve()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
	dev, dt, err := Spec{Device: "cpu", DType: "bf16"}.Resolve()
	if err != nil || dev != torch.CPU || dt != torch.BFloat16 {
		t.Fatalf("%v %v %v", dev, dt, err)
	}
	// The spelling alone: cuda:9 parses.
	if _, _, err := (Spec{Device: "cuda:9", DType: "float16"}).Parse(); err != nil {
		t.Fatal(err)
	}
}
