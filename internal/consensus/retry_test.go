package consensus

import (
	"context"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

func count(cmds []string, cmd string) int {
	n := 0
	for _, c := range cmds {
		if c == cmd {
			n++
		}
	}
	return n
}

func others(ids []uint64, not ...uint64) []uint64 {
	var out []uint64
	for _, id := range ids {
		if !slices.Contains(not, id) {
			out = append(out, id)
		}
	}
	return out
}

// TestForwardedProposalSurvivesLeaderLoss: a follower forwards a proposal
// to the leader, which dies before appending it (the forward is lost with
// it). The follower proposes it again to the leader the survivors elect,
// and it commits once. Before retries, the proposal failed at its
// deadline although two of three nodes were up.
func TestForwardedProposalSurvivesLeaderLoss(t *testing.T) {
	c := newCluster(t, 3, 1)
	if err := c.propose(1, 1, "before"); err != nil {
		t.Fatal(err)
	}
	l := c.leader(1)
	f := others(c.ids, l)[0]
	lost := make(chan struct{}, 1)
	c.net.SetFilter(func(from, to uint64, e Envelope) bool {
		if from == f && to == l && e.Msg.Type == pb.MsgProp {
			select {
			case lost <- struct{}{}:
			default:
			}
			return false // the leader dies with it
		}
		return true
	})
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := c.hosts[f].Propose(ctx, 1, []byte("x"))
		res <- err
	}()
	<-lost
	c.stop(l)
	c.net.SetFilter(nil)
	if err := <-res; err != nil {
		t.Fatalf("proposal through follower %d after leader %d died: %v", f, l, err)
	}
	live := others(c.ids, l)
	got := c.converge(1, 2, live...)
	if count(got, "x") != 1 {
		t.Fatalf("applied %v: want x once", got)
	}
	if c.hosts[f].Retries() == 0 {
		t.Fatal("the proposal committed without a retry: the test did not lose the forward")
	}
}

// TestRetriedProposalIsAppliedOnce: the leader appends a follower's
// proposal and commits it with the third node, but the proposer never
// hears (the leader's appends to it are lost) and the leader is then cut
// off. The proposer proposes again to the new leader, so the id is in the
// log twice; every node applies it once and the proposer gets one answer.
func TestRetriedProposalIsAppliedOnce(t *testing.T) {
	c := newCluster(t, 3, 1)
	if err := c.propose(1, 1, "before"); err != nil {
		t.Fatal(err)
	}
	l := c.leader(1)
	f, m := others(c.ids, l)[0], others(c.ids, l)[1]
	c.net.SetFilter(func(from, to uint64, e Envelope) bool {
		return !(from == l && to == f && (e.Msg.Type == pb.MsgApp || e.Msg.Type == pb.MsgSnap))
	})
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := c.hosts[f].Propose(ctx, 1, []byte("y"))
		res <- err
	}()
	// committed: the third node applied it
	deadline := time.Now().Add(10 * time.Second)
	for count(c.fsms[m][1].list(), "y") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not commit the forwarded proposal")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.net.Isolate([]uint64{l}, c.ids)
	c.net.SetFilter(nil)
	if err := <-res; err != nil {
		t.Fatalf("proposal through %d: %v", f, err)
	}
	c.net.Heal()
	if c.hosts[f].Retries() == 0 {
		t.Fatal("no retry: the proposer heard of the commit, the test did not exercise a duplicate")
	}
	// the second copy commits after the first answered the proposer
	dups := func() (n uint64) {
		for _, h := range c.hosts {
			n += h.Duplicates()
		}
		return n
	}
	deadline = time.Now().Add(10 * time.Second)
	for dups() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d nodes skipped the duplicate entry, want all 3: the retry never reached the log, or a node applied it", dups())
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := c.converge(1, 2, c.ids...)
	if count(got, "y") != 1 {
		t.Fatalf("applied %v: want y once", got)
	}
}

// TestDedupWindowTravelsWithSnapshots: the window evicts its oldest ids
// beyond dedupWindow, survives a snapshot round trip, and data without
// the window (older snapshots) restores with an empty one.
func TestDedupWindowTravelsWithSnapshots(t *testing.T) {
	var d dedup
	for id := uint64(1); id <= dedupWindow+10; id++ {
		d.add(id)
	}
	if d.has(10) || !d.has(11) || !d.has(dedupWindow+10) {
		t.Fatalf("window after %d ids: has(10)=%v has(11)=%v", dedupWindow+10, d.has(10), d.has(11))
	}
	g := &group{id: 1, sm: &snapFSM{}}
	smData := []byte{1, 2, 3}
	if err := restoreSnapshot(g, wrapSnapshot(&d, smData)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.dd.ids(), d.ids()) {
		t.Fatal("the window changed through a snapshot")
	}
	g.dd.add(1 << 40)
	if g.dd.has(11) || !g.dd.has(12) {
		t.Fatal("the restored window does not evict in the original order")
	}
	if _, data, err := unwrapSnapshot(smData); err != nil || !slices.Equal(data, smData) {
		t.Fatalf("data without a window: %v %v", data, err)
	}
	if _, _, err := unwrapSnapshot(append(append([]byte{}, snapMagic...), 0x05, 1, 2)); err == nil {
		t.Fatal("a truncated window was accepted")
	}
}
