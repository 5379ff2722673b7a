package mentor

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigNonFinite: NaN passed `rm_scale < 0` and collapsed the sampler;
// every float of [redteam] and [redteam.sampler] is checked, and a loader
// names file, line and key.
func TestConfigNonFinite(t *testing.T) {
	nan := math.NaN()
	for _, c := range []Config{{RMScale: nan}, {RMScale: -1}, {Sampler: SamplerConfig{Eta: nan}}, {Sampler: SamplerConfig{Cap: math.Inf(1)}},
		{Sampler: SamplerConfig{Explore: nan}}, {Sampler: SamplerConfig{Mutate: nan}}, {Sampler: SamplerConfig{MaxWeight: nan}}, {Sampler: SamplerConfig{Broadcast: &nan}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := c.withDefaults(); err == nil || !strings.HasPrefix(err.Error(), "redteam.") {
			t.Errorf("%+v: withDefaults %v", c, err)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rt.toml")
	os.WriteFile(path, []byte("[redteam]\nbudget = 8\nrm_scale = nan\n\n[detect]\nharm = nan\n"), 0o644)
	if _, err := LoadRunConfig(path); err == nil || !strings.Contains(err.Error(), "rt.toml:3: redteam.rm_scale: NaN is not a finite number") {
		t.Fatalf("load: %v", err)
	}
	os.WriteFile(path, []byte("[redteam]\nbudget = 8\n\n[detect]\nharm = nan\n"), 0o644)
	if _, err := LoadRunConfig(path); err == nil || !strings.Contains(err.Error(), "rt.toml:5: detect.harm:") {
		t.Fatalf("load: %v", err)
	}
}
