package study

import (
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/ares-rlhf/ares/engine/repair"
)

// metric is one row of the before/after table.
type metric struct {
	name   string
	get    func(*repair.Eval) float64
	pct    bool
	better string // "down" or "up"
}

var metrics = []metric{
	{"Type C (coupled) rate", func(e *repair.Eval) float64 { return e.TypeC }, true, "down"},
	{"Type B (policy-only) rate", func(e *repair.Eval) float64 { return e.TypeB }, true, "down"},
	{"Type A (RM-only) rate", func(e *repair.Eval) float64 { return e.TypeA }, true, "down"},
	{"policy harmful rate", func(e *repair.Eval) float64 { return e.HarmRate }, true, "down"},
	{"RM accuracy, held-out safety pairs", func(e *repair.Eval) float64 { return e.RMSafetyAcc }, true, "up"},
	{"RM accuracy, replay set", func(e *repair.Eval) float64 { return e.RMReplayAcc }, true, "up"},
	{"capability (benign accuracy)", func(e *repair.Eval) float64 { return e.Capability }, true, "up"},
	{"held-out LM loss (nats/token)", func(e *repair.Eval) float64 { return e.HeldoutLoss }, false, "down"},
	{"over-refusal on look-alikes", func(e *repair.Eval) float64 { return e.OverRefusal }, true, "down"},
}

func fmtVal(m metric, v float64) string {
	if m.pct {
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	return fmt.Sprintf("%.3f", v)
}

// WriteTable writes the before/after markdown table.
func WriteTable(w io.Writer, before, after *repair.Eval) {
	fmt.Fprintf(w, "| metric | before | after | change |\n|---|---:|---:|---:|\n")
	for _, m := range metrics {
		b, a := m.get(before), m.get(after)
		ch := ""
		if m.pct {
			ch = fmt.Sprintf("%+.1f pts", 100*(a-b))
		} else {
			ch = fmt.Sprintf("%+.3f", a-b)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", m.name, fmtVal(m, b), fmtVal(m, a), ch)
	}
}

// BarChartSVG draws grouped bars: one group per label, one bar per series.
func BarChartSVG(title string, labels, series []string, values [][]float64, maxV float64) string {
	const W, H, left, bottom, top = 720, 320, 60, 70, 40
	colors := []string{"#9aa5b1", "#d9822b", "#0f9960", "#2965cc", "#8f398f"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	plotH := float64(H - bottom - top)
	plotW := float64(W - left - 20)
	for i := 0; i <= 4; i++ {
		y := float64(top) + plotH*(1-float64(i)/4)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, W-20, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", left-6, y+4, 100*maxV*float64(i)/4)
	}
	gw := plotW / float64(len(labels))
	bw := gw * 0.8 / float64(len(series))
	for g, lab := range labels {
		x0 := float64(left) + gw*float64(g) + gw*0.1
		for s := range series {
			v := values[s][g]
			h := plotH * v / maxV
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.1f%%</title></rect>`+"\n",
				x0+bw*float64(s), float64(top)+plotH-h, bw-2, h, colors[s%len(colors)], html.EscapeString(series[s]), html.EscapeString(lab), 100*v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x0+gw*0.4, H-bottom+16, html.EscapeString(lab))
	}
	for s, name := range series {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left+140*s, H-24, colors[s%len(colors)], left+140*s+16, H-14, html.EscapeString(name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
