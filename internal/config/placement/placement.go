// Package placement parses the device and the weight dtype of a command's
// models, for every config and flag that names them (run.device, run.dtype,
// --device, --dtype): one parser, one set of messages. A bad name is an
// error that names the file, line and key it came from, or the flag.
package placement

import (
	"fmt"

	"github.com/ares-rlhf/ares/engine/torch"
	"github.com/ares-rlhf/ares/internal/config"
)

// Device parses "cpu", "cuda" (device 0) or "cuda:N". It checks the
// spelling only; Available checks the machine.
func Device(s string) (torch.Device, error) {
	return torch.ParseDevice(s)
}

// Available checks that the machine has device d.
func Available(d torch.Device) error {
	if !d.IsCUDA() {
		return nil
	}
	n := torch.CUDADeviceCount()
	switch {
	case n == 0:
		return fmt.Errorf("%s: no CUDA device on this machine (libtorch without CUDA, or no GPU visible)", d)
	case d.Index >= n:
		return fmt.Errorf("%s: no such device: this machine has %d CUDA device(s), cuda:0 to cuda:%d", d, n, n-1)
	}
	return nil
}

// DType parses a model weight dtype: float32, bfloat16 or float16 (and
// their short forms: f32, bf16, fp16, half, ...; float64 too).
func DType(s string) (torch.DType, error) {
	dt, err := torch.ParseDType(s)
	if err != nil || !dt.IsFloat() {
		return 0, fmt.Errorf("%q is not float32, bfloat16 or float16", s)
	}
	return dt, nil
}

// Spec is a device and a dtype and where they came from.
type Spec struct {
	Device, DType string
	// File is the config file and Data its text (nil: no file);
	// DeviceKey and DTypeKey are the dotted keys ("run.device").
	File                string
	Data                []byte
	DeviceKey, DTypeKey string
	// DeviceFlag and DTypeFlag name the flags ("--device") when a flag set
	// the value instead of the file ("" otherwise).
	DeviceFlag, DTypeFlag string
}

// Parse checks the spelling of both: the device first, then the dtype.
func (s Spec) Parse() (torch.Device, torch.DType, error) {
	dev, err := Device(s.Device)
	if err != nil {
		return torch.Device{}, 0, s.fail(s.DeviceFlag, s.DeviceKey, err)
	}
	dt, err := DType(s.DType)
	if err != nil {
		return torch.Device{}, 0, s.fail(s.DTypeFlag, s.DTypeKey, err)
	}
	return dev, dt, nil
}

// Resolve is Parse, then checks that the machine has the device.
func (s Spec) Resolve() (torch.Device, torch.DType, error) {
	dev, dt, err := s.Parse()
	if err == nil {
		if err = Available(dev); err != nil {
			err = s.fail(s.DeviceFlag, s.DeviceKey, err)
		}
	}
	return dev, dt, err
}

func (s Spec) fail(flag, key string, err error) error {
	switch {
	case flag != "":
		return fmt.Errorf("%s: %w", flag, err)
	case s.File != "":
		return config.At(s.File, s.Data, key, "%v", err)
	case key != "":
		return fmt.Errorf("%s: %w", key, err)
	}
	return err
}
