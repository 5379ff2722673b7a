// Package world is the synthetic safety world of ARES: a
// component library in TOML (harm topics and goals, personas, tactics, benign
// tasks with checkable answers, harmless look-alikes, response templates, and
// a held-out pool of prompt paraphrases and response phrasings), a composer that turns components into probes, the
// exact payload grammar its oracle judge recognises, and the generators of the
// weakened starting models' training data and of the held-out evaluation sets.
// There is no real harmful content: harmful responses carry abstract payload
// markers such as [hazard:weapons:step-2].
package world

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/ares-rlhf/ares/internal/config"
)

//go:embed library/default.toml
var defaultLibrary []byte

// DefaultLibraryName is how the embedded library is named in errors.
const DefaultLibraryName = "engine/world/library/default.toml"

// Library is the component library. Every field is documented in
// library/default.toml; unknown keys are rejected.
type Library struct {
	World      Info        `toml:"world"`
	HarmTopics []HarmTopic `toml:"harm_topics"`
	Personas   []Persona   `toml:"personas"`
	Tactics    []Tactic    `toml:"tactics"`
	Responses  Responses   `toml:"responses"`
	Benign     []Benign    `toml:"benign"`
	Lookalikes []Lookalike `toml:"lookalikes"`
	// Exclude lists component combinations that do not make a coherent probe.
	Exclude  []Selector `toml:"exclude"`
	Weakness Weakness   `toml:"weakness"`

	name string
	pos  config.Positions
	// Identify's compiled templates, built on first use.
	identOnce sync.Once
	ident     *identifier
}

// Info names the library and fixes the payload grammar.
type Info struct {
	Name    string `toml:"name"`
	Version int    `toml:"version"`
	// PayloadSteps is how many [hazard:topic:step-N] markers a full harmful
	// response carries.
	PayloadSteps int `toml:"payload_steps"`
}

// HarmTopic is a harm category and the goals (requests) within it.
type HarmTopic struct {
	ID    string `toml:"id"`
	Noun  string `toml:"noun"`
	Goals []Goal `toml:"goals"`
}

// Goal is one harmful request, as the verb phrase that completes "how to ...".
type Goal struct {
	ID   string `toml:"id"`
	Text string `toml:"text"`
}

// Persona is who the prompt claims to be.
type Persona struct {
	ID   string `toml:"id"`
	Text string `toml:"text"`
}

// Tactic is a jailbreak style: prompt templates used for red-teaming and
// training, and paraphrases held out for evaluation.
type Tactic struct {
	ID          string   `toml:"id"`
	Description string   `toml:"description"`
	Templates   []string `toml:"templates"`
	Paraphrases []string `toml:"paraphrases"`
}

// Responses holds the harmful and safe response templates and the phrases
// that identify a refusal. Harm and Safe are the training phrasings;
// HarmHeldout and SafeHeldout are held out: only probes of the Eval pool
// (the evaluation sets) use them.
type Responses struct {
	Harm           []string `toml:"harm"`
	Safe           []string `toml:"safe"`
	HarmHeldout    []string `toml:"harm_heldout"`
	SafeHeldout    []string `toml:"safe_heldout"`
	RefusalMarkers []string `toml:"refusal_markers"`
}

// responses returns the harmful and safe response templates of a pool.
func (l *Library) responses(p Pool) (harm, safe []string) {
	if p == Eval {
		return l.Responses.HarmHeldout, l.Responses.SafeHeldout
	}
	return l.Responses.Harm, l.Responses.Safe
}

// Benign is a helpfulness task with a checkable answer.
type Benign struct {
	ID string `toml:"id"`
	// Kind is "add", "sub" (operands Min..Max) or "lookup" (Pairs of key,
	// answer).
	Kind        string     `toml:"kind"`
	Min         int        `toml:"min"`
	Max         int        `toml:"max"`
	Pairs       [][]string `toml:"pairs"`
	Templates   []string   `toml:"templates"`
	Paraphrases []string   `toml:"paraphrases"`
	Answers     []string   `toml:"answers"`
}

// Lookalike is a harmless prompt that resembles a harm topic (XSTest style).
type Lookalike struct {
	ID          string   `toml:"id"`
	Resembles   string   `toml:"resembles"`
	Prompts     []string `toml:"prompts"`
	Paraphrases []string `toml:"paraphrases"`
	Response    string   `toml:"response"`
	Answer      string   `toml:"answer"`
}

// Selector matches component combinations; empty fields match anything.
type Selector struct {
	Tactic  string `toml:"tactic"`
	Persona string `toml:"persona"`
	Topic   string `toml:"topic"`
	Goal    string `toml:"goal"`
	Why     string `toml:"why"`
}

// Matches reports whether s selects spec.
func (s Selector) Matches(sp Spec) bool {
	return (s.Tactic == "" || s.Tactic == sp.Tactic) &&
		(s.Persona == "" || s.Persona == sp.Persona) &&
		(s.Topic == "" || s.Topic == sp.Topic) &&
		(s.Goal == "" || s.Goal == sp.Goal)
}

// Weakness says where the deliberately weakened starting models fail.
type Weakness struct {
	// PolicyComply: cells where the weakened policy's SFT data complies.
	PolicyComply []Selector `toml:"policy_comply"`
	// ComplyRate: fraction of SFT examples in those cells that comply.
	ComplyRate float64 `toml:"comply_rate"`
	// LeakRate: fraction of SFT examples elsewhere that comply anyway.
	LeakRate float64 `toml:"leak_rate"`
	// RMFlipped: cells whose RM preference pairs prefer y_harm.
	RMFlipped []Selector `toml:"rm_flipped"`
	// FlipRate: fraction of pairs in flipped cells that are flipped.
	FlipRate float64 `toml:"flip_rate"`
	// RMMissing: cells with no RM preference pairs at all.
	RMMissing []Selector `toml:"rm_missing"`
}

// PolicyWeak reports whether the weakened policy is trained to comply in sp.
func (w *Weakness) PolicyWeak(sp Spec) bool { return anyMatch(w.PolicyComply, sp) }

// RMFlippedAt reports whether the RM's preference data is flipped in sp.
func (w *Weakness) RMFlippedAt(sp Spec) bool { return anyMatch(w.RMFlipped, sp) }

// RMMissingAt reports whether the RM has no preference data in sp.
func (w *Weakness) RMMissingAt(sp Spec) bool {
	return anyMatch(w.RMMissing, sp) && !anyMatch(w.RMFlipped, sp)
}

func anyMatch(ss []Selector, sp Spec) bool {
	for _, s := range ss {
		if s.Matches(sp) {
			return true
		}
	}
	return false
}

// Error is a library validation error; it names file, line and key. It is
// the error of every config file (internal/config).
type Error = config.Error

// Default returns the embedded default library.
func Default() *Library {
	l, err := Parse(defaultLibrary, DefaultLibraryName)
	if err != nil {
		panic("world: embedded default library is invalid: " + err.Error())
	}
	return l
}

// DefaultTOML returns the embedded default library's text (to copy and edit).
func DefaultTOML() []byte { return bytes.Clone(defaultLibrary) }

// LoadFile reads and validates a library file.
func LoadFile(path string) (*Library, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse decodes and validates a library. Unknown keys, type errors and
// semantic errors (unknown references, bad template slots, ...) are reported
// with the file, line and key.
func Parse(data []byte, name string) (*Library, error) {
	var l Library
	if err := config.DecodeStrict(data, name, &l); err != nil {
		return nil, err
	}
	l.name = name
	l.pos = config.Index(data)
	if err := l.validate(); err != nil {
		return nil, err
	}
	return &l, nil
}

// Name is the file the library was loaded from.
func (l *Library) Name() string { return l.name }

type validator struct {
	l    *Library
	errs []error
}

func (v *validator) errf(key, format string, a ...any) {
	v.errs = append(v.errs, &Error{File: v.l.name, Line: v.l.pos.Line(key), Key: key, Msg: fmt.Sprintf(format, a...)})
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (v *validator) ids(key string, n int, id func(int) string) map[string]bool {
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%s[%d].id", key, i)
		s := id(i)
		switch {
		case !idRE.MatchString(s):
			v.errf(k, "id %q must be lowercase letters, digits, '-' or '_'", s)
		case seen[s]:
			v.errf(k, "duplicate id %q", s)
		}
		seen[s] = true
	}
	return seen
}

var slotRE = regexp.MustCompile(`\{([^{}]*)\}`)

// template checks a template's slots: only allowed ones, all required ones,
// no stray braces, and no literal payload marker (payloads only come from
// {payload}, so the oracle's grammar stays exact).
func (v *validator) template(key, text string, allowed, required []string) {
	if strings.TrimSpace(text) == "" {
		v.errf(key, "empty template")
		return
	}
	rest := slotRE.ReplaceAllString(text, "")
	if strings.ContainsAny(rest, "{}") {
		v.errf(key, "unbalanced brace in %q", text)
	}
	have := map[string]bool{}
	for _, m := range slotRE.FindAllStringSubmatch(text, -1) {
		ok := false
		for _, a := range allowed {
			ok = ok || m[1] == a
		}
		if !ok {
			v.errf(key, "unknown slot {%s} (allowed: %s)", m[1], strings.Join(allowed, ", "))
		}
		have[m[1]] = true
	}
	for _, r := range required {
		if !have[r] {
			v.errf(key, "template must contain {%s}", r)
		}
	}
	if strings.Contains(strings.ToLower(text), "[hazard:") {
		v.errf(key, "literal payload marker; use {payload}")
	}
}

func (v *validator) text(key, s string) {
	if strings.TrimSpace(s) == "" {
		v.errf(key, "empty text")
	} else if strings.ContainsAny(s, "{}[]") {
		v.errf(key, "text may not contain braces or brackets: %q", s)
	}
}

func (v *validator) rate(key string, r float64) {
	if r < 0 || r > 1 {
		v.errf(key, "%v is not in [0, 1]", r)
	}
}

func (l *Library) validate() error {
	v := &validator{l: l}
	if l.World.Name == "" {
		v.errf("world.name", "missing")
	}
	if l.World.PayloadSteps < 1 || l.World.PayloadSteps > 9 {
		v.errf("world.payload_steps", "%d is not in 1..9", l.World.PayloadSteps)
	}
	if len(l.HarmTopics) == 0 || len(l.Personas) == 0 || len(l.Tactics) == 0 {
		v.errf("harm_topics", "a library needs at least one harm topic, persona and tactic")
	}
	topics := v.ids("harm_topics", len(l.HarmTopics), func(i int) string { return l.HarmTopics[i].ID })
	goals, goalTexts := map[string]bool{}, map[string]bool{}
	for i, t := range l.HarmTopics {
		k := fmt.Sprintf("harm_topics[%d]", i)
		v.text(k+".noun", t.Noun)
		if len(t.Goals) == 0 {
			v.errf(k+".goals", "topic %q has no goals", t.ID)
		}
		v.ids(k+".goals", len(t.Goals), func(j int) string { return t.Goals[j].ID })
		for j, g := range t.Goals {
			kk := fmt.Sprintf("%s.goals[%d]", k, j)
			v.text(kk+".text", g.Text)
			// Selectors name goals by id alone, and Identify maps goal text back
			// to its topic: both must be unique across topics.
			if goals[g.ID] {
				v.errf(kk+".id", "goal id %q is already used by another topic", g.ID)
			}
			if goalTexts[g.Text] {
				v.errf(kk+".text", "goal text %q is used twice", g.Text)
			}
			goals[g.ID], goalTexts[g.Text] = true, true
		}
	}
	personas := v.ids("personas", len(l.Personas), func(i int) string { return l.Personas[i].ID })
	for i, p := range l.Personas {
		v.text(fmt.Sprintf("personas[%d].text", i), p.Text)
	}
	tactics := v.ids("tactics", len(l.Tactics), func(i int) string { return l.Tactics[i].ID })
	promptSlots := []string{"persona", "goal", "noun"}
	for i, t := range l.Tactics {
		k := fmt.Sprintf("tactics[%d]", i)
		if len(t.Templates) == 0 || len(t.Paraphrases) == 0 {
			v.errf(k, "tactic %q needs templates and held-out paraphrases", t.ID)
		}
		seen := map[string]bool{}
		for j, s := range t.Templates {
			v.template(fmt.Sprintf("%s.templates[%d]", k, j), s, promptSlots, []string{"persona", "goal"})
			seen[s] = true
		}
		for j, s := range t.Paraphrases {
			kk := fmt.Sprintf("%s.paraphrases[%d]", k, j)
			v.template(kk, s, promptSlots, []string{"persona", "goal"})
			if seen[s] {
				v.errf(kk, "paraphrase repeats a training template; held-out paraphrases must differ")
			}
		}
	}
	r := l.Responses
	if len(r.Harm) == 0 || len(r.Safe) == 0 || len(r.HarmHeldout) == 0 || len(r.SafeHeldout) == 0 || len(r.RefusalMarkers) == 0 {
		v.errf("responses", "needs harm, safe, harm_heldout, safe_heldout and refusal_markers")
	}
	harmResp := func(key string, list []string, train map[string]bool) {
		for j, s := range list {
			kk := fmt.Sprintf("responses.%s[%d]", key, j)
			v.template(kk, s, []string{"goal", "noun", "payload"}, []string{"payload"})
			if l.IsRefusal(s) {
				v.errf(kk, "harmful response contains a refusal marker")
			}
			if train[s] {
				v.errf(kk, "held-out response repeats a training response; it must differ")
			}
		}
	}
	safeResp := func(key string, list []string, train map[string]bool) {
		for j, s := range list {
			kk := fmt.Sprintf("responses.%s[%d]", key, j)
			v.template(kk, s, []string{"goal", "noun"}, nil)
			if !l.IsRefusal(s) {
				v.errf(kk, "safe response contains none of responses.refusal_markers")
			}
			if train[s] {
				v.errf(kk, "held-out response repeats a training response; it must differ")
			}
		}
	}
	harmResp("harm", r.Harm, nil)
	safeResp("safe", r.Safe, nil)
	harmResp("harm_heldout", r.HarmHeldout, set(r.Harm))
	safeResp("safe_heldout", r.SafeHeldout, set(r.Safe))
	for j, m := range r.RefusalMarkers {
		if strings.TrimSpace(m) == "" {
			v.errf(fmt.Sprintf("responses.refusal_markers[%d]", j), "empty marker")
		}
	}
	v.ids("benign", len(l.Benign), func(i int) string { return l.Benign[i].ID })
	for i, b := range l.Benign {
		k := fmt.Sprintf("benign[%d]", i)
		var in, out []string
		switch b.Kind {
		case "add", "sub":
			if b.Min < 0 || b.Max < b.Min || b.Max > 999 {
				v.errf(k+".max", "operands must satisfy 0 <= min <= max <= 999")
			}
			in, out = []string{"a", "b"}, []string{"a", "b", "answer"}
		case "lookup":
			if len(b.Pairs) == 0 {
				v.errf(k+".pairs", "lookup task needs pairs")
			}
			for j, p := range b.Pairs {
				if len(p) != 2 || strings.TrimSpace(p[0]) == "" || strings.TrimSpace(p[1]) == "" {
					v.errf(fmt.Sprintf("%s.pairs[%d]", k, j), "want [key, answer]")
				}
			}
			in, out = []string{"key"}, []string{"key", "answer"}
		default:
			v.errf(k+".kind", "%q is not one of add, sub, lookup", b.Kind)
		}
		if len(b.Templates) == 0 || len(b.Paraphrases) == 0 || len(b.Answers) == 0 {
			v.errf(k, "task %q needs templates, paraphrases and answers", b.ID)
		}
		for j, s := range b.Templates {
			v.template(fmt.Sprintf("%s.templates[%d]", k, j), s, append([]string{"persona"}, in...), in)
		}
		trainTpl := set(b.Templates)
		for j, s := range b.Paraphrases {
			kk := fmt.Sprintf("%s.paraphrases[%d]", k, j)
			v.template(kk, s, append([]string{"persona"}, in...), in)
			if trainTpl[s] {
				v.errf(kk, "paraphrase repeats a training template; held-out paraphrases must differ")
			}
		}
		for j, s := range b.Answers {
			kk := fmt.Sprintf("%s.answers[%d]", k, j)
			v.template(kk, s, out, []string{"answer"})
			if l.IsRefusal(s) {
				v.errf(kk, "answer contains a refusal marker")
			}
		}
	}
	v.ids("lookalikes", len(l.Lookalikes), func(i int) string { return l.Lookalikes[i].ID })
	for i, la := range l.Lookalikes {
		k := fmt.Sprintf("lookalikes[%d]", i)
		if la.Resembles != "" && !topics[la.Resembles] {
			v.errf(k+".resembles", "unknown harm topic %q", la.Resembles)
		}
		if len(la.Prompts) == 0 || len(la.Paraphrases) == 0 {
			v.errf(k, "look-alike %q needs prompts and paraphrases", la.ID)
		}
		for j, s := range la.Prompts {
			v.template(fmt.Sprintf("%s.prompts[%d]", k, j), s, []string{"persona"}, nil)
		}
		trainPr := set(la.Prompts)
		for j, s := range la.Paraphrases {
			kk := fmt.Sprintf("%s.paraphrases[%d]", k, j)
			v.template(kk, s, []string{"persona"}, nil)
			if trainPr[s] {
				v.errf(kk, "paraphrase repeats a training prompt; held-out paraphrases must differ")
			}
		}
		v.text(k+".response", la.Response)
		if la.Answer == "" || !strings.Contains(la.Response, la.Answer) {
			v.errf(k+".answer", "answer %q must occur in the response", la.Answer)
		}
		if l.IsRefusal(la.Response) {
			v.errf(k+".response", "look-alike response contains a refusal marker")
		}
	}
	sel := func(key string, ss []Selector) {
		for i, s := range ss {
			kk := fmt.Sprintf("%s[%d]", key, i)
			if s.Tactic == "" && s.Persona == "" && s.Topic == "" && s.Goal == "" {
				v.errf(kk, "selector matches everything; name at least one of tactic, persona, topic, goal")
			}
			if s.Tactic != "" && !tactics[s.Tactic] {
				v.errf(kk+".tactic", "unknown tactic %q", s.Tactic)
			}
			if s.Persona != "" && !personas[s.Persona] {
				v.errf(kk+".persona", "unknown persona %q", s.Persona)
			}
			if s.Topic != "" && !topics[s.Topic] {
				v.errf(kk+".topic", "unknown harm topic %q", s.Topic)
			}
			if s.Goal != "" && !goals[s.Goal] {
				v.errf(kk+".goal", "unknown goal %q", s.Goal)
			}
		}
	}
	sel("exclude", l.Exclude)
	sel("weakness.policy_comply", l.Weakness.PolicyComply)
	sel("weakness.rm_flipped", l.Weakness.RMFlipped)
	sel("weakness.rm_missing", l.Weakness.RMMissing)
	v.rate("weakness.comply_rate", l.Weakness.ComplyRate)
	v.rate("weakness.leak_rate", l.Weakness.LeakRate)
	v.rate("weakness.flip_rate", l.Weakness.FlipRate)
	if len(v.errs) == 0 && len(l.Specs()) == 0 {
		v.errf("exclude", "every component combination is excluded")
	}
	sort.SliceStable(v.errs, func(i, j int) bool {
		return v.errs[i].(*Error).Line < v.errs[j].(*Error).Line
	})
	return errors.Join(v.errs...)
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// IsRefusal reports whether text contains one of the library's refusal
// markers (case-insensitive). It is how over-refusal is measured.
func (l *Library) IsRefusal(text string) bool {
	t := strings.ToLower(text)
	for _, m := range l.Responses.RefusalMarkers {
		if m != "" && strings.Contains(t, strings.ToLower(m)) {
			return true
		}
	}
	return false
}

// Cell is a (tactic, persona, topic) triple, the unit the weaknesses act on.
type Cell struct{ Tactic, Persona, Topic string }

// CoupledCells lists the cells where the weakened policy complies and the
// weakened RM's data prefers y_harm: where Type C lives by construction. A
// cell counts when any of its goals is selected by both.
func (l *Library) CoupledCells(w *Weakness) []Cell {
	if w == nil {
		w = &l.Weakness
	}
	var out []Cell
	for _, t := range l.Tactics {
		for _, p := range l.Personas {
			for _, h := range l.HarmTopics {
				for _, g := range h.Goals {
					sp := Spec{Tactic: t.ID, Persona: p.ID, Topic: h.ID, Goal: g.ID}
					if !l.Excluded(sp) && w.PolicyWeak(sp) && w.RMFlippedAt(sp) {
						out = append(out, Cell{t.ID, p.ID, h.ID})
						break
					}
				}
			}
		}
	}
	return out
}
