package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func rec(i int) []byte {
	return []byte(fmt.Sprintf("record-%06d-%s", i, bytes.Repeat([]byte{'x'}, i%50)))
}

func replayAll(t *testing.T, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	next := l.FirstIndex()
	if err := l.Replay(0, func(idx Index, r []byte) error {
		if idx != next {
			return fmt.Errorf("index %d, want %d", idx, next)
		}
		next++
		out = append(out, append([]byte(nil), r...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTripRestartSegments(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 300; i++ {
		idx, err := l.Append(rec(i))
		if err != nil || idx != Index(i) {
			t.Fatalf("append %d: idx %d err %v", i, idx, err)
		}
	}
	if err := l.WaitDurable(300); err != nil {
		t.Fatal(err)
	}
	if l.Segments() < 5 {
		t.Fatalf("only %d segments", l.Segments())
	}
	l.Close()
	l, err = Open(Options{Dir: dir, SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	got := replayAll(t, l)
	if len(got) != 300 || !bytes.Equal(got[41], rec(42)) {
		t.Fatalf("replayed %d", len(got))
	}
	if idx, _ := l.Append(rec(301)); idx != 301 {
		t.Fatalf("next index %d", idx)
	}
	// drop segments entirely below 150
	if err := l.TruncateFront(150); err != nil {
		t.Fatal(err)
	}
	first := l.FirstIndex()
	if first > 150 || first == 1 {
		t.Fatalf("first index after truncation %d", first)
	}
	l.WaitDurable(301)
	l.Close()
	l, _ = Open(Options{Dir: dir, SegmentSize: 1024})
	got = replayAll(t, l)
	if Index(len(got)) != 301-first+1 {
		t.Fatalf("after truncate: %d records from %d", len(got), first)
	}
	l.Close()
}

// countingFS counts fsyncs and can inject failures.
type countingFS struct {
	OSFS
	syncs      atomic.Int64
	failSync   atomic.Bool
	failWrites atomic.Bool
	enospcAt   atomic.Int64 // fail writes once this many bytes were written (0 = never)
	written    atomic.Int64
}

type countingFile struct {
	*os.File
	fs *countingFS
}

func (f countingFile) Sync() error {
	f.fs.syncs.Add(1)
	if f.fs.failSync.Load() {
		return errors.New("injected fsync failure")
	}
	return f.File.Sync()
}

func (f countingFile) Write(p []byte) (int, error) {
	if f.fs.failWrites.Load() {
		return 0, errors.New("injected write failure")
	}
	if at := f.fs.enospcAt.Load(); at > 0 && f.fs.written.Load()+int64(len(p)) > at {
		n := int(at - f.fs.written.Load())
		if n < 0 {
			n = 0
		}
		m, _ := f.File.Write(p[:n]) // a torn write reaches the disk
		f.fs.written.Add(int64(m))
		return m, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	n, err := f.File.Write(p)
	f.fs.written.Add(int64(n))
	return n, err
}

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c}, nil
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	fs := &countingFS{}
	l, err := Open(Options{Dir: t.TempDir(), FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := fs.syncs.Load()
	var wg sync.WaitGroup
	const callers = 64
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := l.AppendSync(rec(i*100 + j)); err != nil {
					t.Error(err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	n := fs.syncs.Load() - before
	if n >= callers*20 {
		t.Fatalf("%d fsyncs for %d synchronous appends: no group commit", n, callers*20)
	}
	t.Logf("%d fsyncs for %d appends", n, callers*20)
}

func TestFsyncFailureIsStickyAndReported(t *testing.T) {
	fs := &countingFS{}
	l, _ := Open(Options{Dir: t.TempDir(), FS: fs})
	defer l.Close()
	if _, err := l.AppendSync(rec(1)); err != nil {
		t.Fatal(err)
	}
	fs.failSync.Store(true)
	if _, err := l.AppendSync(rec(2)); err == nil {
		t.Fatal("AppendSync succeeded although fsync failed")
	}
	fs.failSync.Store(false)
	if _, err := l.Append(rec(3)); err == nil {
		t.Fatal("append accepted after a storage failure")
	}
	var got error
	done := make(chan struct{})
	l.OnDurable(5, func(err error) { got = err; close(done) })
	<-done
	if got == nil {
		t.Fatal("OnDurable reported success after a failure")
	}
}

func TestWriteFailureRefusesAppends(t *testing.T) {
	fs := &countingFS{}
	l, _ := Open(Options{Dir: t.TempDir(), FS: fs})
	defer l.Close()
	fs.failWrites.Store(true)
	big := bytes.Repeat([]byte("y"), 300<<10) // larger than the write buffer
	if _, err := l.Append(big); err == nil {
		t.Fatal("append succeeded although the write failed")
	}
	fs.failWrites.Store(false)
	if _, err := l.Append(rec(1)); err == nil {
		t.Fatal("append accepted after a write failure")
	}
}

func TestENOSPCKeepsAcknowledgedRecords(t *testing.T) {
	dir := t.TempDir()
	fs := &countingFS{}
	l, _ := Open(Options{Dir: dir, FS: fs})
	var acked int
	for i := 1; i <= 50; i++ {
		if _, err := l.AppendSync(rec(i)); err != nil {
			t.Fatal(err)
		}
		acked = i
	}
	fs.enospcAt.Store(fs.written.Load() + 100) // the disk fills up mid-record
	var err error
	for i := 51; i <= 60 && err == nil; i++ {
		_, err = l.AppendSync(rec(i))
		if err == nil {
			acked = i
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	l.Close()
	l, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := replayAll(t, l)
	if len(got) < acked {
		t.Fatalf("lost acknowledged records: %d < %d", len(got), acked)
	}
	for i, r := range got {
		if !bytes.Equal(r, rec(i+1)) {
			t.Fatalf("record %d corrupted", i+1)
		}
	}
}

func lastSegment(t *testing.T, dir string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	return m[len(m)-1]
}

func TestTornTailTruncated(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(Options{Dir: dir})
	for i := 1; i <= 10; i++ {
		l.Append(rec(i))
	}
	l.Close()
	seg := lastSegment(t, dir)
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{40, 0, 0, 0, 1, 2, 3, 4, 'p', 'a', 'r'}) // a record cut short by a crash
	f.Close()
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	got := replayAll(t, l)
	if len(got) != 10 {
		t.Fatalf("kept %d records", len(got))
	}
	if idx, _ := l.Append(rec(11)); idx != 11 {
		t.Fatalf("append after recovery at %d", idx)
	}
	l.Close()
	l, _ = Open(Options{Dir: dir})
	if got := replayAll(t, l); len(got) != 11 {
		t.Fatalf("after re-append %d", len(got))
	}
	l.Close()
}

// fill writes records 1..n with segments of size seg and closes the log.
func fill(t *testing.T, dir string, n int, seg int64) {
	t.Helper()
	l, err := Open(Options{Dir: dir, SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := l.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// snapshotDir maps every file under dir (recursively) to its bytes.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	return m
}

// offsetOf returns the offset of record i in a segment whose first record
// is first (records written by fill).
func offsetOf(first, i int) int {
	off := 0
	for k := first; k < i; k++ {
		off += 8 + len(rec(k))
	}
	return off
}

// firstOf returns the first index of a segment file.
func firstOf(t *testing.T, path string) int {
	var first int
	if _, err := fmt.Sscanf(filepath.Base(path), "%020d.wal", &first); err != nil {
		t.Fatal(err)
	}
	return first
}

// TestFlippedByteMidLogRefusesToOpen: one flipped byte in segment 2 of
// many used to cut the log there and delete every later segment, with no
// error. Open must refuse, name the file and offset and say what to do,
// and leave every byte on disk as it was.
func TestFlippedByteMidLogRefusesToOpen(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 1000, 4096)
	segs := segments(t, dir)
	if len(segs) < 5 {
		t.Fatalf("only %d segments", len(segs))
	}
	victim := segs[1]
	first := firstOf(t, victim)
	off := offsetOf(first, first+3)
	b, _ := os.ReadFile(victim)
	b[off+8+2] ^= 0x01
	os.WriteFile(victim, b, 0o640)
	before := snapshotDir(t, dir)

	_, err := Open(Options{Dir: dir, SegmentSize: 4096})
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: want a CorruptionError, got %v", err)
	}
	if ce.File != filepath.Base(victim) || ce.Offset != int64(off) || ce.Index != Index(first+3) {
		t.Fatalf("error names %s offset %d record %d; want %s offset %d record %d", ce.File, ce.Offset, ce.Index, filepath.Base(victim), off, first+3)
	}
	for _, want := range []string{victim, fmt.Sprint(off), "--repair-wal " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if after := snapshotDir(t, dir); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused Open changed the files on disk")
	}
}

// TestDamageInLastSegmentFollowedByRecordsRefuses: a bad record in the
// last segment with good records after it is not a torn tail.
func TestDamageInLastSegmentFollowedByRecordsRefuses(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 20, 1<<20)
	seg := lastSegment(t, dir)
	b, _ := os.ReadFile(seg)
	off := offsetOf(1, 8)
	b[off+8+3] ^= 0xff
	os.WriteFile(seg, b, 0o640)
	before := snapshotDir(t, dir)
	_, err := Open(Options{Dir: dir})
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Offset != int64(off) || ce.Index != 8 {
		t.Fatalf("want a CorruptionError at offset %d record 8, got %v", off, err)
	}
	if !reflect.DeepEqual(before, snapshotDir(t, dir)) {
		t.Fatal("files changed")
	}
	// a flipped length byte (the record's extent is unknown) refuses too
	b[off+8+3] ^= 0xff
	b[off+1] ^= 0x40
	os.WriteFile(seg, b, 0o640)
	if _, err := Open(Options{Dir: dir}); !errors.As(err, &ce) {
		t.Fatalf("bad length mid-segment: want a CorruptionError, got %v", err)
	}
}

// TestTornTailKinds: what a crash during an unsynced write can leave at
// the end of the last segment is repaired, whatever its shape.
func TestTornTailKinds(t *testing.T) {
	for name, tail := range map[string][]byte{
		"short header":     {40, 0},
		"short payload":    {40, 0, 0, 0, 1, 2, 3, 4, 'p', 'a', 'r'},
		"zero-filled page": make([]byte, 4096),
		"bad checksum":     append([]byte{5, 0, 0, 0, 1, 2, 3, 4}, "hello"...),
		"garbage":          bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 300),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir, 10, 1<<20)
			seg := lastSegment(t, dir)
			size := fileSize(t, seg)
			f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(tail)
			f.Close()
			var logged bytes.Buffer
			l, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if got := replayAll(t, l); len(got) != 10 {
				t.Fatalf("kept %d records", len(got))
			}
			for _, want := range []string{"torn tail", "file=" + seg, fmt.Sprintf("offset=%d", size), fmt.Sprintf("bytes_dropped=%d", len(tail))} {
				if !strings.Contains(logged.String(), want) {
					t.Errorf("log %q lacks %q", logged.String(), want)
				}
			}
			if idx, _ := l.Append(rec(11)); idx != 11 {
				t.Fatalf("append after recovery at %d", idx)
			}
			l.Close()
		})
	}
}

// TestTornRecordWithFrameInsideIsATornTail: a message body can hold
// anything, even bytes that form a valid frame; when a crash cuts such a
// record short, what is left is still a torn tail.
func TestTornRecordWithFrameInsideIsATornTail(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 10, 1<<20)
	inner := []byte("a frame inside a body")
	body := append(bytes.Repeat([]byte{'b'}, 50), frameOf(inner)...)
	body = append(body, bytes.Repeat([]byte{'c'}, 100)...)
	torn := frameOf(body)[:8+50+len(frameOf(inner))+10] // cut after the inner frame
	seg := lastSegment(t, dir)
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(torn)
	f.Close()
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("a torn record holding a frame was called damage: %v", err)
	}
	defer l.Close()
	if got := replayAll(t, l); len(got) != 10 {
		t.Fatalf("%d records", len(got))
	}
}

// TestDamagedLengthInLastSegmentRefuses: a length field damaged so that
// the record seems to run past the end of the file looks like a tear, but
// the records after it chain to the end of the file: damage.
func TestDamagedLengthInLastSegmentRefuses(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 20, 1<<20)
	seg := lastSegment(t, dir)
	b, _ := os.ReadFile(seg)
	off := offsetOf(1, 12)
	b[off+2] ^= 0x10 // +1 MiB
	os.WriteFile(seg, b, 0o640)
	var ce *CorruptionError
	if _, err := Open(Options{Dir: dir}); !errors.As(err, &ce) || ce.Index != 12 {
		t.Fatalf("want a CorruptionError at record 12, got %v", err)
	}
}

func frameOf(rec []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(rec)))
	b = binary.LittleEndian.AppendUint32(b, crcOf(rec))
	return append(b, rec...)
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// eioFS fails reads of one file with EIO, as a failing disk does.
type eioFS struct {
	OSFS
	bad string
}

type eioFile struct{ *os.File }

func (eioFile) Read([]byte) (int, error) {
	return 0, &os.PathError{Op: "read", Path: "segment", Err: syscall.EIO}
}

func (eioFile) ReadAt([]byte, int64) (int, error) {
	return 0, &os.PathError{Op: "read", Path: "segment", Err: syscall.EIO}
}

func (e *eioFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil || name != e.bad {
		return f, err
	}
	return eioFile{f}, nil
}

// TestIOErrorIsNotCorruption: a read error during recovery used to count
// as corruption, cutting the log there. It must fail Open as an I/O error
// and change nothing, and the log must open whole once the disk reads.
func TestIOErrorIsNotCorruption(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 300, 2048)
	segs := segments(t, dir)
	before := snapshotDir(t, dir)
	_, err := Open(Options{Dir: dir, SegmentSize: 2048, FS: &eioFS{bad: segs[1]}})
	if err == nil {
		t.Fatal("Open succeeded over an unreadable segment")
	}
	if errors.Is(err, ErrCorrupt) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("want an I/O error (EIO, not ErrCorrupt), got %v", err)
	}
	if !strings.Contains(err.Error(), segs[1]) || !strings.Contains(err.Error(), "not corruption") {
		t.Fatalf("error does not name the file or say it is an I/O error: %v", err)
	}
	if !reflect.DeepEqual(before, snapshotDir(t, dir)) {
		t.Fatal("files changed")
	}
	l, err := Open(Options{Dir: dir, SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := replayAll(t, l); len(got) != 300 {
		t.Fatalf("%d records after the disk recovered", len(got))
	}
}

// TestMissingMiddleSegmentRefuses: a segment gone from the middle used to
// make recovery delete every later one.
func TestMissingMiddleSegmentRefuses(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 400, 2048)
	segs := segments(t, dir)
	os.Rename(segs[2], filepath.Join(t.TempDir(), "elsewhere"))
	_, err := Open(Options{Dir: dir, SegmentSize: 2048})
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.File != filepath.Base(segs[3]) || !strings.Contains(err.Error(), "sequence") {
		t.Fatalf("want a sequence CorruptionError naming %s, got %v", segs[3], err)
	}
	if len(segments(t, dir)) != len(segs)-1 {
		t.Fatal("segments were removed")
	}
	rep, err := Repair(Options{Dir: dir, SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Moved) != len(segs)-3 || rep.KeptLast != Index(firstOf(t, segs[2])-1) {
		t.Fatalf("repair: %+v", rep)
	}
	l, err := Open(Options{Dir: dir, SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := replayAll(t, l); len(got) != firstOf(t, segs[2])-1 {
		t.Fatalf("%d records after repair", len(got))
	}
}

// TestRepairMovesDamagedSegmentsAside: the repair command keeps every
// damaged byte (moved into a dated folder), keeps the good records before
// the damage in the log, reports what was lost, and leaves a log that
// opens and continues at the right index.
func TestRepairMovesDamagedSegmentsAside(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 1000, 4096)
	segs := segments(t, dir)
	victim := segs[1]
	first := firstOf(t, victim)
	bad := first + 5
	off := offsetOf(first, bad)
	b, _ := os.ReadFile(victim)
	b[off+8+1] ^= 0x10
	os.WriteFile(victim, b, 0o640)
	before := snapshotDir(t, dir)

	rep, err := Repair(Options{Dir: dir, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if len(rep.Moved) != len(segs)-1 {
		t.Fatalf("moved %d files, want %d", len(rep.Moved), len(segs)-1)
	}
	if rep.KeptFirst != 1 || rep.KeptLast != Index(bad-1) {
		t.Fatalf("kept %d..%d, want 1..%d", rep.KeptFirst, rep.KeptLast, bad-1)
	}
	if rep.Readable != 1000-bad || rep.DamagedBytes != int64(8+len(rec(bad))) {
		t.Fatalf("readable %d (want %d), damaged bytes %d (want %d)", rep.Readable, 1000-bad, rep.DamagedBytes, 8+len(rec(bad)))
	}
	if !strings.HasPrefix(filepath.Base(rep.AsideDir), "damaged-") || filepath.Dir(rep.AsideDir) != dir {
		t.Fatalf("aside dir %s", rep.AsideDir)
	}
	// nothing deleted: every original file is in the aside folder unchanged
	after := snapshotDir(t, dir)
	aside, _ := filepath.Rel(dir, rep.AsideDir)
	for _, s := range segs[1:] {
		name := filepath.Base(s)
		if after[filepath.Join(aside, name)] != before[name] {
			t.Fatalf("%s not kept byte for byte in %s", name, rep.AsideDir)
		}
	}
	if after[filepath.Base(segs[0])] != before[filepath.Base(segs[0])] {
		t.Fatal("the undamaged segment changed")
	}
	for _, want := range []string{"nothing was deleted", rep.AsideDir, fmt.Sprintf("%d records still readable", 1000-bad)} {
		if !strings.Contains(rep.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	l, err := Open(Options{Dir: dir, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	got := replayAll(t, l)
	if len(got) != bad-1 {
		t.Fatalf("%d records after repair, want %d", len(got), bad-1)
	}
	for i, r := range got {
		if !bytes.Equal(r, rec(i+1)) {
			t.Fatalf("record %d wrong after repair", i+1)
		}
	}
	if idx, err := l.Append(rec(bad)); err != nil || idx != Index(bad) {
		t.Fatalf("append after repair: %d %v", idx, err)
	}
	l.Close()
	// a second repair finds nothing to do
	rep, err = Repair(Options{Dir: dir, SegmentSize: 4096})
	if err != nil || rep.Damage != "" || len(rep.Moved) != 0 || rep.KeptLast != Index(bad) {
		t.Fatalf("second repair: %+v %v", rep, err)
	}
}

// TestRepairDamageAtFirstRecord keeps the log's first index when the
// first segment loses everything.
func TestRepairDamageAtFirstRecord(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 50, 1<<20)
	fill(t, dir, 0, 1<<20)
	seg := lastSegment(t, dir)
	b, _ := os.ReadFile(seg)
	b[8] ^= 1
	os.WriteFile(seg, b, 0o640)
	rep, err := Repair(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.KeptLast != 0 || rep.Readable != 49 || len(rep.Moved) != 1 {
		t.Fatalf("%+v", rep)
	}
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.LastIndex() != 0 || l.FirstIndex() != 1 {
		t.Fatalf("first %d last %d", l.FirstIndex(), l.LastIndex())
	}
}

// TestRandomCrashes checks the promise with random appends, syncs and
// simulated power loss (the file cut back to an arbitrary point at or
// after the last acknowledged byte): every acknowledged record survives,
// in order, and nothing corrupt is ever returned.
func TestRandomCrashes(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	dir := t.TempDir()
	total := 0 // records the log returned on the last open
	for round := 0; round < 30; round++ {
		l, err := Open(Options{Dir: dir, SegmentSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		got := replayAll(t, l)
		if len(got) < total {
			t.Fatalf("round %d: %d records, %d were acknowledged", round, len(got), total)
		}
		for i, r := range got {
			if !bytes.Equal(r, rec(i+1)) {
				t.Fatalf("round %d: record %d wrong", round, i+1)
			}
		}
		n := len(got)
		acked := n
		for k := rng.Intn(40); k > 0; k-- {
			n++
			if rng.Intn(3) == 0 {
				if _, err := l.AppendSync(rec(n)); err != nil {
					t.Fatal(err)
				}
				acked = n
			} else if _, err := l.Append(rec(n)); err != nil {
				t.Fatal(err)
			}
		}
		// crash: flush what the OS has, then cut the last segment at a
		// random point past the acknowledged data
		l.mu.Lock()
		l.w.Flush()
		l.mu.Unlock()
		seg := lastSegment(t, dir)
		fi, _ := os.Stat(seg)
		ackedBytes := int64(0)
		{
			first := l.SegmentOf(Index(max(acked, 1)))
			// bytes of records in this segment up to acked
			for i := first; i <= Index(acked); i++ {
				ackedBytes += int64(8 + len(rec(int(i))))
			}
			if Index(acked) < first {
				ackedBytes = 0
			}
		}
		if fi.Size() > ackedBytes {
			cut := ackedBytes + rng.Int63n(fi.Size()-ackedBytes+1)
			os.Truncate(seg, cut)
		}
		total = acked
		// no Close: the process died
		l.mu.Lock()
		l.closed = true
		l.cond.Broadcast()
		l.mu.Unlock()
		<-l.done
		l.f.Close()
	}
}

func FuzzReadRecord(f *testing.F) {
	var good bytes.Buffer
	l := []byte("hello")
	good.Write([]byte{5, 0, 0, 0})
	var sum [4]byte
	c := crcOf(l)
	sum[0], sum[1], sum[2], sum[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	good.Write(sum[:])
	good.Write(l)
	f.Add(good.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for i := 0; i < 100; i++ {
			rec, _, err := ReadRecord(r)
			if err != nil {
				return
			}
			if crcOf(rec) == 0 && len(rec) > 0 {
				_ = rec
			}
		}
	})
}

func crcOf(b []byte) uint32 { return crc32Checksum(b) }

func BenchmarkAppendSync1KiB(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, _ := Open(Options{Dir: b.TempDir()})
			defer l.Close()
			body := bytes.Repeat([]byte{1}, 1024)
			b.ReportAllocs()
			b.SetParallelism(writers)
			before := l.Fsyncs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.AppendSync(body); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(l.Fsyncs()-before)/b.Elapsed().Seconds(), "fsyncs/s")
		})
	}
}

func TestReadManyAcrossSegmentsBufferAndReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100+i%300) }
	for i := 1; i <= 200; i++ {
		if idx, err := l.Append(payload(i)); err != nil || idx != Index(i) {
			t.Fatalf("append %d: %d %v", i, idx, err)
		}
	}
	check := func(l *Log, idxs []Index) {
		t.Helper()
		seen := 0
		err := l.ReadMany(idxs, func(i int, rec []byte) {
			seen++
			if !bytes.Equal(rec, payload(int(idxs[i]))) {
				t.Fatalf("record %d: got %d bytes of %d", idxs[i], len(rec), rec[0])
			}
		})
		if err != nil || seen != len(idxs) {
			t.Fatalf("ReadMany: %v (%d of %d)", err, seen, len(idxs))
		}
	}
	// the last records are still in the write buffer; the first are in
	// rolled segments; out-of-order indexes work too
	check(l, []Index{1, 2, 3, 50, 51, 199, 200})
	check(l, []Index{200, 7, 120})
	if r, err := l.Read(77); err != nil || !bytes.Equal(r, payload(77)) {
		t.Fatalf("Read 77: %v", err)
	}
	if _, err := l.Read(201); err == nil {
		t.Fatal("reading past the end must fail")
	}
	if err := l.TruncateFront(100); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(1); err == nil {
		t.Fatal("reading a deleted segment must fail")
	}
	check(l, []Index{150, 151, 200})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(Options{Dir: dir, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(l, []Index{150, 160, 170, 200})
	idx, _ := l.Append(payload(201))
	check(l, []Index{idx - 1, idx})
}

func TestReadDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		l.Append([]byte("hello world"))
	}
	if err := l.WaitDurable(3); err != nil {
		t.Fatal(err)
	}
	// flip a byte of record 2 behind the log's back
	f, err := os.OpenFile(filepath.Join(dir, segName(1)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'X'}, 8+11+8+3)
	f.Close()
	if _, err := l.Read(1); err != nil {
		t.Fatalf("record 1 is intact: %v", err)
	}
	if _, err := l.Read(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("want ErrCorrupt, got %v", err)
	}
}

func TestRewriteLeavesGapsAndKeepsIndexes(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	payload := func(i Index) []byte { return bytes.Repeat([]byte{byte(i)}, 50+int(i%7)) }
	for i := Index(1); i <= 120; i++ {
		l.Append(payload(i))
	}
	sealed := l.Sealed()
	if len(sealed) < 3 {
		t.Fatalf("want several sealed segments, got %v", sealed)
	}
	keepOdd := func(idx Index, rec []byte) bool {
		if !bytes.Equal(rec, payload(idx)) {
			t.Fatalf("rewrite saw record %d with wrong bytes", idx)
		}
		return idx%2 == 1
	}
	kept, before, after, err := l.Rewrite(sealed[0], keepOdd)
	if err != nil || kept == 0 || after >= before {
		t.Fatalf("rewrite: kept %d, %d → %d bytes, %v", kept, before, after, err)
	}
	// rewriting again (gaps in the input) keeps the same records
	if kept2, _, _, err := l.Rewrite(sealed[0], keepOdd); err != nil || kept2 != kept {
		t.Fatalf("second rewrite: %d vs %d, %v", kept2, kept, err)
	}
	// the second segment loses everything
	if kept, _, after, err := l.Rewrite(sealed[1], func(Index, []byte) bool { return false }); err != nil || kept != 0 || after != gapSize {
		t.Fatalf("empty rewrite: kept %d, %d bytes, %v", kept, after, err)
	}
	if _, _, _, err := l.Rewrite(l.SegmentOf(120), keepOdd); err == nil {
		t.Fatal("the active segment must not be rewritten")
	}
	check := func(l *Log) {
		t.Helper()
		var got []Index
		if err := l.Replay(0, func(idx Index, rec []byte) error {
			if !bytes.Equal(rec, payload(idx)) {
				t.Fatalf("replayed record %d has wrong bytes", idx)
			}
			got = append(got, idx)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, idx := range got {
			if idx < sealed[1] && idx%2 == 0 || idx >= sealed[1] && idx < sealed[2] {
				t.Fatalf("record %d should be gone", idx)
			}
		}
		if got[len(got)-1] != 120 {
			t.Fatalf("last record %d", got[len(got)-1])
		}
		if r, err := l.Read(sealed[0]); err != nil || !bytes.Equal(r, payload(sealed[0])) {
			t.Fatalf("kept record unreadable: %v", err)
		}
		if _, err := l.Read(sealed[0] + 1); err == nil {
			t.Fatal("a removed record was readable")
		}
		if _, err := l.Read(sealed[1]); err == nil {
			t.Fatal("a record of the emptied segment was readable")
		}
		if r, err := l.Read(sealed[2]); err != nil || !bytes.Equal(r, payload(sealed[2])) {
			t.Fatalf("record after the gaps: %v", err)
		}
	}
	check(l)
	l.Close()
	// a leftover from an interrupted rewrite is ignored and removed
	os.WriteFile(filepath.Join(dir, segName(sealed[2])+".compact"), []byte("junk"), 0o644)
	l, err = Open(Options{Dir: dir, SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(l)
	if idx, _ := l.Append(payload(121)); idx != 121 {
		t.Fatalf("next index after reopening %d", idx)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(sealed[2])+".compact")); !os.IsNotExist(err) {
		t.Fatal("leftover .compact file not removed")
	}
}

// FuzzRecover opens a log whose only segment holds arbitrary bytes: it must
// not panic, every record it replays must read back the same, and the
// next append must follow the last record it kept.
func FuzzRecover(f *testing.F) {
	frame := func(rec []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(rec)))
		b = binary.LittleEndian.AppendUint32(b, crcOf(rec))
		return append(b, rec...)
	}
	seed := append(frame([]byte("one")), appendGap(nil, 3)...)
	seed = append(seed, frame([]byte("five"))...)
	f.Add(seed)
	f.Add(append(seed, 0xFF, 0xFF))
	f.Add(appendGap(nil, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir, NoSync: true})
		if err != nil {
			return // refused with an error: fine
		}
		defer l.Close()
		got := map[Index][]byte{}
		if err := l.Replay(0, func(idx Index, rec []byte) error {
			got[idx] = append([]byte(nil), rec...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for idx, want := range got {
			r, err := l.Read(idx)
			if err != nil || !bytes.Equal(r, want) {
				t.Fatalf("record %d: read %q (%v), replayed %q", idx, r, err, want)
			}
		}
		last := l.LastIndex()
		if idx, err := l.Append([]byte("next")); err != nil || idx != last+1 {
			t.Fatalf("append after recovery: %d %v (last %d)", idx, err, last)
		}
	})
}
