package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/warrenmq/warren/internal/consensus"
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

type raftNode struct {
	*testNode
	rt  *RaftTransport
	h   *consensus.Host
	fsm *logFSM
}

func (n *raftNode) stop() {
	n.h.Close()
	n.rt.Close()
	n.Link.Close()
}

// freePorts returns n loopback addresses free a moment ago.
func freePorts(t *testing.T, n int) []string {
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	return addrs
}

// startRaftNode starts node id (1-based) of a three-node group whose
// inter-node ports are addrs, with its data in dir.
func startRaftNode(t *testing.T, id uint64, addrs []string, cookie, dir string, noSync bool) *raftNode {
	t.Helper()
	cfg := fastConfig(fmt.Sprintf("n%d@localhost", id), id, cookie)
	cfg.Listen = addrs[id-1]
	n := &raftNode{testNode: startNode(t, cfg), fsm: &logFSM{}}
	var host atomic.Pointer[consensus.Host]
	n.rt = NewRaftTransport(n.Link, RaftConfig{Deliver: func(envs []consensus.Envelope, _ bool) bool {
		if h := host.Load(); h != nil {
			h.Deliver(envs)
		}
		return true
	}})
	h, err := consensus.Open(consensus.Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: n.rt, NoSync: noSync})
	if err != nil {
		t.Fatal(err)
	}
	host.Store(h)
	n.h = h
	members := []uint64{1, 2, 3}
	if err := h.AddGroup(1, members, n.fsm); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m != id {
			n.AddPeer(Peer{ID: m, Name: MustParseNodeName(fmt.Sprintf("n%d@localhost", m)), Addr: addrs[m-1]})
		}
	}
	return n
}

func propose(t *testing.T, n *raftNode, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.h.Propose(ctx, 1, []byte(cmd)); err != nil {
		t.Fatalf("proposing %q on node %d: %v", cmd, n.id, err)
	}
}

func agreedLeader(t *testing.T, nodes ...*raftNode) uint64 {
	t.Helper()
	var lead uint64
	waitFor(t, "an agreed leader", func() bool {
		lead = nodes[0].h.Leader(1)
		for _, n := range nodes {
			if n.h.Leader(1) != lead {
				return false
			}
		}
		return lead != 0 && slices.ContainsFunc(nodes, func(n *raftNode) bool { return n.id == lead })
	})
	return lead
}

func testRaftOverLinks(t *testing.T, noSync bool) {
	addrs := freePorts(t, 3)
	dir := t.TempDir()
	nodes := map[uint64]*raftNode{}
	for id := uint64(1); id <= 3; id++ {
		nodes[id] = startRaftNode(t, id, addrs, "secret", dir, noSync)
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	agreedLeader(t, nodes[1], nodes[2], nodes[3])
	for i := range 30 {
		propose(t, nodes[uint64(1+i%3)], fmt.Sprint(i))
	}

	// a node stops (its link too); the other two go on
	lead := nodes[1].h.Leader(1)
	nodes[lead].stop()
	delete(nodes, lead)
	var rest []*raftNode
	for _, n := range nodes {
		rest = append(rest, n)
	}
	if l := agreedLeader(t, rest...); l == lead {
		t.Fatalf("the stopped node %d is still the leader", lead)
	}
	for i := 30; i < 40; i++ {
		propose(t, rest[i%2], fmt.Sprint(i))
	}

	// it restarts on the same port from its log, reconnects, catches up
	nodes[lead] = startRaftNode(t, lead, addrs, "secret", dir, noSync)
	waitFor(t, "the restarted node to catch up", func() bool { return len(nodes[lead].fsm.list()) == 40 })
	propose(t, nodes[lead], "after")
	waitFor(t, "every node to apply the last command", func() bool {
		for _, n := range nodes {
			if len(n.fsm.list()) != 41 {
				return false
			}
		}
		return true
	})
	want := rest[0].fsm.list()
	for id, n := range nodes {
		if got := n.fsm.list(); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %v, node %d %v", id, got, rest[0].id, want)
		}
	}
	seen := map[string]bool{}
	for _, c := range want {
		if seen[c] {
			t.Fatalf("%q applied twice", c)
		}
		seen[c] = true
	}
}

func TestRaftOverLinks(t *testing.T) { testRaftOverLinks(t, true) }

func TestRaftOverLinksWithSync(t *testing.T) { testRaftOverLinks(t, false) }

func TestRaftNodeWithAnotherCookieNeverJoins(t *testing.T) {
	addrs := freePorts(t, 3)
	dir := t.TempDir()
	a := startRaftNode(t, 1, addrs, "right", dir, true)
	defer a.stop()
	b := startRaftNode(t, 2, addrs, "right", dir, true)
	defer b.stop()
	c := startRaftNode(t, 3, addrs, "wrong", dir, true)
	defer c.stop()
	agreedLeader(t, a, b)
	for i := range 5 {
		propose(t, a, fmt.Sprint(i))
	}
	c.logs.waitLog(t, "the node with the wrong cookie", "the cookies of n1@localhost and n3@localhost differ")
	c.logs.waitLog(t, "the node with the wrong cookie", "the cookies of n2@localhost and n3@localhost differ")
	a.logs.waitLog(t, "node 1", "the cookies of n1@localhost and n3@localhost differ")
	if a.Connected(3) || b.Connected(3) || len(c.fsm.list()) != 0 || c.h.Leader(1) == a.h.Leader(1) {
		t.Fatalf("the node with the wrong cookie took part (leader %d, applied %v)", c.h.Leader(1), c.fsm.list())
	}
}

// snapNode is a link with a Raft transport and no host: it records
// what it is given.
type snapNode struct {
	*testNode
	rt *RaftTransport

	mu       sync.Mutex
	got      []consensus.Envelope
	large    []bool
	statuses []string
	refuse   bool
}

func newSnapNode(t *testing.T, name string, id uint64) *snapNode {
	cfg := fastConfig(name, id, "secret")
	cfg.MaxFrame = 2 << 20
	n := &snapNode{testNode: startNode(t, cfg)}
	n.rt = NewRaftTransport(n.Link, RaftConfig{
		Deliver: func(envs []consensus.Envelope, large bool) bool {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.got = append(n.got, envs...)
			n.large = append(n.large, large)
			return !n.refuse
		},
		SnapshotStatus: func(to, group uint64, ok bool) {
			n.mu.Lock()
			n.statuses = append(n.statuses, fmt.Sprint(to, group, ok))
			n.mu.Unlock()
		},
	})
	t.Cleanup(func() { n.rt.Close() })
	return n
}

func (n *snapNode) status() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.statuses)
}

func TestRaftSnapshotsTravelInChunksAndAreReported(t *testing.T) {
	a, b := newSnapNode(t, "n1@localhost", 1), newSnapNode(t, "n2@localhost", 2)
	meet(t, a.testNode, b.testNode)
	waitConnected(t, a.testNode, b.testNode)

	data := bytes.Repeat([]byte("snapshot"), 3<<20/8+5) // over three chunks, over MaxFrame
	snap := consensus.Envelope{Group: 7, Msg: pb.Message{Type: pb.MsgSnap, From: 1, To: 2, Term: 4,
		Snapshot: &pb.Snapshot{Data: data, Metadata: pb.SnapshotMetadata{Index: 100, Term: 4}}}}
	hb := consensus.Envelope{Group: 8, Msg: pb.Message{Type: pb.MsgHeartbeat, From: 1, To: 2, Term: 2}}
	a.rt.Send(2, []consensus.Envelope{snap, hb})
	waitFor(t, "the snapshot's report", func() bool { return len(a.status()) == 1 })
	if got := a.status(); got[0] != "2 7 true" {
		t.Fatalf("reported %v, want [2 7 true]", got)
	}
	b.mu.Lock()
	if len(b.got) != 2 || !slices.Equal(b.large, []bool{false, true}) && !slices.Equal(b.large, []bool{true, false}) {
		t.Fatalf("b got %d envelopes (large %v)", len(b.got), b.large)
	}
	for _, e := range b.got {
		if e.Msg.Type == pb.MsgSnap && (e.Group != 7 || !bytes.Equal(e.Msg.Snapshot.Data, data) || e.Msg.Snapshot.Metadata.Index != 100) {
			t.Fatalf("the snapshot arrived damaged: group %d, %d bytes", e.Group, len(e.Msg.Snapshot.Data))
		}
	}
	b.refuse = true // b's host is overloaded: a failure, reported
	b.mu.Unlock()
	a.rt.Send(2, []consensus.Envelope{snap})
	waitFor(t, "the second report", func() bool { return len(a.status()) == 2 })
	if got := a.status(); got[1] != "2 7 false" {
		t.Fatalf("reported %v, want a failure", got)
	}

	// a peer that is away: a failure, reported
	b.Close()
	waitFor(t, "a to see b gone", func() bool { return !a.Connected(2) })
	a.rt.Send(2, []consensus.Envelope{snap})
	waitFor(t, "the third report", func() bool { return len(a.status()) == 3 })
	if got := a.status(); got[2] != "2 7 false" {
		t.Fatalf("reported %v, want a failure", got)
	}
	if !strings.Contains(a.logs.String(), "raft snapshot not delivered") {
		t.Fatalf("the failure was not logged:\n%s", a.logs)
	}
}

func TestEnvelopeCodec(t *testing.T) {
	in := []consensus.Envelope{
		{Group: 7, Msg: pb.Message{Type: pb.MsgApp, To: 2, From: 1, Term: 3, Index: 9, Entries: []pb.Entry{{Term: 3, Index: 10, Data: []byte("cmd")}}}},
		{Group: 1 << 40, Msg: pb.Message{Type: pb.MsgHeartbeat, To: 3, From: 1, Commit: 10}, Quiesce: true},
	}
	var b []byte
	for _, e := range in {
		b = appendEnvelope(b, e, e.Msg.Size())
	}
	out, err := decodeEnvelopes(b)
	if err != nil || len(out) != 2 || out[0].Group != 7 || string(out[0].Msg.Entries[0].Data) != "cmd" || out[1].Group != 1<<40 || out[1].Msg.Commit != 10 ||
		out[0].Quiesce || !out[1].Quiesce {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	if _, err := decodeEnvelopes(b[:len(b)-1]); err == nil {
		t.Fatal("a truncated envelope decoded")
	}
}
