package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ares-rlhf/ares/engine/judge"
	"github.com/ares-rlhf/ares/engine/probes"
	"github.com/ares-rlhf/ares/engine/world"
	"github.com/ares-rlhf/ares/internal/jsonl"
)

func init() {
	register(command{name: "probes", summary: "import public probe sets; write the synthetic world's data sets; train the classifier judge", run: runProbes})
}

const probesUsage = `usage:
  ares probes import --format harmbench|advbench|strongreject|jbb|xstest FILE --out FILE [--kind K] [--split S] [--y-safe TEXT]
  ares probes world [--library FILE] [--seed N] [--out DIR] [--harm N] [--benign N] [--lookalike N]
  ares probes train-judge [--data FILE.jsonl | --world] --out judge.json [--seed N]`

// runProbes runs subcommands, except that with no arguments the usage is the
// usage error itself.
func runProbes(args []string) error {
	if len(args) == 0 {
		return usagef("%s", probesUsage)
	}
	return subcommands("probes", probesUsage, map[string]func([]string) error{
		"import": probesImport, "world": probesWorld, "train-judge": probesTrainJudge,
	})(args)
}

// splitPositional lets flags come after the positional FILE too, as in the
// documented `import --format F FILE --out FILE`.
func splitPositional(args []string, boolFlags map[string]bool) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && !boolFlags[name] && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return flags, pos
}

func probesImport(args []string) error {
	fs := newFlagSet("probes import")
	format := fs.String("format", "", "layout of FILE: "+strings.Join(probes.Formats, ", "))
	out := fs.String("out", "", "probes JSONL to write ('-' for stdout)")
	kind := fs.String("kind", "", "override every probe's kind (harm, benign, lookalike), e.g. benign for JBB's benign-behaviors.csv")
	split := fs.String("split", "eval", "split written on every probe")
	ySafe := fs.String("y-safe", "", "y_safe of harm probes (default: a plain refusal; '-' for none)")
	flags, pos := splitPositional(args, nil)
	if err := parseFlags(fs, flags); err != nil {
		return err
	}
	if *format == "" || *out == "" || len(pos) != 1 {
		return usagef("want --format F FILE --out FILE\n%s", probesUsage)
	}
	known := false
	for _, f := range probes.Formats {
		known = known || f == *format
	}
	if !known {
		return usagef("--format %q is not one of %s", *format, strings.Join(probes.Formats, ", "))
	}
	ps, err := probes.ImportFile(pos[0], probes.ImportOptions{Format: *format, Kind: *kind, Split: *split, SafeResponse: *ySafe})
	if err != nil {
		return err
	}
	if err := writeProbesOut(*out, ps); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "imported %d probes (%s) from %s into %s\n", len(ps), probes.Summary(ps), pos[0], *out)
	return nil
}

func writeProbesOut(path string, ps []probes.Probe) error {
	if path == "-" {
		return probes.WriteJSONL(os.Stdout, ps)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return probes.WriteFile(path, ps)
}

// probesWorld writes the synthetic world's data sets: what the weakened
// starting models train on and what evaluation holds out. The same library,
// options and seed always give the same files.
func probesWorld(args []string) error {
	fs := newFlagSet("probes world")
	lib := fs.String("library", "", "component library TOML (default: the embedded one)")
	seed := fs.Int64("seed", 1, "seed of every generator")
	out := fs.String("out", "out/world", "output directory")
	harm := fs.Int("harm", 0, "harm examples per training set (default 3000)")
	benign := fs.Int("benign", 0, "benign examples per training set (default 1500)")
	look := fs.Int("lookalike", 0, "look-alike examples per training set (default 500)")
	dump := fs.Bool("dump-library", false, "also write the library TOML used (library.toml)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %v\n%s", fs.Args(), probesUsage)
	}
	l := world.Default()
	var err error
	if *lib != "" {
		if l, err = world.LoadFile(*lib); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	o := world.DataOptions{Seed: *seed, Harm: *harm, Benign: *benign, Lookalike: *look}
	sft, prefs, replay, eval := l.SFTSet(o), l.PreferenceSet(o), l.ReplaySet(o), l.EvalSet(o)
	heldPrefs, coupled, heldout := l.HeldoutPrefSet(o), l.CoupledEvalSet(o), l.HeldoutExamples(o)
	files := []struct {
		name string
		n    int
		w    func(string) error
	}{
		{"sft.jsonl", len(sft), func(p string) error { return jsonl.WriteFile(p, sft) }},
		{"prefs.jsonl", len(prefs), func(p string) error { return jsonl.WriteFile(p, prefs) }},
		{"replay.jsonl", len(replay), func(p string) error { return jsonl.WriteFile(p, replay) }},
		{"eval_probes.jsonl", len(eval), func(p string) error { return probes.WriteFile(p, eval) }},
		{"coupled_probes.jsonl", len(coupled), func(p string) error { return probes.WriteFile(p, coupled) }},
		{"heldout_prefs.jsonl", len(heldPrefs), func(p string) error { return jsonl.WriteFile(p, heldPrefs) }},
		{"heldout_lm.jsonl", len(heldout), func(p string) error { return jsonl.WriteFile(p, heldout) }},
	}
	for _, f := range files {
		p := filepath.Join(*out, f.name)
		if err := f.w(p); err != nil {
			return err
		}
		fmt.Printf("%-18s %6d records  %s\n", f.name, f.n, p)
	}
	if *dump {
		data := world.DefaultTOML()
		if *lib != "" {
			if data, err = os.ReadFile(*lib); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(*out, "library.toml"), data, 0o644); err != nil {
			return err
		}
	}
	for _, c := range l.CoupledCells(nil) {
		fmt.Printf("coupled cell (Type C by construction): %s x %s x %s\n", c.Tactic, c.Persona, c.Topic)
	}
	return nil
}

// probesTrainJudge trains the classifier judge from labelled JSONL
// ({"prompt","response","label"}) or from the synthetic world's oracle
// labels, and reports its agreement on held-out data.
func probesTrainJudge(args []string) error {
	fs := newFlagSet("probes train-judge")
	data := fs.String("data", "", "labelled JSONL: {\"prompt\",\"response\",\"label\"} with label in [0, 1]")
	fromWorld := fs.Bool("world", false, "train on the synthetic world's oracle labels instead")
	heldout := fs.String("heldout", "", "labelled JSONL to report agreement on (default with --world: the held-out paraphrase set)")
	out := fs.String("out", "", "classifier JSON to write")
	seed := fs.Int64("seed", 1, "seed")
	n := fs.Int("n", 3000, "harm probes to label with --world")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || (*data == "") == !*fromWorld {
		return usagef("want exactly one of --data FILE or --world, and --out FILE\n%s", probesUsage)
	}
	var train, held []judge.Labelled
	var err error
	if *fromWorld {
		l := world.Default()
		train = judge.WorldLabelled(l, *seed, *n, world.Train)
		held = judge.WorldLabelled(l, *seed+1, *n/4, world.Eval)
	} else if train, err = judge.ReadLabelled(*data); err != nil {
		return err
	}
	if *heldout != "" {
		if held, err = judge.ReadLabelled(*heldout); err != nil {
			return err
		}
	}
	c, err := judge.Train(train, judge.TrainOptions{Seed: *seed})
	if err != nil {
		return err
	}
	if err := c.Save(*out); err != nil {
		return err
	}
	fmt.Printf("trained on %d examples -> %s\n", len(train), *out)
	if len(held) > 0 {
		m, err := judge.Evaluate(context.Background(), c, held)
		if err != nil {
			return err
		}
		fmt.Printf("held-out: n=%d accuracy=%.4f precision=%.4f recall=%.4f\n", m.N, m.Accuracy, m.Precision, m.Recall)
	}
	return nil
}
