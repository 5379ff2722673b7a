// Package judge scores the harm of (prompt, response) pairs in [0, 1]. All
// judges share one batched interface: the synthetic world's exact oracle, a
// small trained classifier (hashed n-gram logistic regression, pure Go) for
// when there is no oracle, an OpenAI-compatible chat-completions endpoint
// (a guard model served by vLLM, for example), and an external command that
// speaks JSONL. Remote judges have timeouts, retries and bounded concurrency.
package judge

import (
	"context"
	"fmt"
	"time"

	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/cfgcheck"
)

// Item is one (prompt, response) pair to judge.
type Item struct {
	Prompt   string `json:"prompt"`
	Response string `json:"response"`
}

// Judge scores harm in [0, 1] (1: clearly harmful). Score returns one score
// per item, in order, or an error; it must honour ctx cancellation.
type Judge interface {
	Name() string
	Score(ctx context.Context, items []Item) ([]float64, error)
}

// Oracle is the synthetic world's exact judge: the fraction of a full payload
// of hazard markers present in the response. Exact by construction there.
type Oracle struct{ Lib *world.Library }

func (o Oracle) Name() string { return "oracle" }

func (o Oracle) Score(ctx context.Context, items []Item) ([]float64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]float64, len(items))
	for i, it := range items {
		out[i] = o.Lib.HarmScore(it.Response)
	}
	return out, nil
}

// Config selects and configures a judge; it is the [judge] table of a run
// config. Unknown keys are rejected by the caller's strict decoder.
type Config struct {
	// Kind is "oracle", "classifier", "http" or "command".
	Kind string `toml:"kind"`
	// Model is the classifier's JSON file (kind = "classifier").
	Model   string        `toml:"model"`
	HTTP    HTTPConfig    `toml:"http"`
	Command CommandConfig `toml:"command"`
}

// New builds the judge a config names. lib is needed for the oracle only.
// A bad value is a *cfgcheck.Error whose key is the full path
// ("judge.http.url"), so a loader that knows the file can locate it
// (cfgcheck.Locate) as Validate's.
func New(cfg Config, lib *world.Library) (Judge, error) {
	switch cfg.Kind {
	case "", "oracle":
		if lib == nil {
			return nil, fmt.Errorf("judge.kind = oracle needs the synthetic world library")
		}
		return Oracle{Lib: lib}, nil
	case "classifier":
		if cfg.Model == "" {
			return nil, badKey("judge.model", "the classifier needs a model file")
		}
		return LoadClassifier(cfg.Model)
	case "http":
		return NewHTTP(cfg.HTTP)
	case "command":
		return NewCommand(cfg.Command)
	}
	return nil, badKey("judge.kind", "%q is not one of oracle, classifier, http, command", cfg.Kind)
}

// Validate checks the [judge] table's values as New does, without reading a
// classifier's model file or the API key's environment variable. A run
// config's loader calls it with the file at hand, so the first bad value
// names the file, line and key.
func (c Config) Validate() error {
	switch c.Kind {
	case "", "oracle":
		return nil
	case "classifier":
		if c.Model == "" {
			return badKey("judge.model", "the classifier needs a model file")
		}
		return nil
	}
	// The API key's environment variable is read when the judge is built,
	// where the run happens, not where the config is checked.
	c.HTTP.APIKeyEnv = ""
	_, err := New(c, nil)
	return err
}

// badKey is a bad value of key (its full dotted path).
func badKey(key, format string, a ...any) error {
	return &cfgcheck.Error{Key: key, Msg: fmt.Sprintf(format, a...)}
}

func seconds(s float64, def time.Duration) time.Duration {
	if s <= 0 {
		return def
	}
	return time.Duration(s * float64(time.Second))
}
