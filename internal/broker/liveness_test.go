package broker_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/mgmt"
)

func startAll(t *testing.T, c *testCluster) {
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
	// the default user's permissions are definitions too: each node
	// serves guest once it applied them
	for i := range 3 {
		waitUntil(t, fmt.Sprintf("node %d to let guest in", i+1), func() bool {
			conn, err := amqp091.Dial(c.url(i))
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
}

func defined(b *broker.Broker, vh, name string) bool {
	ok := false
	b.Metadata().Read(func(s *metadata.State) { _, ok = s.Queues[[2]string{vh, name}] })
	return ok
}

func quorumCritical(t *testing.T, b *broker.Broker) (int, map[string]any) {
	t.Helper()
	api := mgmt.New(b, "the-same-cookie", nil)
	defer api.Close()
	req := httptest.NewRequest("GET", "/api/health/checks/node-is-quorum-critical", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	req.SetBasicAuth("guest", "guest")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("node-is-quorum-critical: %d %s", rec.Code, rec.Body.String())
	}
	return rec.Code, body
}

// TestDownNodesTransientQueuesAreDeleted: node 3 declares a transient, an
// exclusive and a durable queue and stops. Once its link has been down
// for cluster_node_down_grace_period, the others see it down and the
// definitions' leader deletes its transient and exclusive queues; the
// durable one stays. Stopping either survivor would now leave the
// definitions without a majority: node-is-quorum-critical says so.
func TestDownNodesTransientQueuesAreDeleted(t *testing.T) {
	c := newTestCluster(t)
	c.conf += "cluster_node_down_grace_period = 1000\n"
	startAll(t, c)
	for i := range 3 {
		if code, body := quorumCritical(t, c.node(i)); code != 200 || body["status"] != "ok" {
			t.Fatalf("node %d with all three up: node-is-quorum-critical %d %v", i+1, code, body)
		}
	}
	conn, err := amqp091.Dial(c.url(2))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name               string
		durable, exclusive bool
	}{{"transient3", false, false}, {"exclusive3", true, true}, {"durable3", true, false}} {
		if _, err := ch.QueueDeclare(q.name, q.durable, false, q.exclusive, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	n1 := c.node(0)
	waitUntil(t, "node 1 to see node 3's queues", func() bool {
		return defined(n1, "/", "transient3") && defined(n1, "/", "exclusive3") && defined(n1, "/", "durable3")
	})
	if n1.NodeDown("n3@localhost") {
		t.Fatal("node 3 is down while running")
	}
	c.stop(2)
	waitUntil(t, "node 3's transient and exclusive queues to be deleted", func() bool {
		for _, i := range []int{0, 1} {
			if defined(c.node(i), "/", "transient3") || defined(c.node(i), "/", "exclusive3") {
				return false
			}
		}
		return true
	})
	waitUntil(t, "nodes 1 and 2 to see node 3 down", func() bool {
		return c.node(0).NodeDown("n3@localhost") && c.node(1).NodeDown("n3@localhost")
	})
	for _, i := range []int{0, 1} {
		if !defined(c.node(i), "/", "durable3") {
			t.Fatalf("node %d lost node 3's durable queue", i+1)
		}
		if code, body := quorumCritical(t, c.node(i)); code != 503 || body["status"] != "failed" || body["queues"] == nil {
			t.Fatalf("node %d with node 3 down: node-is-quorum-critical %d %v", i+1, code, body)
		}
	}

	// node 3 returns: up again everywhere, its durable queue still there
	c.start(2)
	waitUntil(t, "node 3 to be up again", func() bool { return !n1.NodeDown("n3@localhost") })
	if !defined(c.node(2), "/", "durable3") || defined(c.node(2), "/", "transient3") {
		t.Fatal("node 3 after its return: durable3 missing or transient3 back")
	}
	if code, _ := quorumCritical(t, n1); code != 200 {
		t.Fatalf("all three up again: node-is-quorum-critical %d", code)
	}
}

// TestPauseMinorityClosesAndReopens: with cluster_partition_handling =
// pause_minority, node 1 left alone (nodes 2 and 3 stopped) closes its
// client connection with 320 saying it is in a minority and refuses new
// connections; once node 2 is back, node 1 accepts clients again. The
// management side of the node keeps answering meanwhile.
func TestPauseMinorityClosesAndReopens(t *testing.T) {
	c := newTestCluster(t)
	c.conf += "cluster_node_down_grace_period = 500\ncluster_partition_handling = pause_minority\n"
	startAll(t, c)
	n1 := c.node(0)
	url := c.url(0)
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	c.stop(1)
	if paused, _ := n1.Paused(); paused {
		t.Fatal("node 1 paused with 2 of 3 nodes up")
	}
	c.stop(2)
	var e *amqp091.Error
	select {
	case e = <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("node 1 alone did not close its client connection")
	}
	if e == nil || e.Code != 320 || !strings.Contains(e.Reason, "minority") {
		t.Fatalf("node 1 alone closed its client with %v, want 320 naming the minority", e)
	}
	if paused, why := n1.Paused(); !paused || !strings.Contains(why, "1 of 3") {
		t.Fatalf("Paused() = %v, %q", paused, why)
	}
	if c, err := amqp091.Dial(url); err == nil {
		c.Close()
		t.Fatal("node 1 accepted a connection while paused")
	}
	if code, _ := quorumCritical(t, n1); code != 503 {
		t.Fatalf("node 1 alone: node-is-quorum-critical %d, want 503", code)
	}
	c.start(1)
	waitUntil(t, "node 1 to accept clients again", func() bool {
		c, err := amqp091.Dial(url)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if paused, _ := n1.Paused(); paused {
		t.Fatal("node 1 still paused with 2 of 3 nodes up")
	}
}

// drain closes a node's client connections (320, as rabbitmq-upgrade
// drain) and refuses new ones until revive; start_app does not undo it.
func TestDrainAndRevive(t *testing.T) {
	b, url := node(t)
	conn := dial(t, url)
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	b.Drain()
	if e := waitClose(t, closed); e == nil || e.Code != 320 || !strings.Contains(e.Reason, "maintenance mode") {
		t.Fatalf("a client of a drained node: %v", e)
	}
	if !b.UnderMaintenance() {
		t.Fatal("not under maintenance after drain")
	}
	if c, err := amqp091.Dial(url); err == nil {
		c.Close()
		t.Fatal("a drained node accepted a connection")
	}
	b.StopApp()
	if err := b.StartApp(); err != nil {
		t.Fatal(err)
	}
	if c, err := amqp091.Dial(url); err == nil {
		c.Close()
		t.Fatal("start_app reopened a drained node")
	}
	if err := b.Revive(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, url)
	c.Close()
	if b.UnderMaintenance() {
		t.Fatal("under maintenance after revive")
	}
}
