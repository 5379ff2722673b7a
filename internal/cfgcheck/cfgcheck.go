// Package cfgcheck is the one way config types check their numbers: every
// float is finite and in range, every count in range, and the first failure
// in the order of the checks is the error. A type's Validate method checks
// keys relative to its own table; the loader that knows the file puts the
// table in front and finds the line (Locate, with config.KeyLine), so every loader of a type
// reports the same checks the same way: "file:line: table.key: why".
package cfgcheck

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/ares-rlhf/ares/internal/config"
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

// AtMost checks that v is finite and v <= hi: the upper bound of a value
// that no sane run exceeds, so that an absurd one fails at load, naming its
// key, rather than late in an op that overflows (or never).
func (c *Checker) AtMost(key string, v, hi float64) {
	if c.Finite(key, v) && v > hi {
		c.Errf(key, "%v is above %v, beyond any sane run", v, hi)
	}
}

// Magnitude checks that v is finite and |v| <= hi (a threshold or margin
// that may be negative).
func (c *Checker) Magnitude(key string, v, hi float64) {
	if c.Finite(key, v) && math.Abs(v) > hi {
		c.Errf(key, "%v is not in [%v, %v], beyond any sane run", v, -hi, hi)
	}
}

// IntAtMost checks that an integer is at most hi (see AtMost).
func (c *Checker) IntAtMost(key string, v, hi int64) {
	if v > hi {
		c.Errf(key, "%d is above %d, beyond any sane run", v, hi)
	}
}

// Between checks that v is finite and in [lo, hi] where lo is a limit of
// meaning and hi one of sanity (a loss weight in [0, MaxWeight]): the lower
// bound's failure reads as AtLeast's, the upper one's as AtMost's. In is for
// a range of meaning (a ratio in [0, 1]).
func (c *Checker) Between(key string, v, lo, hi float64) {
	c.AtLeast(key, v, lo)
	c.AtMost(key, v, hi)
}

// IntIn checks that an integer is in [lo, hi]: the lower bound's failure
// reads as IntAtLeast's, the upper one's as IntAtMost's.
func (c *Checker) IntIn(key string, v, lo, hi int64) {
	c.IntAtLeast(key, v, lo)
	c.IntAtMost(key, v, hi)
}

// Upper bounds shared by the config checks: far above any real run, low
// enough that a value under them cannot overflow the arithmetic or ask for
// an allocation no machine has.
const (
	MaxLR     = 10      // a learning rate (AdamW's steps are about lr in size)
	MaxWeight = 1e4     // a loss weight, weight decay, a scale factor
	MaxClip   = 1e6     // a gradient-norm clip (0: off)
	MaxTemp   = 100     // a sampling temperature
	MaxScore  = 1e12    // the magnitude of an RM score threshold or margin (±1e9 is the idiom for always or never)
	MaxSteps  = 1 << 32 // optimizer steps, warm-up steps, checkpoint period, budgets
	MaxBatch  = 1 << 20 // sequences in a batch, prompts, anchor and replay sets
	MaxTokens = 1 << 24 // tokens generated per answer (a model's context at most)
	MaxCount  = 1 << 24 // other counts: samples per probe, group sizes, rounds
)

// Err is the first failure, an *Error, or nil.
func (c *Checker) Err() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

// Locate turns an *Error found in the TOML text data of file into a
// *config.Error naming file, line (when the key is set in the file) and key;
// with data nil the file is read. Other errors are returned unchanged.
func Locate(file string, data []byte, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if data == nil {
		data, _ = os.ReadFile(file)
	}
	return &config.Error{File: file, Line: config.KeyLine(data, e.Key), Key: e.Key, Msg: e.Msg}
}
