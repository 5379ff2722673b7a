package mentor

import (
	"math"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/internal/cfgtest"
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
	cfgtest.WantLoadErrors(t, "rt.toml", LoadRunConfig, []cfgtest.Case{
		{"[redteam]\nbudget = 8\nrm_scale = nan\n\n[detect]\nharm = nan\n", "rt.toml:3: redteam.rm_scale: NaN is not a finite number"},
		{"[redteam]\nbudget = 8\n\n[detect]\nharm = nan\n", "rt.toml:5: detect.harm:"},
	})
}

// TestConfigUpperBounds: finite but absurd values of [redteam],
// [redteam.sampler] and [detect] (1e300) are refused at load with file,
// line and key; before they were accepted and ran.
func TestConfigUpperBounds(t *testing.T) {
	cfgtest.WantLoadErrors(t, "rt.toml", LoadRunConfig, []cfgtest.Case{
		{"[redteam]\nrm_scale = 1e300\n", "rt.toml:2: redteam.rm_scale: 1e+300 is above"},
		{"[redteam]\nk = 100000000\n", "rt.toml:2: redteam.k: 100000000 is above"},
		{"[redteam.sampler]\neta = 1e300\n", "rt.toml:2: redteam.sampler.eta: 1e+300 is above"},
		{"[redteam.sampler]\ncap = 1e300\n", "rt.toml:2: redteam.sampler.cap: 1e+300 is above"},
		{"[redteam.sampler]\nmax_weight = 1e300\n", "rt.toml:2: redteam.sampler.max_weight: 1e+300 is above"},
		{"[detect]\nrm_high = 1e300\n", "rt.toml:2: detect.rm_high: 1e+300 is not in"},
		{"[detect]\nrm_margin = -1e300\n", "rt.toml:2: detect.rm_margin: -1e+300 is not in"},
		{"[detect]\na_margin = 1e300\n", "rt.toml:2: detect.a_margin: 1e+300 is not in"},
	})
	if _, err := LoadRunConfig(cfgtest.Write(t, "rt.toml", "[redteam]\nrm_scale = 2\n[detect]\nrm_high = -3\nrm_margin = 0.5\n")); err != nil {
		t.Fatalf("sane values refused: %v", err)
	}
}

// TestJudgeConfigErrorsLocated: a bad [judge] value is refused when the
// config is loaded, naming the file, line and key (before, the error came
// from building the judge and named the key alone).
func TestJudgeConfigErrorsLocated(t *testing.T) {
	cfgtest.WantLoadErrors(t, "rt.toml", LoadRunConfig, []cfgtest.Case{
		{"[judge]\nkind = \"vibes\"\n", `rt.toml:2: judge.kind: "vibes" is not one of`},
		{"[judge]\nkind = \"command\"\n[judge.command]\nargv = [\"sh\"]\ntimeout_s = -1\n", "rt.toml:5: judge.command.timeout_s: -1 is not a non-negative"},
		{"[judge]\nkind = \"command\"\n[judge.command]\nargv = [\"sh\"]\nbatch_size = -5\n", "rt.toml:5: judge.command.batch_size: -5 is not in"},
		{"[judge]\nkind = \"http\"\n[judge.http]\nurl = \"ftp://x\"\nmodel = \"m\"\n", `rt.toml:4: judge.http.url: "ftp://x" is not an http(s) URL`},
		{"[judge]\nkind = \"http\"\n[judge.http]\nurl = \"http://x\"\nmodel = \"m\"\nparser = \"regex\"\nregex = \"(\"\n", "rt.toml:7: judge.http.regex:"},
		{"[judge]\nkind = \"classifier\"\n", "rt.toml: judge.model: the classifier needs a model file"},
	})
	// The API key's variable is read where the judge is built, not at load.
	if _, err := LoadRunConfig(cfgtest.Write(t, "rt.toml", "[judge]\nkind = \"http\"\n[judge.http]\nurl = \"http://x\"\nmodel = \"m\"\napi_key_env = \"ARES_TEST_UNSET_KEY\"\n")); err != nil {
		t.Fatal(err)
	}
}
