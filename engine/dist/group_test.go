package dist

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ares-rlhf/ares/engine/torch"
)

// inProcess runs f as ranks 0 and 1 of a Gloo group inside this process.
func inProcess(t *testing.T, f func(g *Group) error) [2]error {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var errs [2]error
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			env := Env{Rank: r, WorldSize: 2, LocalRank: r, LocalWorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port}
			g, err := Init(env, &Options{Timeout: 30 * time.Second, GlooThreads: 1})
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			errs[r] = f(g)
		}(r)
	}
	wg.Wait()
	return errs
}

func TestGroupHelpers(t *testing.T) {
	errs := inProcess(t, func(g *Group) error {
		r := float64(g.Rank())
		m, err := g.MeanScalars(r, 10*r)
		if err != nil {
			return err
		}
		if m[0] != 0.5 || m[1] != 5 {
			return errors.New("MeanScalars")
		}
		var local error
		if g.Rank() == 1 {
			local = errors.New("boom")
		}
		ae := g.AnyError(local)
		if g.Rank() == 0 && !errors.Is(ae, ErrPeerFailed) || g.Rank() == 1 && ae != local {
			return errors.New("AnyError: " + ae.Error())
		}
		calls := 0
		if err := g.SaveOnMain(func() error { calls++; return nil }); err != nil {
			return err
		}
		if (g.IsMain() && calls != 1) || (!g.IsMain() && calls != 0) {
			return errors.New("SaveOnMain ran on the wrong rank")
		}
		err = g.SaveOnMain(func() error { return errors.New("disk full") })
		if err == nil {
			return errors.New("failed save not reported")
		}
		// A parameter without a gradient on rank 1 only: every rank fails.
		p := torch.Ones([]int64{3}, torch.Float32, torch.CPU).SetRequiresGrad(true)
		defer p.Close()
		q := torch.Ones([]int64{2}, torch.Float32, torch.CPU).SetRequiresGrad(true)
		defer q.Close()
		red, err := NewGradReducer(g, []*torch.Tensor{p, q}, 0)
		if err != nil {
			return err
		}
		if err := torch.Try(func() {
			s := torch.NewScope()
			defer s.Close()
			l := p.Sum().MulScalar(r + 1)
			if g.Rank() == 0 {
				l = l.Add(q.Sum())
			}
			l.Backward()
		}); err != nil {
			return err
		}
		err = red.AllReduce()
		if err == nil || !strings.Contains(err.Error(), "no gradient") {
			return errors.New("missing gradient not reported: " + errString(err))
		}
		// Models that differ are refused before any weight is sent.
		shape := []int64{4}
		if g.Rank() == 1 {
			shape = []int64{5}
		}
		w := torch.Zeros(shape, torch.Float32, torch.CPU)
		defer w.Close()
		if err := g.BroadcastParams([]*torch.Tensor{w}); err == nil || !strings.Contains(err.Error(), "model differs") {
			return errors.New("shape mismatch not reported: " + errString(err))
		}
		return g.Barrier()
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
