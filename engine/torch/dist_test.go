package torch

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// pair starts a two-rank Gloo group inside this process (one goroutine per
// rank, each with its own store client and group) on loopback.
func pair(t *testing.T, timeout time.Duration) [2]*ProcessGroup {
	t.Helper()
	master := masterStore(t, 2, 20*time.Second)
	port := master.Port()
	if port <= 0 {
		t.Fatalf("store port %d", port)
	}
	var pgs [2]*ProcessGroup
	eachRank(t, func(r int) error {
		st := master
		if r == 1 {
			c, err := NewTCPStore(StoreOptions{Host: "127.0.0.1", Port: port, WorldSize: 2, Timeout: 20 * time.Second})
			if err != nil {
				return err
			}
			t.Cleanup(c.Close)
			st = c
		}
		var err error
		pgs[r], err = NewProcessGroup(st, ProcessGroupOptions{Backend: Gloo, Rank: r, WorldSize: 2,
			Prefix: t.Name(), Timeout: timeout, Host: "127.0.0.1", Threads: 1})
		return err
	})
	t.Cleanup(func() { pgs[0].Close(); pgs[1].Close() })
	return pgs
}

// masterStore starts a TCPStore master for world processes on a free
// loopback port, closed when the test ends; it skips the test without Gloo.
func masterStore(t *testing.T, world int, timeout time.Duration) *Store {
	t.Helper()
	if !HasBackend(Gloo) {
		t.Skip("shim built without Gloo")
	}
	s, err := NewTCPStore(StoreOptions{Host: "127.0.0.1", Master: true, WorldSize: world, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// eachRank runs f for ranks 0 and 1 concurrently and fails the test on an error.
func eachRank(t *testing.T, f func(r int) error) {
	t.Helper()
	var errs [2]error
	var wg sync.WaitGroup
	for r := range errs {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			errs[r] = f(r)
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// both runs f for each rank's group concurrently and fails the test on an
// error or a torch panic.
func both(t *testing.T, pgs [2]*ProcessGroup, f func(pg *ProcessGroup) error) {
	t.Helper()
	eachRank(t, func(r int) error {
		return Try(func() {
			if err := f(pgs[r]); err != nil {
				panic(&Error{Op: "test", Code: CodeDist, Msg: err.Error()})
			}
		})
	})
}

func TestStoreSetGetAdd(t *testing.T) {
	s := masterStore(t, 1, 5*time.Second)
	big := strings.Repeat("x", 1000)
	if err := s.Set("k", []byte(big)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("k"); err != nil || string(v) != big {
		t.Fatalf("Get: %d bytes, %v", len(v), err)
	}
	for i := 1; i <= 3; i++ {
		if v, err := s.Add("n", 2); err != nil || v != int64(2*i) {
			t.Fatalf("Add: %d, %v", v, err)
		}
	}
	if _, err := NewTCPStore(StoreOptions{Host: "127.0.0.1", Port: 0, WorldSize: 1, Timeout: time.Second}); err == nil {
		t.Fatal("a client without a port was accepted")
	}
}

func TestStoreClientTimesOut(t *testing.T) {
	// Nothing listens on the port we just freed: the client gives up at its timeout.
	s, err := NewTCPStore(StoreOptions{Host: "127.0.0.1", Master: true, WorldSize: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	port := s.Port()
	s.Close()
	_, err = NewTCPStore(StoreOptions{Host: "127.0.0.1", Port: port, WorldSize: 2, Timeout: time.Second})
	if err == nil || !IsDistError(err) {
		t.Fatalf("client of a dead store: %v", err)
	}
	t.Log(err)
}

func TestCollectives(t *testing.T) {
	pgs := pair(t, 20*time.Second)
	base := LiveTensors()
	both(t, pgs, func(pg *ProcessGroup) error {
		r := float32(pg.Rank())
		s := NewScope()
		defer s.Close()
		// A bucket of three tensors of different shapes, one non-contiguous.
		a := s.Own(FromSlice([]float32{1 + r, 2 + r, 3 + r, 4 + r}, 2, 2))
		b := s.Own(FromSlice([]float32{10 * (r + 1)}))
		c := s.Own(FromSlice([]float32{r, -r, 2 * r, 5, 6, 7}, 2, 3)).Transpose(0, 1)
		if err := pg.AllReduce([]*Tensor{a, b, c}, DistSum); err != nil {
			return err
		}
		want := func(name string, got *Tensor, w []float64) error {
			g := got.Contiguous().Float32s()
			for i := range w {
				if float64(g[i]) != w[i] {
					return fmt.Errorf("%s = %v, want %v", name, g, w)
				}
			}
			return nil
		}
		if err := want("sum a", a, []float64{3, 5, 7, 9}); err != nil {
			return err
		}
		if err := want("sum b", b, []float64{30}); err != nil {
			return err
		}
		// c was [[0,0,0],[5,6,7]] + [[1,-1,2],[5,6,7]] then transposed.
		if err := want("sum c", c, []float64{1, 10, -1, 12, 2, 14}); err != nil {
			return err
		}
		m := s.Own(FromSlice([]float64{float64(r), -float64(r)}))
		if err := pg.AllReduce([]*Tensor{m}, DistMax); err != nil {
			return err
		}
		if err := want("max", m.To(Float32), []float64{1, 0}); err != nil {
			return err
		}
		v := s.Own(FromSlice([]float32{2 * r}))
		w, err := pg.AllReduceAsync([]*Tensor{v}, DistAvg)
		if err != nil {
			return err
		}
		if err := w.Wait(); err != nil {
			return err
		}
		if !w.Done() {
			return fmt.Errorf("work not done after Wait")
		}
		w.Close()
		if err := want("avg", v, []float64{1}); err != nil {
			return err
		}
		// Broadcast from rank 1 into a parameter that requires grad.
		p := s.Own(FromSlice([]float32{r, r, r}).SetRequiresGrad(true))
		q := s.Own(FromSlice([]int64{int64(r) + 7}))
		if err := pg.Broadcast([]*Tensor{p}, 1); err != nil {
			return err
		}
		if err := pg.Broadcast([]*Tensor{q}, 1); err != nil {
			return err
		}
		if err := want("broadcast", p.Detach(), []float64{1, 1, 1}); err != nil {
			return err
		}
		if q.Int64s()[0] != 8 {
			return fmt.Errorf("broadcast i64: %v", q.Int64s())
		}
		g, err := pg.AllGather(s.Own(FromSlice([]float32{r, r + 0.5})))
		if err != nil {
			return err
		}
		if sh := g.Shape(); len(sh) != 2 || sh[0] != 2 || sh[1] != 2 {
			return fmt.Errorf("allgather shape %v", sh)
		}
		if err := want("allgather", g, []float64{0, 0.5, 1, 1.5}); err != nil {
			return err
		}
		// Argument errors are reported before anything is sent.
		err = pg.AllReduce([]*Tensor{a, m}, DistSum)
		if err == nil || !strings.Contains(err.Error(), "share dtype") {
			return fmt.Errorf("mixed dtypes: %v", err)
		}
		if err := pg.AllReduce([]*Tensor{q}, DistAvg); err == nil {
			return fmt.Errorf("AVG of integers accepted")
		}
		return pg.Barrier()
	})
	if got := LiveTensors(); got != base {
		t.Fatalf("live tensors %d, want %d", got, base)
	}
}

func TestPeerGoneFailsFast(t *testing.T) {
	pgs := pair(t, 60*time.Second)
	both(t, pgs, func(pg *ProcessGroup) error { return pg.Barrier() })
	// Rank 1 leaves; rank 0's next collective must fail (connection closed),
	// well before the 60 s timeout would.
	pgs[1].Close()
	allReduceFails(t, pgs[0], []float32{1, 2}, "all-reduce with a departed peer")
}

func TestCollectiveTimesOut(t *testing.T) {
	pgs := pair(t, 800*time.Millisecond)
	// Rank 1 never joins this all-reduce.
	allReduceFails(t, pgs[0], []float32{1}, "all-reduce without a peer")
}

// allReduceFails checks that an all-reduce of data on pg fails as a
// distributed error.
func allReduceFails(t *testing.T, pg *ProcessGroup, data []float32, what string) {
	t.Helper()
	x := FromSlice(data)
	defer x.Close()
	err := pg.AllReduce([]*Tensor{x}, DistSum)
	if err == nil || !IsDistError(err) {
		t.Fatalf("%s: %v", what, err)
	}
	t.Log(err)
}

func TestProcessGroupArguments(t *testing.T) {
	s := masterStore(t, 1, 5*time.Second)
	if _, err := NewProcessGroup(s, ProcessGroupOptions{Backend: Gloo, Rank: 2, WorldSize: 2, Timeout: time.Second}); err == nil {
		t.Fatal("rank 2 of 2 accepted")
	}
	if !HasBackend(NCCL) {
		_, err := NewProcessGroup(s, ProcessGroupOptions{Backend: NCCL, Rank: 0, WorldSize: 1, Timeout: time.Second})
		if err == nil || !strings.Contains(err.Error(), "NCCL") {
			t.Fatalf("NCCL without NCCL: %v", err)
		}
	}
	pg, err := NewProcessGroup(s, ProcessGroupOptions{Backend: Gloo, Rank: 0, WorldSize: 1, Timeout: 5 * time.Second, Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	x := FromSlice([]float32{3})
	defer x.Close()
	if err := pg.AllReduce([]*Tensor{x}, DistAvg); err != nil || x.Float32s()[0] != 3 {
		t.Fatalf("world of one: %v %v", err, x.Float32s())
	}
	pg.Close()
	if err := pg.Barrier(); err == nil {
		t.Fatal("barrier on a closed group")
	}
}
