package forward_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/cluster"
	"github.com/warrenmq/warren/internal/forward"
	"github.com/warrenmq/warren/internal/queue"
)

// pair is two nodes joined by a real inter-node link on the loopback:
// node 1 is the home of the queues in home, node 2 uses them.
type pair struct {
	l1, l2 *cluster.Link
	f1, f2 *forward.Forwarder
	mu     sync.Mutex
	home   map[string]*queue.Queue
}

func names() map[string]uint64 { return map[string]uint64{"n1@localhost": 1, "n2@localhost": 2} }

func newPair(t *testing.T) *pair { return newPairWith(t, nil, 0) }

// newPairWith is newPair with node 1's transport wrapped by wrap (when
// not nil) and node 2's publish window (0: the default).
func newPairWith(t *testing.T, wrap func(*cluster.Link) forward.Transport, window int) *pair {
	p := &pair{home: map[string]*queue.Queue{}}
	cfg := func(name string, id uint64) cluster.Config {
		return cluster.Config{Name: cluster.MustParseNodeName(name), ID: id, Cookie: []byte("c"), Listen: "127.0.0.1:0",
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Keepalive: 50 * time.Millisecond, DeadAfter: 5 * time.Second}
	}
	var err error
	if p.l1, err = cluster.Listen(cfg("n1@localhost", 1)); err != nil {
		t.Fatal(err)
	}
	if p.l2, err = cluster.Listen(cfg("n2@localhost", 2)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.l1.Close(); p.l2.Close() })
	node := func(n string) (uint64, bool) { id, ok := names()[n]; return id, ok }
	var tr1 forward.Transport = p.l1
	if wrap != nil {
		tr1 = wrap(p.l1)
	}
	p.f1 = forward.New(forward.Config{Transport: tr1, Node: node, Timeout: 5 * time.Second, Local: func(vh, name string) *queue.Queue {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.home[vh+"/"+name]
	}, LocalQueues: func(vh string) []*queue.Queue {
		p.mu.Lock()
		defer p.mu.Unlock()
		var out []*queue.Queue
		for k, q := range p.home {
			if strings.HasPrefix(k, vh+"/") {
				out = append(out, q)
			}
		}
		return out
	}})
	p.f2 = forward.New(forward.Config{Transport: p.l2, Node: node, Window: window, Timeout: 5 * time.Second, Local: func(string, string) *queue.Queue { return nil }})
	p.connect(t)
	return p
}

func (p *pair) connect(t *testing.T) {
	t.Helper()
	if err := p.l1.AddPeer(cluster.Peer{ID: 2, Name: cluster.MustParseNodeName("n2@localhost"), Addr: p.l2.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	if err := p.l2.AddPeer(cluster.Peer{ID: 1, Name: cluster.MustParseNodeName("n1@localhost"), Addr: p.l1.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the link up", func() bool { return p.f2.Up("n1@localhost") && p.l1.Connected(2) })
}

func (p *pair) queue(name string, args map[string]any) *queue.Queue {
	q := queue.New(queue.Config{VHost: "/", Name: name, Args: args})
	q.Start()
	p.mu.Lock()
	p.home["/"+"/"+name] = q
	p.mu.Unlock()
	return q
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sink is a consumer that takes everything.
type sink struct {
	mu        sync.Mutex
	got       []queue.Delivery
	cancelled bool
}

func (s *sink) Deliver(d queue.Delivery) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, d)
	return true
}

func (s *sink) Cancelled(queue.Handle) { s.mu.Lock(); s.cancelled = true; s.mu.Unlock() }

func (s *sink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.got) }

func outcome(p *queue.Pending) queue.Outcome {
	ch := make(chan queue.Outcome, 1)
	p.OnDone(func(o queue.Outcome) { ch <- o })
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		return 0
	}
}

// When the link breaks, the home requeues what the lost peer's
// consumers held, the peer's consumers are cancelled, and acks the peer
// sends afterwards for deliveries of the old connection are dropped
// instead of acking messages that may have gone to someone else.
func TestLinkLossRequeuesAndDropsStaleAcks(t *testing.T) {
	p := newPair(t)
	q := p.queue("q", nil)
	for i := range 10 {
		q.Publish(&queue.Message{Body: fmt.Appendf(nil, "m%d", i)})
	}
	h, err := p.f2.Queue("n1@localhost", "/", "q")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	accepted := false
	if err := h.AddConsumer("c", s, false, false, 0, func() { accepted = true }); err != nil {
		t.Fatal(err)
	}
	if !accepted {
		t.Fatal("consume answered before accepted ran")
	}
	waitFor(t, "10 deliveries", func() bool { return s.count() == 10 })
	if r, u, c := q.Counts(); r != 0 || u != 10 || c != 1 {
		t.Fatalf("home counts %d ready %d unacked %d consumers, want 0/10/1", r, u, c)
	}
	// one is acked before the break: it stays acked
	h.Ack(s.got[0].ID)
	waitFor(t, "the ack at the home", func() bool { _, u, _ := q.Counts(); return u == 9 })

	p.l1.RemovePeer(2)
	p.l2.RemovePeer(1)
	waitFor(t, "the consumer cancelled", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.cancelled })
	waitFor(t, "the 9 unacked back at the home", func() bool { r, u, c := q.Counts(); return r == 9 && u == 0 && c == 0 })

	p.connect(t)
	for _, d := range s.got[1:] {
		h.Ack(d.ID) // the old session's handle: dropped
	}
	h2, err := p.f2.Queue("n1@localhost", "/", "q")
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Fatal("a new connection reuses the old session's handle")
	}
	if _, _, _, err := p.f2.Counts("n1@localhost", "/", "q"); err != nil { // ordered after the acks
		t.Fatal(err)
	}
	if r, _, _ := q.Counts(); r != 9 {
		t.Fatalf("stale acks removed messages: %d ready, want 9", r)
	}
	d, ok := h2.Get(false)
	if !ok || !d.Redelivered || string(d.Msg.Body) != "m1" || d.Remaining != 8 {
		t.Fatalf("get after the break: ok=%v redelivered=%v %q remaining %d", ok, d.Redelivered, d.Msg.Body, d.Remaining)
	}
	h2.Requeue(d.ID)
	waitFor(t, "the requeue", func() bool { r, u, _ := q.Counts(); return r == 9 && u == 0 })
}

// A home answers each publish with what became of it: stored, refused by
// overflow (reject-publish), or stored nowhere because the queue is gone
// (dropped, as locally: not an error).
func TestPublishOutcomes(t *testing.T) {
	p := newPair(t)
	q := p.queue("limited", map[string]any{"x-max-length": int64(1), "x-overflow": "reject-publish"})
	m := func(s string) *queue.Message { return &queue.Message{Body: []byte(s)} }
	if o := outcome(p.f2.Publish("n1@localhost", "/", []string{"limited"}, m("a"))); o != queue.Stored {
		t.Fatalf("first publish: %v", o)
	}
	if o := outcome(p.f2.Publish("n1@localhost", "/", []string{"limited"}, m("b"))); o != queue.Refused {
		t.Fatalf("publish over the limit: %v, want refused", o)
	}
	if o := outcome(p.f2.Publish("n1@localhost", "/", []string{"gone"}, m("c"))); o != queue.Stored {
		t.Fatalf("publish to a queue deleted meanwhile: %v", o)
	}
	if r, _, _ := q.Counts(); r != 1 {
		t.Fatalf("limited holds %d", r)
	}
	if o := outcome(p.f2.Publish("n9@localhost", "/", []string{"limited"}, m("d"))); o != queue.Lost {
		t.Fatalf("publish to an unknown node: %v, want lost", o)
	}
	if n, err := p.f2.Purge("n1@localhost", "/", "limited"); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
}

// A consumer with prefetch N at the peer makes the home send at most N
// deliveries ahead of what the peer's consumer took; those it could not
// take wait at the peer and go back to the home when it cancels.
type room struct {
	sink
	free int
	n    int
}

func (r *room) Deliver(d queue.Delivery) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.free == 0 {
		return false
	}
	r.free--
	r.got = append(r.got, d)
	return true
}

func (r *room) Prefetch() int { return r.n }

func TestCreditBoundsWhatTheHomeSends(t *testing.T) {
	p := newPair(t)
	q := p.queue("q", nil)
	for i := range 100 {
		q.Publish(&queue.Message{Body: fmt.Appendf(nil, "m%d", i)})
	}
	h, _ := p.f2.Queue("n1@localhost", "/", "q")
	c := &room{free: 3, n: 4}
	if err := h.AddConsumer("c", c, false, false, 0, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 taken", func() bool { return c.count() == 3 })
	// 3 taken (credit returned once a quarter of 4 was owed) and at most
	// 4 more in flight or waiting
	waitFor(t, "the home to stop", func() bool { _, u, _ := q.Counts(); return u >= 3 })
	time.Sleep(100 * time.Millisecond)
	if _, u, _ := q.Counts(); u > 3+4 {
		t.Fatalf("the home sent %d deliveries to a consumer with prefetch 4 that took 3", u)
	}
	h.RemoveConsumer("c", c)
	waitFor(t, "what the consumer did not take back at the home", func() bool { _, u, cs := q.Counts(); return u == 3 && cs == 0 })
}

// Another node's management API reads a home's queue figures in one
// request per vhost.
func TestFigures(t *testing.T) {
	p := newPair(t)
	q := p.queue("q", nil)
	p.queue("r", nil)
	for range 3 {
		q.Publish(&queue.Message{Body: []byte("abcd")})
	}
	q.Get(false)
	figs, err := p.f2.Figures("n1@localhost", "/")
	if err != nil {
		t.Fatal(err)
	}
	f, ok := figs["q"]
	if len(figs) != 2 || !ok || f.Ready != 2 || f.Unacked != 1 || f.ReadyBytes != 8 || f.Stats.Published != 3 || f.Stats.Delivered != 1 {
		t.Fatalf("figures: %+v", figs)
	}
}

// muted drops a home's answers to publishes.
type muted struct {
	*cluster.Link
}

func (m muted) Post(to uint64, k cluster.Kind, p []byte) error {
	if len(p) > 0 && p[0] == forward.OpPublished {
		return nil
	}
	return m.Link.Post(to, k, p)
}

// A publisher waits once a window of unanswered bytes is out to a home
// (credit flow), and is released with "lost" when the connection ends.
func TestWindowHoldsPublishersBack(t *testing.T) {
	p := newPairWith(t, func(l *cluster.Link) forward.Transport { return muted{l} }, 4096)
	q := p.queue("q", nil)

	body := make([]byte, 1000)
	var pend []*queue.Pending
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			pend = append(pend, p.f2.Publish("n1@localhost", "/", []string{"q"}, &queue.Message{Body: body}))
		}
	}()
	waitFor(t, "the window to fill", func() bool { r, _, _ := q.Counts(); return r == 3 }) // 3 × (1000 + 64 bytes of overhead) ≤ 4096
	select {
	case <-done:
		t.Fatal("10 KB went out to a home that answered none of it, through a 4 KiB window")
	case <-time.After(200 * time.Millisecond):
	}
	p.l2.RemovePeer(1)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher stayed blocked after the connection ended")
	}
	for i, pd := range pend {
		if o := outcome(pd); o != queue.Lost {
			t.Fatalf("publish %d: %v, want lost", i, o)
		}
	}
}
