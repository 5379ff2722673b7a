//go:build !unix

package judge

import "os/exec"

// ownGroup: without process groups, cancelling kills the command only.
func ownGroup(cmd *exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {}
