package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ares-rlhf/ares/internal/atomicfile"
	"github.com/ares-rlhf/ares/internal/jsonfile"
)

// IndexName is the index file of a sharded set as Hugging Face names it.
const IndexName = "model.safetensors.index.json"

// Set is one safetensors file or a sharded set of them, seen as one
// collection of uniquely named tensors.
type Set struct {
	files   []*File
	order   []TensorInfo // file order, then data order
	where   map[string]*File
	meta    map[string]string
	indexed string // index path, "" for a single file
}

type indexFile struct {
	Metadata  map[string]json.RawMessage `json:"metadata"`
	WeightMap map[string]string          `json:"weight_map"`
}

// OpenSet opens path, which may be a .safetensors file, an *.index.json
// file, or a directory holding either model.safetensors.index.json,
// model.safetensors, or exactly one .safetensors file.
func OpenSet(path string) (*Set, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, IndexName)); err == nil {
			return openIndexed(filepath.Join(path, IndexName))
		}
		if _, err := os.Stat(filepath.Join(path, "model.safetensors")); err == nil {
			return openSingle(filepath.Join(path, "model.safetensors"))
		}
		m, _ := filepath.Glob(filepath.Join(path, "*.safetensors"))
		if len(m) == 1 {
			return openSingle(m[0])
		}
		return nil, fmt.Errorf("safetensors: %s has no %s and %d .safetensors files (want exactly one)", path, IndexName, len(m))
	}
	if strings.HasSuffix(path, ".index.json") {
		return openIndexed(path)
	}
	return openSingle(path)
}

func openSingle(path string) (*Set, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	s := &Set{files: []*File{f}, where: map[string]*File{}, meta: f.Metadata()}
	for _, t := range f.Tensors() {
		s.where[t.Name] = f
	}
	s.order = f.Tensors()
	return s, nil
}

// ValidFileName reports whether name is a plain file name that stays in
// its directory: no separators, not "." or "..", not empty.
func ValidFileName(name string) bool {
	return name != "" && name != "." && name != ".." &&
		!strings.ContainsAny(name, `/\`) && !strings.ContainsRune(name, 0) && filepath.Base(name) == name
}

func openIndexed(indexPath string) (_ *Set, err error) {
	var idx indexFile
	if err := jsonfile.Read(indexPath, &idx); err != nil {
		return nil, err
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors index %s: empty weight_map", indexPath)
	}
	dir := filepath.Dir(indexPath)
	names := map[string]bool{}
	for tensor, file := range idx.WeightMap {
		if !ValidFileName(file) {
			return nil, fmt.Errorf("safetensors index %s: tensor %q: file name %q leaves the directory", indexPath, tensor, file)
		}
		names[file] = true
	}
	files := make([]string, 0, len(names))
	for n := range names {
		files = append(files, n)
	}
	sort.Strings(files)
	s := &Set{where: map[string]*File{}, indexed: indexPath}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, n := range files {
		f, err := Open(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("safetensors index %s: shard %s: %w", indexPath, n, err)
		}
		s.files = append(s.files, f)
		if s.meta == nil {
			s.meta = f.Metadata()
		}
		for _, t := range f.Tensors() {
			if prev, dup := s.where[t.Name]; dup {
				return nil, fmt.Errorf("safetensors index %s: tensor %q is in both %s and %s", indexPath, t.Name, prev.Path(), f.Path())
			}
			if idx.WeightMap[t.Name] != n {
				return nil, fmt.Errorf("safetensors index %s: tensor %q is in %s but the weight_map says %q", indexPath, t.Name, n, idx.WeightMap[t.Name])
			}
			s.where[t.Name] = f
			s.order = append(s.order, t)
		}
	}
	for tensor, file := range idx.WeightMap {
		if s.where[tensor] == nil {
			return nil, fmt.Errorf("safetensors index %s: tensor %q is missing from shard %s", indexPath, tensor, file)
		}
	}
	return s, nil
}

// Tensors lists all tensors: shards in name order, each in data order.
func (s *Set) Tensors() []TensorInfo { return s.order }

// Metadata is the __metadata__ of the (first) file.
func (s *Set) Metadata() map[string]string { return s.meta }

// Info returns a tensor's description.
func (s *Set) Info(name string) (TensorInfo, bool) {
	f := s.where[name]
	if f == nil {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// Data returns a tensor's bytes without copying (see File.Data).
func (s *Set) Data(name string) ([]byte, error) {
	f := s.where[name]
	if f == nil {
		return nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	return f.Data(name)
}

// ReadTensor copies a tensor's bytes into dst, which must have its exact size.
func (s *Set) ReadTensor(name string, dst []byte) error {
	f := s.where[name]
	if f == nil {
		return fmt.Errorf("safetensors: no tensor %q", name)
	}
	return f.ReadTensor(name, dst)
}

// Close unmaps every file.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// WriteSet writes tensors to dir as prefix.safetensors, or, when they
// exceed maxShardBytes (<= 0: no limit), as prefix-0000i-of-0000n.safetensors
// with prefix.safetensors.index.json, as Hugging Face does. A tensor larger
// than the limit gets a shard of its own. It returns the files written.
func WriteSet(dir, prefix string, tensors []TensorInfo, metadata map[string]string, maxShardBytes int64, fetch Fetch) ([]string, error) {
	if !ValidFileName(prefix) {
		return nil, fmt.Errorf("safetensors: invalid file prefix %q", prefix)
	}
	var groups [][]int
	var cur []int
	var curSize, total int64
	for i, t := range tensors {
		n, err := NumBytes(t.DType, t.Shape)
		if err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if maxShardBytes > 0 && len(cur) > 0 && curSize+n > maxShardBytes {
			groups = append(groups, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, i)
		curSize += n
		total += n
	}
	groups = append(groups, cur)
	if len(groups) == 1 {
		p := filepath.Join(dir, prefix+".safetensors")
		return []string{p}, WriteFile(p, tensors, metadata, fetch)
	}
	var paths []string
	weightMap := map[string]string{}
	for g, idxs := range groups {
		name := fmt.Sprintf("%s-%05d-of-%05d.safetensors", prefix, g+1, len(groups))
		sub := make([]TensorInfo, len(idxs))
		for j, i := range idxs {
			sub[j] = tensors[i]
			weightMap[tensors[i].Name] = name
		}
		p := filepath.Join(dir, name)
		if err := WriteFile(p, sub, metadata, func(j int) ([]byte, error) { return fetch(idxs[j]) }); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	idx, err := json.MarshalIndent(map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}, "", "  ")
	if err != nil {
		return paths, err
	}
	ip := filepath.Join(dir, prefix+".safetensors.index.json")
	err = atomicfile.WriteWith(ip, 0o644, func(w io.Writer) error { _, err := w.Write(append(idx, '\n')); return err })
	return append(paths, ip), err
}
