package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ares-rlhf/ares/engine/repair"
	"github.com/ares-rlhf/ares/engine/study"
)

// exampleLoaders are the commands' own loaders of the configs in examples/,
// one per file: every example is read and checked the way its command reads
// it, so that none can go stale. A new file in examples/ needs an entry.
var exampleLoaders = map[string]func(t *testing.T, path string) error{
	"sft.toml":      loadRunExample,
	"train-rm.toml": loadRunExample,
	"repair.toml":   loadRunExample,
	"redteam.toml": func(t *testing.T, path string) error {
		c, err := loadRedteamConfig(path)
		if err != nil {
			return err
		}
		// The example leaves the model directories to --policy and --rm.
		c.Models.Policy, c.Models.RM = "policy", "rm"
		return c.validate(path)
	},
	"study-real.toml": func(t *testing.T, path string) error {
		_, err := study.LoadStudy(path)
		return err
	},
}

func loadRunExample(t *testing.T, path string) error {
	_, err := repair.LoadRunConfig(path)
	return err
}

// TestExamples loads every examples/*.toml with its command's loader, and
// bench/*.toml with the study's.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		load, ok := exampleLoaders[name]
		if !ok {
			t.Errorf("%s: no loader in exampleLoaders: which command reads it?", f)
			continue
		}
		seen[name] = true
		if err := load(t, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	var missing []string
	for name := range exampleLoaders {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("examples missing: %s", strings.Join(missing, ", "))
	}
	bench, _ := filepath.Glob(filepath.Join("..", "..", "bench", "*.toml"))
	for _, f := range bench {
		if _, err := study.LoadStudy(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if len(bench) == 0 {
		t.Error("no bench/*.toml")
	}
}

// TestDocsConfigNamesEveryTable: docs/config.md names every table header of
// the examples and bench configs.
func TestDocsConfigNamesEveryTable(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*.toml"))
	bench, _ := filepath.Glob(filepath.Join("..", "..", "bench", "*.toml"))
	for _, f := range append(files, bench...) {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
			if !strings.HasPrefix(line, "[") || strings.HasPrefix(line, "[[") {
				continue
			}
			end := strings.Index(line, "]")
			if end < 0 || strings.ContainsAny(line[1:end], " \"") {
				continue
			}
			if table := line[:end+1]; !strings.Contains(string(doc), "`"+table+"`") {
				t.Errorf("%s: table %s is not in docs/config.md", f, table)
			}
		}
	}
}
