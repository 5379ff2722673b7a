package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/ares-rlhf/ares/engine/torch"
)

func init() {
	register(command{name: "version", summary: "print the engine and libtorch versions, threads and devices", run: runVersion})
}

func runVersion(args []string) error {
	fs := newFlagSet("version")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	info, err := torch.Describe()
	if err != nil {
		return err
	}
	w := os.Stdout
	fmt.Fprintf(w, "ares %s (%s, %s/%s)\n", engineVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "libtorch built against: %s\n", info.CompiledVersion)
	fmt.Fprintf(w, "libtorch running:       %s\n", info.RuntimeVersion)
	fmt.Fprintf(w, "intra-op threads:       %d\n", info.Threads)
	fmt.Fprintf(w, "OpenMP threads:         %s\n", countOrNone(info.OpenMPThreads, "no OpenMP"))
	blas := countOrNone(info.OpenBLASThreads, "BLAS is not OpenBLAS")
	if info.OpenBLASThreads >= 0 {
		blas += " (" + info.OpenBLASBuild + ")"
	}
	fmt.Fprintf(w, "OpenBLAS threads:       %s\n", blas)
	fmt.Fprintf(w, "wait policy:            %s\n", info.WaitPolicy)
	fmt.Fprintf(w, "thread layout from:     %s\n", info.ThreadLayout)
	fmt.Fprintf(w, "host allocator:         %s\n", info.Allocator)
	cuda := "no (shim built without CUDA)"
	if info.BuiltWithCUDA {
		cuda = "built with CUDA, no device visible"
		if len(info.CUDADevices) > 0 {
			cuda = fmt.Sprintf("yes, %d device(s)", len(info.CUDADevices))
		}
	}
	fmt.Fprintf(w, "CUDA available:         %s\n", cuda)
	for i, name := range info.CUDADevices {
		fmt.Fprintf(w, "  cuda:%d  %s\n", i, name)
	}
	return nil
}

// countOrNone prints a thread count, or why there is none (-1).
func countOrNone(n int, none string) string {
	if n < 0 {
		return none
	}
	return fmt.Sprint(n)
}
