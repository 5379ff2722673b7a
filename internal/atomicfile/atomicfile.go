// Package atomicfile replaces files atomically: the new contents go to a
// temporary file in the same directory, which is fsynced, renamed over the
// target and followed by an fsync of the directory, so that a crash or a
// failed write leaves either the old file or the new one, never a mix, and
// no temporary file behind on an error.
//
// Temporary names are "." + base + ".tmp-" + random, hidden, and carry the
// ".tmp-" marker that the checkpoint manager's clean-up recognises.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// File is a replacement of a file in progress: write to it, then Commit
// (which publishes it) or Abort (which removes it). Abort after Commit does
// nothing, so `defer f.Abort()` is the usual clean-up.
type File struct {
	f    *os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts replacing path with a file of mode perm (exactly perm: the
// umask does not apply). Nothing is visible at path until Commit.
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{f: f, path: path, perm: perm}, nil
}

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("%s: write after commit or abort", f.path)
	}
	return f.f.Write(p)
}

// Name is the path being replaced.
func (f *File) Name() string { return f.path }

// Commit syncs the temporary file, renames it over the target and syncs
// the directory. On an error before the rename the temporary file is
// removed and the target is untouched.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: commit after commit or abort", f.path)
	}
	fail := func(err error) error {
		f.Abort()
		return err
	}
	if err := f.f.Chmod(f.perm); err != nil {
		return fail(err)
	}
	if err := f.f.Sync(); err != nil {
		return fail(err)
	}
	f.done = true
	tmp := f.f.Name()
	if err := f.f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort discards the temporary file. It does nothing after Commit or a
// first Abort.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	f.f.Close()
	return os.Remove(f.f.Name())
}

// WriteFile replaces path with data, mode perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// WriteWith replaces path with what write writes (through a buffer), mode
// perm. When write fails, path is untouched and write's error is returned.
func WriteWith(path string, perm os.FileMode, write func(io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Abort()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// SyncDir fsyncs a directory, so that a rename or a creation in it is
// durable. File systems that cannot sync a directory (permission denied,
// EINVAL) are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrPermission) && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}
