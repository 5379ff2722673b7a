package cfgcheck

import (
	"math"
	"testing"

	"github.com/ares-rlhf/ares/internal/config"
)

func TestCheckerFirstErrorAndLine(t *testing.T) {
	c := New("sft")
	c.Positive("lr", math.NaN())
	c.In("min_lr_ratio", -1, 0, 1)
	if err := c.Err(); err == nil || err.Error() != "sft.lr: NaN is not a finite number" {
		t.Fatalf("first error %v", err)
	}
	data := []byte("[run]\nseed = 1\n\n[policy_repair]\nsteps = 3\nkl = nan\n[rm_repair]\nbt = { margin = nan }\n")
	for key, want := range map[string]int{"policy_repair.kl": 6, "rm_repair.bt.margin": 8, "policy_repair": 4, "sft.lr": 0} {
		if got := config.KeyLine(data, key); got != want {
			t.Errorf("KeyLine(%q) = %d, want %d", key, got, want)
		}
	}
	err := Locate("r.toml", data, Under("policy_repair", &Error{Key: "kl", Msg: "NaN is not a finite number"}))
	if err == nil || err.Error() != "r.toml:6: policy_repair.kl: NaN is not a finite number" {
		t.Fatalf("located %v", err)
	}
}

// TestUpperBounds: the upper-bound checks name the key and the bound, the
// lower bound of IntIn (Between) reads as IntAtLeast's (AtLeast's), and NaN stays "not finite".
func TestUpperBounds(t *testing.T) {
	for _, tc := range []struct {
		f    func(c *Checker)
		want string
	}{
		{func(c *Checker) { c.AtMost("lr", 1e300, MaxLR) }, "lr: 1e+300 is above 10, beyond any sane run"},
		{func(c *Checker) { c.AtMost("lr", math.NaN(), MaxLR) }, "lr: NaN is not a finite number"},
		{func(c *Checker) { c.Magnitude("rm_high", -1e300, MaxScore) }, "rm_high: -1e+300 is not in [-1e+12, 1e+12], beyond any sane run"},
		{func(c *Checker) { c.IntIn("batch", 0, 1, MaxBatch) }, "batch: 0 is below 1"},
		{func(c *Checker) { c.IntIn("batch", MaxBatch+1, 1, MaxBatch) }, "batch: 1048577 is above 1048576, beyond any sane run"},
		{func(c *Checker) { c.Between("cap", 0.5, 1, MaxWeight) }, "cap: 0.5 is below 1"},
		{func(c *Checker) { c.Between("cap", 2e4, 1, MaxWeight) }, "cap: 20000 is above 10000, beyond any sane run"},
		{func(c *Checker) { c.Between("cap", math.Inf(1), 1, MaxWeight) }, "cap: +Inf is not a finite number"},
	} {
		c := New("")
		tc.f(c)
		if err := c.Err(); err == nil || err.Error() != tc.want {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
	c := New("")
	c.AtMost("lr", MaxLR, MaxLR)
	c.Magnitude("m", -MaxScore, MaxScore)
	c.IntIn("n", MaxBatch, 1, MaxBatch)
	c.Between("w", MaxWeight, 0, MaxWeight)
	if err := c.Err(); err != nil {
		t.Fatalf("values at the bounds: %v", err)
	}
}
