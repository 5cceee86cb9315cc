// Package storetest is the conformance suite every queue.Store
// implementation runs (the in-memory reference, the durable message
// store, and the replicated store to come): the same checks, through the
// Store interface and through a Queue using it.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) queue.Store { return open(t) })
//	}
package storetest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/warrenmq/warren/internal/queue"
)

// Run runs every check against stores made by open (a new, empty store
// for each check).
func Run(t *testing.T, open func(t *testing.T) queue.Store) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open(t)) })
	t.Run("RemovedIsGone", func(t *testing.T) { removedIsGone(t, open(t)) })
	t.Run("BacklogPagedThroughQueue", func(t *testing.T) { backlogPaged(t, open(t)) })
	t.Run("QueueRecordsDeliveriesAndAcks", func(t *testing.T) { deliveriesAndAcks(t, open(t)) })
}

func msg(i int) *queue.Message {
	return &queue.Message{Exchange: fmt.Sprintf("ex%d", i%3), RoutingKey: fmt.Sprintf("rk.%d", i), Props: []byte{0x80, 0x00, byte(i)},
		Body: bytes.Repeat([]byte{byte(i)}, 10+i), Persistent: true, Priority: uint8(i % 4)}
}

func same(a, b *queue.Message) bool {
	return a.Exchange == b.Exchange && a.RoutingKey == b.RoutingKey && bytes.Equal(a.Props, b.Props) &&
		bytes.Equal(a.Body, b.Body) && a.Persistent == b.Persistent && a.Priority == b.Priority
}

func roundTrip(t *testing.T, s queue.Store) {
	var refs []uint64
	for i := 0; i < 50; i++ {
		ref, err := s.Enqueue("/\x00q", msg(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) > 0 && ref <= refs[len(refs)-1] {
			t.Fatalf("references must grow: %d after %d", ref, refs[len(refs)-1])
		}
		refs = append(refs, ref)
	}
	// in order, out of order, one at a time
	for _, pick := range [][]int{{0, 1, 2, 49}, {30, 3, 17}, {25}} {
		var rs []uint64
		for _, i := range pick {
			rs = append(rs, refs[i])
		}
		n := 0
		err := s.Load(rs, func(k int, m *queue.Message) {
			n++
			if !same(m, msg(pick[k])) {
				t.Fatalf("message %d came back as %+v", pick[k], m)
			}
		})
		if err != nil || n != len(rs) {
			t.Fatalf("load %v: %v (%d of %d)", pick, err, n, len(rs))
		}
	}
}

func removedIsGone(t *testing.T, s queue.Store) {
	a, _ := s.Enqueue("/\x00q", msg(1), 0)
	b, _ := s.Enqueue("/\x00q", msg(2), 0)
	s.Delivered("/\x00q", []uint64{a})
	s.Remove("/\x00q", []uint64{a})
	if err := s.Load([]uint64{a}, func(int, *queue.Message) {}); err == nil {
		t.Fatal("a removed message loaded")
	}
	if err := s.Load([]uint64{b}, func(_ int, m *queue.Message) {
		if !same(m, msg(2)) {
			t.Fatalf("neighbour changed: %+v", m)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// backlogPaged runs a queue over the store with a memory budget so small
// that nearly every body lives only in the store.
func backlogPaged(t *testing.T, s queue.Store) {
	mem := &queue.Memory{}
	mem.SetBudget(1)
	q := queue.New(queue.Config{VHost: "/", Name: "q", Durable: true, Store: s, Memory: mem})
	const n = 10000
	for i := 0; i < n; i++ {
		q.Publish(&queue.Message{Body: []byte(fmt.Sprintf("%05d", i)), Persistent: true})
	}
	if ram, _ := q.InMemory(); ram > 64 {
		t.Fatalf("%d of %d bodies in memory over a 1-byte budget", ram, n)
	}
	for i := 0; i < n; i++ {
		d, ok := q.Get(true)
		if !ok {
			ready, _, _ := q.Counts()
			t.Fatalf("message %d: basic.get found nothing with %d ready", i, ready)
		}
		if string(d.Msg.Body) != fmt.Sprintf("%05d", i) {
			t.Fatalf("message %d: got %q", i, d.Msg.Body)
		}
	}
}

// deliveriesAndAcks checks what a queue tells its store.
func deliveriesAndAcks(t *testing.T, s queue.Store) {
	q := queue.New(queue.Config{VHost: "/", Name: "q", Durable: true, Store: s})
	q.Publish(&queue.Message{Body: []byte("acked"), Persistent: true})
	q.Publish(&queue.Message{Body: []byte("kept"), Persistent: true})
	q.Publish(&queue.Message{Body: []byte("transient")}) // not stored
	d, _ := q.Get(false)
	q.Ack(d.ID)
	d2, _ := q.Get(false)
	q.Requeue(d2.ID)
	if r, u, _ := q.Counts(); r != 2 || u != 0 {
		t.Fatalf("%d ready, %d unacked", r, u)
	}
	if d, _ := q.Get(true); string(d.Msg.Body) != "kept" || !d.Redelivered {
		t.Fatalf("requeued message: %q redelivered=%v", d.Msg.Body, d.Redelivered)
	}
}
