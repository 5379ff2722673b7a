package measure

import "testing"

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %g, want %g", c.xs, got, c.want)
		}
	}
	xs := []float64{2, 1}
	Median(xs)
	if xs[0] != 2 {
		t.Error("Median sorted its argument")
	}
}

func TestCPU(t *testing.T) {
	if CPUModel() == "" {
		t.Error("no CPU model")
	}
	c0, x := CPUSeconds(), 0
	for i := 0; i < 1e8 && CPUSeconds() == c0; i++ {
		x += i
	}
	if CPUSeconds() <= c0 {
		t.Errorf("CPU time did not grow (%d)", x)
	}
}
