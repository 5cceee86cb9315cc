// Package cluster_test runs real clustered warren-server processes, each
// on a network namespace of its own (internal/clusterlab), and checks
// what issue 14 asks of a cluster through a real client.
package cluster_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/clusterlab"
	"github.com/warrenmq/warren/internal/testenv"
)

func channel(t *testing.T, c *amqp091.Connection) *amqp091.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// waitFor polls cond for up to 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drain gets every message of queue through node i.
func drain(t *testing.T, l *clusterlab.Lab, i int, queue string) []string {
	t.Helper()
	ch := channel(t, l.Dial(t, i))
	var out []string
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get %s through %s: %v", queue, l.Nodes[i].Name, err)
		}
		if !ok {
			return out
		}
		out = append(out, string(m.Body))
	}
}

// The guide's cluster as real processes: three hosts named through
// /etc/hosts, one cookie, clustered from classic_config. A queue of
// node 2 is published to through node 1 and consumed through node 3;
// node 2 is SIGKILLed under a confirmed publisher (nothing confirmed is
// lost, the queue answers 404 naming its home while it is down); then the
// whole cluster is stopped and started in reverse order, and every
// message is still there.
func TestRealCluster(t *testing.T) {
	l := clusterlab.New(t, 3)
	l.StartAll()
	t.Logf("cluster up: %s", strings.Join([]string{l.Nodes[0].Name, l.Nodes[1].Name, l.Nodes[2].Name}, ", "))

	// forwarding in every direction: queue on n2, publish on n1, consume on n3
	ch2 := channel(t, l.Dial(t, 1))
	if _, err := ch2.QueueDeclare("orders", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch3 := channel(t, l.Dial(t, 2))
	if err := ch3.Qos(50, 0, false); err != nil {
		t.Fatal(err)
	}
	var deliveries <-chan amqp091.Delivery
	waitFor(t, "orders declared on n2 to reach n3", func() bool {
		var err error
		deliveries, err = ch3.Consume("orders", "", false, false, false, false, nil)
		if err != nil {
			ch3 = channel(t, l.Dial(t, 2))
			ch3.Qos(50, 0, false)
		}
		return err == nil
	})
	ch1 := channel(t, l.Dial(t, 0))
	if err := ch1.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		dc, err := ch1.PublishWithDeferredConfirmWithContext(context.Background(), "", "orders", true, false, amqp091.Publishing{Body: []byte(strconv.Itoa(i)), DeliveryMode: 2})
		if err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 && !dc.Wait() {
			t.Fatalf("publish %d through n1 nacked", i)
		}
	}
	for i := range n {
		select {
		case d := <-deliveries:
			if string(d.Body) != strconv.Itoa(i) {
				t.Fatalf("delivery %d through n3 is %q", i, d.Body)
			}
			d.Ack(false)
		case <-time.After(20 * time.Second):
			t.Fatalf("delivery %d through n3 did not come", i)
		}
	}

	// a pika client on each node in turn sees the same definitions and
	// counts, and publishes through its node
	samePikaView(t, l)

	// an exclusive queue of a connection on n1 is locked for n2's clients
	if _, err := ch1.QueueDeclare("mine", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to refuse n1's exclusive queue", func() bool {
		chx := channel(t, l.Dial(t, 1))
		_, err := chx.Consume("mine", "", false, false, false, false, nil)
		e, ok := err.(*amqp091.Error)
		return ok && e.Code == 405
	})

	// SIGKILL the home of orders while n1 publishes to it with confirms
	var confirmed sync.Map
	var nacked, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		pc := l.Dial(t, 0)
		pch, err := pc.Channel()
		if err != nil {
			t.Error(err)
			return
		}
		pch.Confirm(false)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := "k" + strconv.Itoa(i)
			dc, err := pch.PublishWithDeferredConfirmWithContext(context.Background(), "", "orders", false, false, amqp091.Publishing{Body: []byte(body), DeliveryMode: 2})
			if err != nil {
				t.Errorf("publish through n1 failed: %v", err)
				return
			}
			sent.Add(1)
			if dc.Wait() {
				confirmed.Store(body, true)
			} else {
				nacked.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	waitFor(t, "some confirms before the kill", func() bool { c := 0; confirmed.Range(func(any, any) bool { c++; return c < 200 }); return c >= 200 })
	l.Kill(1)
	waitFor(t, "publishes to be nacked while the home is down", func() bool { return nacked.Load() > 0 })
	chd := channel(t, l.Dial(t, 2))
	_, err := chd.QueueDeclarePassive("orders", true, false, false, false, nil)
	if e, ok := err.(*amqp091.Error); !ok || e.Code != 404 || !strings.Contains(e.Reason, "home node 'warren@n2' of durable queue 'orders'") {
		t.Fatalf("passive declare of orders through n3 while n2 is down: %v", err)
	}
	close(stop)
	wg.Wait()
	l.Start(1)
	l.WaitReady(1)
	waitFor(t, "orders reachable through n3 again", func() bool {
		c, err := l.TryDial(2)
		if err != nil {
			return false
		}
		defer c.Close()
		ch, _ := c.Channel()
		_, err = ch.QueueDeclarePassive("orders", true, false, false, false, nil)
		return err == nil
	})
	got := map[string]bool{}
	for _, b := range drain(t, l, 2, "orders") {
		got[b] = true
	}
	lost := 0
	total := 0
	confirmed.Range(func(k, _ any) bool {
		total++
		if !got[k.(string)] {
			lost++
			if lost < 5 {
				t.Errorf("confirmed message %s lost", k)
			}
		}
		return true
	})
	t.Logf("SIGKILL of the queue's home: %d sent, %d confirmed, %d nacked, %d lost", sent.Load(), total, nacked.Load(), lost)
	if lost > 0 {
		t.Fatalf("%d of %d confirmed messages lost", lost, total)
	}

	// the whole cluster stops, then starts in reverse order
	ch2 = channel(t, l.Dial(t, 1))
	ch2.Confirm(false)
	for i := range 100 {
		dc, err := ch2.PublishWithDeferredConfirmWithContext(context.Background(), "", "orders", false, false, amqp091.Publishing{Body: []byte(fmt.Sprintf("r%d", i)), DeliveryMode: 2})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish before the full restart: %v", err)
		}
	}
	for i := range 3 {
		l.Stop(i)
	}
	for _, i := range []int{2, 1, 0} {
		l.Start(i)
	}
	for i := range 3 {
		l.WaitReady(i)
	}
	var bodies []string
	waitFor(t, "orders reachable through n1 after the full restart", func() bool {
		c, err := l.TryDial(0)
		if err != nil {
			return false
		}
		defer c.Close()
		ch, _ := c.Channel()
		_, err = ch.QueueDeclarePassive("orders", true, false, false, false, nil)
		return err == nil
	})
	bodies = drain(t, l, 0, "orders")
	if len(bodies) != 100 || bodies[0] != "r0" || bodies[99] != "r99" {
		t.Fatalf("after a full restart in reverse order orders holds %d messages (%v...), want r0..r99", len(bodies), bodies[:min(len(bodies), 5)])
	}
}

// samePikaView declares an exchange and a queue through n1, then runs a
// pika client on each host against its own node: each sees both and the
// queue's count, which grows by one with each client's confirmed publish.
func samePikaView(t *testing.T, l *clusterlab.Lab) {
	t.Helper()
	testenv.NeedFile(t, "/usr/bin/python3", "apt-get install python3")
	if err := exec.Command("/usr/bin/python3", "-c", "import pika").Run(); err != nil {
		testenv.Skip(t, "Debian's pika is missing: apt-get install python3-pika")
	}
	ch := channel(t, l.Dial(t, 0))
	if err := ch.ExchangeDeclare("shared-x", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("shared-q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("shared-q", "shared-q", "shared-x", false, nil); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(testenv.RepoRoot(t), "test", "cluster", "testdata", "same_definitions.py")
	for i, nd := range l.Nodes {
		var out []byte
		waitFor(t, "pika on "+nd.Host+" to see shared-x and shared-q", func() bool {
			var err error
			out, err = l.Net.Command(nd.Host, "/usr/bin/python3", script, nd.IP, clusterlab.User, clusterlab.Pass, "shared-x", "shared-q").CombinedOutput()
			return err == nil
		})
		if want := fmt.Sprintf("messages=%d", i); !strings.Contains(string(out), want) {
			t.Fatalf("pika through %s: %s (want %s)", nd.Name, out, want)
		}
	}
}
