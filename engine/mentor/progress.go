package mentor

import (
	"fmt"
	"io"

	"github.com/ares-rlhf/ares/engine/detect"
	"github.com/ares-rlhf/ares/internal/progress"
)

// ProgressDisplay returns a Progress callback that shows on w the rollouts
// done out of the budget, their rate and the findings so far (a bar on a
// terminal, plain lines elsewhere: see internal/progress), and the function
// that ends the display. With w nil the callback is nil and end does
// nothing.
func ProgressDisplay(w io.Writer, label string) (report func(rollouts, budget int, agg *detect.Aggregate), end func()) {
	if w == nil {
		return nil, func() {}
	}
	var bar *progress.Bar
	report = func(done, budget int, agg *detect.Aggregate) {
		if bar == nil {
			// The first report comes after the first round: its rollouts
			// count as done before the bar (untimed), or the rate would
			// divide them by the microseconds since the bar was made.
			bar = progress.New(w, progress.Options{Label: label, Total: int64(budget), Start: int64(done), Unit: "rollouts", PerSecond: true})
		}
		t := agg.Total
		bar.Update(int64(done), fmt.Sprintf("A %d B %d C %d", t.A, t.B, t.C))
	}
	return report, func() { bar.Finish() }
}
