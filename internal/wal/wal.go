// Package wal is a CRC-checked segment log with group commit. Records get
// consecutive indexes from 1; many appenders share one fsync. A write or
// fsync error is sticky: the log refuses further appends rather than risk
// silent loss.
//
// Recovery never deletes a record that may have been acknowledged: only a
// torn tail of the last segment (bytes after the last good record, with no
// valid record after them: what a crash during an unsynced write leaves)
// is truncated, and logged with the file, offset and bytes dropped. A bad
// record anywhere else, a broken sequence of segments, or an I/O error
// makes Open fail with an error naming the file and offset
// (*CorruptionError for damage). Repair (`warren-server --repair-wal DIR`)
// is the operator's way out: it moves the damaged segment and every later
// one aside, deleting nothing, and keeps the records before the damage.
//
//	l, err := wal.Open(wal.Options{Dir: "data/msgs"})
//	idx, err := l.Append(rec)          // buffered
//	err = l.WaitDurable(idx)           // returns once an fsync covers idx
//	l.OnDurable(idx, func(err error) { ... })  // or asynchronously
//
// Record framing: u32 length, u32 CRC-32C of the payload, payload.
// Segments are named by their first index: %020d.wal.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warrenmq/warren/internal/vfs"
)

// Index is a record's position in the log, from 1.
type Index = uint64

// ErrClosed is returned after Close.
var ErrClosed = errors.New("wal: closed")

// ErrEmpty is returned by Append for an empty record: on disk it would
// look like the zero-filled region a crash can leave, which recovery
// treats as damage.
var ErrEmpty = errors.New("wal: empty records are not allowed")

// ErrCorrupt marks a record that failed its checks.
var ErrCorrupt = errors.New("wal: corrupt record")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaxRecord bounds one record (protects recovery from hostile lengths).
const MaxRecord = 512 << 20

// FS is the file system the log uses; tests inject faults and power loss
// through it (see internal/vfs).
type FS = vfs.FS

// File is an open segment.
type File = vfs.File

// OSFS is the real file system.
type OSFS = vfs.OSFS

// Options configure a log.
type Options struct {
	Dir         string
	FS          FS
	SegmentSize int64 // default 64 MiB
	NoSync      bool  // skip fsync (tests, transient data)
	Logger      *slog.Logger
}

type segment struct {
	first Index
	name  string
	size  int64
	offs  []uint32 // offset of each record's header in the file (for Read)
	rf    *readFile
}

// readFile is a segment opened for random reads; it stays open while a
// reader uses it even if the segment is deleted meanwhile.
type readFile struct {
	f    File
	refs int
	dead bool
}

type waiter struct {
	idx Index
	fn  func(error)
}

// Log is a write-ahead log. Safe for concurrent use.
type Log struct {
	opts Options
	fs   FS
	log  *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond // signals the syncer and WaitDurable callers
	segs     []segment
	f        File
	w        *bufio.Writer
	last     Index // last appended
	written  Index // last handed to the OS
	durable  Index // last fsynced
	err      error // sticky
	closed   bool
	waiters  []waiter
	syncReq  bool
	done     chan struct{}
	fsyncs   uint64
	segBytes int64

	flushArmed bool

	syncing File   // the file the syncer fsyncs outside the lock
	retired []File // segments rolled while being fsynced: closed after
}

// flushDelay bounds how long an appended record stays in the process's
// buffer when no fsync is requested.
const flushDelay = 10 * time.Millisecond

func (l *Log) lazyFlush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushArmed = false
	if l.closed || l.err != nil || l.w.Buffered() == 0 {
		return
	}
	if err := l.w.Flush(); err != nil {
		l.err = fmt.Errorf("wal: write failed; the log refuses further appends: %w", err)
		l.log.Error("wal: storage failure", "err", err)
		l.cond.Broadcast()
	}
}

// Open opens (or creates) the log in opts.Dir and recovers it.
func Open(opts Options) (*Log, error) {
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{opts: opts, fs: opts.FS, log: opts.Logger, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := l.fs.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: creating %s: %w", opts.Dir, err)
	}
	if err := l.recover(); err != nil {
		return nil, err
	}
	go l.syncer()
	return l, nil
}

func segName(first Index) string { return fmt.Sprintf("%020d.wal", first) }

func (l *Log) path(name string) string { return filepath.Join(l.opts.Dir, name) }

// recover scans every segment and opens the last one for appending. Only
// a torn tail of the last segment (bytes after the last record that a
// crash cut short, with no valid record after them) is repaired, by
// truncation, and logged. A damaged record anywhere else, a broken
// sequence of segments or an I/O error makes Open fail: those records may
// have been acknowledged, and forgetting them silently is worse than not
// starting (see Repair for the operator's way out).
func (l *Log) recover() error {
	names, err := l.fs.ReadDir(l.opts.Dir)
	if err != nil {
		return fmt.Errorf("wal: reading %s: %w", l.opts.Dir, err)
	}
	segs, err := l.listSegments(names)
	if err != nil {
		return err
	}
	next := Index(0)
	for i := range segs {
		s := &segs[i]
		if next != 0 && s.first != next {
			return l.corruption(s.name, 0, next, fmt.Sprintf("segment sequence broken: the previous segment ends before record %d, this one starts at %d", next, s.first))
		}
		res, err := l.scan(s, nil, true, -1)
		if err != nil {
			return err
		}
		s.size = res.valid
		next = s.first + res.n
		if res.bad == nil {
			continue
		}
		if i < len(segs)-1 {
			return l.corruption(s.name, res.valid, next, res.bad.Error())
		}
		// the last segment: a torn tail, or damage followed by records?
		at, total, err := l.validAfter(s.name, res.valid)
		if err != nil {
			return err
		}
		if at >= 0 {
			return l.corruption(s.name, res.valid, next, fmt.Sprintf("%v, followed by a valid record at offset %d", res.bad, at))
		}
		l.log.Warn("wal: torn tail of the last segment truncated (records a crash cut short; none of them was acknowledged)",
			"file", l.path(s.name), "offset", res.valid, "bytes_dropped", total-res.valid, "reason", res.bad.Error())
		if err := l.truncateFile(s.name, res.valid); err != nil {
			return err
		}
	}
	if len(segs) == 0 {
		segs = []segment{{first: 1, name: segName(1)}}
		next = 1
	}
	l.segs = segs
	l.last = next - 1
	l.written, l.durable = l.last, l.last
	last := &l.segs[len(l.segs)-1]
	f, err := l.fs.OpenFile(l.path(last.name), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("wal: opening %s: %w", l.path(last.name), err)
	}
	if _, err := f.Seek(last.size, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("wal: opening %s: %w", l.path(last.name), err)
	}
	l.f = f
	l.w = bufio.NewWriterSize(f, 256<<10)
	l.segBytes = last.size
	if err := l.fs.SyncDir(l.opts.Dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: syncing directory %s: %w", l.opts.Dir, err)
	}
	return nil
}

// listSegments returns the segments named in names, in order, and removes
// the leftovers of an interrupted Rewrite (the segment it was rewriting is
// still complete beside it).
func (l *Log) listSegments(names []string) ([]segment, error) {
	var segs []segment
	for _, n := range names {
		if strings.HasSuffix(n, ".compact") {
			if err := l.fs.Remove(l.path(n)); err != nil {
				return nil, fmt.Errorf("wal: removing the leftover of an interrupted compaction %s: %w", l.path(n), err)
			}
			continue
		}
		if !strings.HasSuffix(n, ".wal") {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(n, ".wal"), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, segment{first: first, name: n})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	return segs, nil
}

// CorruptionError reports a damaged record recovery may not repair: it is
// not a torn tail of the last segment, so acknowledged records may be at
// or after it. errors.Is(err, ErrCorrupt) holds.
type CorruptionError struct {
	Dir    string
	File   string // segment file name
	Offset int64  // byte offset of the first bad record
	Index  Index  // index the bad record would have
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: %s is damaged at offset %d (record %d): %s; the log refuses to open rather than drop records that may have been acknowledged. "+
		"Restore the directory from a backup, or run `warren-server --repair-wal %s` to move the damaged segment and every later one aside (nothing is deleted) and keep the records before the damage",
		filepath.Join(e.Dir, e.File), e.Offset, e.Index, e.Reason, e.Dir)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

func (l *Log) corruption(name string, off int64, idx Index, reason string) error {
	return &CorruptionError{Dir: l.opts.Dir, File: name, Offset: off, Index: idx, Reason: strings.TrimPrefix(reason, "wal: ")}
}

func (l *Log) truncateFile(name string, size int64) error {
	f, err := l.fs.OpenFile(l.path(name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: truncating %s: %w", l.path(name), err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("wal: truncating %s: %w", l.path(name), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: syncing %s: %w", l.path(name), err)
	}
	return nil
}

// readAll reads a whole file from off.
func (l *Log) readFrom(name string, off int64) ([]byte, error) {
	f, err := l.fs.OpenFile(l.path(name), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: opening %s: %w", l.path(name), err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", l.path(name), err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s at offset %d: %w (an I/O error, not corruption: check the disk)", l.path(name), off, err)
	}
	return b, nil
}

// validAfter decides whether the bad record at off in the last segment is
// a torn tail: it returns the offset of a valid record after it (-1 if
// none: a torn tail) and the file's size.
//
// When the bad record's header is plausible and its extent ends inside
// the file (a checksum mismatch), any valid record from that end on means
// damage, not a tear. When the extent runs past the end of the file (what
// a tear looks like, or a damaged length field) or the header is
// implausible, the bytes inside it may be the payload of the record the
// crash cut short (a message body can contain anything, even a valid
// frame), so only a chain of valid records running exactly to the end of
// the file counts: records written after the damaged one.
func (l *Log) validAfter(name string, off int64) (int64, int64, error) {
	b, err := l.readFrom(name, off)
	if err != nil {
		return 0, 0, err
	}
	size := off + int64(len(b))
	if len(b) >= 8 {
		n := binary.LittleEndian.Uint32(b)
		if n != gapMarker && n > 0 && n <= MaxRecord && 8+int64(n) <= int64(len(b)) {
			if at := findFrame(b, 8+int(n)); at >= 0 {
				return off + int64(at), size, nil
			}
			return -1, size, nil
		}
	}
	budget := resyncBudget
	for o := 1; ; {
		at := findFrameBudget(b, o, &budget)
		if at < 0 {
			return -1, size, nil
		}
		if budget < 0 || chainsToEnd(b[at:]) {
			return off + int64(at), size, nil // (out of budget: refuse)
		}
		o = at + 1
	}
}

// chainsToEnd reports whether b is a sequence of valid records and gaps
// ending exactly at its end.
func chainsToEnd(b []byte) bool {
	r := &sliceReader{b: b}
	for len(r.b) > 0 {
		if _, _, _, err := readEntry(r); err != nil {
			return false
		}
	}
	return true
}

// resyncBudget bounds the bytes checksummed while looking for a valid
// record after a bad one; past it the damage is treated as not torn
// (Open refuses; the repair command decides).
const resyncBudget = 1 << 30

// findFrame returns the first offset >= from in b where a complete, valid
// record or gap starts, or -1. It reports the offset where the checksum
// budget ran out as found: the caller then refuses to repair, the safe
// answer.
func findFrame(b []byte, from int) int {
	budget := resyncBudget
	return findFrameBudget(b, from, &budget)
}

func findFrameBudget(b []byte, from int, budget *int) int {
	for o := from; o+8 <= len(b); o++ {
		size := binary.LittleEndian.Uint32(b[o:])
		sum := binary.LittleEndian.Uint32(b[o+4:])
		if size == gapMarker {
			if o+gapSize <= len(b) {
				c := b[o+8 : o+12]
				count := binary.LittleEndian.Uint32(c)
				if count > 0 && count <= maxGap && crc32.Checksum(c, castagnoli) == sum {
					return o
				}
			}
			continue
		}
		if size == 0 || size > MaxRecord || int64(o)+8+int64(size) > int64(len(b)) {
			continue
		}
		*budget -= int(size)
		if *budget < 0 {
			return o
		}
		if crc32.Checksum(b[o+8:o+8+int(size)], castagnoli) == sum {
			return o
		}
	}
	return -1
}

// scanResult is a segment's valid prefix: n records (gaps included) in
// valid bytes; bad describes the record that stopped the scan (nil at a
// clean end of file).
type scanResult struct {
	n     uint64
	valid int64
	bad   error
}

// scan reads a segment's valid prefix, up to limit bytes (-1: all). The
// error is an I/O error or fn's; damage is reported in the result.
func (l *Log) scan(s *segment, fn func(Index, []byte) error, index bool, limit int64) (res scanResult, err error) {
	f, err := l.fs.OpenFile(l.path(s.name), os.O_RDONLY, 0)
	if err != nil {
		return res, fmt.Errorf("wal: opening %s: %w", l.path(s.name), err)
	}
	defer f.Close()
	var src io.Reader = f
	bufSize := int64(256 << 10)
	if limit >= 0 {
		src = io.LimitReader(f, limit)
		bufSize = min(bufSize, limit)
	} else if end, err := f.Seek(0, io.SeekEnd); err == nil {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return res, fmt.Errorf("wal: reading %s: %w", l.path(s.name), err)
		}
		bufSize = min(bufSize, end)
	}
	r := bufio.NewReaderSize(src, int(max(bufSize, 4096)))
	if index {
		s.offs = s.offs[:0]
	}
	real := 0
	var scratch []byte
	defer func() {
		if index && real == 0 {
			s.offs = nil // only gaps: nothing to read
		}
	}()
	for {
		rec, gap, size, rerr := readEntryInto(r, &scratch)
		if rerr == io.EOF {
			return res, nil
		}
		if rerr != nil {
			if errors.Is(rerr, ErrCorrupt) {
				res.bad = rerr
				return res, nil
			}
			return res, fmt.Errorf("wal: reading %s near offset %d: %w (an I/O error, not corruption: check the disk and the kernel log; the log refuses to open until it reads cleanly)", l.path(s.name), res.valid, rerr)
		}
		if gap > 0 {
			if index {
				// every record of the gap points at the gap's header
				for k := uint32(0); k < gap; k++ {
					s.offs = append(s.offs, uint32(res.valid))
				}
			}
			res.n += uint64(gap)
			res.valid += size
			continue
		}
		real++
		if fn != nil {
			if err := fn(s.first+res.n, rec); err != nil {
				return res, err
			}
		}
		if index {
			s.offs = append(s.offs, uint32(res.valid))
		}
		res.n++
		res.valid += size
	}
}

// ReadRecord reads one framed record; io.EOF at a clean end, ErrCorrupt
// (wrapped) for a torn or bad record. A gap (records compacted away, see
// Rewrite) is returned as ErrGap wrapped with the count in GapError.
func ReadRecord(r io.Reader) ([]byte, int64, error) {
	rec, gap, size, err := readEntry(r)
	if err == nil && gap > 0 {
		return nil, size, &GapError{Count: gap}
	}
	return rec, size, err
}

// GapError reports a run of records removed by Rewrite.
type GapError struct{ Count uint32 }

func (e *GapError) Error() string { return fmt.Sprintf("wal: %d records compacted away", e.Count) }

// A gap header stands for a run of records that Rewrite removed, so later
// records keep their indexes: gapMarker, the CRC of the count, the count.
const (
	gapMarker = 0xFFFFFFFF
	gapSize   = 12
	maxGap    = 1 << 24 // more records than a segment can hold: corrupt
)

func appendGap(b []byte, count uint32) []byte {
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], count)
	b = binary.LittleEndian.AppendUint32(b, gapMarker)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(c[:], castagnoli))
	return append(b, c[:]...)
}

// readEntry reads a record or a gap (gap > 0: that many records).
func readEntry(r io.Reader) (rec []byte, gap uint32, size int64, err error) {
	return readEntryInto(r, nil)
}

// readEntryInto is readEntry reusing *scratch for the record's bytes when
// it is not nil (the record is then only valid until the next call).
func readEntryInto(r io.Reader, scratch *[]byte) (rec []byte, gap uint32, size int64, err error) {
	var hdr [8]byte
	n, err := io.ReadFull(r, hdr[:])
	if err == io.EOF {
		return nil, 0, 0, io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		return nil, 0, 0, fmt.Errorf("%w: short header (%d bytes)", ErrCorrupt, n)
	}
	if err != nil {
		return nil, 0, 0, err // I/O error: not corruption
	}
	size32 := binary.LittleEndian.Uint32(hdr[:4])
	sum := binary.LittleEndian.Uint32(hdr[4:])
	if size32 == gapMarker {
		var c [4]byte
		if _, err := io.ReadFull(r, c[:]); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return nil, 0, 0, fmt.Errorf("%w: short gap", ErrCorrupt)
			}
			return nil, 0, 0, err
		}
		count := binary.LittleEndian.Uint32(c[:])
		if crc32.Checksum(c[:], castagnoli) != sum || count == 0 || count > maxGap {
			return nil, 0, 0, fmt.Errorf("%w: bad gap", ErrCorrupt)
		}
		return nil, count, gapSize, nil
	}
	rec, sz, err := readBody(r, size32, sum, scratch)
	return rec, 0, sz, err
}

func readBody(r io.Reader, size, sum uint32, scratch *[]byte) ([]byte, int64, error) {
	if size > MaxRecord {
		return nil, 0, fmt.Errorf("%w: length %d", ErrCorrupt, size)
	}
	if size == 0 {
		// Append refuses empty records, so 8 zero bytes are a region a
		// crash left zero-filled, not a record
		return nil, 0, fmt.Errorf("%w: zero-filled header", ErrCorrupt)
	}
	var rec []byte
	if scratch != nil && size <= 1<<20 {
		if uint32(cap(*scratch)) < size {
			*scratch = make([]byte, max(size, 64<<10))
		}
		rec = (*scratch)[:size]
	} else {
		rec = make([]byte, size)
	}
	if _, err := io.ReadFull(r, rec); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, 0, fmt.Errorf("%w: short record", ErrCorrupt)
		}
		return nil, 0, err
	}
	if crc32.Checksum(rec, castagnoli) != sum {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return rec, int64(size) + 8, nil
}

// Append adds a record and returns its index; it is buffered, not yet
// durable (see WaitDurable / OnDurable).
func (l *Log) Append(rec []byte) (Index, error) {
	if len(rec) > MaxRecord {
		return 0, fmt.Errorf("wal: record of %d bytes exceeds %d", len(rec), MaxRecord)
	}
	if len(rec) == 0 {
		return 0, ErrEmpty
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	if l.segBytes >= l.opts.SegmentSize {
		if err := l.rollLocked(); err != nil {
			l.err = err
			return 0, err
		}
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(len(rec)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(rec, castagnoli))
	if _, err := l.w.Write(hdr[:]); err != nil {
		l.err = fmt.Errorf("wal: write failed; the log refuses further appends: %w", err)
		return 0, l.err
	}
	if _, err := l.w.Write(rec); err != nil {
		l.err = fmt.Errorf("wal: write failed; the log refuses further appends: %w", err)
		return 0, l.err
	}
	cur := &l.segs[len(l.segs)-1]
	cur.offs = append(cur.offs, uint32(l.segBytes))
	l.segBytes += int64(len(rec)) + 8
	cur.size = l.segBytes
	l.last++
	if !l.flushArmed {
		// records nobody waits for still reach the OS soon, so they
		// survive the process being killed (not a power loss)
		l.flushArmed = true
		time.AfterFunc(flushDelay, l.lazyFlush)
	}
	return l.last, nil
}

// rollLocked starts a new segment after flushing and syncing the current.
func (l *Log) rollLocked() error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("wal: write failed: %w", err)
	}
	if !l.opts.NoSync {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("wal: fsync failed: %w", err)
		}
	}
	l.written, l.durable = l.last, l.last
	if l.syncing == l.f {
		// the syncer is fsyncing this file outside the lock: closing it
		// now would fail that fsync and stop the log; it closes it after
		l.retired = append(l.retired, l.f)
	} else {
		_ = l.f.Close()
	}
	first := l.last + 1
	name := segName(first)
	f, err := l.fs.OpenFile(l.path(name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("wal: creating segment %s: %w", name, err)
	}
	if err := l.fs.SyncDir(l.opts.Dir); err != nil {
		return fmt.Errorf("wal: syncing directory: %w", err)
	}
	l.f = f
	l.w.Reset(f)
	l.segs = append(l.segs, segment{first: first, name: name})
	l.segBytes = 0
	return nil
}

// syncer is the single goroutine that flushes and fsyncs: every waiter
// that arrived while the previous fsync ran shares the next one.
func (l *Log) syncer() {
	defer close(l.done)
	l.mu.Lock()
	for {
		for !l.closed && !l.syncReq {
			l.cond.Wait()
		}
		l.syncReq = false
		if l.err == nil && l.durable < l.last {
			target := l.last
			op := "write"
			err := l.w.Flush()
			f := l.f
			l.syncing = f
			l.mu.Unlock()
			if err == nil && !l.opts.NoSync {
				op = "fsync"
				err = f.Sync()
			}
			l.mu.Lock()
			l.syncing = nil
			for _, r := range l.retired {
				_ = r.Close()
			}
			l.retired = nil
			l.fsyncs++
			if err != nil {
				l.err = fmt.Errorf("wal: %s failed; the log refuses further appends until the node restarts (check the disk and free space under %s): %w", op, l.opts.Dir, err)
				l.log.Error("wal: storage failure", "op", op, "dir", l.opts.Dir, "err", err)
			} else if target > l.durable {
				l.durable = target
			}
		}
		l.fireLocked()
		l.cond.Broadcast()
		if l.closed && (l.durable >= l.last || l.err != nil) {
			l.mu.Unlock()
			return
		}
	}
}

// fireLocked runs the callbacks of waiters that are now durable (or failed).
func (l *Log) fireLocked() {
	if len(l.waiters) == 0 {
		return
	}
	i := 0
	for i < len(l.waiters) && (l.waiters[i].idx <= l.durable || l.err != nil) {
		i++
	}
	if i == 0 {
		return
	}
	ready := l.waiters[:i]
	l.waiters = append([]waiter(nil), l.waiters[i:]...)
	err := l.err
	durable := l.durable
	l.mu.Unlock()
	for _, w := range ready {
		if w.idx <= durable {
			w.fn(nil)
		} else {
			w.fn(err)
		}
	}
	l.mu.Lock()
}

// OnDurable calls fn (from the log's goroutine, in index order) once idx is
// durable, or with the error that stopped the log.
func (l *Log) OnDurable(idx Index, fn func(error)) {
	l.mu.Lock()
	if idx <= l.durable || l.err != nil {
		err := l.err
		if idx <= l.durable {
			err = nil
		}
		l.mu.Unlock()
		fn(err)
		return
	}
	l.waiters = append(l.waiters, waiter{idx, fn})
	l.syncReq = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

// WaitDurable blocks until idx is durable.
func (l *Log) WaitDurable(idx Index) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for idx > l.durable && l.err == nil && !l.closed {
		l.syncReq = true
		l.cond.Broadcast()
		l.cond.Wait()
	}
	if idx <= l.durable {
		return nil
	}
	if l.err != nil {
		return l.err
	}
	return ErrClosed
}

// AppendSync appends and waits until the record is durable.
func (l *Log) AppendSync(rec []byte) (Index, error) {
	idx, err := l.Append(rec)
	if err != nil {
		return 0, err
	}
	return idx, l.WaitDurable(idx)
}

// Durable returns the last durable index.
func (l *Log) Durable() Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// LastIndex returns the last appended index (0 when empty).
func (l *Log) LastIndex() Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// FirstIndex returns the first index still stored.
func (l *Log) FirstIndex() Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].first
}

// Fsyncs returns how many fsyncs ran (to check group commit).
func (l *Log) Fsyncs() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fsyncs
}

// Replay calls fn for every stored record from index from on, as far as
// the log reached when Replay started. rec is only valid during the call:
// copy what must outlive it. A damaged record (the disk changed under the
// log after Open) is an error, never a silent end.
func (l *Log) Replay(from Index, fn func(Index, []byte) error) error {
	l.mu.Lock()
	if err := l.w.Flush(); err != nil {
		l.mu.Unlock()
		return fmt.Errorf("wal: write failed: %w", err)
	}
	segs := append([]segment(nil), l.segs...)
	l.mu.Unlock()
	for i := range segs {
		s := &segs[i]
		if i+1 < len(segs) && segs[i+1].first <= from {
			continue
		}
		res, err := l.scan(s, func(idx Index, rec []byte) error {
			if idx < from {
				return nil
			}
			return fn(idx, rec)
		}, false, s.size)
		if err != nil {
			return err
		}
		if res.bad != nil {
			return l.corruption(s.name, res.valid, s.first+res.n, res.bad.Error())
		}
		if res.valid != s.size {
			return l.corruption(s.name, res.valid, s.first+res.n, fmt.Sprintf("segment is %d bytes, %d expected", res.valid, s.size))
		}
	}
	return nil
}

// maxReadSpan bounds one read of neighbouring records.
const maxReadSpan = 1 << 20

// ReadMany reads the records at idxs (ascending order reads fastest: close
// neighbours in one segment share one read) and calls fn with each one's
// position in idxs and its bytes, which fn must not keep. It stops at the
// first error: an index no longer (or not yet) stored, an I/O error, or a
// record that fails its checksum.
func (l *Log) ReadMany(idxs []Index, fn func(i int, rec []byte)) error {
	var buf []byte
	for i := 0; i < len(idxs); {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		si := sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first > idxs[i] }) - 1
		if si < 0 || idxs[i] > l.last || idxs[i] == 0 {
			l.mu.Unlock()
			return fmt.Errorf("wal: record %d is not stored (first %d, last %d)", idxs[i], l.segs[0].first, l.last)
		}
		seg := &l.segs[si]
		if idxs[i]-seg.first >= uint64(len(seg.offs)) {
			l.mu.Unlock()
			return fmt.Errorf("wal: record %d is not stored (compacted away)", idxs[i])
		}
		end := func(k uint64) int64 { // end offset of the k-th record of seg
			if k+1 < uint64(len(seg.offs)) {
				return int64(seg.offs[k+1])
			}
			return seg.size
		}
		start := int64(seg.offs[idxs[i]-seg.first])
		j := i + 1
		for j < len(idxs) && idxs[j] > idxs[j-1] && idxs[j]-seg.first < uint64(len(seg.offs)) &&
			end(idxs[j]-seg.first)-start <= maxReadSpan {
			j++
		}
		stop := end(idxs[j-1] - seg.first)
		// records still in the write buffer must reach the file first
		if si == len(l.segs)-1 && stop > l.segBytes-int64(l.w.Buffered()) {
			if err := l.w.Flush(); err != nil {
				l.mu.Unlock()
				return fmt.Errorf("wal: write failed: %w", err)
			}
		}
		rf := seg.rf
		if rf == nil {
			f, err := l.fs.OpenFile(l.path(seg.name), os.O_RDONLY, 0)
			if err != nil {
				l.mu.Unlock()
				return fmt.Errorf("wal: opening %s for reading: %w", seg.name, err)
			}
			rf = &readFile{f: f}
			seg.rf = rf
		}
		rf.refs++
		offs := make([]int64, j-i)
		for k := i; k < j; k++ {
			offs[k-i] = int64(seg.offs[idxs[k]-seg.first]) - start
		}
		l.mu.Unlock()

		if n := int(stop - start); cap(buf) < n {
			buf = make([]byte, n)
		} else {
			buf = buf[:n]
		}
		_, err := rf.f.ReadAt(buf, start)
		l.mu.Lock()
		rf.refs--
		if rf.dead && rf.refs == 0 {
			_ = rf.f.Close()
		}
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("wal: reading record %d: %w", idxs[i], err)
		}
		for k := i; k < j; k++ {
			o := offs[k-i]
			if o+8 > int64(len(buf)) {
				return fmt.Errorf("%w: record %d beyond its segment", ErrCorrupt, idxs[k])
			}
			size := int64(binary.LittleEndian.Uint32(buf[o:]))
			sum := binary.LittleEndian.Uint32(buf[o+4:])
			if size == gapMarker {
				return fmt.Errorf("wal: record %d is not stored (compacted away)", idxs[k])
			}
			if o+8+size > int64(len(buf)) {
				return fmt.Errorf("%w: record %d length %d", ErrCorrupt, idxs[k], size)
			}
			rec := buf[o+8 : o+8+size]
			if crc32.Checksum(rec, castagnoli) != sum {
				return fmt.Errorf("%w: record %d checksum mismatch", ErrCorrupt, idxs[k])
			}
			fn(k, rec)
		}
		i = j
	}
	return nil
}

// Read returns a copy of the record at idx.
func (l *Log) Read(idx Index) ([]byte, error) {
	var out []byte
	err := l.ReadMany([]Index{idx}, func(_ int, rec []byte) { out = append([]byte(nil), rec...) })
	return out, err
}

// Sealed returns the first indexes of the segments that no longer take
// appends (every segment but the last), oldest first.
func (l *Log) Sealed() []Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Index, 0, len(l.segs)-1)
	for _, s := range l.segs[:len(l.segs)-1] {
		out = append(out, s.first)
	}
	return out
}

// Rewrite compacts the sealed segment starting at first: records for which
// keep returns false are replaced by gaps, so the others keep their
// indexes, and reading or replaying a removed record finds nothing. The
// new file is written beside the old one, synced and renamed over it, so
// a crash leaves either the old or the new segment. It returns how many
// records were kept and the segment's size before and after.
func (l *Log) Rewrite(first Index, keep func(idx Index, rec []byte) bool) (kept int, before, after int64, err error) {
	l.mu.Lock()
	si := sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first >= first })
	if si >= len(l.segs) || l.segs[si].first != first || si == len(l.segs)-1 {
		l.mu.Unlock()
		return 0, 0, 0, fmt.Errorf("wal: no sealed segment starts at %d", first)
	}
	name, before := l.segs[si].name, l.segs[si].size
	l.mu.Unlock()

	in, err := l.fs.OpenFile(l.path(name), os.O_RDONLY, 0)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("wal: opening %s: %w", name, err)
	}
	defer in.Close()
	tmp := l.path(name + ".compact")
	out, err := l.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("wal: creating %s: %w", tmp, err)
	}
	fail := func(err error) (int, int64, int64, error) {
		out.Close()
		_ = l.fs.Remove(tmp)
		return 0, 0, 0, err
	}
	r := bufio.NewReaderSize(in, 256<<10)
	w := bufio.NewWriterSize(out, 256<<10)
	var offs []uint32
	var pos int64
	var run uint32
	var scratch []byte // records dropped and not yet written as a gap
	idx := first
	flushGap := func() error {
		for run > 0 {
			n := min(run, maxGap)
			if _, err := w.Write(appendGap(nil, n)); err != nil {
				return err
			}
			pos += gapSize
			run -= n
		}
		return nil
	}
	gapAt := int64(-1) // offset of the pending gap's header
	for {
		rec, gap, _, rerr := readEntryInto(r, &scratch)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(fmt.Errorf("wal: compacting %s: %w", name, rerr))
		}
		n := uint32(1)
		drop := gap > 0
		if gap > 0 {
			n = gap
		} else if !keep(idx, rec) {
			drop = true
		}
		if drop {
			if run == 0 {
				gapAt = pos
			}
			for k := uint32(0); k < n; k++ {
				offs = append(offs, uint32(gapAt))
			}
			run += n
			idx += Index(n)
			continue
		}
		if err := flushGap(); err != nil {
			return fail(err)
		}
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[:4], uint32(len(rec)))
		binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(rec, castagnoli))
		if _, err := w.Write(hdr[:]); err != nil {
			return fail(err)
		}
		if _, err := w.Write(rec); err != nil {
			return fail(err)
		}
		offs = append(offs, uint32(pos))
		pos += 8 + int64(len(rec))
		kept++
		idx++
	}
	if err := flushGap(); err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if !l.opts.NoSync {
		if err := out.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := out.Close(); err != nil {
		_ = l.fs.Remove(tmp)
		return 0, 0, 0, err
	}
	if kept == 0 {
		offs = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	si = sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first >= first })
	if si >= len(l.segs) || l.segs[si].first != first {
		_ = l.fs.Remove(tmp) // truncated meanwhile
		return 0, 0, 0, fmt.Errorf("wal: segment %d removed while compacting", first)
	}
	if err := l.fs.Rename(tmp, l.path(name)); err != nil {
		_ = l.fs.Remove(tmp)
		return 0, 0, 0, fmt.Errorf("wal: replacing %s: %w", name, err)
	}
	if err := l.fs.SyncDir(l.opts.Dir); err != nil {
		return 0, 0, 0, fmt.Errorf("wal: syncing directory: %w", err)
	}
	seg := &l.segs[si]
	if rf := seg.rf; rf != nil {
		rf.dead = true
		if rf.refs == 0 {
			_ = rf.f.Close()
		}
		seg.rf = nil
	}
	seg.offs, seg.size = offs, pos
	return kept, before, pos, nil
}

// SegmentOf returns the first index of the segment holding idx.
func (l *Log) SegmentOf(idx Index) Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > idx })
	if i == 0 {
		return l.segs[0].first
	}
	return l.segs[i-1].first
}

// NextSegment returns the first index of the segment after the one that
// starts at first (the next index to append when it is the last).
func (l *Log) NextSegment(first Index) Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > first })
	if i < len(l.segs) {
		return l.segs[i].first
	}
	return l.last + 1
}

// TruncateFront deletes whole segments whose records are all below upTo.
// The active segment is never deleted.
func (l *Log) TruncateFront(upTo Index) error {
	l.mu.Lock()
	var drop []segment
	for len(l.segs) > 1 && l.segs[1].first <= upTo {
		if rf := l.segs[0].rf; rf != nil {
			rf.dead = true
			if rf.refs == 0 {
				_ = rf.f.Close()
			}
		}
		drop = append(drop, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	for _, s := range drop {
		if err := l.fs.Remove(l.path(s.name)); err != nil {
			return fmt.Errorf("wal: removing %s: %w", s.name, err)
		}
	}
	if len(drop) > 0 {
		return l.fs.SyncDir(l.opts.Dir)
	}
	return nil
}

// Segments returns how many segment files the log has.
func (l *Log) Segments() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.segs)
}

// Close flushes, syncs and closes the log.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.syncReq = true
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if err == nil && !l.opts.NoSync {
		err = l.f.Sync()
	}
	for i := range l.segs {
		if rf := l.segs[i].rf; rf != nil && !rf.dead {
			rf.dead = true
			if rf.refs == 0 {
				_ = rf.f.Close()
			}
		}
	}
	for _, r := range l.retired {
		_ = r.Close()
	}
	l.retired = nil
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if l.err != nil {
		return l.err
	}
	return err
}

func crc32Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
