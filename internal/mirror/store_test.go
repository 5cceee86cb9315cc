package mirror

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/queue/storetest"
)

type node struct {
	h *consensus.Host
	s *Store
}

func startGroup(t *testing.T, net *consensus.MemNetwork, dir string, ids []uint64, timeout time.Duration) map[uint64]*node {
	t.Helper()
	nodes := map[uint64]*node{}
	for _, id := range ids {
		h, err := consensus.Open(consensus.Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: 20 * time.Millisecond, ProposalTimeout: timeout, SnapshotEvery: 500})
		if err != nil {
			t.Fatal(err)
		}
		net.Attach(id, h)
		s, err := Open(h, id, 7, ids)
		if err != nil {
			t.Fatal(err)
		}
		nodes[id] = &node{h, s}
		t.Cleanup(func() { h.Close() })
	}
	return nodes
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func leaderOf(t *testing.T, nodes map[uint64]*node, among ...uint64) uint64 {
	t.Helper()
	var l uint64
	waitFor(t, "a leader", func() bool {
		l = nodes[among[0]].h.Leader(7)
		for _, id := range among {
			if nodes[id].h.Leader(7) != l {
				return false
			}
		}
		return slices.Contains(among, l)
	})
	return l
}

// TestConformance runs the queue.Store suite on a one-node group.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store {
		nodes := startGroup(t, consensus.NewMemNetwork(), t.TempDir(), []uint64{1}, time.Second)
		leaderOf(t, nodes, 1)
		return nodes[1].s
	})
}

// TestConfirmedMessagesSurviveLeaderLoss publishes through a queue on the
// group's leader, confirming on OnDurable, kills the leader while
// publishing, and rebuilds the queue on a survivor: every confirmed
// message is there, in order.
func TestConfirmedMessagesSurviveLeaderLoss(t *testing.T) {
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			net := consensus.NewMemNetwork()
			ids := []uint64{1, 2, 3}
			nodes := startGroup(t, net, t.TempDir(), ids, 10*time.Second) // under load (-race, fsync on) a flood of proposals can take seconds
			lead := leaderOf(t, nodes, ids...)
			q := queue.New(queue.Config{VHost: "/", Name: "orders", Durable: true, Store: nodes[lead].s})
			var mu sync.Mutex
			confirmed := map[string]bool{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					body := fmt.Sprintf("m%06d", i)
					_, ref := q.Publish(&queue.Message{Body: []byte(body), Persistent: true})
					if ref == 0 {
						continue
					}
					nodes[lead].s.OnDurable(ref, func(err error) {
						if err == nil {
							mu.Lock()
							confirmed[body] = true
							mu.Unlock()
						}
					})
					if i%50 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			waitFor(t, "some confirms", func() bool { mu.Lock(); defer mu.Unlock(); return len(confirmed) > 200*(round+1) })
			// the leader dies mid-stream
			net.Detach(lead)
			nodes[lead].h.Close()
			close(stop)
			wg.Wait()
			var rest []uint64
			for _, id := range ids {
				if id != lead {
					rest = append(rest, id)
				}
			}
			nl := leaderOf(t, nodes, rest...)
			// what the new leader holds, once its own first entry is
			// applied, is everything the group committed
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := nodes[nl].s.Barrier(ctx); err != nil {
				t.Fatal(err)
			}
			q2 := queue.New(queue.Config{VHost: "/", Name: "orders", Durable: true, Store: nodes[nl].s})
			q2.Restore(slices.Values(nodes[nl].s.Recovered()))
			got := map[string]bool{}
			last := ""
			for {
				d, ok := q2.Get(true)
				if !ok {
					break
				}
				b := string(d.Msg.Body)
				if b <= last {
					t.Fatalf("%s after %s: order lost", b, last)
				}
				last = b
				got[b] = true
			}
			mu.Lock()
			defer mu.Unlock()
			for b := range confirmed {
				if !got[b] {
					t.Logf("old leader %d applied %d, holds %d; survivors hold %d and %d (applied %d, %d)", lead, nodes[lead].h.Applied(7), nodes[lead].s.Len(),
						nodes[rest[0]].s.Len(), nodes[rest[1]].s.Len(), nodes[rest[0]].h.Applied(7), nodes[rest[1]].h.Applied(7))
					t.Fatalf("confirmed message %s lost with the leader (%d confirmed, %d recovered)", b, len(confirmed), len(got))
				}
			}
			t.Logf("%d confirmed, %d recovered on node %d", len(confirmed), len(got), nl)
		})
	}
}

// TestMinorityNeverConfirms isolates the leader: what it accepts then is
// never confirmed (nacked when the timeout passes), and once reconnected
// it confirms again.
func TestMinorityNeverConfirms(t *testing.T) {
	net := consensus.NewMemNetwork()
	ids := []uint64{1, 2, 3}
	nodes := startGroup(t, net, t.TempDir(), ids, 300*time.Millisecond)
	lead := leaderOf(t, nodes, ids...)
	s := nodes[lead].s
	confirm := func(body string) error {
		ref, err := s.Enqueue("", &queue.Message{Body: []byte(body), Persistent: true}, 0)
		if err != nil {
			return err
		}
		res := make(chan error, 1)
		s.OnDurable(ref, func(err error) { res <- err })
		select {
		case err := <-res:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("no outcome for %s", body)
			return nil
		}
	}
	if err := confirm("before"); err != nil {
		t.Fatal(err)
	}
	net.Isolate([]uint64{lead}, ids)
	if err := confirm("isolated"); err == nil || !errors.Is(err, consensus.ErrDropped) {
		t.Fatalf("a message on the minority side was confirmed (%v)", err)
	}
	// the isolated replica refuses new messages until its queue is rebuilt
	if _, err := s.Enqueue("", &queue.Message{Body: []byte("refused"), Persistent: true}, 0); err == nil {
		t.Fatal("a replica whose replication failed took a new message")
	}
	net.Heal()
	nl := leaderOf(t, nodes, ids...)
	s = nodes[nl].s
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if err := confirm("after"); err != nil {
		t.Fatalf("after healing: %v", err)
	}
}

func TestCommandCodec(t *testing.T) {
	r := &record{expiresAt: -5, delivered: true, msg: queue.Message{Exchange: "x", RoutingKey: "k", Props: []byte{1, 2}, Body: []byte("body"), Persistent: true, Priority: 3}}
	ref, got, err := decodeEnqueue(encodeEnqueue(1<<20|3, r)[1:])
	if err != nil || ref != 1<<20|3 || got.expiresAt != -5 || !got.delivered || got.msg.Exchange != "x" || got.msg.RoutingKey != "k" ||
		string(got.msg.Props) != "\x01\x02" || string(got.msg.Body) != "body" || !got.msg.Persistent || got.msg.Priority != 3 {
		t.Fatalf("round trip: %d %+v %v", ref, got, err)
	}
	refs, err := decodeRefs(encodeRefs(cmdRemove, []uint64{1, 1 << 40})[1:])
	if err != nil || !slices.Equal(refs, []uint64{1, 1 << 40}) {
		t.Fatalf("refs: %v %v", refs, err)
	}
	if _, _, err := decodeEnqueue([]byte{0x80}); err == nil {
		t.Fatal("a truncated command decoded")
	}
}

// TestRemoveBeforeEnqueueDoesNotResurrect applies a message's removal
// before its enqueue (the order a retried enqueue proposal can commit
// in): the message stays gone, in the replica and across a snapshot.
func TestRemoveBeforeEnqueueDoesNotResurrect(t *testing.T) {
	s := &Store{msgs: map[uint64]*record{}, pending: map[uint64]*record{}, gone: map[uint64]bool{}, done: map[uint64]error{}, early: map[uint64]bool{}}
	f := fsm{s}
	ref := uint64(1)<<refNodeBits | 1
	ref2 := uint64(2)<<refNodeBits | 1
	if err, _ := f.Apply(1, encodeRefs(cmdRemove, []uint64{ref})).(error); err != nil {
		t.Fatal(err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, {msgs: map[uint64]*record{}, pending: map[uint64]*record{}, gone: map[uint64]bool{}, early: map[uint64]bool{}}} {
		g := fsm{st}
		if st != s {
			if err := g.Restore(snap); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range []uint64{ref, ref2} {
			if err, _ := g.Apply(2, encodeEnqueue(r, &record{msg: queue.Message{Body: []byte("x")}})).(error); err != nil {
				t.Fatal(err)
			}
		}
		if got := st.Recovered(); len(got) != 1 || got[0].Ref != ref2 {
			t.Fatalf("replica holds %v, want only the message never removed (%d)", got, ref2)
		}
	}
}

// TestSnapshotKeepsTheSequence: a replica restored from a snapshot taken
// after every message was removed hands out references above every one
// applied before (a reused reference would meet a remembered early
// removal, or a late removal of the old message, and vanish).
func TestSnapshotKeepsTheSequence(t *testing.T) {
	mk := func() *Store {
		return &Store{node: 1, msgs: map[uint64]*record{}, pending: map[uint64]*record{}, gone: map[uint64]bool{}, done: map[uint64]error{}, early: map[uint64]bool{}}
	}
	a := mk()
	f := fsm{a}
	ref := uint64(41)<<refNodeBits | 1
	if err, _ := f.Apply(1, encodeEnqueue(ref, &record{})).(error); err != nil {
		t.Fatal(err)
	}
	// removed, and a removal of a reference whose enqueue never applied
	never := uint64(57)<<refNodeBits | 2
	if err, _ := f.Apply(2, encodeRefs(cmdRemove, []uint64{ref, never})).(error); err != nil {
		t.Fatal(err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := mk()
	if err := (fsm{b}).Restore(snap); err != nil {
		t.Fatal(err)
	}
	if b.maxSeq < 57 {
		t.Fatalf("restored sequence %d: the next reference would reuse one applied before (41, and 57 removed early)", b.maxSeq)
	}
}
