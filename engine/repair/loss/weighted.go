package loss

import "github.com/ares-rlhf/ares/engine/torch"

// Term is one named, weighted term of a composite loss.
type Term struct {
	Name   string
	Weight float64
	// Loss is a scalar tensor. It may be nil when Weight is 0 (the term is
	// then left out, and absent from the values).
	Loss *torch.Tensor
}

// Weighted composes L = Σ_k w_k·L_k, for joint mode
// L = L_policy + a·L_unlikelihood + b·L_BT + c·L_replay. Terms
// with weight 0 are skipped (their losses are not evaluated into the graph).
// It also returns each included term's unweighted value and "total", read
// back in one device sync, for metrics. The terms must be scalars on one
// device; names must be distinct and not "total". The total joins the scope
// of the first scoped term.
func Weighted(terms ...Term) (total *torch.Tensor, values map[string]float64) {
	var ins []*torch.Tensor
	var kept []Term
	seen := map[string]bool{"total": true}
	for _, t := range terms {
		if seen[t.Name] {
			panic(&torch.Error{Op: "loss.Weighted", Code: torch.CodeInvalid, Msg: "duplicate or reserved term name " + t.Name})
		}
		seen[t.Name] = true
		if t.Weight == 0 {
			continue
		}
		if t.Loss == nil {
			panic(&torch.Error{Op: "loss.Weighted", Code: torch.CodeInvalid, Msg: "term " + t.Name + " has weight but no loss"})
		}
		ins = append(ins, t.Loss)
		kept = append(kept, t)
	}
	if len(kept) == 0 {
		panic(&torch.Error{Op: "loss.Weighted", Code: torch.CodeInvalid, Msg: "no term with a non-zero weight"})
	}
	f := newFrame("loss.Weighted", ins...)
	defer f.close()
	parts := make([]*torch.Tensor, 0, len(kept)+1)
	for _, t := range kept {
		if t.Loss.Numel() != 1 {
			f.fail("term %s is not a scalar (shape %v)", t.Name, t.Loss.Shape())
		}
		l := f.in(t.Loss).Reshape()
		parts = append(parts, l)
		w := l
		if t.Weight != 1 {
			w = l.MulScalar(t.Weight)
		}
		if total == nil {
			total = w
		} else {
			total = total.Add(w)
		}
	}
	v := readFloats(append(parts, total)...)
	values = make(map[string]float64, len(v))
	for i, t := range kept {
		values[t.Name] = v[i]
	}
	values["total"] = v[len(kept)]
	return f.done(total), values
}
