// Package probes defines the probe record that flows through discovery
// (mentor -> rollout -> judge -> detect), its JSONL encoding, and import of
// the public probe sets (HarmBench, AdvBench, StrongREJECT, JailbreakBench,
// XSTest) from the CSV layouts their projects publish.
package probes

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ares-rlhf/ares/internal/jsonl"
)

// Kinds of probe. A harm probe asks for something the policy should refuse; a
// benign probe checks capability (it has an Answer); a look-alike is harmless
// but resembles a harm probe and checks over-refusal.
const (
	KindHarm      = "harm"
	KindBenign    = "benign"
	KindLookalike = "lookalike"
)

// Probe is one prompt to red-team with, plus everything needed to audit and
// repair from it. Component fields are empty for imported probes that have no
// such structure; YHarm / YSafe may be empty when the source gives none (then
// Type A cannot be decided for it).
type Probe struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Prompt string `json:"prompt"`
	// Source names where the probe came from: "world", "harmbench", ...
	Source string `json:"source"`
	// Split is "train" (red-teaming, repair) or "eval" (held out).
	Split string `json:"split,omitempty"`

	// Components of a synthetic-world probe (empty for imported ones).
	Topic    string `json:"topic,omitempty"`
	Goal     string `json:"goal,omitempty"`
	Persona  string `json:"persona,omitempty"`
	Tactic   string `json:"tactic,omitempty"`
	Template string `json:"template,omitempty"`

	// YHarm is a harmful (complying) response and YSafe a safe one; the RM
	// should prefer YSafe.
	YHarm string `json:"y_harm,omitempty"`
	YSafe string `json:"y_safe,omitempty"`
	// Answer is the checkable answer of a benign or look-alike probe: a correct
	// response contains it.
	Answer string `json:"answer,omitempty"`

	// Category is the source's own category (HarmBench SemanticCategory, ...).
	Category string `json:"category,omitempty"`
	// Label is the source's own safety label when it has one (XSTest "safe" or
	// "unsafe").
	Label string `json:"label,omitempty"`
	// Seed is the composer seed that produced a synthetic probe.
	Seed int64             `json:"seed,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
}

// Validate checks the fields every consumer relies on.
func (p *Probe) Validate() error {
	if p.ID == "" {
		return errors.New("missing id")
	}
	if strings.TrimSpace(p.Prompt) == "" {
		return fmt.Errorf("probe %s: empty prompt", p.ID)
	}
	switch p.Kind {
	case KindHarm, KindBenign, KindLookalike:
	default:
		return fmt.Errorf("probe %s: kind %q is not one of harm, benign, lookalike", p.ID, p.Kind)
	}
	return nil
}

// Cell is the (tactic, topic) pair a probe reports under in heatmaps; imported
// probes without a tactic fall under "none" and their category as topic.
func (p *Probe) Cell() (tactic, topic string) {
	tactic, topic = p.Tactic, p.Topic
	if tactic == "" {
		tactic = "none"
	}
	if topic == "" {
		topic = p.Category
	}
	if topic == "" {
		topic = "none"
	}
	return tactic, topic
}

// WriteJSONL writes probes one per line.
func WriteJSONL(w io.Writer, ps []Probe) error {
	bw := bufio.NewWriter(w)
	jw := jsonl.NewWriter(bw)
	for i := range ps {
		if err := jw.Write(&ps[i]); err != nil {
			return fmt.Errorf("probe %s: %w", ps[i].ID, err)
		}
	}
	return bw.Flush()
}

// WriteFile writes probes to a JSONL file.
func WriteFile(path string, ps []Probe) error { return jsonl.WriteFile(path, ps) }

// ReadJSONL reads probes, rejecting unknown fields, invalid records and a
// repeated id (naming the line of its first use); errors name the source
// and line.
func ReadJSONL(r io.Reader, name string) ([]Probe, error) {
	ps, lines, err := jsonl.Read(r, name, true, func(p *Probe) error { return p.Validate() })
	if err != nil {
		return ps, err
	}
	firstAt := make(map[string]int, len(ps))
	for i := range ps {
		if at, dup := firstAt[ps[i].ID]; dup {
			return nil, fmt.Errorf("%s:%d: duplicate probe id %q (first on line %d)", name, lines[i], ps[i].ID, at)
		}
		firstAt[ps[i].ID] = lines[i]
	}
	return ps, nil
}

// ReadFile reads a probes JSONL file.
func ReadFile(path string) ([]Probe, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadJSONL(f, path)
}
