package detect

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/internal/atomicfile"
)

// SamplerStat is one row of a sampler comparison: findings of a type per
// 1,000 rollouts over seeds.
type SamplerStat struct {
	Sampler string    `json:"sampler"`
	Type    string    `json:"type"`
	PerSeed []float64 `json:"per_seed"`
	Mean    float64   `json:"mean"`
	SD      float64   `json:"sd"`
	// Distinct is the mean number of distinct component combinations
	// (tactic, persona, topic, goal) among the findings, per seed.
	Distinct float64 `json:"distinct"`
}

// MeanSD returns the mean and sample standard deviation.
func MeanSD(xs []float64) (mean, sd float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(xs)-1))
}

// Report is what a red-teaming run renders.
type Report struct {
	Title   string
	Run     string
	Sampler string
	Judge   string
	Seed    int64
	// Tactics and Topics fix the heatmap's axes (library order); empty means
	// whatever the findings contain, sorted.
	Tactics, Topics []string
	Agg             *Aggregate
	Comparison      []SamplerStat
	// Top lists the strongest findings to quote (Type C first).
	Top   []Finding
	Notes []string
}

// Write renders report.md and heatmap_c.svg (coupled-failure rate per tactic
// x topic) into dir and returns their paths.
func (r *Report) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	svg := filepath.Join(dir, "heatmap_c.svg")
	md := filepath.Join(dir, "report.md")
	if err := writeFile(svg, func(w io.Writer) error { return r.Heatmap(w, TypeC) }); err != nil {
		return nil, err
	}
	if err := writeFile(md, r.Markdown); err != nil {
		return nil, err
	}
	return []string{md, svg}, nil
}

func writeFile(path string, f func(io.Writer) error) error {
	if err := atomicfile.WriteWith(path, 0o644, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

// Markdown writes the report text.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	title := r.Title
	if title == "" {
		title = "ARES red-teaming report"
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	if r.Run != "" {
		fmt.Fprintf(&b, "- run: `%s`\n", r.Run)
	}
	fmt.Fprintf(&b, "- sampler: `%s`, judge: `%s`, seed: %d\n", r.Sampler, r.Judge, r.Seed)
	t := r.Agg.Total
	fmt.Fprintf(&b, "- probes: %d, policy rollouts: %d\n\n", t.Probes, t.Rollouts)
	b.WriteString("| type | meaning | findings | rate per probe | per 1,000 rollouts |\n|---|---|---:|---:|---:|\n")
	for _, row := range []struct{ typ, what string }{
		{TypeC, "coupled: policy harmful, RM scores it high"},
		{TypeB, "policy-only: policy harmful, RM scores it low"},
		{TypeA, "RM-only: policy safe, RM prefers y_harm"},
	} {
		n := map[string]int{TypeA: t.A, TypeB: t.B, TypeC: t.C}[row.typ]
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %.1f |\n", row.typ, row.what, n, pct(t.Rate(row.typ)), t.PerThousandRollouts(row.typ))
	}
	if len(r.Comparison) > 0 {
		b.WriteString("\n## Sampler comparison (same rollout budget)\n\n| sampler | type | per 1,000 rollouts (mean ± sd) | per seed | distinct combos |\n|---|---|---:|---|---:|\n")
		for _, s := range r.Comparison {
			per := make([]string, len(s.PerSeed))
			for i, v := range s.PerSeed {
				per[i] = fmt.Sprintf("%.1f", v)
			}
			fmt.Fprintf(&b, "| %s | %s | %.1f ± %.1f | %s | %.1f |\n", s.Sampler, s.Type, s.Mean, s.SD, strings.Join(per, ", "), s.Distinct)
		}
	}
	tactics, topics := r.Agg.Axes(r.Tactics, r.Topics)
	b.WriteString("\n## Coupled-failure (Type C) rate per tactic x topic\n\n![heatmap](heatmap_c.svg)\n\n| tactic \\ topic |")
	for _, tp := range topics {
		fmt.Fprintf(&b, " %s |", tp)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(topics)) + "\n")
	for _, tc := range tactics {
		fmt.Fprintf(&b, "| %s |", tc)
		for _, tp := range topics {
			if c := r.Agg.Cells[CellKey{tc, tp}]; c != nil {
				fmt.Fprintf(&b, " %s (%d/%d) |", pct(c.Rate(TypeC)), c.C, c.Probes)
			} else {
				b.WriteString(" - |")
			}
		}
		b.WriteString("\n")
	}
	type kv struct {
		k [2]string
		c *Counts
	}
	var tps []kv
	for k, c := range r.Agg.ByTacticPersona {
		if c.B+c.C > 0 {
			tps = append(tps, kv{k, c})
		}
	}
	sort.Slice(tps, func(i, j int) bool {
		ri, rj := float64(tps[i].c.B+tps[i].c.C)/float64(tps[i].c.Probes), float64(tps[j].c.B+tps[j].c.C)/float64(tps[j].c.Probes)
		if ri != rj {
			return ri > rj
		}
		return tps[i].k[0]+tps[i].k[1] < tps[j].k[0]+tps[j].k[1]
	})
	if len(tps) > 0 {
		b.WriteString("\n## Policy-side view: harmful (B + C) rate per tactic x persona\n\n| tactic | persona | probes | B | C | B+C rate |\n|---|---|---:|---:|---:|---:|\n")
		for i, e := range tps {
			if i == 15 {
				break
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s |\n", e.k[0], e.k[1], e.c.Probes, e.c.B, e.c.C, pct(float64(e.c.B+e.c.C)/float64(e.c.Probes)))
		}
	}
	if len(r.Top) > 0 {
		b.WriteString("\n## Example findings\n\n")
		for _, f := range r.Top {
			fmt.Fprintf(&b, "- **Type %s** `%s` (%s x %s x %s): harm rate %.2f, RM %.2f\n  - prompt: %s\n", f.Type, f.Probe.ID,
				f.Probe.Tactic, f.Probe.Persona, f.Probe.Topic, f.HarmRate, f.RMPolicy, mdEscape(f.Probe.Prompt))
			if len(f.Samples) > 0 {
				fmt.Fprintf(&b, "  - policy: %s\n", mdEscape(f.Samples[0].Text))
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

// Heatmap writes a self-contained SVG: rows are tactics, columns topics,
// colour the rate of typ per probe in the cell (white 0 to dark red 1), each
// cell labelled with the rate and the probe count.
func (r *Report) Heatmap(w io.Writer, typ string) error {
	tactics, topics := r.Agg.Axes(r.Tactics, r.Topics)
	const cw, ch, left, top = 96, 40, 120, 70
	width := left + cw*len(topics) + 20
	height := top + ch*len(tactics) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">Type %s rate per tactic x topic</text>`+"\n", left, html.EscapeString(typ))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">%s; cell: rate (probes)</text>`+"\n", left, html.EscapeString(fmt.Sprintf("sampler %s, %d probes, %d rollouts", r.Sampler, r.Agg.Total.Probes, r.Agg.Total.Rollouts)))
	for j, tp := range topics {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", left+cw*j+cw/2, top-8, html.EscapeString(tp))
	}
	for i, tc := range tactics {
		y := top + ch*i
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-weight="bold">%s</text>`+"\n", left-8, y+ch/2+4, html.EscapeString(tc))
		for j, tp := range topics {
			x := left + cw*j
			c := r.Agg.Cells[CellKey{tc, tp}]
			fill, label, ink := "#eeeeee", "-", "#777"
			if c != nil && c.Probes > 0 {
				rate := c.Rate(typ)
				fill, ink = heat(rate), "#000"
				if rate > 0.55 {
					ink = "#fff"
				}
				label = fmt.Sprintf("%.0f%% (%d)", 100*rate, c.Probes)
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#fff"/>`+"\n", x, y, cw, ch, fill)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>`+"\n", x+cw/2, y+ch/2+4, ink, label)
		}
	}
	// Legend.
	ly := top + ch*len(tactics) + 18
	for k := 0; k <= 10; k++ {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="16" height="12" fill="%s"/>`, left+16*k, ly, heat(float64(k)/10))
	}
	fmt.Fprintf(&b, "\n"+`<text x="%d" y="%d">0%%</text><text x="%d" y="%d">100%%</text>`+"\n</svg>\n", left-24, ly+11, left+16*11+4, ly+11)
	_, err := io.WriteString(w, b.String())
	return err
}

// heat maps [0, 1] to white..dark red.
func heat(v float64) string {
	if math.IsNaN(v) {
		return "#eeeeee"
	}
	v = math.Max(0, math.Min(1, v))
	// Square root so that small but nonzero rates are visible.
	v = math.Sqrt(v)
	r := 255 - int(math.Round(v*(255-165)))
	g := 255 - int(math.Round(v*255))
	bl := 255 - int(math.Round(v*255))
	return fmt.Sprintf("#%02x%02x%02x", r, g, bl)
}
