package model

import "github.com/ares-rlhf/ares/engine/torch"

// KVCache holds the keys and values of every layer for a batch, in
// preallocated buffers [B, nKV, capacity, D] written in place as tokens are
// appended. It is long-lived: Close frees it.
type KVCache struct {
	layers   []layerCache
	len      int64
	capacity int64
	pending  int64 // positions the forward in progress appends (begin)
}

type layerCache struct {
	k, v *torch.Tensor
}

// NewKVCache allocates a cache for batch sequences of up to capacity tokens.
// When an allocation fails (out of memory), the buffers of the layers already
// allocated are freed before the failure propagates.
func (m *Transformer) NewKVCache(batch, capacity int64) *KVCache {
	ok := false
	c := &KVCache{layers: make([]layerCache, m.Cfg.Layers)}
	defer func() {
		if !ok {
			c.Close() // nil tensors close as no-ops
		}
	}()
	nKV, D := int64(m.Cfg.KVHeads), int64(m.Cfg.HeadDim)
	if m.Cfg.Family == GPT2 {
		nKV = int64(m.Cfg.Heads)
	}
	for i := range c.layers {
		c.layers[i].k = torch.Zeros([]int64{batch, nKV, capacity, D}, m.DType, m.Device) // [B, nKV, capacity, D]
		c.layers[i].v = torch.Zeros([]int64{batch, nKV, capacity, D}, m.DType, m.Device)
	}
	c.capacity = capacity
	ok = true
	return c
}

// Len is the number of cached positions.
func (c *KVCache) Len() int64 { return c.len }

// layerKV is one layer's part of a cache during a forward: its key and value
// buffers and the column the forward's positions are written at (zero
// without a cache).
type layerKV struct {
	k, v  *torch.Tensor // [B, nKV, capacity, D]
	start int64
}

// layer is layer i's part of c (none for a nil cache).
func (c *KVCache) layer(i int) layerKV {
	if c == nil {
		return layerKV{}
	}
	return layerKV{c.layers[i].k, c.layers[i].v, c.len}
}

// begin makes room for the positions of ids [B, L] that a forward appends
// at Len (each layer's attention writes its keys and values there,
// torch.GQAttention); advance moves Len past them once every layer has.
// Both do nothing for a nil cache.
func (c *KVCache) begin(ids *torch.Tensor) {
	if c == nil {
		return
	}
	n := ids.Size(1)
	if c.len+n > c.capacity {
		panic(&torch.Error{Op: "KVCache", Code: torch.CodeInvalid,
			Msg: "cache full: " + itoa(c.len) + " + " + itoa(n) + " tokens exceed capacity " + itoa(c.capacity)})
	}
	c.pending = n
}

func (c *KVCache) advance() {
	if c != nil {
		c.len, c.pending = c.len+c.pending, 0
	}
}

// Close frees the buffers.
func (c *KVCache) Close() {
	for _, l := range c.layers {
		l.k.Close()
		l.v.Close()
	}
}
