package consensus

import (
	"context"
	"errors"
	"fmt"
	"go/build"

	"go.etcd.io/raft/v3"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logFSM records the commands it applied.
type logFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *logFSM) Apply(_ uint64, cmd []byte) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(cmd))
	return len(f.cmds)
}

func (f *logFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

type cluster struct {
	t     *testing.T
	net   *MemNetwork
	dir   string
	ids   []uint64
	hosts map[uint64]*Host
	fsms  map[uint64]map[uint64]*logFSM // host → group → fsm
}

func newCluster(t *testing.T, n int, groups ...uint64) *cluster {
	c := &cluster{t: t, net: NewMemNetwork(), dir: t.TempDir(), hosts: map[uint64]*Host{}, fsms: map[uint64]map[uint64]*logFSM{}}
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, uint64(i))
	}
	for _, id := range c.ids {
		c.start(id, groups...)
	}
	t.Cleanup(func() {
		for _, h := range c.hosts {
			h.Close()
		}
	})
	return c
}

func (c *cluster) start(id uint64, groups ...uint64) {
	h, err := Open(Options{ID: id, Dir: filepath.Join(c.dir, fmt.Sprint(id)), Transport: c.net.Endpoint(id), Tick: testTick})
	if err != nil {
		c.t.Fatal(err)
	}
	c.hosts[id] = h
	c.fsms[id] = map[uint64]*logFSM{}
	c.net.Attach(id, h)
	for _, g := range groups {
		f := &logFSM{}
		c.fsms[id][g] = f
		if err := h.AddGroup(g, c.ids, f); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cluster) stop(id uint64) {
	c.net.Detach(id)
	c.hosts[id].Close()
	delete(c.hosts, id)
}

// leader waits until the hosts in among agree on one leader of g.
func (c *cluster) leader(g uint64, among ...uint64) uint64 {
	c.t.Helper()
	if len(among) == 0 {
		among = c.ids
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := c.hosts[among[0]].Leader(g)
		same := l != 0
		for _, id := range among {
			if c.hosts[id].Leader(g) != l {
				same = false
			}
		}
		inside := false
		for _, id := range among {
			inside = inside || id == l
		}
		if same && inside {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("group %d: no agreed leader among %v", g, among)
	return 0
}

func (c *cluster) propose(via, g uint64, cmd string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.hosts[via].Propose(ctx, g, []byte(cmd))
	return err
}

// converge waits until every listed host applied the same commands.
func (c *cluster) converge(g uint64, want int, ids ...uint64) []string {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ref := c.fsms[ids[0]][g].list()
		ok := len(ref) == want
		for _, id := range ids[1:] {
			if strings.Join(c.fsms[id][g].list(), ",") != strings.Join(ref, ",") {
				ok = false
			}
		}
		if ok {
			return ref
		}
		if time.Now().After(deadline) {
			for _, id := range ids {
				c.t.Logf("host %d applied %d: %v", id, len(c.fsms[id][g].list()), c.fsms[id][g].list())
			}
			c.t.Fatalf("group %d did not converge on %d commands", g, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProposalsReplicateInOneOrder(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.leader(1)
	var wg sync.WaitGroup
	for _, via := range c.ids {
		wg.Add(1)
		go func(via uint64) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if err := c.propose(via, 1, fmt.Sprintf("h%d-%d", via, i)); err != nil {
					t.Errorf("proposal via %d: %v", via, err)
					return
				}
			}
		}(via)
	}
	wg.Wait()
	got := c.converge(1, 90, c.ids...)
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			t.Fatalf("%s applied twice", s)
		}
		seen[s] = true
	}
}

func TestMinorityCannotCommitMajorityElectsAnew(t *testing.T) {
	c := newCluster(t, 3, 1)
	old := c.leader(1)
	if err := c.propose(old, 1, "before"); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate([]uint64{old}, c.ids)
	var rest []uint64
	for _, id := range c.ids {
		if id != old {
			rest = append(rest, id)
		}
	}
	// the isolated old leader cannot commit anything
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	_, err := c.hosts[old].Propose(ctx, 1, []byte("lost"))
	cancel()
	if err == nil {
		t.Fatal("a minority committed a proposal")
	}
	nl := c.leader(1, rest...)
	if nl == old {
		t.Fatal("the isolated node is still leader for the majority")
	}
	for i := 0; i < 10; i++ {
		if err := c.propose(rest[i%2], 1, fmt.Sprintf("after-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.net.Heal()
	got := c.converge(1, 11, c.ids...)
	for _, s := range got {
		if s == "lost" {
			t.Fatal("the minority's uncommitted proposal was applied")
		}
	}
}

func TestRestartRebuildsFromTheLog(t *testing.T) {
	c := newCluster(t, 3, 1, 2)
	c.leader(1)
	c.leader(2)
	for i := 0; i < 20; i++ {
		if err := c.propose(c.ids[i%3], uint64(1+i%2), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.converge(1, 10, c.ids...)
	c.stop(3)
	c.leader(1, 1, 2) // a proposal forwarded to a dead leader is lost
	for i := 20; i < 30; i++ {
		if err := c.propose(c.ids[i%2], 1, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.start(3, 1, 2)
	// host 3 replays its log (10 + 10 commands) and catches up on 10 more
	c.converge(1, 20, c.ids...)
	c.converge(2, 10, c.ids...)
}

func TestManyGroupsCommitConcurrently(t *testing.T) {
	var groups []uint64
	for g := uint64(1); g <= 20; g++ {
		groups = append(groups, g)
	}
	c := newCluster(t, 3, groups...)
	for _, g := range groups {
		c.leader(g)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func(g uint64) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if err := c.propose(1, g, fmt.Sprint(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	for _, g := range groups {
		c.converge(g, 10, c.ids...)
	}
	// (that one fsync covers many groups' entries is checked
	// deterministically by TestOneSyncForEveryGroupsEntries)
}

func TestUnknownGroupAndClosedHost(t *testing.T) {
	c := newCluster(t, 1, 1)
	if err := c.propose(1, 9, "x"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}
	c.leader(1)
	if err := c.propose(1, 1, "x"); err != nil {
		t.Fatalf("a one-node group commits alone: %v", err)
	}
	c.hosts[1].Close()
	if err := c.propose(1, 1, "y"); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed host: %v", err)
	}
}

// TestImportsOnlyTheLog enforces the layering: consensus knows the WAL and
// nothing of queues, connections or the broker.
func TestImportsOnlyTheLog(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/warrenmq/warren/") && imp != "github.com/warrenmq/warren/internal/wal" {
			t.Errorf("internal/consensus imports %s; it may only use internal/wal", imp)
		}
	}
}

// TestMembershipChanges adds a fourth node to a running group (it learns
// the whole log), then removes one of the founders and stops it: the
// group keeps committing with the new membership.
func TestMembershipChanges(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.leader(1)
	for i := 0; i < 10; i++ {
		if err := c.propose(c.ids[i%3], 1, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// node 4 starts empty and joins
	h4, err := Open(Options{ID: 4, Dir: filepath.Join(c.dir, "4"), Transport: c.net.Endpoint(4), Tick: testTick})
	if err != nil {
		t.Fatal(err)
	}
	c.hosts[4] = h4
	c.net.Attach(4, h4)
	c.fsms[4] = map[uint64]*logFSM{1: {}}
	if err := h4.JoinGroup(1, c.fsms[4][1]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.hosts[2].AddMember(ctx, 1, 4); err != nil {
		t.Fatal(err)
	}
	c.ids = append(c.ids, 4)
	if err := c.propose(4, 1, "via-4"); err != nil {
		t.Fatal(err)
	}
	c.converge(1, 11, c.ids...)
	// remove node 1 and stop it: {2,3,4} still has a majority of 2
	if err := c.hosts[3].RemoveMember(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}
	c.stop(1)
	c.ids = []uint64{2, 3, 4}
	c.leader(1, 2, 3, 4)
	if err := c.propose(3, 1, "after-removal"); err != nil {
		t.Fatal(err)
	}
	// and with one more down, 2 of 3 still commit
	c.stop(2)
	c.leader(1, 3, 4)
	if err := c.propose(4, 1, "two-of-three"); err != nil {
		t.Fatal(err)
	}
	c.converge(1, 13, 3, 4)
}

// snapFSM is a logFSM that can be snapshotted and restored.
type snapFSM struct {
	logFSM
	restores      int
	restoredBytes int // size of the largest snapshot restored
}

func (f *snapFSM) Snapshot() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []byte(strings.Join(f.cmds, "\n")), nil
}

func (f *snapFSM) Restore(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = nil
	if len(b) > 0 {
		f.cmds = strings.Split(string(b), "\n")
	}
	f.restores++
	f.restoredBytes = max(f.restoredBytes, len(b))
	return nil
}

// TestSnapshotsCompactTheLog checks that a snapshotting group's log stays
// short, that a restarted node comes back from snapshot + tail, and that a
// node far behind and a node joining late catch up through a snapshot.
func TestSnapshotsCompactTheLog(t *testing.T) {
	net := NewMemNetwork()
	dir := t.TempDir()
	hosts := map[uint64]*Host{}
	fsms := map[uint64]*snapFSM{}
	open := func(id uint64) *Host {
		h, err := Open(Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), NoSync: true, Tick: testTick, // 400 proposals one by one: fsync off to keep it short
			SnapshotEvery: 50, SegmentSize: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		hosts[id] = h
		net.Attach(id, h)
		return h
	}
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	for id := uint64(1); id <= 3; id++ {
		fsms[id] = &snapFSM{}
		if err := open(id).AddGroup(1, []uint64{1, 2, 3}, fsms[id]); err != nil {
			t.Fatal(err)
		}
	}
	propose := func(via uint64, cmd string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := hosts[via].Propose(ctx, 1, []byte(cmd)); err != nil {
			t.Fatalf("%s via %d: %v", cmd, via, err)
		}
	}
	waitFor(t, "a leader", func() bool { return hosts[1].Leader(1) != 0 && hosts[1].Leader(1) == hosts[2].Leader(1) })
	// node 3 goes down; the others move far ahead and compact
	net.Detach(3)
	hosts[3].Close()
	delete(hosts, 3)
	waitFor(t, "a leader without node 3", func() bool {
		l := hosts[1].Leader(1)
		return l != 0 && l != 3 && hosts[2].Leader(1) == l
	})
	body := strings.Repeat("x", 200)
	for i := 0; i < 400; i++ {
		propose(uint64(1+i%2), fmt.Sprintf("%03d-%s", i, body))
	}
	// 400 commands of ~200 bytes are ~80 KiB of log: without compaction
	// that is 10+ segments of 8 KiB
	if n := hosts[1].LogSegments(); n > 4 {
		t.Fatalf("node 1's log has %d segments after snapshots every 50 entries", n)
	}
	// node 3 comes back from its own log and catches up by snapshot
	fsms[3] = &snapFSM{}
	if err := open(3).AddGroup(1, []uint64{1, 2, 3}, fsms[3]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 3 to catch up", func() bool { return len(fsms[3].list()) == 400 })
	if fsms[3].restores == 0 {
		t.Fatal("node 3 caught up without a snapshot: the leader did not compact")
	}
	// a node joining now starts from a snapshot that includes it
	fsms[4] = &snapFSM{}
	if err := open(4).JoinGroup(1, fsms[4]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hosts[1].AddMember(ctx, 1, 4); err != nil {
		t.Fatal(err)
	}
	propose(4, "from-4")
	waitFor(t, "node 4 to catch up", func() bool { return len(fsms[4].list()) == 401 })
	// node 1 restarts from snapshot + tail
	net.Detach(1)
	hosts[1].Close()
	fsms[1] = &snapFSM{}
	if err := open(1).AddGroup(1, []uint64{1, 2, 3}, fsms[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 to come back", func() bool { return len(fsms[1].list()) == 401 })
	want := strings.Join(fsms[2].list(), ",")
	for id, f := range fsms {
		if strings.Join(f.list(), ",") != want {
			t.Fatalf("node %d differs", id)
		}
	}
}

func TestProposeAsyncAppliesInOrderAndTimesOut(t *testing.T) {
	net := NewMemNetwork()
	dir := t.TempDir()
	hosts := map[uint64]*Host{}
	fsms := map[uint64]*logFSM{}
	for id := uint64(1); id <= 3; id++ {
		h, err := Open(Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: testTick, ProposalTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts[id] = h
		net.Attach(id, h)
		fsms[id] = &logFSM{}
		h.AddGroup(1, []uint64{1, 2, 3}, fsms[id])
	}
	waitFor(t, "a leader", func() bool {
		l := hosts[1].Leader(1)
		return l != 0 && hosts[2].Leader(1) == l && hosts[3].Leader(1) == l
	})
	lead := hosts[1].Leader(1)
	var mu sync.Mutex
	var results []int
	var errs []error
	for i := 0; i < 100; i++ {
		hosts[lead].ProposeAsync(1, []byte(fmt.Sprint(i)), func(v any, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			results = append(results, v.(int))
		})
	}
	waitFor(t, "100 callbacks", func() bool { mu.Lock(); defer mu.Unlock(); return len(results)+len(errs) == 100 })
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs[0])
	}
	for i, n := range results {
		if n != i+1 {
			t.Fatalf("callback %d reported position %d: out of order", i, n)
		}
	}
	// an isolated leader cannot commit: its callbacks report ErrDropped
	net.Isolate([]uint64{lead}, []uint64{1, 2, 3})
	got := make(chan error, 1)
	hosts[lead].ProposeAsync(1, []byte("lost"), func(_ any, err error) { got <- err })
	select {
	case err := <-got:
		if !errors.Is(err, ErrDropped) {
			t.Fatalf("isolated proposal: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no callback for a proposal that cannot commit")
	}
}

type nopTransport struct{}

func (nopTransport) Send(uint64, []Envelope) {}

// TestOneSyncForEveryGroupsEntries drives the loop's steps by hand: with
// new entries ready in 20 groups, one round appends them all and one
// fsync covers them.
func TestOneSyncForEveryGroupsEntries(t *testing.T) {
	h, err := open(Options{ID: 1, Dir: t.TempDir(), Transport: nopTransport{}, Tick: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.wg.Add(1)
	go h.persister()
	defer func() {
		close(h.persistq)
		h.wg.Wait()
		h.log.Close()
	}()
	fsms := map[uint64]*logFSM{}
	for id := uint64(1); id <= 20; id++ {
		fsms[id] = &logFSM{}
		g, err := h.newGroup(id, []uint64{1}, fsms[id])
		if err != nil {
			t.Fatal(err)
		}
		h.addLoop(g)
	}
	// settle runs rounds until every group is idle
	settle := func() {
		t.Helper()
		for i := 0; i < 200; i++ {
			for _, g := range h.all {
				h.dirty[g.id] = g
			}
			if err := h.ready(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-h.local.notify:
				h.runLocal()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	settle() // the bootstrap entries: membership
	for _, g := range h.all {
		_ = g.rn.Campaign()
	}
	settle()
	for id, g := range h.all {
		if g.rn.BasicStatus().RaftState != raft.StateLeader {
			t.Fatalf("group %d has no leader", id)
		}
	}
	last := map[uint64]uint64{}
	for id, g := range h.all {
		last[id], _ = g.ms.LastIndex()
		if err := g.rn.Propose(append(make([]byte, 8), fmt.Sprint("cmd-", id)...)); err != nil {
			t.Fatal(err)
		}
		h.dirty[id] = g
	}
	before := h.Fsyncs()
	if err := h.ready(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the round's fsync", func() bool { return h.Fsyncs() > before })
	// the persister installs a batch after its fsync: give it the moment
	waitFor(t, "the batch installed", func() bool {
		for id, g := range h.all {
			if li, _ := g.ms.LastIndex(); li <= last[id] {
				return false
			}
		}
		return true
	})
	if n := h.Fsyncs() - before; n != 1 {
		t.Fatalf("20 groups' new entries took %d syncs, want 1", n)
	}
	settle() // a one-member group commits once its entry is on disk
	for id, f := range fsms {
		waitFor(t, "apply", func() bool { return len(f.list()) == 1 })
		if got := f.list(); got[0] != fmt.Sprint("cmd-", id) {
			t.Fatalf("group %d applied %v", id, got)
		}
	}
}

// testTick makes elections take 200-400 ms in tests (ElectionTicks 10).
const testTick = 20 * time.Millisecond
