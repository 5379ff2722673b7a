package dist

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ares-rlhf/ares/engine/torch"
)

// DefaultTimeout bounds the rendezvous and every collective when Options
// leave it unset. A peer that dies is noticed sooner: its connections close
// and the next collective of every other rank fails at once. The timeout
// covers a peer that hangs.
const DefaultTimeout = 5 * time.Minute

// Options configure Init. The zero value is usable.
type Options struct {
	// Device is where the model's tensors live: CUDA selects NCCL, the CPU Gloo.
	Device torch.Device
	// Timeout bounds the rendezvous and every collective (DefaultTimeout when 0).
	// ARES_DIST_TIMEOUT (a Go duration, e.g. "90s") overrides it.
	Timeout time.Duration
	// GlooThreads is Gloo's worker-thread count (0: libtorch's default).
	GlooThreads int
	// Iface is the network interface Gloo binds to; GLOO_SOCKET_IFNAME
	// overrides it. Empty: loopback for a single-node job, else the address
	// of this machine's hostname.
	Iface string
}

// Group is this process's membership in a data-parallel job.
type Group struct {
	Env     Env
	Timeout time.Duration
	store   *torch.Store
	pg      *torch.ProcessGroup
}

// Init joins the job env describes: rank 0 hosts the TCPStore at
// MASTER_ADDR:MASTER_PORT, every rank connects to it and joins a process
// group (NCCL for CUDA tensors, Gloo for CPU ones). It returns when all
// ranks have joined, or an error after the timeout. A world of one creates
// nothing: every collective is then a no-op.
func Init(env Env, opts *Options) (*Group, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if s := os.Getenv("ARES_DIST_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, &EnvError{Var: "ARES_DIST_TIMEOUT", Value: s, Msg: "is not a positive Go duration (e.g. 90s)"}
		}
		o.Timeout = d
	}
	if env.WorldSize < 1 {
		env = Single()
	}
	g := &Group{Env: env, Timeout: o.Timeout}
	if env.WorldSize == 1 {
		return g, nil
	}
	backend := torch.Gloo
	if o.Device.Kind == torch.KindCUDA {
		backend = torch.NCCL
	}
	if !torch.HasBackend(backend) {
		return nil, fmt.Errorf("dist: the native shim was built without the %v backend", backend)
	}
	store, err := torch.NewTCPStore(torch.StoreOptions{
		Host: env.MasterAddr, Port: env.MasterPort, Master: env.Rank == 0,
		WorldSize: env.WorldSize, Timeout: o.Timeout,
	})
	if err != nil {
		if env.Rank == 0 {
			return nil, fmt.Errorf("dist: rank 0 could not host the store on port %d: %w", env.MasterPort, err)
		}
		return nil, fmt.Errorf("dist: rank %d could not reach the store of rank 0 at %s:%d: %w", env.Rank, env.MasterAddr, env.MasterPort, err)
	}
	iface := o.Iface
	if v := os.Getenv("GLOO_SOCKET_IFNAME"); v != "" {
		iface = v
	}
	host := ""
	if iface == "" && isLoopback(env.MasterAddr) {
		host = "127.0.0.1"
	}
	pg, err := torch.NewProcessGroup(store, torch.ProcessGroupOptions{
		Backend: backend, Rank: env.Rank, WorldSize: env.WorldSize, Prefix: "ares/default/",
		Timeout: o.Timeout, Iface: iface, Host: host, Threads: o.GlooThreads,
	})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("dist: rank %d of %d could not join the process group: %w", env.Rank, env.WorldSize, err)
	}
	g.store, g.pg = store, pg
	return g, nil
}

// InitFromEnv is Init(FromEnv(), opts).
func InitFromEnv(opts *Options) (*Group, error) {
	env, err := FromEnv()
	if err != nil {
		return nil, err
	}
	return Init(env, opts)
}

// Rank is this process's global rank.
func (g *Group) Rank() int { return g.Env.Rank }

// Size is the number of processes.
func (g *Group) Size() int { return g.Env.WorldSize }

// IsMain reports whether this is rank 0 (the one that writes checkpoints and logs).
func (g *Group) IsMain() bool { return g.Env.Rank == 0 }

// ProcessGroup is the underlying c10d group (nil in a world of one).
func (g *Group) ProcessGroup() *torch.ProcessGroup { return g.pg }

// Close leaves the group. Rank 0 keeps serving the store until it closes,
// so close after the last collective.
func (g *Group) Close() {
	if g == nil {
		return
	}
	g.pg.Close()
	g.store.Close()
	g.pg, g.store = nil, nil
}

func (g *Group) wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("dist: rank %d: %s: %w (a peer may have exited or hung; see its log)", g.Rank(), what, err)
}

// Barrier returns when every rank has reached it.
func (g *Group) Barrier() error {
	if g.pg == nil {
		return nil
	}
	return g.wrapErr("barrier", g.pg.Barrier())
}

// BroadcastParams checks that every rank has the same parameter shapes and
// dtypes, then overwrites the parameters of every rank with rank 0's, in
// buckets of DefaultBucketBytes.
func (g *Group) BroadcastParams(params []*torch.Tensor) error {
	if g.pg == nil || len(params) == 0 {
		return nil
	}
	if err := g.verifyShapes(params); err != nil {
		return err
	}
	for _, b := range makeBuckets(params, DefaultBucketBytes) {
		ts := make([]*torch.Tensor, len(b.idx))
		for i, k := range b.idx {
			ts[i] = params[k]
		}
		if err := g.pg.Broadcast(ts, 0); err != nil {
			return g.wrapErr("broadcasting the initial weights", err)
		}
	}
	return nil
}

// verifyShapes compares a fingerprint of the parameters' shapes and dtypes
// across ranks (an all-gather of two numbers), so that models that differ
// fail with a clear error instead of a size mismatch inside a collective.
func (g *Group) verifyShapes(params []*torch.Tensor) error {
	h := uint64(1469598103934665603)
	mix := func(v int64) { h = (h ^ uint64(v)) * 1099511628211 }
	var numel int64
	err := torch.Try(func() {
		for _, p := range params {
			mix(int64(p.DType()))
			mix(int64(p.Dim()))
			for _, s := range p.Shape() {
				mix(s)
			}
			numel += p.Numel()
		}
	})
	if err != nil {
		return err
	}
	fp := torch.FromSlice([]int64{int64(h >> 1), numel, int64(len(params))})
	defer fp.Close()
	all, err := g.pg.AllGather(fp)
	if err != nil {
		return g.wrapErr("comparing parameter shapes", err)
	}
	defer all.Close()
	v, err := torch.Try1(all.Int64s)
	if err != nil {
		return err
	}
	for r := 1; r < g.Size(); r++ {
		if v[3*r] != v[0] || v[3*r+1] != v[1] || v[3*r+2] != v[2] {
			return fmt.Errorf("dist: the model differs between ranks: rank 0 has %d parameters (%d elements), rank %d has %d (%d elements) or other shapes/dtypes",
				v[2], v[1], r, v[3*r+2], v[3*r+1])
		}
	}
	return nil
}

func (g *Group) reduceScalars(op torch.DistOp, what string, xs []float64) ([]float64, error) {
	out := append([]float64(nil), xs...)
	if g.pg == nil || len(xs) == 0 {
		return out, nil
	}
	t := torch.FromSlice(out)
	defer t.Close()
	if err := g.pg.AllReduce([]*torch.Tensor{t}, op); err != nil {
		return nil, g.wrapErr(what, err)
	}
	return torch.Try1(func() []float64 { return torch.Data[float64](t) })
}

// MeanScalars returns the mean of each value across ranks (in float64).
func (g *Group) MeanScalars(xs ...float64) ([]float64, error) {
	return g.reduceScalars(torch.DistAvg, "averaging metrics", xs)
}

// MaxScalars returns the maximum of each value across ranks.
func (g *Group) MaxScalars(xs ...float64) ([]float64, error) {
	return g.reduceScalars(torch.DistMax, "reducing metrics", xs)
}

// ErrPeerFailed is returned (wrapped) by AnyError on the ranks whose own step
// succeeded while another's failed.
var ErrPeerFailed = errors.New("dist: another rank failed")

// AnyError makes a local outcome collective: every rank calls it with its own
// error (or nil); all get an error when any rank had one, so that they leave
// a loop together instead of waiting for a peer that stopped. The ranks that
// failed get their own error back.
func (g *Group) AnyError(local error) error {
	flag := 0.0
	if local != nil {
		flag = 1
	}
	r, err := g.MaxScalars(flag)
	if err != nil {
		if local != nil {
			return local
		}
		return err
	}
	if local != nil {
		return local
	}
	if r[0] > 0 {
		return ErrPeerFailed
	}
	return nil
}

// SaveOnMain runs save on rank 0 only (checkpoints are written once: the
// model and optimizer state are replicated, so rank 0's copy is the whole
// world-size-independent state) and returns on every rank when it is done,
// with an error on every rank if it failed.
func (g *Group) SaveOnMain(save func() error) error {
	var local error
	if g.IsMain() {
		local = save()
	}
	if g.pg == nil {
		return local
	}
	flag := []int64{0}
	if local != nil {
		flag[0] = 1
	}
	t := torch.FromSlice(flag)
	defer t.Close()
	if err := g.pg.Broadcast([]*torch.Tensor{t}, 0); err != nil {
		if local != nil {
			return local
		}
		return g.wrapErr("waiting for rank 0's checkpoint", err)
	}
	if local != nil {
		return local
	}
	if v, err := torch.Try1(t.Int64s); err != nil || v[0] != 0 {
		return errors.New("dist: rank 0 failed to write the checkpoint")
	}
	return nil
}

// Logf prints to stderr on rank 0 only.
func (g *Group) Logf(format string, a ...any) {
	if g.IsMain() {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
