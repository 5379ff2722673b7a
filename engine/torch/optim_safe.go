package torch

// TryNewAdamW is NewAdamW for set-up code that must not panic: a failed
// allocation of the optimizer state (an out-of-memory on a large model) is
// returned as the *Error, and the state tensors made before it are freed.
func TryNewAdamW(params []*Tensor, lr, weightDecay float64) (o *AdamW, err error) {
	o = &AdamW{Params: params, LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
	o.expAvg = make([]*Tensor, len(params))
	o.expAvgSq = make([]*Tensor, len(params))
	o.master = make([]*Tensor, len(params))
	err = Try(func() {
		for i, p := range params {
			dt := p.DType()
			if dt == BFloat16 || dt == Float16 {
				dt = Float32
				NoGrad(func() { o.master[i] = p.To(Float32) })
			}
			o.expAvg[i] = Zeros(p.Shape(), dt, p.Device())
			o.expAvgSq[i] = Zeros(p.Shape(), dt, p.Device())
		}
	})
	if err != nil {
		o.Close() // Close skips the nil tensors not yet made
		return nil, err
	}
	return o, nil
}
