package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/vhost"
)

// homeOf waits until node i names a real node as queue q's home.
func replHome(t *testing.T, c *testCluster, i int, q string) string {
	t.Helper()
	var home string
	waitUntil(t, "a leader for "+q, func() bool {
		h, ok := c.node(i).QueueHome("/", q)
		home = h
		return ok && h != vhost.NoLeaderYet && h != ""
	})
	return home
}

func indexOf(name string) int {
	var i int
	fmt.Sscanf(name, "n%d@localhost", &i)
	return i - 1
}

// TestReplicatedQueueFailover: a quorum queue declared on a three-node
// cluster has a replica on every node; publishes confirmed on its
// leader's node survive the loss of that node, and every one of them is
// consumed from the node that leads next.
func TestReplicatedQueueFailover(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch := channel(t, dial(t, c.url(0)))
	if _, err := ch.QueueDeclare("orders", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	var def metadata.Queue
	c.node(0).Metadata().Read(func(s *metadata.State) { def = s.Queues[[2]string{"/", "orders"}] })
	if def.Group == 0 || len(def.Members) != 3 || def.Members[0] != "n1@localhost" {
		t.Fatalf("placement: group %d members %v, want a group over the 3 nodes, the declaring node first", def.Group, def.Members)
	}
	home := replHome(t, c, 0, "orders")
	lead := indexOf(home)
	// the leader names itself once it runs the queue
	waitUntil(t, "the leader to run the queue", func() bool {
		h, _ := c.node(lead).QueueHome("/", "orders")
		return h == home
	})
	pch := channel(t, dial(t, c.url(lead)))
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var confirmed []string
	var dcs []*amqp091.DeferredConfirmation
	for i := range 100 {
		dc, err := pch.PublishWithDeferredConfirmWithContext(context.Background(), "", "orders", false, false, amqp091.Publishing{Body: []byte(fmt.Sprintf("m%03d", i)), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	nacked := map[string]bool{}
	for i, dc := range dcs {
		ok, err := dc.WaitContext(ctxTimeout(t, 30*time.Second))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		// a nack (the group's leadership moved while it was in flight) is
		// allowed; the publisher would send it again
		if ok {
			confirmed = append(confirmed, fmt.Sprintf("m%03d", i))
		} else {
			nacked[fmt.Sprintf("m%03d", i)] = true
		}
	}
	if len(confirmed) < 50 {
		t.Fatalf("only %d of 100 messages confirmed", len(confirmed))
	}
	// a node that does not lead forwards to the leader (confirms included)
	other := (lead + 1) % 3
	waitUntil(t, "the other node to see the leader", func() bool {
		h, _ := c.node(other).QueueHome("/", "orders")
		return h == home
	})
	och := channel(t, dial(t, c.url(other)))
	if err := och.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := och.PublishWithDeferredConfirmWithContext(context.Background(), "", "orders", false, false, amqp091.Publishing{Body: []byte("via-follower"), DeliveryMode: amqp091.Persistent})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctxTimeout(t, 30*time.Second)); err != nil || !ok {
		t.Fatalf("a publish forwarded by a follower was not confirmed: %v %v", ok, err)
	}
	confirmed = append(confirmed, "via-follower")

	c.stop(lead)
	survivor := (lead + 1) % 3
	var next string
	waitUntil(t, "a new leader", func() bool {
		h, ok := c.node(survivor).QueueHome("/", "orders")
		next = h
		return ok && h != vhost.NoLeaderYet && h != home
	})
	nch := channel(t, dial(t, c.url(indexOf(next))))
	var got []string
	waitUntil(t, "the new leader to serve the queue", func() bool {
		m, ok, err := nch.Get("orders", true)
		if err != nil {
			nch = channel(t, dial(t, c.url(indexOf(next))))
			return false
		}
		if ok {
			got = append(got, string(m.Body))
		}
		return ok
	})
	for {
		m, ok, err := nch.Get("orders", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(m.Body))
	}
	// nacked messages may be there too (retries may duplicate, never lose)
	got = slices.DeleteFunc(got, func(m string) bool { return nacked[m] })
	if !slices.Equal(got, confirmed) {
		t.Fatalf("after the leader's loss the new leader %s gave %d messages %v..., want the %d confirmed ones in order", next, len(got), got[:min(5, len(got))], len(confirmed))
	}
}

// TestHAPolicyMovesQueueInCluster: an ha-mode policy set on a cluster
// after a durable classic queue of node 1 holds messages makes it
// replicated over every node: its home moves its messages into the
// group, the group's leader serves them all in order, and they survive
// the loss of that leader.
func TestHAPolicyMovesQueueInCluster(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch := channel(t, dial(t, c.url(0)))
	if _, err := ch.QueueDeclare("mv", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 30 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "mv", false, false, amqp091.Publishing{Body: []byte(fmt.Sprintf("m%02d", i)), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctxTimeout(t, 10*time.Second)); err != nil || !ok {
			t.Fatalf("not confirmed: %v %v", ok, err)
		}
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	if err := setPolicy(c.node(0), "ha", "^mv$", map[string]any{"ha-mode": "all"}); err != nil {
		t.Fatal(err)
	}
	var d metadata.Queue
	c.node(0).Metadata().Read(func(s *metadata.State) { d = s.Queues[[2]string{"/", "mv"}] })
	if d.Group == 0 || len(d.Members) != 3 || !d.Moved {
		t.Fatalf("after the policy: group %d members %v moved %v", d.Group, d.Members, d.Moved)
	}
	home := replHome(t, c, 0, "mv")
	lead := indexOf(home)
	waitUntil(t, "the leader to run the moved queue", func() bool {
		h, _ := c.node(lead).QueueHome("/", "mv")
		return h == home
	})
	c.stop(lead)
	survivor := (lead + 1) % 3
	var next string
	waitUntil(t, "a new leader", func() bool {
		h, ok := c.node(survivor).QueueHome("/", "mv")
		next = h
		return ok && h != vhost.NoLeaderYet && h != home
	})
	waitUntil(t, "the new leader to run it", func() bool {
		h, _ := c.node(indexOf(next)).QueueHome("/", "mv")
		return h == next
	})
	nch := channel(t, dial(t, c.url(indexOf(next))))
	var got []string
	for {
		m, ok, err := nch.Get("mv", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(m.Body))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the moved queue on %s after %s was lost holds %v, want %v", next, home, got, want)
	}
}

// A publish forwarded to a replicated queue's leader by a member whose
// vote the commit needs (a group of two) is confirmed: the leader's node
// serves forwarded requests off the inter-node link's reader, through
// which that vote arrives (it waited there once, and nacked after the
// timeout).
func TestForwardedPublishNeedsTheForwardersVote(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch := channel(t, dial(t, c.url(0)))
	if _, err := ch.QueueDeclare("pair", true, false, false, false, amqp091.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": int64(2)}); err != nil {
		t.Fatal(err)
	}
	var def metadata.Queue
	c.node(0).Metadata().Read(func(s *metadata.State) { def = s.Queues[[2]string{"/", "pair"}] })
	if len(def.Members) != 2 {
		t.Fatalf("members %v, want 2", def.Members)
	}
	home := replHome(t, c, 0, "pair")
	follower := -1
	for _, m := range def.Members {
		if m != home {
			follower = indexOf(m)
		}
	}
	waitUntil(t, "the follower to see the leader", func() bool {
		h, _ := c.node(follower).QueueHome("/", "pair")
		return h == home
	})
	pch := channel(t, dial(t, c.url(follower)))
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	// the links may still be settling (a nack then is allowed): one
	// confirmed publish first, then every one must be
	waitUntil(t, "a first confirmed publish through the follower", func() bool {
		dc, err := pch.PublishWithDeferredConfirmWithContext(context.Background(), "", "pair", false, false, amqp091.Publishing{Body: []byte("warm-up"), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		ok, err := dc.WaitContext(ctxTimeout(t, 30*time.Second))
		return err == nil && ok
	})
	for i := range 20 {
		dc, err := pch.PublishWithDeferredConfirmWithContext(context.Background(), "", "pair", false, false, amqp091.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		ok, err := dc.WaitContext(ctxTimeout(t, 30*time.Second))
		if err != nil || !ok {
			t.Fatalf("publish %d through the follower %s: acked=%v %v", i, c.node(follower).NodeName(), ok, err)
		}
	}
}
