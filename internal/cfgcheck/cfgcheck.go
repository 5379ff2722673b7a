// Package cfgcheck is the one way config types check their numbers: every
// float is finite and in range, every count in range, and the first failure
// in the order of the checks is the error. A type's Validate method checks
// keys relative to its own table; the loader that knows the file puts the
// table in front and finds the line (Locate, with world.KeyLine), so every loader of a type
// reports the same checks the same way: "file:line: table.key: why".
package cfgcheck

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/ares-rlhf/ares/engine/world"
)

// Error is a bad value of a key (a dotted path relative to the table that
// was checked).
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// Under puts an *Error's key under table (table "" leaves it); other errors
// are returned unchanged.
func Under(table string, err error) error {
	var e *Error
	if table == "" || !errors.As(err, &e) {
		return err
	}
	return &Error{Key: table + "." + e.Key, Msg: e.Msg}
}

// Checker records the first failed check, in the order of the calls.
type Checker struct {
	prefix string
	err    *Error
}

// New starts the checks of a table; keys are reported under prefix.
func New(prefix string) *Checker { return &Checker{prefix: prefix} }

func (c *Checker) key(k string) string {
	if c.prefix == "" {
		return k
	}
	return c.prefix + "." + k
}

// Errf records a failure of key unless one is recorded already.
func (c *Checker) Errf(key, format string, a ...any) {
	if c.err == nil {
		c.err = &Error{Key: c.key(key), Msg: fmt.Sprintf(format, a...)}
	}
}

// Check records why when ok is false.
func (c *Checker) Check(key string, ok bool, format string, a ...any) {
	if !ok {
		c.Errf(key, format, a...)
	}
}

// Finite checks that v is neither NaN nor infinite; later range checks of
// the same key are then meaningful (NaN compares false with everything).
func (c *Checker) Finite(key string, v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		c.Errf(key, "%v is not a finite number", v)
		return false
	}
	return true
}

// AtLeast checks that v is finite and v >= lo.
func (c *Checker) AtLeast(key string, v, lo float64) {
	if c.Finite(key, v) && v < lo {
		c.Errf(key, "%v is below %v", v, lo)
	}
}

// Positive checks that v is finite and v > 0.
func (c *Checker) Positive(key string, v float64) {
	if c.Finite(key, v) && v <= 0 {
		c.Errf(key, "%v must be above 0", v)
	}
}

// In checks that v is finite and in [lo, hi].
func (c *Checker) In(key string, v, lo, hi float64) {
	if c.Finite(key, v) && (v < lo || v > hi) {
		c.Errf(key, "%v is not in [%v, %v]", v, lo, hi)
	}
}

// IntAtLeast checks that an integer is at least lo.
func (c *Checker) IntAtLeast(key string, v, lo int64) {
	if v < lo {
		c.Errf(key, "%d is below %d", v, lo)
	}
}

// Err is the first failure, an *Error, or nil.
func (c *Checker) Err() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

// Locate turns an *Error found in the TOML text data of file into a
// *world.Error naming file, line (when the key is set in the file) and key;
// with data nil the file is read. Other errors are returned unchanged.
func Locate(file string, data []byte, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if data == nil {
		data, _ = os.ReadFile(file)
	}
	return &world.Error{File: file, Line: world.KeyLine(data, e.Key), Key: e.Key, Msg: e.Msg}
}
