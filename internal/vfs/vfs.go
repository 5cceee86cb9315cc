// Package vfs is the small file system interface the storage packages
// (wal, store, metadata) write through, its OS implementation, and a
// crashable in-memory implementation for power-loss tests.
//
// The OS file system survives kill -9 with everything the process wrote
// (the page cache keeps it), so a test that only kills the process cannot
// catch a missing fsync. MemFS can: it remembers, for every file, what was
// fsynced and, for every directory, which entries were made durable by
// SyncDir, and CrashClone returns the file system as it would be after a
// power loss at that moment (pebble's vfs.NewCrashableMem is the model).
//
//	fs := vfs.NewMem()
//	l, _ := wal.Open(wal.Options{Dir: "/log", FS: fs})
//	...                                // appends, some WaitDurable
//	after := fs.CrashClone(vfs.CrashOptions{Rand: rng})
//	l2, _ := wal.Open(wal.Options{Dir: "/log", FS: after})
package vfs

import (
	"io"
	"os"
)

// FS is the file system the storage packages use.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	Rename(from, to string) error
	MkdirAll(path string, perm os.FileMode) error
	ReadDir(name string) ([]string, error)
	SyncDir(dir string) error
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	Sync() error
	Truncate(size int64) error
	Seek(offset int64, whence int) (int64, error)
}

// OSFS is the real file system.
type OSFS struct{}

// OpenFile opens a file.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}

// Remove removes a file.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename renames a file (atomically replacing to).
func (OSFS) Rename(from, to string) error { return os.Rename(from, to) }

// MkdirAll creates a directory.
func (OSFS) MkdirAll(p string, perm os.FileMode) error { return os.MkdirAll(p, perm) }

// ReadDir lists names in a directory.
func (OSFS) ReadDir(name string) ([]string, error) {
	es, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out, nil
}

// SyncDir fsyncs a directory so new and removed entries are durable.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Default returns fs, or the OS file system when fs is nil.
func Default(fs FS) FS {
	if fs == nil {
		return OSFS{}
	}
	return fs
}

// ReadFile reads a whole file through fs.
func ReadFile(fs FS, name string) ([]byte, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFileAtomic writes data to name durably: a temporary file beside it
// is written and fsynced, renamed over name, and the directory is synced,
// so after a crash name holds either its old or its new content.
func WriteFileAtomic(fs FS, dir, name string, data []byte) error {
	tmp := dir + string(os.PathSeparator) + name + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, dir+string(os.PathSeparator)+name); err != nil {
		return err
	}
	return fs.SyncDir(dir)
}
