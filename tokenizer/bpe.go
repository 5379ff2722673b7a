package tokenizer

import "math"

const noRank = math.MaxUint32

// model is a byte-level BPE vocabulary with one of two merge rules:
//
//   - rank by bytes (tiktoken): two adjacent parts merge if their
//     concatenation is a token; the token's id is its rank.
//   - rank by pair (Hugging Face): two adjacent parts merge if the pair of
//     their ids is in the merge list; the rank is the merge's position.
//
// Both merge the lowest-ranked adjacent pair first, the leftmost one on ties,
// until no pair can merge.
type model struct {
	tokens  []string         // id -> bytes; "" for ids that are not regular tokens
	encoder map[string]int32 // bytes -> id of every regular token
	byteID  [256]int32       // id of each single byte
	// merges is nil for rank-by-bytes; otherwise (a<<32|b) -> rank<<32|newID.
	merges map[uint64]uint64
	// wholePiece: a piece that is itself a token is emitted as that token
	// without merging (tiktoken always; Hugging Face with ignore_merges).
	wholePiece bool
	// chars: tokens are strings of characters (SentencePiece-style BPE), not
	// bytes; there is no byte table and encoding goes through encodeChars.
	chars bool
	// short indexes the tokens of up to 7 bytes, which are most lookups
	// during merging, in a table several times faster than the map.
	short shortTable
	// pair2 holds the id of every two-byte token (-1 if none), the first
	// lookups of every merge.
	pair2 []int32
}

func (m *model) buildTables() {
	m.short = newShortTable(m.encoder)
	m.pair2 = make([]int32, 1<<16)
	for i := range m.pair2 {
		m.pair2[i] = -1
	}
	for s, id := range m.encoder {
		if len(s) == 2 {
			m.pair2[int(s[0])<<8|int(s[1])] = id
		}
	}
}

// rank2 is the id of the two-byte token ab, or noRank.
func (m *model) rank2(a, b byte) uint32 {
	if id := m.pair2[int(a)<<8|int(b)]; id >= 0 {
		return uint32(id)
	}
	return noRank
}

// lookup returns the id of the token with the given bytes.
func (m *model) lookup(s string) (int32, bool) {
	if len(s) <= shortMax {
		return m.short.get(s)
	}
	id, ok := m.encoder[s]
	return id, ok
}

const shortMax = 7

// shortTable is an open-addressing hash table keyed by up to 7 bytes packed
// into a uint64 together with their length (so a key is never 0, which
// marks an empty slot).
type shortTable struct {
	shift uint
	mask  uint64
	slots []shortSlot
}

// shortSlot keeps key and id side by side: one cache miss per lookup.
type shortSlot struct {
	key uint64
	id  int32
}

func packShort(s string) uint64 {
	k := uint64(len(s)) << 56
	for i := 0; i < len(s); i++ {
		k |= uint64(s[i]) << (8 * i)
	}
	return k
}

func (t *shortTable) slot(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> t.shift }

func newShortTable(enc map[string]int32) shortTable {
	n := 0
	for s := range enc {
		if len(s) <= shortMax {
			n++
		}
	}
	bits := uint(4)
	for 1<<bits < 2*n {
		bits++
	}
	t := shortTable{shift: 64 - bits, mask: 1<<bits - 1, slots: make([]shortSlot, 1<<bits)}
	for s, id := range enc {
		if len(s) > shortMax {
			continue
		}
		k := packShort(s)
		i := t.slot(k)
		for t.slots[i].key != 0 {
			i = (i + 1) & t.mask
		}
		t.slots[i] = shortSlot{k, id}
	}
	return t
}

func (t *shortTable) get(s string) (int32, bool) {
	if t.slots == nil {
		return 0, false
	}
	k := packShort(s)
	for i := t.slot(k); ; i = (i + 1) & t.mask {
		e := &t.slots[i]
		if e.key == k {
			return e.id, true
		}
		if e.key == 0 {
			return 0, false
		}
	}
}

// smallPiece is the length up to which the quadratic merge loop (cheap,
// allocation-free) beats the heap.
const smallPiece = 128

// encodePiece appends the ids of one pre-token to dst.
func (m *model) encodePiece(dst []int, piece string) []int {
	if len(piece) == 1 {
		return append(dst, int(m.byteID[piece[0]]))
	}
	if m.wholePiece {
		if id, ok := m.lookup(piece); ok {
			return append(dst, int(id))
		}
	}
	if len(piece) > smallPiece {
		return m.mergeHeap(dst, piece)
	}
	if m.merges == nil {
		return m.mergeBytes(dst, piece)
	}
	return m.mergePairs(dst, piece)
}

type bpart struct {
	start int32
	id    int32
	rank  uint32 // of merging with the next part
	newID int32  // id that merge produces (rank-by-pair only)
}

// lowestRank returns the lowest merge rank below noRank among parts and the
// index of the first part with it, or (noRank, -1) when none can merge.
func lowestRank(parts []bpart) (uint32, int) {
	best, bi := uint32(noRank), -1
	for i := range parts {
		if parts[i].rank < best {
			best, bi = parts[i].rank, i
		}
	}
	return best, bi
}

// mergeBytes is the rank-by-bytes loop: parts[k] is the part starting at
// parts[k].start, and parts[k].rank the rank of merging it with parts[k+1].
// The last entry is a sentinel at len(piece).
func (m *model) mergeBytes(dst []int, piece string) []int {
	var buf [smallPiece + 1]bpart
	n := len(piece)
	parts := buf[:n+1]
	for i := 0; i < n; i++ {
		parts[i] = bpart{int32(i), m.byteID[piece[i]], noRank, -1}
	}
	parts[n] = bpart{int32(n), -1, noRank, -1}
	rank := func(i int) uint32 { // rank of merging parts[i] and parts[i+1]
		if i+2 >= len(parts) {
			return noRank
		}
		if id, ok := m.lookup(piece[parts[i].start:parts[i+2].start]); ok {
			return uint32(id)
		}
		return noRank
	}
	for i := 0; i+1 < n; i++ {
		parts[i].rank = m.rank2(piece[i], piece[i+1])
	}
	for len(parts) > 2 {
		best, bi := lowestRank(parts[:len(parts)-2])
		if bi < 0 {
			break
		}
		parts[bi].id = int32(best)
		parts = append(parts[:bi+1], parts[bi+2:]...)
		parts[bi].rank = rank(bi)
		if bi > 0 {
			parts[bi-1].rank = rank(bi - 1)
		}
	}
	for i := 0; i < len(parts)-1; i++ {
		dst = append(dst, int(parts[i].id))
	}
	return dst
}

// pairRank looks up the merge of ids a and b.
func (m *model) pairRank(a, b int32) (uint32, int32) {
	if v, ok := m.merges[uint64(uint32(a))<<32|uint64(uint32(b))]; ok {
		return uint32(v >> 32), int32(uint32(v))
	}
	return noRank, -1
}

// mergePairs is the rank-by-pair loop (no sentinel: ids, not offsets, decide).
func (m *model) mergePairs(dst []int, piece string) []int {
	var buf [smallPiece]bpart
	n := len(piece)
	parts := buf[:n]
	for i := 0; i < n; i++ {
		parts[i] = bpart{int32(i), m.byteID[piece[i]], noRank, -1}
	}
	for i := 0; i+1 < n; i++ {
		parts[i].rank, parts[i].newID = m.pairRank(parts[i].id, parts[i+1].id)
	}
	for len(parts) > 1 {
		_, bi := lowestRank(parts[:len(parts)-1])
		if bi < 0 {
			break
		}
		parts[bi].id = parts[bi].newID
		parts = append(parts[:bi+1], parts[bi+2:]...)
		parts[bi].rank = noRank
		if bi+1 < len(parts) {
			parts[bi].rank, parts[bi].newID = m.pairRank(parts[bi].id, parts[bi+1].id)
		}
		if bi > 0 {
			parts[bi-1].rank, parts[bi-1].newID = m.pairRank(parts[bi-1].id, parts[bi].id)
		}
	}
	for i := range parts {
		dst = append(dst, int(parts[i].id))
	}
	return dst
}

// mergeHeap gives the same result as the loops above in O(n log n), for long
// pieces such as runs of one letter or of spaces.
func (m *model) mergeHeap(dst []int, piece string) []int {
	ids := make([]int32, len(piece))
	for i := range ids {
		ids[i] = m.byteID[piece[i]]
	}
	return m.mergeLinked(dst, ids, piece)
}

// mergeLinked merges the parts ids by rank, lowest first and leftmost on
// ties, in O(n log n). Parts form a linked list; the heap holds (rank,
// start) of candidate merges, stale entries being skipped: after a merge the
// pair starting at a position spans more (bytes or ids), so its rank differs
// from any earlier entry for that position. piece is the text of byte-level
// parts (ids[i] is piece[i]), needed only by rank tables without merges
// (tiktoken), which look merged byte strings up; "" for character models.
func (m *model) mergeLinked(dst []int, ids []int32, piece string) []int {
	n := len(ids)
	if n == 0 {
		return dst
	}
	type node struct {
		end, prev, next int32 // part i spans parts [i, end); end 0: merged away
		id              int32
		rank            uint32 // of merging with the next part
		newID           int32
	}
	nodes := make([]node, n)
	for i := range nodes {
		nodes[i] = node{end: int32(i + 1), prev: int32(i - 1), next: int32(i + 1), id: ids[i], rank: noRank}
	}
	nodes[n-1].next = -1
	pair := func(i int32) (uint32, int32) {
		j := nodes[i].next
		if j < 0 {
			return noRank, -1
		}
		if m.merges == nil {
			if id, ok := m.lookup(piece[i:nodes[j].end]); ok {
				return uint32(id), id
			}
			return noRank, -1
		}
		return m.pairRank(nodes[i].id, nodes[j].id)
	}
	h := make(candHeap, 0, n)
	for i := int32(0); i < int32(n); i++ {
		nodes[i].rank, nodes[i].newID = pair(i)
		if nodes[i].rank != noRank {
			h.push(cand{nodes[i].rank, i})
		}
	}
	for len(h) > 0 {
		c := h.pop()
		i := c.pos
		if nodes[i].end == 0 || nodes[i].rank != c.rank {
			continue // merged away or stale
		}
		j := nodes[i].next
		nodes[i].id = nodes[i].newID
		nodes[i].end = nodes[j].end
		nodes[i].next = nodes[j].next
		if nodes[j].next >= 0 {
			nodes[nodes[j].next].prev = i
		}
		nodes[j].end = 0
		nodes[i].rank, nodes[i].newID = pair(i)
		if nodes[i].rank != noRank {
			h.push(cand{nodes[i].rank, i})
		}
		if p := nodes[i].prev; p >= 0 {
			nodes[p].rank, nodes[p].newID = pair(p)
			if nodes[p].rank != noRank {
				h.push(cand{nodes[p].rank, p})
			}
		}
	}
	for i := int32(0); i >= 0; i = nodes[i].next {
		dst = append(dst, int(nodes[i].id))
	}
	return dst
}

type cand struct {
	rank uint32
	pos  int32
}

func (a cand) less(b cand) bool { return a.rank < b.rank || a.rank == b.rank && a.pos < b.pos }

// candHeap is a binary min-heap written out (container/heap's interface
// calls cost more than the merging itself on long pieces).
type candHeap []cand

func (h *candHeap) push(c cand) {
	q := append(*h, c)
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q[i].less(q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
	*h = q
}

func (h *candHeap) pop() cand {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && q[l].less(q[m]) {
			m = l
		}
		if r := l + 1; r < n && q[r].less(q[m]) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}
