package config

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Positions maps a key path such as "tactics[2].templates[0]" or
// "harm_topics[1].goals[0].text" to the line it is written on, so that
// semantic validation errors (found after decoding) can still name the line.
// A key set in several places keeps its first line.
type Positions map[string]int

// Index records the line of every key, table header, array element and
// inline-table key of the TOML text data. Text that does not parse is indexed
// up to the first error (the strict decoder reports the error itself).
func Index(data []byte) Positions {
	pos := Positions{}
	p := &unstable.Parser{}
	p.Reset(data)
	arrayIdx := map[string]int{} // resolved array-table path -> current index
	prefix := ""
	line := func(r unstable.Range) int { return p.Shape(r).Start.Line }
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path, first := resolveKey(e.Key(), arrayIdx)
			if e.Kind == unstable.ArrayTable {
				arrayIdx[path]++
				path += "[" + strconv.Itoa(arrayIdx[path]-1) + "]"
			}
			prefix = path
			if first != nil {
				pos.set(path, line(first.Raw))
			}
		case unstable.KeyValue:
			k, first := joinKey(e.Key())
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			if first != nil {
				pos.set(path, line(first.Raw))
			}
			walkValue(p, e.Value(), path, first, pos)
		}
	}
	return pos
}

// KeyLine is the line of the TOML text data that sets key (a dotted path:
// "rm_repair.bt.margin", whether written under a table header, as a dotted
// key or in an inline table) or opens the table key, or 0. For error
// messages about keys found after decoding.
func KeyLine(data []byte, key string) int { return Index(data)[key] }

func (pos Positions) set(path string, line int) {
	if _, ok := pos[path]; !ok {
		pos[path] = line
	}
}

// resolveKey turns a table header into a path, inserting the current index of
// any enclosing array table (so [[a.b]] under [[a]] becomes "a[3].b").
func resolveKey(it unstable.Iterator, arrayIdx map[string]int) (string, *unstable.Node) {
	var b strings.Builder
	var first *unstable.Node
	for it.Next() {
		n := it.Node()
		if first == nil {
			first = n
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.Write(n.Data)
		if !it.IsLast() {
			if i, ok := arrayIdx[b.String()]; ok {
				b.WriteString("[" + strconv.Itoa(i-1) + "]")
			}
		}
	}
	return b.String(), first
}

func joinKey(it unstable.Iterator) (string, *unstable.Node) {
	var parts [][]byte
	var first *unstable.Node
	for it.Next() {
		if first == nil {
			first = it.Node()
		}
		parts = append(parts, it.Node().Data)
	}
	return string(bytes.Join(parts, []byte("."))), first
}

// walkValue records positions inside arrays and inline tables. Elements take
// the line of their first key (inline tables) or, failing that, of the
// enclosing key.
func walkValue(p *unstable.Parser, v *unstable.Node, path string, at *unstable.Node, pos Positions) {
	switch v.Kind {
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			ep := path + "[" + strconv.Itoa(i) + "]"
			i++
			if c.Kind == unstable.InlineTable {
				walkValue(p, c, ep, at, pos)
				continue
			}
			if c.Raw.Length > 0 {
				pos.set(ep, p.Shape(c.Raw).Start.Line)
			} else if at != nil {
				pos.set(ep, p.Shape(at.Raw).Start.Line)
			}
			walkValue(p, c, ep, at, pos)
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			k, first := joinKey(kv.Key())
			if first != nil {
				pos.set(path, p.Shape(first.Raw).Start.Line)
				pos.set(path+"."+k, p.Shape(first.Raw).Start.Line)
			}
			walkValue(p, kv.Value(), path+"."+k, first, pos)
		}
	}
}

// Line returns the line of path, or of its nearest recorded ancestor.
func (pos Positions) Line(path string) int {
	for path != "" {
		if l, ok := pos[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
