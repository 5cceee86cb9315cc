package consensus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/warrenmq/warren/internal/wal"
)

// faultFS is the OS file system with injectable fsync faults: failing
// (an I/O error) or held (Sync blocks until released).
type faultFS struct {
	wal.OSFS
	fail  atomic.Bool
	mu    sync.Mutex
	hold  chan struct{} // non-nil: Sync waits for it to close
	syncs atomic.Int64
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f *faultFS) holdSyncs() {
	f.mu.Lock()
	f.hold = make(chan struct{})
	f.mu.Unlock()
}

func (f *faultFS) release() {
	f.mu.Lock()
	if f.hold != nil {
		close(f.hold)
		f.hold = nil
	}
	f.mu.Unlock()
}

type faultFile struct {
	wal.File
	fs *faultFS
}

func (f faultFile) Sync() error {
	f.fs.mu.Lock()
	hold := f.fs.hold
	f.fs.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if f.fs.fail.Load() {
		return errors.New("injected fsync failure (EIO)")
	}
	f.fs.syncs.Add(1)
	return f.File.Sync()
}

// TestProposalIDsAreUniqueAcrossRestarts: node 1 leads alone after the
// other members went down and proposes "old" (in its log, uncommitted),
// then restarts. Its new proposal waits while the others come back; the
// old entry commits first. Before ids were seeded per run, both had the
// same id and the new proposal was completed with the old entry's result.
func TestProposalIDsAreUniqueAcrossRestarts(t *testing.T) {
	c := newCluster(t, 3, 1)
	for c.leader(1) != 1 {
		// make node 1 the leader: restart the others until it wins
		l := c.leader(1)
		c.stop(l)
		c.start(l, 1)
	}
	c.stop(2)
	c.stop(3)
	before := c.hosts[1].log.LastIndex()
	oldRes := make(chan error, 1)
	c.hosts[1].ProposeAsync(1, []byte("old"), func(_ any, err error) { oldRes <- err })
	waitFor(t, "the old proposal in node 1's log", func() bool { return c.hosts[1].log.LastIndex() > before })
	c.stop(1)
	<-oldRes // ErrClosed
	c.start(1, 1)
	type res struct {
		v   any
		err error
	}
	got := make(chan res, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		v, err := c.hosts[1].Propose(ctx, 1, []byte("new"))
		got <- res{v, err}
	}()
	// the new proposal waits for a leader; give it time to be registered
	waitFor(t, "the new proposal registered", func() bool {
		c.hosts[1].mu.Lock()
		defer c.hosts[1].mu.Unlock()
		return len(c.hosts[1].waiting) == 1
	})
	c.start(2, 1)
	c.start(3, 1)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	cmds := c.fsms[1][1].list()
	pos := r.v.(int)
	if pos < 1 || pos > len(cmds) || cmds[pos-1] != "new" {
		t.Fatalf("the new proposal was completed with the result of entry %d (%q); applied %v", pos, cmds[pos-1], cmds)
	}
	for i, cmd := range cmds {
		if cmd == "old" && i >= pos-1 {
			t.Fatalf("old entry applied at %d, after the new one at %d", i+1, pos)
		}
	}
}

// TestFirstIDIsAboveEveryEarlierID: the seed takes the clock and the log.
func TestFirstIDIsAboveEveryEarlierID(t *testing.T) {
	now := time.Now()
	a := firstID(3, now, 0)
	if a>>idNodeShift != 3 {
		t.Fatalf("node bits of %x", a)
	}
	// a run that issued ids beyond the clock (or a clock set back)
	b := firstID(3, now.Add(-time.Hour), a+1000)
	if b <= a+1000 {
		t.Fatalf("first id %d not above the highest in the log %d", b, a+1000)
	}
	// another node's ids in the log do not matter
	if c := firstID(3, now, 4<<idNodeShift|5); c>>idNodeShift != 3 {
		t.Fatalf("node bits of %x", c)
	}
}

// TestStorageErrorStopsTheHost: an fsync error in the consensus loop's
// log stops the host: waiting proposals fail with the cause, OnFail runs,
// Failed is closed, and later proposals are refused.
func TestStorageErrorStopsTheHost(t *testing.T) {
	fs := &faultFS{}
	failed := make(chan error, 1)
	h, err := Open(Options{ID: 1, Dir: t.TempDir(), Transport: nopTransport{}, Tick: testTick, FS: fs,
		OnFail: func(err error) { failed <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f := &logFSM{}
	if err := h.AddGroup(1, []uint64{1}, f); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leader", func() bool { return h.Leader(1) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.Propose(ctx, 1, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	// hold the next fsync, queue proposals behind it, then fail it
	fs.holdSyncs()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.Propose(ctx, 1, []byte(fmt.Sprint("p", i)))
			errs <- err
		}()
	}
	waitFor(t, "the proposals waiting", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.waiting) == 5
	})
	fs.fail.Store(true)
	fs.release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("a waiting proposal got %v, want ErrStopped", err)
		}
	}
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("OnFail without the cause")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnFail not called")
	}
	select {
	case <-h.Failed():
	default:
		t.Fatal("Failed not closed")
	}
	if _, err := h.Propose(ctx, 1, []byte("after")); !errors.Is(err, ErrStopped) {
		t.Fatalf("a proposal after the failure: %v", err)
	}
	if got := f.list(); len(got) != 1 {
		t.Fatalf("applied %v: only the first proposal was durable", got)
	}
}

// TestProposeReturnsOnlyAfterFsync: a proposal's result never comes
// before the fsync covering its entry.
func TestProposeReturnsOnlyAfterFsync(t *testing.T) {
	fs := &faultFS{}
	h, err := Open(Options{ID: 1, Dir: t.TempDir(), Transport: nopTransport{}, Tick: testTick, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f := &logFSM{}
	if err := h.AddGroup(1, []uint64{1}, f); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leader", func() bool { return h.Leader(1) == 1 })
	fs.holdSyncs()
	done := make(chan error, 1)
	go func() {
		_, err := h.Propose(context.Background(), 1, []byte("x"))
		done <- err
	}()
	// the host keeps ticking while the fsync is held; the result waits
	defer fs.release()
	ticks := h.Stats().Ticks
	waitFor(t, "ticks while the fsync is held", func() bool {
		if err := h.Err(); err != nil {
			t.Fatal(err)
		}
		return h.Stats().Ticks > ticks+5
	})
	select {
	case err := <-done:
		t.Fatalf("proposal returned (%v) before its fsync", err)
	default:
	}
	if len(f.list()) != 0 {
		t.Fatal("applied before its fsync")
	}
	fs.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLostSnapshotIsSentAgain: a follower far behind is sent a snapshot;
// the network drops the first one (as a full queue would). The leader is
// told, sends another, and the follower catches up. Without
// ReportSnapshot the leader waited for the lost snapshot forever.
func TestLostSnapshotIsSentAgain(t *testing.T) {
	net := NewMemNetwork()
	dir := t.TempDir()
	hosts := map[uint64]*Host{}
	fsms := map[uint64]*snapFSM{}
	open := func(id uint64) {
		h, err := Open(Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: testTick, SnapshotEvery: 20})
		if err != nil {
			t.Fatal(err)
		}
		hosts[id] = h
		net.Attach(id, h)
		fsms[id] = &snapFSM{}
		if err := h.AddGroup(1, []uint64{1, 2, 3}, fsms[id]); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	for id := uint64(1); id <= 3; id++ {
		open(id)
	}
	waitFor(t, "a leader", func() bool { l := hosts[1].Leader(1); return l != 0 && hosts[2].Leader(1) == l })
	net.Detach(3)
	hosts[3].Close()
	delete(hosts, 3)
	waitFor(t, "a leader without node 3", func() bool {
		l := hosts[1].Leader(1)
		return l != 0 && l != 3 && hosts[2].Leader(1) == l
	})
	for i := 0; i < 60; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := hosts[uint64(1+i%2)].Propose(ctx, 1, []byte(fmt.Sprint(i)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	var dropped atomic.Int32
	net.SetFilter(func(_, to uint64, e Envelope) bool {
		if to == 3 && e.Msg.Type == pb.MsgSnap && dropped.Load() == 0 {
			dropped.Add(1)
			return false
		}
		return true
	})
	open(3)
	waitFor(t, "node 3 to catch up", func() bool { return len(fsms[3].list()) == 60 })
	if dropped.Load() != 1 {
		t.Fatal("no snapshot was sent to node 3: the test did not exercise a lost snapshot")
	}
}

// TestSlowFsyncDoesNotCauseAnElection: the leader's fsync hangs for
// several election timeouts while it has an entry to persist; its ticks
// and heartbeats go on (fsyncs run on the persister), so the followers do
// not elect another leader. With the fsync inline in the loop, they did.
func TestSlowFsyncDoesNotCauseAnElection(t *testing.T) {
	net := NewMemNetwork()
	dir := t.TempDir()
	hosts := map[uint64]*Host{}
	fss := map[uint64]*faultFS{}
	for id := uint64(1); id <= 3; id++ {
		fss[id] = &faultFS{}
		h, err := Open(Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: testTick, FS: fss[id]})
		if err != nil {
			t.Fatal(err)
		}
		hosts[id] = h
		net.Attach(id, h)
		t.Cleanup(func() { fss[id].release(); h.Close() })
		if err := h.AddGroup(1, []uint64{1, 2, 3}, &logFSM{}); err != nil {
			t.Fatal(err)
		}
	}
	var lead uint64
	waitFor(t, "a leader", func() bool {
		lead = hosts[1].Leader(1)
		return lead != 0 && hosts[2].Leader(1) == lead && hosts[3].Leader(1) == lead
	})
	fss[lead].holdSyncs()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := hosts[lead].Propose(ctx, 1, []byte("during a slow fsync"))
		done <- err
	}()
	// five election timeouts (10 ticks each, at most 20 randomised)
	deadline := time.Now().Add(5 * 20 * testTick)
	for time.Now().Before(deadline) {
		for id, h := range hosts {
			if l := h.Leader(1); l != lead {
				t.Fatalf("node %d sees leader %d during the leader's slow fsync (was %d)", id, l, lead)
			}
		}
		time.Sleep(testTick)
	}
	fss[lead].release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
