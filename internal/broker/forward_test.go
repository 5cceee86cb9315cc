package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
)

// startCluster starts the three nodes of c together and waits until each
// sees the others.
func startCluster(t *testing.T, c *testCluster) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitUntil(t, "every node to see the others running", func() bool {
		for i := range 3 {
			for _, m := range c.node(i).ClusterStatus() {
				if !m.Running {
					return false
				}
			}
		}
		return true
	})
}

// A queue on node 2, published to through node 1 with confirms and
// consumed through node 3 with manual acks: every confirmed message is
// delivered exactly once, in order, and the prefetch of the consumer on
// node 3 holds across the nodes.
func TestClusterForwardingEveryDirection(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)

	ch2 := channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("work", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch2.ExchangeDeclare("jobs", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch2.QueueBind("work", "job", "jobs", false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to see work", i+1), func() bool { return hasQueue(b, "/", "work") })
	}

	// the consumer on node 3 first, with a prefetch of 7
	conn3 := dial(t, c.url(2))
	ch3 := channel(t, conn3)
	if err := ch3.Qos(7, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch3.Consume("work", "c3", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consuming node 2's queue through node 3: %v", err)
	}

	// the publisher on node 1, confirms on, persistent
	ch1 := channel(t, dial(t, c.url(0)))
	if err := ch1.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	confirms := ch1.NotifyPublish(make(chan amqp091.Confirmation, n))
	for i := range n {
		if err := ch1.PublishWithContext(context.Background(), "jobs", "job", true, false, amqp091.Publishing{Body: []byte(strconv.Itoa(i)), DeliveryMode: 2}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case cf := <-confirms:
			if !cf.Ack {
				t.Fatalf("publish %d nacked", cf.DeliveryTag)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("confirms stopped coming")
		}
	}

	// the prefetch holds: 7 unacked deliveries, then nothing until an ack
	var held []amqp091.Delivery
	for range 7 {
		held = append(held, recv(t, deliveries))
	}
	noRecv(t, deliveries, 300*time.Millisecond)
	for i, d := range held {
		if d.Body == nil || string(d.Body) != strconv.Itoa(i) || d.Redelivered || d.Exchange != "jobs" || d.RoutingKey != "job" || d.DeliveryMode != 2 {
			t.Fatalf("delivery %d: %q redelivered=%v exchange=%q key=%q mode=%d", i, d.Body, d.Redelivered, d.Exchange, d.RoutingKey, d.DeliveryMode)
		}
	}
	for _, d := range held {
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	next := 7
	for next < n {
		d := recv(t, deliveries)
		if got := string(d.Body); got != strconv.Itoa(next) {
			t.Fatalf("delivery %d is %q (lost, duplicated or out of order)", next, got)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
		next++
	}
	waitUntil(t, "work to be empty and settled on its home", func() bool {
		r, u, _ := c.node(1).VHost("/").LookupQueue("work").Counts()
		return r == 0 && u == 0
	})

	// a mandatory publish to a queue of another node is routed, not
	// returned; an unroutable one is returned across nodes as locally
	returns := ch1.NotifyReturn(make(chan amqp091.Return, 1))
	if err := ch1.PublishWithContext(context.Background(), "jobs", "nobody", true, false, amqp091.Publishing{Body: []byte("lost")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 {
			t.Fatalf("return: %d %s", r.ReplyCode, r.ReplyText)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("unroutable mandatory message not returned")
	}

	// unacked deliveries of a consumer on node 3 go back to the queue on
	// node 2 when its connection closes, marked redelivered
	for i := range 5 {
		publish(t, ch1, "jobs", "job", "again-"+strconv.Itoa(i))
	}
	for range 5 {
		recv(t, deliveries)
	}
	conn3.Close()
	ch1b := channel(t, dial(t, c.url(0)))
	got := map[string]bool{}
	waitUntil(t, "the five messages back in work", func() bool {
		m, ok, err := ch1b.Get("work", true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if !m.Redelivered {
				t.Fatalf("%q came back without the redelivered flag", m.Body)
			}
			got[string(m.Body)] = true
		}
		return len(got) == 5
	})
}

// A consumer on node 3 of a queue on node 2 is told (basic.cancel) when
// the queue is deleted through node 1; an auto-delete queue of node 2 goes
// when its last consumer, on node 3, cancels.
func TestClusterForwardingCancelAndAutoDelete(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch2 := channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("doomed", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch2.QueueDeclare("fleeting", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to see the queues", i+1), func() bool { return hasQueue(b, "/", "doomed") && hasQueue(b, "/", "fleeting") })
	}
	ch3 := channel(t, dial(t, c.url(2)))
	cancels := ch3.NotifyCancel(make(chan string, 2))
	if _, err := ch3.Consume("doomed", "d", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch3.Consume("fleeting", "f", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch1 := channel(t, dial(t, c.url(0)))
	if _, err := ch1.QueueDelete("doomed", false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case tag := <-cancels:
		if tag != "d" {
			t.Fatalf("cancelled %q, want d", tag)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no basic.cancel for a consumer on node 3 when its queue on node 2 was deleted")
	}
	if err := ch3.Cancel("f", false); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to drop the auto-delete queue", i+1), func() bool { return !hasQueue(b, "/", "fleeting") })
	}
}

// When a queue's home node stops: consumers elsewhere are cancelled
// (basic.cancel), declares and gets through other nodes answer 404 naming
// the home, publishes to it are nacked (and returned when mandatory); when
// it comes back its confirmed persistent messages are all there.
func TestClusterForwardingHomeDown(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch2 := channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("kept", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to see kept", i+1), func() bool { return hasQueue(b, "/", "kept") })
	}
	ch1 := channel(t, dial(t, c.url(0)))
	if err := ch1.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		dc, err := ch1.PublishWithDeferredConfirmWithContext(context.Background(), "", "kept", false, false, amqp091.Publishing{Body: []byte(strconv.Itoa(i)), DeliveryMode: 2})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish %d through node 1: %v", i, err)
		}
	}
	ch3 := channel(t, dial(t, c.url(2)))
	cancels := ch3.NotifyCancel(make(chan string, 1))
	if _, err := ch3.Consume("kept", "watcher", false, false, false, false, amqp091.Table{"x-priority": -1}); err != nil {
		t.Fatal(err)
	}

	c.stop(1)
	select {
	case tag := <-cancels:
		if tag != "watcher" {
			t.Fatalf("cancelled %q", tag)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer on node 3 was not cancelled when the queue's home stopped")
	}
	waitUntil(t, "node 1 to see node 2 down", func() bool {
		for _, m := range c.node(0).ClusterStatus() {
			if m.Name == "n2@localhost" {
				return !m.Running
			}
		}
		return false
	})
	chx := channel(t, dial(t, c.url(0)))
	_, err := chx.QueueDeclarePassive("kept", true, false, false, false, nil)
	if e := amqpErr(t, err, 404, true); e.Reason != "NOT_FOUND - home node 'n2@localhost' of durable queue 'kept' in vhost '/' is down or inaccessible" {
		t.Fatalf("passive declare while the home is down: %q", e.Reason)
	}
	chx = channel(t, dial(t, c.url(0)))
	_, _, err = chx.Get("kept", false)
	amqpErr(t, err, 404, true)
	chx = channel(t, dial(t, c.url(0)))
	if err := chx.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := chx.NotifyReturn(make(chan amqp091.Return, 1))
	dc, err := chx.PublishWithDeferredConfirmWithContext(context.Background(), "", "kept", true, false, amqp091.Publishing{Body: []byte("while down"), DeliveryMode: 2})
	if err != nil {
		t.Fatal(err)
	}
	if dc.Wait() {
		t.Fatal("a publish to a queue whose home is down was acked")
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 {
			t.Fatalf("return: %d %s", r.ReplyCode, r.ReplyText)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("mandatory publish to a queue whose home is down not returned")
	}

	if c.start(1) == nil {
		t.FailNow()
	}
	waitUntil(t, "node 1 to see node 2 again", func() bool { return c.node(0).VHost("/") != nil && forwardUp(c, 0, "kept") })
	chy := channel(t, dial(t, c.url(0)))
	var bodies []string
	for {
		m, ok, err := chy.Get("kept", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		bodies = append(bodies, string(m.Body))
	}
	if len(bodies) != 100 {
		t.Fatalf("after its home restarted, kept holds %d messages, want the 100 confirmed: %s", len(bodies), strings.Join(bodies, ","))
	}
	for i, b := range bodies {
		if b != strconv.Itoa(i) {
			t.Fatalf("message %d is %q", i, b)
		}
	}
}

// forwardUp reports whether a passive declare of name through node i
// succeeds (its home is reachable).
func forwardUp(c *testCluster, i int, name string) bool {
	conn, err := amqp091.Dial(c.url(i))
	if err != nil {
		return false
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false
	}
	_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
	return err == nil
}

// queue-master-locator: min-masters through node 1 spreads three new
// queues over the three nodes (each goes to the node home to the fewest
// queues), the policy works as the argument does, client-local (the
// default) keeps a queue on the declaring node, and an exclusive queue
// stays with its connection whatever the locator.
func TestClusterQueueMasterLocator(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch := channel(t, dial(t, c.url(0)))
	homes := map[string]bool{}
	for i := range 3 {
		name := fmt.Sprintf("spread-%d", i)
		if _, err := ch.QueueDeclare(name, true, false, false, false, amqp091.Table{"x-queue-master-locator": "min-masters"}); err != nil {
			t.Fatal(err)
		}
		homes[homeOf(c.node(0), name)] = true
	}
	if len(homes) != 3 {
		t.Fatalf("min-masters put three queues on %d nodes: %v", len(homes), homes)
	}
	if err := setPolicy(c.node(0), "spread", "^pol-", map[string]any{"queue-master-locator": "min-masters"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("local-0", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if h := homeOf(c.node(0), "local-0"); h != "n1@localhost" {
		t.Fatalf("a client-local queue declared through n1 lives on %s", h)
	}
	// n1 is now home to two queues, the others to one: the policy sends
	// the next queue elsewhere
	if _, err := ch.QueueDeclare("pol-0", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if h := homeOf(c.node(0), "pol-0"); h == "n1@localhost" {
		t.Fatalf("queue-master-locator min-masters by policy put pol-0 on n1, home to the most queues")
	}
	if _, err := ch.QueueDeclare("pol-excl", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if h := homeOf(c.node(0), "pol-excl"); h != "n1@localhost" {
		t.Fatalf("an exclusive queue was placed on %s, away from its connection", h)
	}
	// and the queues placed elsewhere work through n1
	publish(t, ch, "", "pol-0", "placed")
	waitUntil(t, "the message in pol-0", func() bool {
		m, ok, err := ch.Get("pol-0", true)
		return err == nil && ok && string(m.Body) == "placed"
	})
}

func homeOf(b *broker.Broker, name string) string {
	var h string
	b.Metadata().Read(func(s *metadata.State) { h = s.Queues[[2]string{"/", name}].Node })
	return h
}

// Direct reply-to across nodes (RPC behind a round-robin balancer): the
// requester on node 1, the request queue on node 2, the responder on node
// 3; the reply published through node 3 reaches the requester on node 1.
func TestClusterDirectReplyToAcrossNodes(t *testing.T) {
	c := newTestCluster(t)
	startCluster(t, c)
	ch2 := channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("rpc", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to see rpc", i+1), func() bool { return hasQueue(b, "/", "rpc") })
	}
	server := channel(t, dial(t, c.url(2)))
	reqs, err := server.Consume("rpc", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range reqs {
			server.PublishWithContext(context.Background(), "", d.ReplyTo, false, false, amqp091.Publishing{Body: append([]byte("re: "), d.Body...), CorrelationId: d.CorrelationId})
		}
	}()
	client := channel(t, dial(t, c.url(0)))
	replies, err := client.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		id := strconv.Itoa(i)
		if err := client.PublishWithContext(context.Background(), "", "rpc", false, false, amqp091.Publishing{Body: []byte("q" + id), CorrelationId: id, ReplyTo: "amq.rabbitmq.reply-to"}); err != nil {
			t.Fatal(err)
		}
		r := recv(t, replies)
		if string(r.Body) != "re: q"+id || r.CorrelationId != id {
			t.Fatalf("reply %d: %q (correlation %q)", i, r.Body, r.CorrelationId)
		}
	}
}
