package checkpoints

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// WriteInspect prints a checkpoint's state, metadata, blobs and tensor
// index with raw and stored sizes and compression ratios.
func WriteInspect(w io.Writer, r *Reader) error {
	m := r.m
	var raw, stored int64
	for i := range m.Tensors {
		raw += m.Tensors[i].Size
		stored += m.Tensors[i].StoredSize()
	}
	var shardBytes int64
	for _, s := range m.Shards {
		shardBytes += s.Size
	}
	fmt.Fprintf(w, "checkpoint  %s\nformat      %s v%d, created %s\nstep        %d\n", r.dir, m.Format, m.Version, m.Created, m.Step)
	if m.Checksum != "" {
		fmt.Fprintf(w, "manifest    %.23s… (checked)\n", m.Checksum)
	} else {
		fmt.Fprintf(w, "manifest    no checksum (format v%d predates manifest checksums)\n", m.Version)
	}
	if len(m.DataPosition) > 0 {
		fmt.Fprintf(w, "data pos    %s\n", m.DataPosition)
	}
	fmt.Fprintf(w, "shards      %d, %s, chunk size %s\n", len(m.Shards), human(shardBytes), human(m.ChunkSize))
	fmt.Fprintf(w, "tensors     %d, raw %s, stored %s, ratio %s\n", len(m.Tensors), human(raw), human(stored), ratio(raw, stored))
	if len(m.Metadata) > 0 {
		keys := make([]string, 0, len(m.Metadata))
		for k := range m.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "metadata")
		for _, k := range keys {
			fmt.Fprintf(w, "  %s = %q\n", k, m.Metadata[k])
		}
	}
	if len(m.Extra) > 0 {
		fmt.Fprintf(w, "extra       %s\n", m.Extra)
	}
	if len(m.Blobs) > 0 {
		fmt.Fprintln(w, "blobs")
		for _, b := range m.Blobs {
			fmt.Fprintf(w, "  %-24s %10s stored %s\n", b.Name, human(b.Size), human(storedSize(b.Chunks)))
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENSOR\tGROUP\tDTYPE\tSHAPE\tSIZE\tSTORED\tRATIO")
	for i := range m.Tensors {
		t := &m.Tensors[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", t.Name, t.Group, t.DType, t.Shape,
			human(t.Size), human(t.StoredSize()), ratio(t.Size, t.StoredSize()))
	}
	return tw.Flush()
}

func ratio(raw, stored int64) string {
	if stored == 0 {
		if raw == 0 {
			return "-"
		}
		return "inf"
	}
	return fmt.Sprintf("%.2fx", float64(raw)/float64(stored))
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
