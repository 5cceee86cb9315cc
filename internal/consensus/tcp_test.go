package consensus

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

type tcpNode struct {
	h   *Host
	tr  *TCPTransport
	fsm *logFSM
}

// startTCP starts node id of a cluster whose addresses are addrs; the
// listener for id is taken over from ln (already bound to its port).
func startTCP(t *testing.T, id uint64, addrs map[uint64]string, cookie, dir string) *tcpNode {
	t.Helper()
	var tr *TCPTransport
	var err error
	for i := 0; i < 50; i++ { // the port may still be held by a closed listener
		if tr, err = ListenTCP(id, addrs[id], addrs, cookie, nil); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	h, err := Open(Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: tr, Tick: testTick})
	if err != nil {
		t.Fatal(err)
	}
	tr.Start(h)
	n := &tcpNode{h: h, tr: tr, fsm: &logFSM{}}
	ids := make([]uint64, 0, len(addrs))
	for i := uint64(1); i <= uint64(len(addrs)); i++ {
		ids = append(ids, i)
	}
	if err := h.AddGroup(1, ids, n.fsm); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *tcpNode) stop() {
	n.h.Close()
	n.tr.Close()
}

func freeAddrs(t *testing.T, n int) map[uint64]string {
	addrs := map[uint64]string{}
	for i := 1; i <= n; i++ {
		tr, err := ListenTCP(uint64(i), "127.0.0.1:0", nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		addrs[uint64(i)] = tr.Addr().String()
		tr.Close()
	}
	return addrs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTCPClusterCommitsAndSurvivesANodeLoss(t *testing.T) {
	addrs := freeAddrs(t, 3)
	dir := t.TempDir()
	nodes := map[uint64]*tcpNode{}
	for id := uint64(1); id <= 3; id++ {
		nodes[id] = startTCP(t, id, addrs, "secret", dir)
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	waitFor(t, "a leader", func() bool {
		l := nodes[1].h.Leader(1)
		return l != 0 && nodes[2].h.Leader(1) == l && nodes[3].h.Leader(1) == l
	})
	propose := func(via uint64, cmd string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := nodes[via].h.Propose(ctx, 1, []byte(cmd))
		return err
	}
	for i := 0; i < 30; i++ {
		if err := propose(uint64(1+i%3), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	lead := nodes[1].h.Leader(1)
	nodes[lead].stop()
	delete(nodes, lead)
	var rest []uint64
	for id := range nodes {
		rest = append(rest, id)
	}
	waitFor(t, "a new leader", func() bool {
		l := nodes[rest[0]].h.Leader(1)
		return l != 0 && l != lead && nodes[rest[1]].h.Leader(1) == l
	})
	for i := 30; i < 40; i++ {
		if err := propose(rest[i%2], fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// the lost node comes back from its log and catches up over TCP
	nodes[lead] = startTCP(t, lead, addrs, "secret", dir)
	waitFor(t, "the restarted node to catch up", func() bool { return len(nodes[lead].fsm.list()) == 40 })
	want := fmt.Sprint(nodes[rest[0]].fsm.list())
	for id, n := range nodes {
		if got := fmt.Sprint(n.fsm.list()); got != want {
			t.Fatalf("node %d applied %s, node %d %s", id, got, rest[0], want)
		}
	}
}

func TestTCPWrongCookieIsRefused(t *testing.T) {
	addrs := freeAddrs(t, 3)
	dir := t.TempDir()
	a := startTCP(t, 1, addrs, "right", dir)
	defer a.stop()
	b := startTCP(t, 2, addrs, "right", dir)
	defer b.stop()
	c := startTCP(t, 3, addrs, "wrong", dir)
	defer c.stop()
	// 1 and 2 are a majority and talk; 3 is refused by both
	waitFor(t, "a leader among the nodes sharing the cookie", func() bool {
		l := a.h.Leader(1)
		return l != 0 && l != 3 && b.h.Leader(1) == l
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.h.Propose(ctx, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // 30 ticks: time for 3 to hear, were it let in
	if c.h.Leader(1) != 0 || len(c.fsm.list()) != 0 {
		t.Fatalf("the node with the wrong cookie took part (leader %d, applied %v)", c.h.Leader(1), c.fsm.list())
	}
}

func TestEnvelopeCodecRoundTrip(t *testing.T) {
	in := []Envelope{
		{Group: 7, Msg: pb.Message{Type: pb.MsgApp, To: 2, From: 1, Term: 3, Index: 9, Entries: []pb.Entry{{Term: 3, Index: 10, Data: []byte("cmd")}}}},
		{Group: 1 << 40, Msg: pb.Message{Type: pb.MsgHeartbeat, To: 3, From: 1, Commit: 10}},
	}
	out, err := decodeEnvelopes(encodeEnvelopes(nil, in))
	if err != nil || len(out) != 2 || out[0].Group != 7 || string(out[0].Msg.Entries[0].Data) != "cmd" || out[1].Group != 1<<40 || out[1].Msg.Commit != 10 {
		t.Fatalf("round trip: %+v %v", out, err)
	}
}

func FuzzDecodeEnvelopes(f *testing.F) {
	f.Add(encodeEnvelopes(nil, []Envelope{{Group: 1, Msg: pb.Message{Type: pb.MsgVote, To: 2, From: 1, Term: 5}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		envs, err := decodeEnvelopes(b)
		if err != nil {
			return
		}
		again, err := decodeEnvelopes(encodeEnvelopes(nil, envs))
		if err != nil || len(again) != len(envs) {
			t.Fatalf("re-encoding %d envelopes gave %d (%v)", len(envs), len(again), err)
		}
	})
}

// TestTCPSnapshotInChunks: a node that starts after the others compacted
// their log catches up through a snapshot that the TCP transport sends in
// many chunk frames, interleaved with the group's other traffic.
func TestTCPSnapshotInChunks(t *testing.T) {
	old := snapChunk
	snapChunk = 1 << 10
	defer func() { snapChunk = old }()
	addrs := freeAddrs(t, 3)
	dir := t.TempDir()
	type snode struct {
		h   *Host
		tr  *TCPTransport
		fsm *snapFSM
	}
	start := func(id uint64) *snode {
		tr, err := ListenTCP(id, addrs[id], addrs, "c", nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := Open(Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: tr, Tick: testTick, SnapshotEvery: 20})
		if err != nil {
			t.Fatal(err)
		}
		tr.Start(h)
		n := &snode{h, tr, &snapFSM{}}
		if err := h.AddGroup(1, []uint64{1, 2, 3}, n.fsm); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close(); tr.Close() })
		return n
	}
	n1, n2 := start(1), start(2)
	waitFor(t, "a leader of two", func() bool { l := n1.h.Leader(1); return l != 0 && l == n2.h.Leader(1) })
	body := string(make([]byte, 500))
	for i := 0; i < 60; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := n1.h.Propose(ctx, 1, []byte(fmt.Sprintf("%03d%s", i, body)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	before := n1.tr.Stats().Frames + n2.tr.Stats().Frames
	n3 := start(3)
	waitFor(t, "node 3 to catch up", func() bool { return len(n3.fsm.list()) == 60 })
	n3.fsm.mu.Lock()
	restores, size := n3.fsm.restores, n3.fsm.restoredBytes
	n3.fsm.mu.Unlock()
	if restores == 0 {
		t.Fatal("node 3 caught up without a snapshot")
	}
	// the snapshot node 3 restored went in 1 KiB chunks, a frame each (the
	// snapshot's size depends on which entry the leader snapshotted at)
	if n, want := n1.tr.Stats().Frames+n2.tr.Stats().Frames-before, uint64(size/(1<<10)); n < want {
		t.Fatalf("only %d frames sent while node 3 caught up from a %d-byte snapshot (want at least %d)", n, size, want)
	}
}
