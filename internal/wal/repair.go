package wal

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/warrenmq/warren/internal/vfs"
)

// RepairReport says what Repair did.
type RepairReport struct {
	Dir string
	// Damage describes the first damage found ("" when the log was
	// healthy and nothing was moved).
	Damage string
	// AsideDir is the folder the damaged files were moved to.
	AsideDir string
	// Moved lists the segment files moved aside (names in AsideDir).
	Moved []string
	// KeptFirst..KeptLast are the records the log holds after the repair
	// (KeptLast < KeptFirst: none).
	KeptFirst, KeptLast Index
	// Readable counts the records still readable in the moved files after
	// the damage: no longer in the log, but kept on disk for salvage.
	Readable int
	// DamagedBytes is how many bytes of the damaged segment, from the
	// damage to the next readable record (or its end), could not be read
	// as records: what they held is lost.
	DamagedBytes int64
}

// String renders the report for an operator.
func (r *RepairReport) String() string {
	var b strings.Builder
	if r.Damage == "" {
		fmt.Fprintf(&b, "%s: no damage found; nothing was moved. The log holds records %d to %d.\n", r.Dir, r.KeptFirst, r.KeptLast)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %s\n", r.Dir, r.Damage)
	fmt.Fprintf(&b, "moved aside (nothing was deleted) to %s:\n", r.AsideDir)
	for _, m := range r.Moved {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	if r.KeptLast >= r.KeptFirst {
		fmt.Fprintf(&b, "the log now holds records %d to %d (%d records, recoverable).\n", r.KeptFirst, r.KeptLast, r.KeptLast-r.KeptFirst+1)
	} else {
		fmt.Fprintf(&b, "the log now holds no records.\n")
	}
	fmt.Fprintf(&b, "lost from the log: %d records still readable in the moved files (salvage them from there if needed), plus %d damaged bytes whose records cannot be read.\n", r.Readable, r.DamagedBytes)
	return b.String()
}

// Repair is the offline repair of a log that Open refuses. It finds the
// first damage (a bad record that is not a torn tail of the last segment,
// or a break in the sequence of segments), moves the damaged segment and
// every later one into a dated folder inside the log's directory
// (damaged-YYYYMMDDTHHMMSSZ), writes back a copy of the damaged segment's
// good records before the damage, and checks that the log then opens. It
// deletes nothing. Run it only while no process has the log open.
func Repair(opts Options) (*RepairReport, error) {
	fs := vfs.Default(opts.FS)
	opts.FS = fs
	l := &Log{opts: opts, fs: fs, log: opts.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	rep := &RepairReport{Dir: opts.Dir}
	names, err := fs.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", opts.Dir, err)
	}
	// (listSegments removes .compact leftovers; Open does that later)
	var only []string
	for _, n := range names {
		if strings.HasSuffix(n, ".wal") {
			only = append(only, n)
		}
	}
	segs, err := l.listSegments(only)
	if err != nil {
		return nil, err
	}
	bad := -1        // first segment to move aside
	var keep int64   // bytes of segs[bad] to copy back (0: none)
	next := Index(0) // expected first index of the next segment
	if len(segs) > 0 {
		rep.KeptFirst = segs[0].first
	} else {
		rep.KeptFirst = 1
	}
	for i := range segs {
		s := &segs[i]
		if next != 0 && s.first != next {
			bad = i
			if s.first > next {
				rep.Damage = fmt.Sprintf("segment sequence broken at %s: records %d to %d are missing", s.name, next, s.first-1)
			} else {
				rep.Damage = fmt.Sprintf("segment sequence broken at %s: it starts at record %d, inside the previous segment (which ends at %d)", s.name, s.first, next-1)
			}
			break
		}
		res, err := l.scan(s, nil, false, -1)
		if err != nil {
			return nil, fmt.Errorf("%w (repair moves damaged data aside; it cannot work around a failing disk)", err)
		}
		next = s.first + res.n
		if res.bad == nil {
			continue
		}
		if i == len(segs)-1 {
			at, _, err := l.validAfter(s.name, res.valid)
			if err != nil {
				return nil, err
			}
			if at < 0 {
				break // a torn tail: Open truncates it
			}
		}
		bad, keep = i, res.valid
		rep.Damage = fmt.Sprintf("%s is damaged at offset %d (record %d): %v", s.name, res.valid, next, res.bad)
		// count what can still be read after the damage in this segment
		b, err := l.readFrom(s.name, res.valid)
		if err != nil {
			return nil, err
		}
		at := findFrame(b, 1)
		if at < 0 {
			rep.DamagedBytes = int64(len(b))
		} else {
			rep.DamagedBytes = int64(at)
			rep.Readable += countFrames(b[at:])
		}
		break
	}
	if bad < 0 {
		rep.KeptLast = next - 1
		if len(segs) == 0 {
			rep.KeptLast = 0
		}
		return rep, verifyOpens(opts)
	}
	rep.KeptLast = next - 1
	// the records of later segments are readable but leave the log
	for _, s := range segs[bad+1:] {
		res, err := l.scan(&s, nil, false, -1)
		if err != nil {
			return nil, err
		}
		rep.Readable += int(res.n)
	}
	if strings.HasPrefix(rep.Damage, "segment sequence") {
		res, err := l.scan(&segs[bad], nil, false, -1)
		if err != nil {
			return nil, err
		}
		rep.Readable += int(res.n)
	}

	aside := "damaged-" + time.Now().UTC().Format("20060102T150405Z")
	taken := map[string]bool{}
	for _, n := range names {
		taken[n] = true
	}
	for k := 2; taken[aside]; k++ {
		aside = fmt.Sprintf("damaged-%s-%d", time.Now().UTC().Format("20060102T150405Z"), k)
	}
	rep.AsideDir = filepath.Join(opts.Dir, aside)
	if err := fs.MkdirAll(rep.AsideDir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: creating %s: %w", rep.AsideDir, err)
	}
	// the good records before the damage go back under the segment's name:
	// copied first (synced), so a crash mid-repair loses nothing
	first := segs[bad]
	var tmp string
	if keep > 0 || bad == 0 {
		// (an empty first segment keeps the log's first index)
		tmp = l.path(first.name + ".repair")
		if err := copyPrefix(fs, l.path(first.name), tmp, keep); err != nil {
			return nil, err
		}
	}
	for _, s := range segs[bad:] {
		if err := fs.Rename(l.path(s.name), filepath.Join(rep.AsideDir, s.name)); err != nil {
			return nil, fmt.Errorf("wal: moving %s aside: %w", l.path(s.name), err)
		}
		rep.Moved = append(rep.Moved, s.name)
	}
	if err := fs.SyncDir(rep.AsideDir); err != nil {
		return nil, fmt.Errorf("wal: syncing %s: %w", rep.AsideDir, err)
	}
	if tmp != "" {
		if err := fs.Rename(tmp, l.path(first.name)); err != nil {
			return nil, fmt.Errorf("wal: restoring the good records of %s: %w", first.name, err)
		}
	}
	if err := fs.SyncDir(opts.Dir); err != nil {
		return nil, fmt.Errorf("wal: syncing %s: %w", opts.Dir, err)
	}
	l.log.Warn("wal: repaired", "dir", opts.Dir, "damage", rep.Damage, "moved_to", rep.AsideDir, "moved", rep.Moved,
		"kept_first", rep.KeptFirst, "kept_last", rep.KeptLast, "readable_in_moved_files", rep.Readable, "damaged_bytes", rep.DamagedBytes)
	return rep, verifyOpens(opts)
}

func verifyOpens(opts Options) error {
	opts.NoSync = false
	lg, err := Open(opts)
	if err != nil {
		return fmt.Errorf("wal: the log still does not open after the repair: %w", err)
	}
	return lg.Close()
}

// countFrames counts the valid records (gaps count their records) in b,
// skipping damage between them.
func countFrames(b []byte) int {
	n := 0
	for o := 0; o < len(b); {
		at := findFrame(b, o)
		if at < 0 {
			break
		}
		_, gap, size, err := readEntry(&sliceReader{b: b[at:]})
		if err != nil {
			o = at + 1
			continue
		}
		if gap > 0 {
			n += int(gap)
		} else {
			n++
		}
		o = at + int(size)
	}
	return n
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func copyPrefix(fs FS, from, to string, n int64) error {
	in, err := fs.OpenFile(from, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: opening %s: %w", from, err)
	}
	defer in.Close()
	out, err := fs.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("wal: creating %s: %w", to, err)
	}
	if _, err := io.Copy(out, io.LimitReader(in, n)); err != nil {
		out.Close()
		return fmt.Errorf("wal: copying the good records of %s: %w", from, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("wal: syncing %s: %w", to, err)
	}
	return out.Close()
}
