package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warrenmq/warren/internal/vfs"
	"github.com/warrenmq/warren/internal/vfs/powerloss"
)

// Power-loss tests: random operations on a log over vfs.MemFS, a power
// loss at a random point (inside an operation too: vfs crash points),
// recovery, and checks that every acknowledged record is there, that no
// record was invented or altered, that what is present is a
// prefix-consistent set of what was appended, and that records a
// compaction acknowledged as removed stay removed.

// plConfig varies the system under test (the meta-tests break it).
type plConfig struct {
	noSync    bool // the WAL skips fsync (Options.NoSync)
	lyingDisk bool // the disk acknowledges fsync without persisting
}

type ack struct {
	idx Index
	ops int64 // MemFS operation count when the ack was observed
}

type plEpoch struct {
	mu      sync.Mutex
	acks    []ack
	removed []struct {
		idxs map[Index]bool
		ops  int64 // 0: not acknowledged (Rewrite failed or not returned)
	}
	maybeGone map[Index]bool // removal attempted (Rewrite or TruncateFront)
	frontReq  Index          // highest TruncateFront argument
}

// powerLoss runs one iteration (several crash-and-recover epochs) from
// seed and returns the first violation found.
func powerLoss(seed int64, epochs int, cfg plConfig) error {
	rng := rand.New(rand.NewSource(seed))
	fs := vfs.NewMem()
	const dir = "/data/log"
	segSize := int64(256 + rng.Intn(2048))
	base := map[Index][]byte{} // records present after the last recovery
	var baseLast Index
	for epoch := 0; epoch < epochs; epoch++ {
		fs.SetIgnoreSync(cfg.lyingDisk)
		nops := 5 + rng.Intn(60)
		fs.SetCrashPoint(fs.Ops()+1+int64(rng.Intn(nops*3+10)), vfs.CrashOptions{Rand: rng})
		l, err := Open(Options{Dir: dir, FS: fs, SegmentSize: segSize, NoSync: cfg.noSync})
		if err != nil {
			return fmt.Errorf("epoch %d: open: %w", epoch, err)
		}
		if l.LastIndex() != baseLast {
			return fmt.Errorf("epoch %d: reopened at %d, recovered %d", epoch, l.LastIndex(), baseLast)
		}
		pending := map[Index][]byte{}
		ep := &plEpoch{maybeGone: map[Index]bool{}}
		ackAt := func(idx Index) {
			o := fs.Ops()
			ep.mu.Lock()
			ep.acks = append(ep.acks, ack{idx, o})
			ep.mu.Unlock()
		}
		var cbs sync.WaitGroup
		for op := 0; op < nops; op++ {
			switch r := rng.Intn(100); {
			case r < 50:
				b := payload(rng, epoch, l.LastIndex()+1)
				idx, err := l.Append(b)
				if err != nil {
					return fmt.Errorf("append: %w", err)
				}
				pending[idx] = b
			case r < 60:
				b := payload(rng, epoch, l.LastIndex()+1)
				idx, err := l.AppendSync(b)
				if err != nil {
					return fmt.Errorf("append sync: %w", err)
				}
				pending[idx] = b
				ackAt(idx)
			case r < 70:
				idx := l.LastIndex()
				if err := l.WaitDurable(idx); err != nil {
					return fmt.Errorf("wait durable: %w", err)
				}
				ackAt(idx)
			case r < 80:
				idx := l.LastIndex()
				cbs.Add(1)
				l.OnDurable(idx, func(err error) {
					if err == nil {
						ackAt(idx)
					}
					cbs.Done()
				})
			case r < 88:
				first, last := l.FirstIndex(), l.LastIndex()
				if last < first {
					continue
				}
				upTo := first + Index(rng.Int63n(int64(last-first)+1))
				ep.mu.Lock()
				ep.frontReq = max(ep.frontReq, upTo)
				ep.mu.Unlock()
				if err := l.TruncateFront(upTo); err != nil {
					return fmt.Errorf("truncate front: %w", err)
				}
			default:
				sealed := l.Sealed()
				if len(sealed) == 0 {
					continue
				}
				gone := map[Index]bool{}
				_, _, _, err := l.Rewrite(sealed[rng.Intn(len(sealed))], func(idx Index, _ []byte) bool {
					if rng.Intn(3) == 0 {
						gone[idx] = true
						ep.mu.Lock()
						ep.maybeGone[idx] = true
						ep.mu.Unlock()
						return false
					}
					return true
				})
				var o int64
				if err == nil {
					o = fs.Ops()
				}
				ep.removed = append(ep.removed, struct {
					idxs map[Index]bool
					ops  int64
				}{gone, o})
			}
		}
		l.Close()
		cbs.Wait()
		crashOps := fs.Ops()
		img := fs.Crashed()
		if img == nil {
			img = fs.CrashClone(vfs.CrashOptions{Rand: rng})
		} else {
			crashOps = fs.CrashPoint()
		}
		fs = img

		// recover and check
		l, err = Open(Options{Dir: dir, FS: fs, SegmentSize: segSize})
		if err != nil {
			return fmt.Errorf("epoch %d: recovery refused: %w", epoch, err)
		}
		present := map[Index][]byte{}
		if err := l.Replay(0, func(idx Index, rec []byte) error {
			present[idx] = append([]byte(nil), rec...)
			return nil
		}); err != nil {
			l.Close()
			return fmt.Errorf("epoch %d: replay: %w", epoch, err)
		}
		last := l.LastIndex()
		l.Close()
		var acked Index
		for _, a := range ep.acks {
			if a.ops <= crashOps {
				acked = max(acked, a.idx)
			}
		}
		mustGone := map[Index]bool{}
		for _, rw := range ep.removed {
			if rw.ops != 0 && rw.ops <= crashOps {
				for idx := range rw.idxs {
					mustGone[idx] = true
				}
			}
		}
		for idx, rec := range present {
			want, ok := base[idx]
			if !ok {
				want, ok = pending[idx]
			}
			if !ok {
				return fmt.Errorf("epoch %d: record %d was never appended (invented)", epoch, idx)
			}
			if !bytes.Equal(rec, want) {
				return fmt.Errorf("epoch %d: record %d altered", epoch, idx)
			}
			if mustGone[idx] {
				return fmt.Errorf("epoch %d: record %d came back after a compaction acknowledged its removal", epoch, idx)
			}
		}
		if last < acked {
			return fmt.Errorf("epoch %d: log ends at %d, %d was acknowledged", epoch, last, acked)
		}
		for idx := range base {
			if _, ok := present[idx]; !ok && idx >= ep.frontReq && !ep.maybeGone[idx] {
				return fmt.Errorf("epoch %d: durable record %d lost", epoch, idx)
			}
		}
		for idx := range pending {
			_, ok := present[idx]
			switch {
			case ok, idx < ep.frontReq, ep.maybeGone[idx]:
			case idx <= acked:
				return fmt.Errorf("epoch %d: acknowledged record %d lost (acknowledged up to %d, log ends at %d)", epoch, idx, acked, last)
			case idx <= last:
				return fmt.Errorf("epoch %d: record %d missing inside the log (ends at %d): not a prefix", epoch, idx, last)
			}
		}
		base, baseLast = present, last
	}
	return nil
}

func payload(rng *rand.Rand, epoch int, idx Index) []byte {
	b := binary.LittleEndian.AppendUint64(nil, idx)
	b = binary.LittleEndian.AppendUint32(b, uint32(epoch))
	n := 1 + rng.Intn(300)
	for i := 0; i < n; i++ {
		b = append(b, byte(rng.Intn(256)))
	}
	return b
}

// TestPowerLossWAL is the deterministic seeded loop (a few hundred
// iterations in normal runs; WARREN_POWERLOSS_ITERS=N for more).
func TestPowerLossWAL(t *testing.T) {
	powerloss.Run(t, 200, func(seed int64) error { return powerLoss(seed, 4, plConfig{}) })
}

// FuzzPowerLossWAL explores seeds: go test -fuzz FuzzPowerLossWAL.
func FuzzPowerLossWAL(f *testing.F) {
	for _, s := range []int64{1, 2, 3, 42} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		if err := powerLoss(seed, 4, plConfig{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPowerLossCatchesMissingFsync is the meta-test: with fsync skipped
// (by the WAL, or by a disk that lies) the same checks must find lost
// acknowledged records; if they did not, the test above would prove
// nothing.
func TestPowerLossCatchesMissingFsync(t *testing.T) {
	for name, cfg := range map[string]plConfig{"wal skips fsync": {noSync: true}, "lying disk": {lyingDisk: true}} {
		t.Run(name, func(t *testing.T) {
			powerloss.MustCatch(t, 40, func(seed int64) error { return powerLoss(seed, 4, cfg) })
		})
	}
}

// gateFS holds the first fsync after arming until the gate opens.
type gateFS struct {
	*vfs.MemFS
	armed   atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

type gateFile struct {
	File
	g *gateFS
}

func (f gateFile) Sync() error {
	if f.g.armed.CompareAndSwap(true, false) {
		f.g.entered <- struct{}{}
		<-f.g.gate
	}
	return f.File.Sync()
}

func (g *gateFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := g.MemFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gateFile{f, g}, nil
}

// TestRollDuringFsync: a segment roll while the syncer fsyncs the old
// segment closed the file under the fsync, which then failed with "file
// already closed" and stopped the log for good (every later publish
// nacked). Found by TestPowerLossStore.
func TestRollDuringFsync(t *testing.T) {
	g := &gateFS{MemFS: vfs.NewMem(), entered: make(chan struct{}), gate: make(chan struct{})}
	l, err := Open(Options{Dir: "/log", FS: g, SegmentSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(rec(1)); err != nil {
		t.Fatal(err)
	}
	g.armed.Store(true)
	done := make(chan error, 1)
	go func() { done <- l.WaitDurable(1) }()
	<-g.entered // the syncer is inside fsync of the first segment
	for i := 2; l.Segments() < 3; i++ {
		if _, err := l.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatalf("fsync across a roll: %v", err)
	}
	if err := l.WaitDurable(l.LastIndex()); err != nil {
		t.Fatalf("the log stopped: %v", err)
	}
}
