package train

import (
	"fmt"

	"github.com/ares-rlhf/ares/engine/torch"
)

// MakeGroup is NewGroup for set-up code that must not panic: a failure to
// allocate the optimizer state is returned as an error wrapping the
// *torch.Error, with nothing left allocated.
func MakeGroup(name string, names []string, params []*torch.Tensor, sched Schedule, weightDecay, clip float64) (*Group, error) {
	opt, err := torch.TryNewAdamW(params, sched.LR, weightDecay)
	if err != nil {
		return nil, fmt.Errorf("optimizer of %s: %w", name, err)
	}
	return &Group{Name: name, Names: names, Params: params, Opt: opt, Sched: sched, Clip: clip}, nil
}
