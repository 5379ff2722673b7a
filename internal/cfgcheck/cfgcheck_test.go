package cfgcheck

import (
	"math"
	"testing"

	"github.com/ares-rlhf/ares/engine/world"
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
		if got := world.KeyLine(data, key); got != want {
			t.Errorf("KeyLine(%q) = %d, want %d", key, got, want)
		}
	}
	err := Locate("r.toml", data, Under("policy_repair", &Error{Key: "kl", Msg: "NaN is not a finite number"}))
	if err == nil || err.Error() != "r.toml:6: policy_repair.kl: NaN is not a finite number" {
		t.Fatalf("located %v", err)
	}
}
