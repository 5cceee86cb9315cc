package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// MemFS is an in-memory file system that can lose power. Semantics, chosen
// to be as unkind as POSIX allows:
//
//   - A file's content survives a crash only up to its last Sync. Bytes
//     written after it may be lost, partly kept, or kept with the last
//     page torn (zeros or garbage), see CrashOptions.
//   - Creating, removing and renaming a file are directory operations; they
//     survive a crash only once SyncDir has run on the directory concerned
//     (for a rename, either one). Operations not yet synced survive as an
//     ordered prefix (a journal replays in order): a crash keeps the first
//     k of them for some k.
//   - Directories exist as soon as MkdirAll returns.
//
// It is safe for concurrent use; every operation takes one lock.
type MemFS struct {
	mu      sync.Mutex
	dirs    map[string]bool
	cur     tree // what the running process sees
	dur     tree // what a crash keeps for sure
	pending []dirOp

	ignoreSync bool
	syncs      int64

	ops     int64 // mutating operations so far
	crashAt int64 // take a crash image after this many (0: never)
	crashO  CrashOptions
	crashed *MemFS
}

// Ops returns how many mutating operations (writes, truncations, syncs,
// creations, removals, renames) ran so far.
func (m *MemFS) Ops() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// SetCrashPoint arranges for a power loss right after the n-th mutating
// operation (counted as Ops counts): the file system as that loss leaves
// it is kept (see Crashed) while the running code carries on unaware.
// This puts crashes inside multi-step operations (a segment roll, a
// compaction's rename) that a test cannot interrupt from outside.
func (m *MemFS) SetCrashPoint(n int64, o CrashOptions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashAt, m.crashO, m.crashed = n, o, nil
}

// CrashPoint returns the operation count set by SetCrashPoint.
func (m *MemFS) CrashPoint() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashAt
}

// Crashed returns the crash image taken at the crash point, or nil if the
// point was not reached.
func (m *MemFS) Crashed() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashed
}

// tick counts a mutating operation; m.mu is held.
func (m *MemFS) tick() {
	m.ops++
	if m.ops == m.crashAt {
		m.crashed = m.crashCloneLocked(m.crashO)
	}
}

type tree map[string]map[string]*inode // dir → name → file

type inode struct {
	data   []byte
	synced []byte
	dirty  int // lowest offset changed since the last Sync (math.MaxInt: none)
}

type dirOp struct {
	create     bool
	remove     bool
	dir, name  string
	dir2, nam2 string // rename target
	ino        *inode
}

// NewMem returns an empty in-memory file system with the root directory.
func NewMem() *MemFS {
	m := &MemFS{dirs: map[string]bool{}, cur: tree{}, dur: tree{}}
	m.mkdirLocked("/")
	m.mkdirLocked(".")
	return m
}

// SetIgnoreSync makes Sync and SyncDir succeed without making anything
// durable: a disk that lies about fsync. Tests use it to show that the
// power-loss checks catch a missing fsync.
func (m *MemFS) SetIgnoreSync(v bool) {
	m.mu.Lock()
	m.ignoreSync = v
	m.mu.Unlock()
}

// Syncs returns how many Sync and SyncDir calls ran.
func (m *MemFS) Syncs() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

func clean(p string) string { return filepath.Clean(p) }

func (m *MemFS) mkdirLocked(d string) {
	d = clean(d)
	for {
		if !m.dirs[d] {
			m.dirs[d] = true
			m.cur[d] = map[string]*inode{}
			m.dur[d] = map[string]*inode{}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return
		}
		d = parent
	}
}

// MkdirAll creates a directory and its parents.
func (m *MemFS) MkdirAll(p string, _ os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p = clean(p)
	if _, ok := m.lookupLocked(p); ok {
		return &fs.PathError{Op: "mkdir", Path: p, Err: errors.New("not a directory")}
	}
	m.mkdirLocked(p)
	m.tick()
	return nil
}

func (m *MemFS) lookupLocked(p string) (*inode, bool) {
	d, ok := m.cur[filepath.Dir(p)]
	if !ok {
		return nil, false
	}
	ino, ok := d[filepath.Base(p)]
	return ino, ok
}

// OpenFile opens a file; O_CREATE, O_TRUNC, O_EXCL, O_APPEND and the
// access modes are honoured.
func (m *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	dir, base := filepath.Dir(name), filepath.Base(name)
	if m.dirs[name] {
		if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a directory")}
		}
		return &memFile{fs: m, name: name, isDir: true}, nil
	}
	entries, ok := m.cur[dir]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	ino, ok := entries[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		ino = &inode{dirty: math.MaxInt}
		entries[base] = ino
		m.pending = append(m.pending, dirOp{create: true, dir: dir, name: base, ino: ino})
	}
	f := &memFile{fs: m, ino: ino, name: name,
		write:  flag&(os.O_WRONLY|os.O_RDWR) != 0,
		read:   flag&os.O_WRONLY == 0,
		append: flag&os.O_APPEND != 0}
	if flag&os.O_TRUNC != 0 && f.write {
		ino.truncate(0)
	}
	if !ok || flag&os.O_TRUNC != 0 && f.write {
		m.tick()
	}
	return f, nil
}

// Remove removes a file (or an empty directory).
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	if m.dirs[name] {
		for d := range m.dirs {
			if d != name && filepath.Dir(d) == name {
				return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
			}
		}
		if len(m.cur[name]) > 0 {
			return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
		}
		delete(m.dirs, name)
		delete(m.cur, name)
		delete(m.dur, name)
		return nil
	}
	dir, base := filepath.Dir(name), filepath.Base(name)
	if _, ok := m.cur[dir][base]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.cur[dir], base)
	m.pending = append(m.pending, dirOp{remove: true, dir: dir, name: base})
	m.tick()
	return nil
}

// Rename moves a file, replacing the target.
func (m *MemFS) Rename(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	from, to = clean(from), clean(to)
	d1, n1 := filepath.Dir(from), filepath.Base(from)
	d2, n2 := filepath.Dir(to), filepath.Base(to)
	ino, ok := m.cur[d1][n1]
	if !ok {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrNotExist}
	}
	if _, ok := m.cur[d2]; !ok {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrNotExist}
	}
	if m.dirs[to] {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: errors.New("target is a directory")}
	}
	delete(m.cur[d1], n1)
	m.cur[d2][n2] = ino
	m.pending = append(m.pending, dirOp{dir: d1, name: n1, dir2: d2, nam2: n2, ino: ino})
	m.tick()
	return nil
}

// ReadDir lists the names in a directory (files and subdirectories),
// sorted.
func (m *MemFS) ReadDir(name string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	entries, ok := m.cur[name]
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	out := make([]string, 0, len(entries))
	for n := range entries {
		out = append(out, n)
	}
	for d := range m.dirs {
		if d != name && filepath.Dir(d) == name {
			out = append(out, filepath.Base(d))
		}
	}
	sort.Strings(out)
	return out, nil
}

// SyncDir makes the directory operations on dir durable.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	if !m.dirs[dir] {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	m.syncs++
	defer m.tick()
	if m.ignoreSync {
		return nil
	}
	rest := m.pending[:0]
	for _, op := range m.pending {
		if op.dir == dir || (op.dir2 == dir && !op.create && !op.remove) {
			m.dur.apply(op)
		} else {
			rest = append(rest, op)
		}
	}
	for i := len(rest); i < len(m.pending); i++ {
		m.pending[i] = dirOp{}
	}
	m.pending = rest
	return nil
}

func (t tree) apply(op dirOp) {
	switch {
	case op.create:
		if d, ok := t[op.dir]; ok {
			d[op.name] = op.ino
		}
	case op.remove:
		delete(t[op.dir], op.name)
	default:
		delete(t[op.dir], op.name)
		if d, ok := t[op.dir2]; ok {
			d[op.nam2] = op.ino
		}
	}
}

// CrashOptions shape a simulated power loss.
type CrashOptions struct {
	// Rand decides how much unsynced state survives. Nil: none does
	// (only what was synced is kept).
	Rand *rand.Rand
	// NoTornPages keeps surviving unsynced bytes intact; by default the
	// last page of what survives may be torn (zeros or garbage).
	NoTornPages bool
}

// PageSize is the unit in which unsynced data survives or tears.
const PageSize = 4096

// CrashClone returns the file system as a power loss at this moment could
// leave it; m itself is unchanged (a process still running against it
// writes into a world that no longer exists).
func (m *MemFS) CrashClone(o CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crashCloneLocked(o)
}

func (m *MemFS) crashCloneLocked(o CrashOptions) *MemFS {
	rng := o.Rand
	t := tree{}
	for d, entries := range m.dur {
		c := make(map[string]*inode, len(entries))
		for n, ino := range entries {
			c[n] = ino
		}
		t[d] = c
	}
	keep := 0
	if rng != nil && len(m.pending) > 0 {
		keep = rng.Intn(len(m.pending) + 1)
	}
	for _, op := range m.pending[:keep] {
		t.apply(op)
	}
	out := &MemFS{dirs: map[string]bool{}, cur: tree{}, dur: tree{}}
	for d := range m.dirs {
		out.dirs[d] = true
	}
	clones := map[*inode]*inode{}
	for d := range m.dirs {
		out.cur[d] = map[string]*inode{}
		out.dur[d] = map[string]*inode{}
		for n, ino := range t[d] {
			c, ok := clones[ino]
			if !ok {
				c = ino.crash(rng, !o.NoTornPages)
				clones[ino] = c
			}
			out.cur[d][n] = c
			out.dur[d][n] = c
		}
	}
	return out
}

// crash returns what of the file a power loss leaves.
func (ino *inode) crash(rng *rand.Rand, tear bool) *inode {
	data := append([]byte(nil), ino.synced...)
	s := len(ino.synced)
	if rng != nil && ino.dirty >= s && len(ino.data) > s && rng.Intn(2) == 0 {
		// some of the appended, unsynced bytes reached the disk
		cut := s + 1 + rng.Intn(len(ino.data)-s)
		data = append(data, ino.data[s:cut]...)
		if tear && rng.Intn(2) == 0 {
			from := max(s, (cut-1)/PageSize*PageSize)
			from += rng.Intn(cut - from)
			zero := rng.Intn(2) == 0
			for i := from; i < cut; i++ {
				if zero {
					data[i] = 0
				} else {
					data[i] = byte(rng.Intn(256))
				}
			}
		}
	}
	return &inode{data: data, synced: append([]byte(nil), data...), dirty: math.MaxInt}
}

// Files lists every file path (for test diagnostics).
func (m *MemFS) Files() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for d, entries := range m.cur {
		for n := range entries {
			out = append(out, filepath.Join(d, n))
		}
	}
	sort.Strings(out)
	return out
}

// String describes the files, their sizes and synced sizes.
func (m *MemFS) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	var names []string
	for d, entries := range m.cur {
		for n := range entries {
			names = append(names, filepath.Join(d, n))
		}
	}
	sort.Strings(names)
	for _, p := range names {
		ino := m.cur[filepath.Dir(p)][filepath.Base(p)]
		fmt.Fprintf(&b, "%s %d bytes (%d synced)\n", p, len(ino.data), len(ino.synced))
	}
	return b.String()
}

func (ino *inode) truncate(size int) {
	if size < len(ino.data) {
		ino.data = ino.data[:size]
	} else {
		ino.data = append(ino.data, make([]byte, size-len(ino.data))...)
	}
	ino.dirty = min(ino.dirty, size)
}

type memFile struct {
	fs     *MemFS
	ino    *inode
	name   string
	pos    int64
	isDir  bool
	read   bool
	write  bool
	append bool
	closed bool
}

var errClosed = errors.New("file already closed")

func (f *memFile) check(op string, write bool) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: errClosed}
	}
	if f.isDir && op != "sync" && op != "close" {
		return &fs.PathError{Op: op, Path: f.name, Err: errors.New("is a directory")}
	}
	if write && !f.write || !write && !f.read && op == "read" {
		return &fs.PathError{Op: op, Path: f.name, Err: errors.New("bad file descriptor")}
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if f.pos >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[f.pos:])
	f.pos += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "readat", Path: f.name, Err: errors.New("negative offset")}
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	ino := f.ino
	if f.append {
		f.pos = int64(len(ino.data))
	}
	end := int(f.pos) + len(p)
	if end > len(ino.data) {
		if int(f.pos) > len(ino.data) {
			ino.truncate(int(f.pos))
		}
		ino.data = append(ino.data[:f.pos], p...)
	} else {
		copy(ino.data[f.pos:], p)
	}
	ino.dirty = min(ino.dirty, int(f.pos))
	f.pos = int64(end)
	f.fs.tick()
	return len(p), nil
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("seek", false); err != nil {
		return 0, err
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += int64(len(f.ino.data))
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: errors.New("negative offset")}
	}
	f.pos = offset
	return offset, nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	f.ino.truncate(int(size))
	f.fs.tick()
	return nil
}

// Sync makes the file's content durable (not its directory entry).
func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	f.fs.syncs++
	if f.isDir {
		return nil // use SyncDir
	}
	defer f.fs.tick()
	if f.fs.ignoreSync {
		return nil
	}
	ino := f.ino
	if ino.dirty >= len(ino.synced) && len(ino.data) >= len(ino.synced) {
		ino.synced = append(ino.synced, ino.data[len(ino.synced):]...)
	} else {
		ino.synced = append([]byte(nil), ino.data...)
	}
	ino.dirty = math.MaxInt
	return nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: errClosed}
	}
	f.closed = true
	return nil
}
