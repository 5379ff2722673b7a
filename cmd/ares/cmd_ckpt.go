package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ares-rlhf/ares/checkpoints"
)

func init() {
	register(command{
		name:    "ckpt",
		summary: "inspect, verify, diff checkpoints; import/export safetensors",
		run: subcommands("ckpt", ckptUsage, map[string]func([]string) error{
			"inspect": ckptInspect, "verify": ckptVerify, "export": ckptExport, "import": ckptImport, "diff": ckptDiff,
		}),
	})
}

const ckptUsage = `usage:
  ares ckpt inspect DIR                  tensors, dtypes, shapes, sizes, compression ratios
  ares ckpt verify DIR                   check every checksum (exit 1 on any mismatch)
  ares ckpt export --format safetensors [--group model] [--max-shard-size SIZE] DIR OUT
                                         OUT ending in .safetensors is one file, else a directory
  ares ckpt import [--chunk-size SIZE] [--shard-size SIZE] [--level 1-4] IN OUT
                                         IN is a .safetensors file, an index.json, or a directory
  ares ckpt diff A B                     per tensor: equal or max |a-b| (exit 0 only if all equal)
A and B of diff may each be a checkpoint or safetensors.`

func ckptInspect(args []string) error {
	fs := newFlagSet("ckpt inspect")
	if err := parseFlagsN(fs, args, 1, "ckpt inspect takes one checkpoint directory"); err != nil {
		return err
	}
	r, err := checkpoints.Open(fs.Arg(0), nil)
	if err != nil {
		return err
	}
	defer r.Close()
	return checkpoints.WriteInspect(os.Stdout, r)
}

func ckptVerify(args []string) error {
	fs := newFlagSet("ckpt verify")
	if err := parseFlagsN(fs, args, 1, "ckpt verify takes one checkpoint directory"); err != nil {
		return err
	}
	r, err := checkpoints.Open(fs.Arg(0), nil)
	if err != nil {
		return exitCodeError{code: exitFail, err: err}
	}
	defer r.Close()
	if err := r.Verify(); err != nil {
		return exitCodeError{code: exitFail, err: err}
	}
	m := r.Manifest()
	fmt.Printf("%s: ok (%d tensors, %d blobs, %d shards)\n", fs.Arg(0), len(m.Tensors), len(m.Blobs), len(m.Shards))
	return nil
}

func ckptExport(args []string) error {
	fs := newFlagSet("ckpt export")
	format := fs.String("format", "safetensors", "output format (safetensors)")
	group := fs.String("group", checkpoints.GroupModel, `tensor group to export ("*" for all)`)
	maxShard := fs.String("max-shard-size", "0", "split directory output into shards of at most this size (e.g. 5GB, 500MiB; 0: one file)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "safetensors" {
		return usagef("unsupported export format %q (supported: safetensors)", *format)
	}
	if fs.NArg() != 2 {
		return usagef("ckpt export takes a checkpoint directory and an output path")
	}
	n, err := parseSize(*maxShard)
	if err != nil {
		return usagef("--max-shard-size: %v", err)
	}
	files, err := checkpoints.Export(fs.Arg(0), fs.Arg(1), &checkpoints.ExportOptions{Group: *group, MaxShardBytes: n})
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println(f)
	}
	return nil
}

func ckptImport(args []string) error {
	fs := newFlagSet("ckpt import")
	chunk := fs.String("chunk-size", "4MiB", "raw bytes per compressed chunk")
	shard := fs.String("shard-size", "1GiB", "maximum shard file size")
	level := fs.Int("level", 1, "zstd level: 1 fastest .. 4 best")
	if err := parseFlagsN(fs, args, 2, "ckpt import takes a safetensors input and an output checkpoint directory"); err != nil {
		return err
	}
	c, err := parseSize(*chunk)
	if err != nil {
		return usagef("--chunk-size: %v", err)
	}
	s, err := parseSize(*shard)
	if err != nil {
		return usagef("--shard-size: %v", err)
	}
	if err := checkpoints.Import(fs.Arg(0), fs.Arg(1), &checkpoints.Options{ChunkSize: c, ShardSize: s, Level: *level}); err != nil {
		return err
	}
	fmt.Println(fs.Arg(1))
	return nil
}

func ckptDiff(args []string) error {
	fs := newFlagSet("ckpt diff")
	if err := parseFlagsN(fs, args, 2, "ckpt diff takes two checkpoints or safetensors paths"); err != nil {
		return err
	}
	a, err := checkpoints.OpenSource(fs.Arg(0))
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := checkpoints.OpenSource(fs.Arg(1))
	if err != nil {
		return err
	}
	defer b.Close()
	es, err := checkpoints.Diff(a, b)
	if err != nil {
		return err
	}
	if err := checkpoints.WriteDiff(os.Stdout, es); err != nil {
		return err
	}
	if !checkpoints.AllEqual(es) {
		return exitCodeError{code: exitFail, err: fmt.Errorf("%s and %s differ", fs.Arg(0), fs.Arg(1))}
	}
	return nil
}

// parseSize reads a byte count such as 4096, 4MiB, 5GB.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
