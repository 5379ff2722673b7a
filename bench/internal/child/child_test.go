package child

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "-child" {
		err := Serve(os.Args[2], func(c struct{ X int }) (int, error) { return 2 * c.X, nil })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv("CHILD_TEST_REPORT"); v != "" {
		fmt.Println("noise before the result")
		if v == "yes" {
			Report(map[string]int{"x": 7})
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRunGetsTheReport(t *testing.T) {
	t.Setenv("CHILD_TEST_REPORT", "yes")
	var got map[string]int
	st, err := Run(&got)
	if err != nil || got["x"] != 7 {
		t.Fatalf("got %v, %v", got, err)
	}
	if st.MaxRSS <= 0 || st.Wall <= 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Setenv("CHILD_TEST_REPORT", "no")
	if _, err := Run(&got); err == nil {
		t.Fatal("a child without a result line: no error")
	}
}

func TestRunConfigServe(t *testing.T) {
	var got int
	if _, err := RunConfig(&got, struct{ X int }{21}); err != nil || got != 42 {
		t.Fatalf("got %d, %v", got, err)
	}
}

func TestStatus(t *testing.T) {
	if rss, hwm := Status("VmRSS"), Status("VmHWM"); rss <= 0 || hwm < rss {
		t.Fatalf("VmRSS %d, VmHWM %d", rss, hwm)
	}
	if Status("NoSuchField") != -1 {
		t.Fatal("an unknown field is not -1")
	}
}
