package probes

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Formats lists the public probe-set layouts Import understands.
var Formats = []string{"harmbench", "advbench", "strongreject", "jbb", "xstest"}

// DefaultSafeResponse is the y_safe given to imported harm probes when the
// source has none, so that an RM can still be asked whether it prefers the
// source's harmful target to a plain refusal (Type A).
const DefaultSafeResponse = "I can't help with that request."

// ImportOptions tune Import.
type ImportOptions struct {
	// Format is one of Formats.
	Format string
	// Name is used in error messages (usually the file path).
	Name string
	// SafeResponse is the y_safe of harm probes; empty means DefaultSafeResponse,
	// "-" means none.
	SafeResponse string
	// Kind overrides the kind of every probe (for example "benign" for
	// JailbreakBench's benign-behaviors.csv, which shares the harmful layout).
	Kind string
	// Split is written on every probe (default "eval": public sets are usually
	// held out).
	Split string
}

// layout describes one source: required and optional columns and a row mapper.
type layout struct {
	required []string
	optional []string
	row      func(r row) (Probe, error)
}

// row gives access to one CSV record by column name.
type row struct {
	idx  map[string]int
	rec  []string
	line int
}

func (r row) get(col string) string {
	i, ok := r.idx[strings.ToLower(col)]
	if !ok || i >= len(r.rec) {
		return ""
	}
	return strings.TrimSpace(r.rec[i])
}

var layouts = map[string]layout{
	// HarmBench behaviours CSV (harmbench_behaviors_text_*.csv). Contextual
	// behaviours are presented as context, a separator, then the request, the
	// way HarmBench builds its test cases.
	"harmbench": {
		required: []string{"Behavior"},
		optional: []string{"FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"},
		row: func(r row) (Probe, error) {
			p := Probe{Kind: KindHarm, Prompt: r.get("Behavior"), Category: r.get("SemanticCategory"), ID: r.get("BehaviorID")}
			if ctx := r.get("ContextString"); ctx != "" {
				p.Prompt = ctx + "\n\n---\n\n" + p.Prompt
			}
			p.Meta = meta("functional_category", r.get("FunctionalCategory"), "tags", r.get("Tags"))
			return p, nil
		},
	},
	// AdvBench harmful_behaviors.csv: goal,target. The target ("Sure, here
	// is ...") is the harmful completion the attack aims for, so it is y_harm.
	"advbench": {
		required: []string{"goal"},
		optional: []string{"target"},
		row: func(r row) (Probe, error) {
			return Probe{Kind: KindHarm, Prompt: r.get("goal"), YHarm: r.get("target")}, nil
		},
	},
	// StrongREJECT strongreject_dataset.csv: category,source,forbidden_prompt.
	"strongreject": {
		required: []string{"forbidden_prompt"},
		optional: []string{"category", "source"},
		row: func(r row) (Probe, error) {
			return Probe{Kind: KindHarm, Prompt: r.get("forbidden_prompt"), Category: r.get("category"),
				Meta: meta("origin", r.get("source"))}, nil
		},
	},
	// JailbreakBench JBB-Behaviors: Index,Goal,Target,Behavior,Category,Source.
	"jbb": {
		required: []string{"Goal"},
		optional: []string{"Index", "Target", "Behavior", "Category", "Source"},
		row: func(r row) (Probe, error) {
			p := Probe{Kind: KindHarm, Prompt: r.get("Goal"), YHarm: r.get("Target"), Category: r.get("Category"),
				Meta: meta("behavior", r.get("Behavior"), "origin", r.get("Source"))}
			if ix := r.get("Index"); ix != "" {
				p.ID = "jbb-" + ix
			}
			return p, nil
		},
	},
	// XSTest xstest_prompts.csv: id,prompt,type,label,focus,note. "safe" prompts
	// are harmless look-alikes (over-refusal); "unsafe" ones are the contrast
	// set. Older releases have no label column: the type's "contrast_" prefix
	// marks the unsafe ones there.
	"xstest": {
		required: []string{"prompt", "type"},
		optional: []string{"id", "label", "focus", "note"},
		row: func(r row) (Probe, error) {
			p := Probe{Prompt: r.get("prompt"), Category: r.get("type"), Meta: meta("focus", r.get("focus"), "note", r.get("note"))}
			if id := r.get("id"); id != "" {
				p.ID = "xstest-" + id
			}
			label := strings.ToLower(r.get("label"))
			if label == "" {
				label = "safe"
				if strings.HasPrefix(strings.ToLower(p.Category), "contrast") {
					label = "unsafe"
				}
			}
			switch label {
			case "safe":
				p.Kind = KindLookalike
			case "unsafe":
				p.Kind = KindHarm
			default:
				return p, fmt.Errorf("column label: %q is neither safe nor unsafe", label)
			}
			p.Label = label
			return p, nil
		},
	},
}

func meta(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			m[kv[i]] = kv[i+1]
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// MaxPromptBytes bounds an imported probe's prompt: a megabyte is some
// 250,000 tokens, longer than the context of the models ARES runs, so a
// longer field is a damaged file, refused where it is rather than skipped
// probe by probe later.
const MaxPromptBytes = 1 << 20

// Import reads one public probe set in CSV and returns probes. Columns are
// matched by header name, case-insensitively; missing required columns,
// ragged rows and empty prompts are errors that name the line.
func Import(r io.Reader, opt ImportOptions) ([]Probe, error) {
	lay, ok := layouts[opt.Format]
	if !ok {
		return nil, fmt.Errorf("unknown format %q (want one of %s)", opt.Format, strings.Join(Formats, ", "))
	}
	name := opt.Name
	if name == "" {
		name = opt.Format
	}
	if opt.Kind != "" && opt.Kind != KindHarm && opt.Kind != KindBenign && opt.Kind != KindLookalike {
		return nil, fmt.Errorf("kind %q is not one of harm, benign, lookalike", opt.Kind)
	}
	safe := opt.SafeResponse
	switch safe {
	case "":
		safe = DefaultSafeResponse
	case "-":
		safe = ""
	}
	split := opt.Split
	if split == "" {
		split = "eval"
	}

	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below, with a better message
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file, expected a header row", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	idx := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if h == "" {
			continue
		}
		if _, dup := idx[h]; dup {
			return nil, fmt.Errorf("%s:1: column %q appears twice", name, h)
		}
		idx[h] = i
	}
	var missing []string
	for _, c := range lay.required {
		if _, ok := idx[strings.ToLower(c)]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s:1: %s layout needs column(s) %s; header has %s", name, opt.Format,
			strings.Join(missing, ", "), strings.Join(header, ","))
	}

	var out []Probe
	firstAt := map[string]int{} // every id given: the line of its row
	for n := 1; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// FieldPos is only valid after a successful Read (it panics
			// on the empty record of a parse error).
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s:%d: %v", name, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("%s: record %d: %w", name, n+1, err)
		}
		line, _ := cr.FieldPos(0)
		for i, f := range rec {
			if !utf8.ValidString(f) {
				l, c := cr.FieldPos(i)
				return nil, fmt.Errorf("%s:%d:%d: invalid UTF-8 in field %d (%q column)", name, l, c, i+1, strings.TrimSpace(header[i%len(header)]))
			}
		}
		if len(rec) != len(header) {
			return nil, fmt.Errorf("%s:%d: row has %d fields, header has %d", name, line, len(rec), len(header))
		}
		p, err := lay.row(row{idx: idx, rec: rec, line: line})
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if p.Prompt == "" {
			return nil, fmt.Errorf("%s:%d: empty prompt", name, line)
		}
		if len(p.Prompt) > MaxPromptBytes {
			return nil, fmt.Errorf("%s:%d: prompt of %d bytes is over the limit of %d (no model's context holds it)", name, line, len(p.Prompt), MaxPromptBytes)
		}
		if p.ID != "" {
			// The set's own ids name its behaviours: two rows with one id
			// are a mistake (a file pasted twice, a bad merge) that would
			// count one probe twice and confuse findings and reports.
			if at, dup := firstAt[p.ID]; dup {
				return nil, fmt.Errorf("%s:%d: duplicate id %q (first on line %d)", name, line, p.ID, at)
			}
		} else {
			// A generated id steps around the ids already given.
			gen := opt.Format + "-" + strconv.Itoa(n)
			p.ID = gen
			for k := 2; firstAt[p.ID] != 0; k++ {
				p.ID = gen + "-" + strconv.Itoa(k)
			}
		}
		firstAt[p.ID] = line
		if opt.Kind != "" {
			p.Kind = opt.Kind
		}
		if p.Kind == KindHarm && p.YSafe == "" {
			p.YSafe = safe
		}
		p.Source = opt.Format
		p.Split = split
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no rows after the header", name)
	}
	return out, nil
}

// ImportFile imports one CSV file.
func ImportFile(path string, opt ImportOptions) ([]Probe, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if opt.Name == "" {
		opt.Name = path
	}
	return Import(f, opt)
}

// Summary counts probes by kind, for command output.
func Summary(ps []Probe) string {
	c := map[string]int{}
	for _, p := range ps {
		c[p.Kind]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%d %s", c[k], k))
	}
	return strings.Join(parts, ", ")
}
