package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/vfs"
	"github.com/warrenmq/warren/internal/vfs/powerloss"
)

// Power-loss test of the message store over vfs.MemFS: random enqueues,
// confirms (OnDurable), removes, delivery marks, syncs, segment clean-up
// and compaction; a power loss at a random point (inside a compaction's
// rewrite or a segment deletion too); recovery; then every confirmed
// message that was not removed is there with its bytes, nothing was
// invented, and nothing whose removal was durable came back.

type plMsg struct {
	key  string
	body []byte
}

type plAck struct {
	idx uint64 // WAL index known durable
	ops int64
}

// compactions counts "message store compacted" log lines (to show the
// test exercises compaction).
var compactions atomic.Int64

type countHandler struct{}

func (countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "message store compacted" {
		compactions.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

func storePowerLoss(seed int64, epochs int, lying bool) error {
	lg := slog.New(countHandler{})
	rng := rand.New(rand.NewSource(seed))
	fs := vfs.NewMem()
	const dir = "/data/msgs"
	segSize := int64(300 + rng.Intn(1500))
	keys := []string{"/\x00a", "/\x00b", "v\x00c\xff"}
	live := map[uint64]plMsg{} // messages present after the last recovery
	for epoch := 0; epoch < epochs; epoch++ {
		fs.SetIgnoreSync(lying)
		nops := 10 + rng.Intn(80)
		fs.SetCrashPoint(fs.Ops()+1+int64(rng.Intn(nops*3+10)), vfs.CrashOptions{Rand: rng})
		s, rec, err := Open(dir, lg, Options{SegmentSize: segSize, FS: fs})
		if err != nil {
			return fmt.Errorf("epoch %d: open: %w", epoch, err)
		}
		if err := checkRecovery(s, rec, live); err != nil {
			s.Close()
			return fmt.Errorf("epoch %d: %w", epoch, err)
		}
		enq := map[uint64]plMsg{}
		removeAt := map[uint64]uint64{} // ref → WAL index of its remove record
		var mu sync.Mutex
		var acks []plAck
		ackAt := func(idx uint64) {
			o := fs.Ops()
			mu.Lock()
			acks = append(acks, plAck{idx, o})
			mu.Unlock()
		}
		var cbs sync.WaitGroup
		inQueue := func() (string, []uint64) {
			k := keys[rng.Intn(len(keys))]
			var refs []uint64
			for r, m := range live {
				if m.key == k && removeAt[r] == 0 {
					refs = append(refs, r)
				}
			}
			for r, m := range enq {
				if m.key == k && removeAt[r] == 0 {
					refs = append(refs, r)
				}
			}
			slices.Sort(refs)
			return k, refs
		}
		for op := 0; op < nops; op++ {
			switch r := rng.Intn(100); {
			case r < 40:
				k := keys[rng.Intn(len(keys))]
				body := make([]byte, 1+rng.Intn(200))
				rng.Read(body)
				m := &queue.Message{Exchange: "x", RoutingKey: "rk", Props: []byte{1}, Body: body, Persistent: true}
				ref, err := s.Enqueue(k, m, 0)
				if err != nil {
					return fmt.Errorf("enqueue: %w", err)
				}
				enq[ref] = plMsg{k, body}
				if rng.Intn(2) == 0 {
					cbs.Add(1)
					s.OnDurable(ref, func(err error) {
						if err == nil {
							ackAt(ref)
						}
						cbs.Done()
					})
				}
			case r < 72:
				k, refs := inQueue()
				if len(refs) == 0 {
					continue
				}
				// a queue removes from its head, acks may be out of order
				n := 1 + rng.Intn(min(len(refs), 8))
				pick := refs[:n]
				if rng.Intn(3) == 0 {
					pick = []uint64{refs[rng.Intn(len(refs))]}
				}
				s.Remove(k, pick)
				at := s.log.LastIndex()
				for _, r := range pick {
					removeAt[r] = at
				}
			case r < 78:
				k, refs := inQueue()
				if len(refs) > 0 {
					s.Delivered(k, refs[:1+rng.Intn(len(refs))])
				}
			case r < 81:
				// the queue is deleted (and may be used again later)
				k, refs := inQueue()
				if err := s.DropQueue(k); err != nil {
					return fmt.Errorf("drop queue: %w", err)
				}
				at := s.log.LastIndex()
				for _, r := range refs {
					removeAt[r] = at
				}
				ackAt(at)
			case r < 88:
				idx := s.log.LastIndex()
				if err := s.Sync(); err != nil {
					return fmt.Errorf("sync: %w", err)
				}
				ackAt(idx)
			default:
				s.gc()
				s.wg.Wait() // a compaction it started
			}
		}
		if err := s.Close(); err != nil {
			return fmt.Errorf("close: %w", err)
		}
		cbs.Wait()
		crashOps := fs.Ops()
		img := fs.Crashed()
		if img == nil {
			img = fs.CrashClone(vfs.CrashOptions{Rand: rng})
		} else {
			crashOps = fs.CrashPoint()
		}
		fs = img
		var durable uint64
		for _, a := range acks {
			if a.ops <= crashOps {
				durable = max(durable, a.idx)
			}
		}
		// what recovery must find: live and confirmed messages not removed;
		// what it may find: those plus unconfirmed ones and ones whose
		// removal was not durable
		s2, rec2, err := Open(dir, nil, Options{SegmentSize: segSize, FS: fs})
		if err != nil {
			return fmt.Errorf("epoch %d: recovery refused: %w", epoch, err)
		}
		got := map[uint64]plMsg{}
		for _, k := range rec2.Queues() {
			for m := range rec2.Messages(k) {
				got[m.Ref] = plMsg{key: k}
			}
		}
		s2.Close()
		for ref, m := range got {
			want, ok := live[ref]
			if !ok {
				want, ok = enq[ref]
			}
			if !ok || want.key != m.key {
				return fmt.Errorf("epoch %d: message %d in queue %q was never enqueued there (invented)", epoch, ref, m.key)
			}
			if at := removeAt[ref]; at != 0 && at <= durable {
				return fmt.Errorf("epoch %d: message %d came back although its removal (record %d) was durable (durable up to %d)", epoch, ref, at, durable)
			}
			got[ref] = want
		}
		for ref, m := range live {
			if _, ok := got[ref]; !ok && removeAt[ref] == 0 {
				return fmt.Errorf("epoch %d: recovered message %d of %q lost", epoch, ref, m.key)
			}
		}
		for ref, m := range enq {
			if _, ok := got[ref]; !ok && removeAt[ref] == 0 && ref <= durable {
				return fmt.Errorf("epoch %d: confirmed message %d of %q lost (durable up to %d)", epoch, ref, m.key, durable)
			}
		}
		live = got
	}
	return nil
}

// checkRecovery compares a recovery with the expected messages (bodies
// included, through Load) and checks publish order per queue.
func checkRecovery(s *MsgStore, rec *Recovery, want map[uint64]plMsg) error {
	n := 0
	for _, k := range rec.Queues() {
		var refs []uint64
		for m := range rec.Messages(k) {
			w, ok := want[m.Ref]
			if !ok || w.key != k {
				return fmt.Errorf("reopened store has message %d in %q, not expected", m.Ref, k)
			}
			refs = append(refs, m.Ref)
		}
		if !slices.IsSorted(refs) {
			return fmt.Errorf("queue %q out of order", k)
		}
		var lerr error
		if err := s.Load(refs, func(i int, m *queue.Message) {
			if !bytes.Equal(m.Body, want[refs[i]].body) && lerr == nil {
				lerr = fmt.Errorf("message %d body altered", refs[i])
			}
		}); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if lerr != nil {
			return lerr
		}
		n += len(refs)
	}
	if n != len(want) {
		return fmt.Errorf("reopened store has %d messages, want %d", n, len(want))
	}
	return nil
}

// TestPowerLossStore is the deterministic seeded loop (a few hundred
// iterations; WARREN_POWERLOSS_ITERS=N for more).
func TestPowerLossStore(t *testing.T) {
	defer func(v int) { compactMinSegments = v }(compactMinSegments)
	compactMinSegments = 2 // compact often: crashes inside rewrites
	powerloss.Run(t, 100, func(seed int64) error { return storePowerLoss(seed, 4, false) })
	t.Logf("%d compaction passes", compactions.Load())
	if compactions.Load() == 0 {
		t.Fatal("no compaction ran: the test does not exercise it")
	}
}

// FuzzPowerLossStore explores seeds: go test -fuzz FuzzPowerLossStore.
func FuzzPowerLossStore(f *testing.F) {
	f.Add(int64(1))
	f.Add(int64(7))
	f.Fuzz(func(t *testing.T, seed int64) {
		if err := storePowerLoss(seed, 4, false); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPowerLossStoreCatchesMissingFsync: on a disk that acknowledges fsync
// without persisting, the checks above find lost confirmed messages.
func TestPowerLossStoreCatchesMissingFsync(t *testing.T) {
	powerloss.MustCatch(t, 30, func(seed int64) error { return storePowerLoss(seed, 4, true) })
}

// TestCompactionAfterRestartKeepsRemovedMessagesRemoved: a message removed
// before a restart has its enqueue record in an old segment and its
// remove record in a later one. Compaction after the restart rewrote the
// later segment (dropping the remove record) without first blanking the
// old one, because recovery forgot the old segment had dead records: the
// next restart brought the message back. Recovery now counts them.
func TestCompactionAfterRestartKeepsRemovedMessagesRemoved(t *testing.T) {
	dir := t.TempDir()
	before := compactions.Load()
	lg := slog.New(countHandler{})
	o := Options{NoSync: true, SegmentSize: 1024}
	s, _, err := Open(dir, lg, o)
	if err != nil {
		t.Fatal(err)
	}
	m := func(i int) *queue.Message {
		return &queue.Message{Exchange: "x", RoutingKey: "k", Body: bytes.Repeat([]byte{byte(i)}, 100), Persistent: true}
	}
	for i := 0; i < 8; i++ {
		s.Enqueue("/\x00keep", m(i), 0)
	}
	victim, _ := s.Enqueue("/\x00v", m(99), 0)
	if s.log.SegmentOf(victim) != 1 || s.log.Segments() != 1 {
		t.Fatal("setup: the victim must share the first segment with kept messages")
	}
	s.Remove("/\x00v", []uint64{victim})
	var fillers []uint64
	for i := 0; i < 60; i++ {
		r, _ := s.Enqueue("/\x00f", m(i), 0)
		fillers = append(fillers, r)
	}
	if s.log.SegmentOf(s.log.LastIndex()) == s.log.SegmentOf(victim+1) {
		t.Fatal("setup: want the remove record in a sealed segment")
	}
	s.Close()

	s, rec, err := Open(dir, lg, o)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Count("/\x00v") != 0 {
		t.Fatal("the removed message is back after the first restart")
	}
	s.Remove("/\x00f", fillers)
	s.gc()
	s.wg.Wait()
	s.Close()
	if compactions.Load() == before {
		t.Fatal("setup: no compaction ran")
	}
	s, rec, err = Open(dir, lg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rec.Count("/\x00v") != 0 {
		t.Fatal("a removed message came back after compaction and a restart")
	}
	if rec.Count("/\x00keep") != 8 {
		t.Fatalf("kept messages: %d", rec.Count("/\x00keep"))
	}
}

// TestDropRecordsKillEarlierMessages: a deleted queue's messages whose
// remove records never reached the disk stay dead after a restart, also
// when a queue of the same name is declared again and used.
func TestDropRecordsKillEarlierMessages(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir, nil, Options{NoSync: true, SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	m := func(b string) *queue.Message { return &queue.Message{Body: []byte(b), Persistent: true} }
	for i := 0; i < 3; i++ {
		s.Enqueue("/\x00q", m("old"), 0)
		s.Enqueue("v2\x00a", m("old"), 0)
		s.Enqueue("v2\x00b", m("old"), 0)
		s.Enqueue("/\x00other", m("keep"), 0)
	}
	if err := s.DropQueue("/\x00q"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropVHost("v2"); err != nil {
		t.Fatal(err)
	}
	newQ, _ := s.Enqueue("/\x00q", m("new"), 0)
	newA, _ := s.Enqueue("v2\x00a", m("new"), 0)
	s.Close()
	s, rec, err := Open(dir, nil, Options{NoSync: true, SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string][]uint64{}
	for _, k := range rec.Queues() {
		for r := range rec.Messages(k) {
			got[k] = append(got[k], r.Ref)
		}
	}
	if !slices.Equal(got["/\x00q"], []uint64{newQ}) || !slices.Equal(got["v2\x00a"], []uint64{newA}) || len(got["v2\x00b"]) != 0 || len(got["/\x00other"]) != 3 {
		t.Fatalf("after restart: %v", got)
	}
}
