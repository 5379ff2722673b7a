package study

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// BarChartSVG draws grouped bars: one group per label, one bar per series.
// A NaN value leaves its bar out.
func BarChartSVG(title string, labels, series []string, values [][]float64, maxV float64) string {
	return drawBars(barChart{Title: title, Labels: labels, Series: series, Values: values, Max: maxV})
}

// barChart is a grouped bar chart of rates (fractions, drawn in percent).
type barChart struct {
	Title          string
	Labels, Series []string
	// Values[s][g] is series s in group g; Lo and Hi (optional) its interval.
	Values, Lo, Hi [][]float64
	Max            float64  // the axis' top
	Colors         []string // per series; default barColors
}

var barColors = []string{"#9aa5b1", "#d9822b", "#0f9960", "#2965cc", "#8f398f"}

func barValue(vs [][]float64, s, g int) float64 {
	if s < len(vs) && g < len(vs[s]) {
		return vs[s][g]
	}
	return math.NaN()
}

func drawBars(c barChart) string {
	const left, bottom, top = 60, 70, 40
	// Legend keys 140 px apart, or more for long names (about 7 px a character).
	legendW := 140
	for _, name := range c.Series {
		legendW = max(legendW, 7*len([]rune(name))+28)
	}
	colors := c.Colors
	if len(colors) == 0 {
		colors = barColors
	}
	maxV := c.Max
	if !(maxV > 0) || math.IsInf(maxV, 0) {
		maxV = 1
	}
	// Wide enough for bars of at least 10 px, and the legend in rows.
	W := 720
	if need := left + 20 + int(math.Ceil(float64(len(c.Labels)*len(c.Series))*10/0.8)); need > W {
		W = need
	}
	perRow := max(1, (W-left)/legendW)
	legendRows := max(1, (len(c.Series)+perRow-1)/perRow)
	H := 320 + 18*(legendRows-1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.Title))
	plotH := float64(H - bottom - top - 18*(legendRows-1))
	plotW := float64(W - left - 20)
	base := float64(top) + plotH
	y := func(v float64) float64 { return base - plotH*math.Max(0, math.Min(v, maxV))/maxV }
	for i := 0; i <= 4; i++ {
		yy := float64(top) + plotH*(1-float64(i)/4)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, yy, W-20, yy)
		tick := 100 * maxV * float64(i) / 4
		lab := fmt.Sprintf("%.0f%%", tick)
		if math.Abs(tick-math.Round(tick)) > 0.05 {
			lab = fmt.Sprintf("%.1f%%", tick)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yy+4, lab)
	}
	if len(c.Labels) > 0 && len(c.Series) > 0 {
		gw := plotW / float64(len(c.Labels))
		bw := gw * 0.8 / float64(len(c.Series))
		for g, lab := range c.Labels {
			x0 := float64(left) + gw*float64(g) + gw*0.1
			for s := range c.Series {
				v := barValue(c.Values, s, g)
				if math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				lo, hi := barValue(c.Lo, s, g), barValue(c.Hi, s, g)
				tip := fmt.Sprintf("%s %s: %.1f%%", c.Series[s], lab, 100*v)
				if !math.IsNaN(lo) && !math.IsNaN(hi) {
					tip += fmt.Sprintf(" [95%% CI %.1f, %.1f]", 100*lo, 100*hi)
				}
				x := x0 + bw*float64(s)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					x, y(v), math.Max(bw-2, 1), base-y(v), colors[s%len(colors)], html.EscapeString(tip))
				if math.IsNaN(lo) || math.IsNaN(hi) {
					continue
				}
				// The whisker: a vertical line and two caps, clipped to the axis.
				cx, cap := x+(bw-2)/2, math.Min(4, (bw-2)/3)
				y1, y2 := y(hi), y(lo)
				fmt.Fprintf(&b, `<g class="whisker" stroke="#333" stroke-width="1"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, cx, y1, cx, y2)
				if hi <= maxV {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, cx-cap, y1, cx+cap, y1)
				}
				if lo >= 0 {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, cx-cap, y2, cx+cap, y2)
				}
				b.WriteString("</g>\n")
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x0+gw*0.4, base+16, html.EscapeString(lab))
		}
	}
	for s, name := range c.Series {
		lx := left + legendW*(s%perRow)
		ly := H - 24 - 18*(legendRows-1-s/perRow)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			lx, ly, colors[s%len(colors)], lx+16, ly+10, html.EscapeString(name))
	}
	if c.Lo != nil {
		fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="end" fill="#555">whiskers: 95%% CI</text>`+"\n", W-20)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
