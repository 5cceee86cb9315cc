package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/mgmt"
)

// testCluster is three in-process nodes n1@localhost..n3@localhost formed
// from cluster_formation.classic_config, each with its own inter-node
// port on the loopback and its own data directory.
type testCluster struct {
	t     *testing.T
	conf  string // the warren.conf lines every node shares
	dirs  [3]string
	mu    sync.Mutex
	nodes [3]*broker.Broker
}

func newTestCluster(t *testing.T) *testCluster {
	c := &testCluster{t: t}
	var lines []string
	lines = append(lines, "cluster_formation.peer_discovery_backend = classic_config")
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		lines = append(lines,
			fmt.Sprintf("cluster_formation.classic_config.nodes.%d = n%d@localhost", i+1, i+1),
			fmt.Sprintf("cluster_formation.classic_config.addresses.%d = %s", i+1, addr))
		c.dirs[i] = t.TempDir()
	}
	c.conf = strings.Join(lines, "\n") + "\n"
	t.Cleanup(func() {
		for i := range 3 {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) config(i int) config.Config {
	cfg := config.Default()
	if err := config.Parse(strings.NewReader(c.conf), "warren.conf", &cfg); err != nil {
		c.t.Fatal(err)
	}
	cfg.NodeName = fmt.Sprintf("n%d@localhost", i+1)
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.DataDir = c.dirs[i]
	cfg.Cookie = "the-same-cookie"
	cfg.ClusterWait = time.Minute
	return cfg
}

// start starts node i (0-based); it returns once the node reached a
// majority, so start the first nodes of a cluster with startAsync.
func (c *testCluster) start(i int) *broker.Broker {
	c.t.Helper()
	level := slog.LevelWarn
	if os.Getenv("WARREN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: level})).With("node", i+1)
	b, err := broker.New(c.config(i), log)
	if err != nil {
		c.t.Errorf("starting node %d: %v", i+1, err)
		return nil
	}
	if err := b.Start(); err != nil {
		c.t.Errorf("starting node %d's listeners: %v", i+1, err)
		return nil
	}
	c.mu.Lock()
	c.nodes[i] = b
	c.mu.Unlock()
	return b
}

func (c *testCluster) node(i int) *broker.Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *testCluster) stop(i int) {
	c.mu.Lock()
	b := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		c.t.Errorf("stopping node %d: %v", i+1, err)
	}
}

func (c *testCluster) url(i int) string {
	return fmt.Sprintf("amqp://guest:guest@%s/", c.node(i).Addrs()[0].String())
}

// waitUntil polls cond for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasQueue(b *broker.Broker, vh, name string) bool {
	ok := false
	b.Metadata().Read(func(s *metadata.State) { _, ok = s.Queues[[2]string{vh, name}] })
	v := b.VHost(vh)
	return ok && v != nil && v.LookupQueue(name) != nil
}

func TestClusterFormsFromClassicConfig(t *testing.T) {
	c := newTestCluster(t)
	// any start order: 3, then 1 a moment later, then 2; none of the
	// first two can finish starting alone
	var wg sync.WaitGroup
	for _, i := range []int{2, 0, 1} {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
		time.Sleep(300 * time.Millisecond)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := range 3 {
		st := c.node(i).ClusterStatus()
		if len(st) != 3 {
			t.Fatalf("node %d lists %d cluster nodes, want 3", i+1, len(st))
		}
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

	// /api/nodes lists the three, all running
	api := mgmt.New(c.node(0), "the-same-cookie", nil)
	defer api.Close()
	req := httptest.NewRequest("GET", "/api/nodes", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	req.SetBasicAuth("guest", "guest")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	var listed []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &listed); err != nil || rec.Code != 200 {
		t.Fatalf("/api/nodes: %d %s", rec.Code, rec.Body.String())
	}
	var names []string
	for _, n := range listed {
		if n["running"] != true {
			t.Errorf("/api/nodes: %v not running", n["name"])
		}
		names = append(names, fmt.Sprint(n["name"]))
	}
	if strings.Join(names, ",") != "n1@localhost,n2@localhost,n3@localhost" {
		t.Fatalf("/api/nodes lists %v", names)
	}

	// definitions made on one node appear on every node
	n1 := c.node(0)
	for _, cmd := range []metadata.Command{
		{Op: metadata.OpAddVHost, VHost: "app"},
		{Op: metadata.OpPutUser, User: &metadata.User{Name: "alice", PasswordHash: "x", HashingAlgorithm: "rabbit_password_hashing_sha256"}},
		{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: "alice", VHost: "app", Configure: ".*", Write: ".*", Read: ".*"}},
		{Op: metadata.OpSetPolicy, Policy: &metadata.Policy{Name: "ttl", VHost: "/", Pattern: "^ttl\\.", ApplyTo: "queues", Definition: map[string]any{"message-ttl": int64(1000)}}},
	} {
		if err := c.node(1).Metadata().Propose(cmd); err != nil {
			t.Fatalf("%s on node 2: %v", cmd.Op, err)
		}
	}
	ch := channel(t, dial(t, c.url(0)))
	if err := ch.ExchangeDeclare("orders", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("q1", "order.#", "orders", false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to have every definition", i+1), func() bool {
			ok := false
			b.Metadata().Read(func(s *metadata.State) {
				_, vh := s.VHosts["app"]
				_, u := s.Users["alice"]
				_, p := s.Permissions[[2]string{"alice", "app"}]
				_, pol := s.Policies[[2]string{"/", "ttl"}]
				_, x := s.Exchanges[[2]string{"/", "orders"}]
				bound := false
				for _, bd := range s.Bindings {
					bound = bound || (bd.Source == "orders" && bd.Destination == "q1" && bd.RoutingKey == "order.#")
				}
				ok = vh && u && p && pol && x && bound
			})
			return ok && hasQueue(b, "/", "q1") && b.VHost("app") != nil
		})
		var home string
		b.Metadata().Read(func(s *metadata.State) { home = s.Queues[[2]string{"/", "q1"}].Node })
		if home != "n1@localhost" {
			t.Fatalf("node %d records q1's home as %q, want n1@localhost", i+1, home)
		}
	}

	// q1 lives on node 1; node 2 reaches it through node 1 (forwarding)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirm, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "orders", "order.new", false, false, amqp091.Publishing{Body: []byte("one"), DeliveryMode: 2})
	if err != nil || !confirm.Wait() {
		t.Fatalf("publish on q1's home: %v", err)
	}
	ch2 := channel(t, dial(t, c.url(1)))
	if err := ch2.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirm, err = ch2.PublishWithDeferredConfirmWithContext(context.Background(), "orders", "order.new", false, false, amqp091.Publishing{Body: []byte("two"), DeliveryMode: 2})
	if err != nil || !confirm.Wait() {
		t.Fatalf("publishing to q1 through node 2: %v (acked %v)", err, confirm != nil && confirm.Acked())
	}
	if r, _, _ := n1.VHost("/").LookupQueue("q1").Counts(); r != 2 {
		t.Fatalf("q1 on its home holds %d messages after a publish through each node, want 2", r)
	}
	// if-empty is checked at the home
	_, err = ch2.QueueDelete("q1", false, true, false)
	if e := amqpErr(t, err, 406, true); !strings.Contains(e.Reason, "not empty") {
		t.Fatalf("queue.delete if-empty through node 2: %s", e.Reason)
	}
	ch2 = channel(t, dial(t, c.url(1)))
	q, err := ch2.QueueDeclarePassive("q1", true, false, false, false, nil)
	if err != nil || q.Messages != 2 {
		t.Fatalf("passive declare of q1 through node 2: %v, %d messages, want 2", err, q.Messages)
	}
	msg, ok, err := ch2.Get("q1", false)
	if err != nil || !ok || string(msg.Body) != "one" || msg.MessageCount != 1 {
		t.Fatalf("get q1 through node 2: %v %v %q (message count %d)", err, ok, msg.Body, msg.MessageCount)
	}
	if err := msg.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	msg, ok, err = ch2.Get("q1", true)
	if err != nil || !ok || string(msg.Body) != "one" || !msg.Redelivered {
		t.Fatalf("get q1 through node 2 after a requeue: %v %v %q redelivered=%v", err, ok, msg.Body, msg.Redelivered)
	}
	// node 2's management API shows q1 on its home, with its home's
	// figures (one message left, "two")
	api2 := mgmt.New(c.node(1), "the-same-cookie", nil)
	defer api2.Close()
	req = httptest.NewRequest("GET", "/api/queues/%2F/q1", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	req.SetBasicAuth("guest", "guest")
	rec = httptest.NewRecorder()
	api2.ServeHTTP(rec, req)
	var qj map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &qj); err != nil || qj["node"] != "n1@localhost" || qj["messages"] != float64(1) || qj["state"] != "running" {
		t.Fatalf("/api/queues/%%2F/q1 on node 2: %d %s", rec.Code, rec.Body.String())
	}
	if st, _ := qj["message_stats"].(map[string]any); st["publish"] != float64(2) {
		t.Fatalf("/api/queues/%%2F/q1 on node 2: message_stats %v, want the home's (2 published)", qj["message_stats"])
	}
	// declaring it again through node 2 is fine (the definition is shared)
	ch2 = channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("q1", true, false, false, false, nil); err != nil {
		t.Fatalf("redeclaring q1 through node 2: %v", err)
	}
	msg, ok, err = ch.Get("q1", true)
	if err != nil || !ok || string(msg.Body) != "two" {
		t.Fatalf("get q1 on its home: %v %v %q", err, ok, msg.Body)
	}
	if m, ok, _ := ch.Get("q1", true); ok {
		t.Fatalf("q1 holds a third message %q", m.Body)
	}

	// a message dead-lettered on node 1 to a queue of node 2 goes there,
	// never into node 1's copy of that queue
	ch2 = channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("dl-target", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch2.ExchangeDeclare("dlx", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch2.QueueBind("dl-target", "dl-target", "dlx", false, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node 1 to see dl-target and its binding", func() bool {
		bound := false
		n1.Metadata().Read(func(s *metadata.State) {
			for _, bd := range s.Bindings {
				bound = bound || (bd.Source == "dlx" && bd.Destination == "dl-target")
			}
		})
		return bound && hasQueue(n1, "/", "dl-target")
	})
	if _, err := ch.QueueDeclare("dl-src", true, false, false, false, amqp091.Table{"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dl-target"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", "dl-src", false, false, amqp091.Publishing{Body: []byte("dead")}); err != nil {
		t.Fatal(err)
	}
	var dm amqp091.Delivery
	waitUntil(t, "the message in dl-src", func() bool {
		var ok bool
		dm, ok, err = ch.Get("dl-src", false)
		return err == nil && ok
	})
	if err := dm.Nack(false, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "dl-src to be empty", func() bool { r, u, _ := n1.VHost("/").LookupQueue("dl-src").Counts(); return r+u == 0 })
	waitUntil(t, "the dead-lettered message on node 2", func() bool {
		r, _, _ := c.node(1).VHost("/").LookupQueue("dl-target").Counts()
		return r == 1
	})
	if r, u, _ := n1.VHost("/").LookupQueue("dl-target").Counts(); r+u != 0 {
		t.Fatalf("node 1's copy of node 2's queue holds %d messages", r+u)
	}

	// the same queue declared differently on two nodes at the same moment:
	// one declare wins, the other gets 406, every node holds the winner
	for round := range 5 {
		name := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			chi := channel(t, dial(t, c.url(i)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = chi.QueueDeclare(name, i == 0, false, false, false, nil)
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("%s: both declares succeeded", name)
				}
				winner = i
			} else if e := amqpErr(t, err, 406, true); !strings.Contains(e.Reason, "inequivalent arg 'durable'") {
				t.Fatalf("%s: %s", name, e.Reason)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: both declares failed: %v", name, errs)
		}
		for i := range 3 {
			b := c.node(i)
			waitUntil(t, "the winner everywhere", func() bool { return hasQueue(b, "/", name) })
			var q metadata.Queue
			b.Metadata().Read(func(s *metadata.State) { q = s.Queues[[2]string{"/", name}] })
			if q.Durable != (winner == 0) || q.Node != fmt.Sprintf("n%d@localhost", winner+1) || b.VHost("/").LookupQueue(name).Config().Durable != (winner == 0) {
				t.Fatalf("%s: node %d holds durable=%v home %s (runtime durable=%v), the winner was node %d", name, i+1, q.Durable, q.Node, b.VHost("/").LookupQueue(name).Config().Durable, winner+1)
			}
		}
	}

	// a durable queue of node 3 keeps its persistent message over a
	// restart of node 3, which catches up with what changed meanwhile
	ch3 := channel(t, dial(t, c.url(2)))
	if _, err := ch3.QueueDeclare("on3", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch3.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirm, err = ch3.PublishWithDeferredConfirmWithContext(context.Background(), "", "on3", false, false, amqp091.Publishing{Body: []byte("kept"), DeliveryMode: 2})
	if err != nil || !confirm.Wait() {
		t.Fatalf("publish on node 3: %v", err)
	}
	if _, err := ch3.QueueDeclare("transient-on3", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node 1 to see transient-on3", func() bool { return hasQueue(n1, "/", "transient-on3") })
	c.stop(2)
	// a change proposed through a follower while the leader is dying is
	// forwarded to it and lost (consensus does not retry it): wait for
	// the two left to agree on a leader between them
	waitUntil(t, "a leader among nodes 1 and 2", func() bool {
		l := c.node(0).ClusterLeader()
		return l != "" && l != "n3@localhost" && l == c.node(1).ClusterLeader()
	})
	if _, err := ch.QueueDeclare("while-3-was-down", true, false, false, false, nil); err != nil {
		t.Fatalf("declaring with two of three nodes up: %v", err)
	}
	if _, err := ch.QueueDelete("q1", false, false, false); err != nil {
		t.Fatal(err)
	}
	n3 := c.start(2)
	if n3 == nil {
		t.FailNow()
	}
	if !hasQueue(n3, "/", "while-3-was-down") || hasQueue(n3, "/", "q1") {
		t.Fatalf("restarted node 3 did not catch up: while-3-was-down %v, q1 (deleted) %v", hasQueue(n3, "/", "while-3-was-down"), hasQueue(n3, "/", "q1"))
	}
	// its transient queue died with its previous run, on every node
	for i := range 3 {
		b := c.node(i)
		waitUntil(t, fmt.Sprintf("node %d to drop node 3's transient queue", i+1), func() bool {
			return !hasQueue(b, "/", "transient-on3") && b.VHost("/").LookupQueue("transient-on3") == nil
		})
	}
	ch3 = channel(t, dial(t, c.url(2)))
	msg, ok, err = ch3.Get("on3", true)
	if err != nil || !ok || string(msg.Body) != "kept" {
		t.Fatalf("node 3's durable message after its restart: %v %v %q", err, ok, msg.Body)
	}

	// a node alone refuses definition changes after a bounded wait
	c.stop(1)
	c.stop(2)
	waitUntil(t, "node 1 to see the others down", func() bool {
		for _, m := range n1.ClusterStatus() {
			if m.Running != m.Self {
				return false
			}
		}
		return true
	})
	broker.SetQuorumTimeout(n1, time.Second)
	start := time.Now()
	err = n1.Metadata().Propose(metadata.Command{Op: metadata.OpAddVHost, VHost: "minority"})
	if err == nil || !strings.Contains(err.Error(), "no quorum: 1 of 3 nodes reachable") {
		t.Fatalf("a change on a node alone: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the refusal took %s", d)
	}
	chm := channel(t, dial(t, c.url(0)))
	_, err = chm.QueueDeclare("minority-q", true, false, false, false, nil)
	if e := amqpErr(t, err, 541, true); !strings.Contains(e.Reason, "no quorum") {
		t.Fatalf("declare on a node alone: %s", e.Reason)
	}
	// local queues stay readable
	chm = channel(t, dial(t, c.url(0)))
	if _, _, err := chm.Get("while-3-was-down", true); err != nil {
		t.Fatalf("get on a node alone: %v", err)
	}
}

// TestClusterSnapshotsRebuildRuntime: with snapshots every few entries, a
// node that restarts from its own snapshot, and one so far behind that
// the leader sends it a snapshot, both end with every definition as a
// runtime object (observers never see the commands a snapshot stands for).
func TestClusterSnapshotsRebuildRuntime(t *testing.T) {
	broker.SetClusterSnapshotEvery(10)
	defer broker.SetClusterSnapshotEvery(0)
	c := newTestCluster(t)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ch := channel(t, dial(t, c.url(0)))
	if err := ch.ExchangeDeclare("x", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	declare := func(from, to int) {
		for i := from; i < to; i++ {
			name := fmt.Sprintf("q%d", i)
			if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			if err := ch.QueueBind(name, name, "x", false, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	declare(0, 30)
	all := func(b *broker.Broker, n int) bool {
		for i := range n {
			if !hasQueue(b, "/", fmt.Sprintf("q%d", i)) {
				return false
			}
		}
		return true
	}
	waitUntil(t, "node 3 to apply everything", func() bool { return all(c.node(2), 30) })

	// node 3 restarts from its own snapshot and log
	c.stop(2)
	waitUntil(t, "a leader among nodes 1 and 2", func() bool {
		l := c.node(0).ClusterLeader()
		return l != "" && l != "n3@localhost" && l == c.node(1).ClusterLeader()
	})
	// meanwhile the others move on far enough to compact their logs, and
	// q5's binding goes
	if err := ch.QueueUnbind("q5", "q5", "x", nil); err != nil {
		t.Fatal(err)
	}
	declare(30, 60)
	if _, err := ch.QueueDelete("q0", false, false, false); err != nil {
		t.Fatal(err)
	}
	n3 := c.start(2)
	if n3 == nil {
		t.FailNow()
	}
	for i := 1; i < 60; i++ {
		name := fmt.Sprintf("q%d", i)
		if !hasQueue(n3, "/", name) {
			t.Fatalf("node 3 after its restart lacks %s as a definition or runtime queue", name)
		}
	}
	if hasQueue(n3, "/", "q0") || n3.VHost("/").LookupQueue("q0") != nil {
		t.Fatal("node 3 still has q0, deleted while it was down")
	}
	// the bindings came back as routes (publishing through node 3 reaches
	// q45 on node 1), and the binding removed while node 3 was down does
	// not route there any more
	ch3 := channel(t, dial(t, c.url(2)))
	if err := ch3.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch3.NotifyReturn(make(chan amqp091.Return, 1))
	for _, key := range []string{"q45", "q5"} {
		dc, err := ch3.PublishWithDeferredConfirmWithContext(context.Background(), "x", key, true, false, amqp091.Publishing{Body: []byte("m")})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish through node 3 with key %s: %v", key, err)
		}
	}
	select {
	case r := <-returns:
		if r.RoutingKey != "q5" {
			t.Fatalf("returned %s, want q5 (unbound while node 3 was down)", r.RoutingKey)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a publish through node 3 by a binding removed while it was down was routed")
	}
	if r, _, _ := c.node(0).VHost("/").LookupQueue("q45").Counts(); r != 1 {
		t.Fatalf("q45 on node 1 holds %d messages after a publish through node 3, want 1", r)
	}

	// the whole cluster stops (1, 2, 3) and starts in the same order:
	// there is no "last to stop starts first"
	for i := range 3 {
		c.stop(i)
	}
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := range 3 {
		for q := 1; q < 60; q++ {
			if !hasQueue(c.node(i), "/", fmt.Sprintf("q%d", q)) {
				t.Fatalf("node %d lacks q%d after the whole cluster restarted", i+1, q)
			}
		}
	}
}

// TestClusterRefusesWrongSetup: a node with another cookie never joins
// (it gives up after the majority wait, saying why), and a node missing
// from the list it is given does not start.
func TestClusterRefusesWrongSetup(t *testing.T) {
	c := newTestCluster(t)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	cfg := c.config(2)
	cfg.Cookie = "another-cookie"
	cfg.ClusterWait = 2 * time.Second
	var logs strings.Builder
	var mu sync.Mutex
	lg := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	b, err := broker.New(cfg, lg)
	if err == nil {
		b.Stop(context.Background())
		t.Fatal("a node with another cookie started")
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(err.Error(), "gave up waiting 2s for a majority of the cluster (1 of 3 nodes reachable)") || !strings.Contains(err.Error(), "share this node's cookie") {
		t.Fatalf("start with another cookie: %v", err)
	}
	if !strings.Contains(out, "cookies of") || !strings.Contains(out, "differ") {
		t.Fatalf("the node's log does not say the cookies differ:\n%s", out)
	}

	cfg = c.config(2)
	cfg.NodeName = "stranger@localhost"
	if _, err := broker.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "stranger@localhost, is not listed in cluster_formation.classic_config.nodes") {
		t.Fatalf("start of an unlisted node: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A node that ran alone and is then started as a cluster member from
// configuration keeps its durable queues and their persistent messages:
// they join the cluster's definitions at home on that node, reachable
// through the others (nothing is deleted to make it start).
func TestClusterAdoptsAStandaloneNodesQueues(t *testing.T) {
	c := newTestCluster(t)
	cfg := config.Default()
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.DataDir = c.dirs[0]
	alone, err := broker.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.Start(); err != nil {
		t.Fatal(err)
	}
	ch := channel(t, dial(t, fmt.Sprintf("amqp://guest:guest@%s/", alone.Addrs()[0])))
	if _, err := ch.QueueDeclare("kept-from-before", true, false, false, false, amqp091.Table{"x-max-length": int64(1000)}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "kept-from-before", false, false, amqp091.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: 2})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := alone.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	startCluster(t, c)
	// node 1 adopts it once it reached a majority; node 2 learns it then
	waitUntil(t, "node 2 to learn the adopted queue", func() bool { return hasQueue(c.node(1), "/", "kept-from-before") })
	if h := homeOf(c.node(1), "kept-from-before"); h != "n1@localhost" {
		t.Fatalf("the standalone queue's home in the cluster: %q, want n1@localhost", h)
	}
	ch2 := channel(t, dial(t, c.url(1)))
	q, err := ch2.QueueDeclarePassive("kept-from-before", true, false, false, false, amqp091.Table{"x-max-length": int64(1000)})
	if err != nil || q.Messages != 20 {
		t.Fatalf("through node 2: %v, %d messages, want the 20 confirmed before clustering", err, q.Messages)
	}
	// the adoption happens once: the standalone definitions are kept aside
	if _, err := os.Stat(filepath.Join(c.dirs[0], "meta")); !os.IsNotExist(err) {
		t.Fatalf("node 1's standalone definitions are still in place after the adoption: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(c.dirs[0], "meta-adopted-by-the-cluster-*")); len(m) != 1 {
		t.Fatalf("standalone definitions kept aside: %v", m)
	}
}
