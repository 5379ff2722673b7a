package torch

// TryNewAdamW is NewAdamW for set-up code that must not panic: a failed
// allocation of the optimizer state (an out-of-memory on a large model) is
// returned as the *Error, and the state tensors made before it are freed.
func TryNewAdamW(params []*Tensor, lr, weightDecay float64) (o *AdamW, err error) {
	o = newAdamW(params, lr, weightDecay)
	if err = Try(o.allocState); err != nil {
		o.Close() // Close skips the nil tensors not yet made
		return nil, err
	}
	return o, nil
}
