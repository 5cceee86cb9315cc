package cluster_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/clusterlab"
)

// local reaches node i on its own loopback, from inside its namespace:
// its address on eth0 is gone while its link is down.
func local(l *clusterlab.Lab, i int, port string) func(network, addr string) (net.Conn, error) {
	return func(network, _ string) (net.Conn, error) {
		return l.Net.DialIn(l.Nodes[i].Host, network, "127.0.0.1:"+port, 5*time.Second)
	}
}

func dialLocal(l *clusterlab.Lab, i int) (*amqp091.Connection, error) {
	return amqp091.DialConfig("amqp://"+clusterlab.User+":"+clusterlab.Pass+"@localhost:5672/",
		amqp091.Config{Dial: local(l, i, "5672"), Heartbeat: 10 * time.Second})
}

// api GETs path from node i's management API.
func api(l *clusterlab.Lab, i int, path string) (int, []byte) {
	dial := local(l, i, "15672")
	hc := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		Dial: func(network, addr string) (net.Conn, error) { return dial(network, addr) }}}
	req, _ := http.NewRequest("GET", "http://localhost:15672"+path, nil)
	req.SetBasicAuth(clusterlab.User, clusterlab.Pass)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// queues lists the queues of vhost / in node i's definitions.
func queues(t *testing.T, l *clusterlab.Lab, i int) []string {
	t.Helper()
	code, b := api(l, i, "/api/queues/%2F")
	if code != 200 {
		return nil
	}
	var qs []struct{ Name string }
	if err := json.Unmarshal(b, &qs); err != nil {
		t.Fatalf("/api/queues/%%2F on %s: %v", l.Nodes[i].Name, err)
	}
	var out []string
	for _, q := range qs {
		out = append(out, q.Name)
	}
	slices.Sort(out)
	return out
}

// definitions is node i's /api/definitions as sorted lists of objects
// per kind (queues, exchanges, bindings, users, ...), comparable across
// nodes whatever order each lists them in.
func definitions(t *testing.T, l *clusterlab.Lab, i int) map[string][]string {
	t.Helper()
	code, b := api(l, i, "/api/definitions")
	if code != 200 {
		return nil
	}
	var defs map[string]json.RawMessage
	if err := json.Unmarshal(b, &defs); err != nil {
		t.Fatalf("/api/definitions on %s: %v", l.Nodes[i].Name, err)
	}
	out := map[string][]string{}
	for kind, raw := range defs {
		var objs []json.RawMessage
		if json.Unmarshal(raw, &objs) != nil {
			continue // a scalar (rabbit_version, ...)
		}
		for _, o := range objs {
			var v any
			_ = json.Unmarshal(o, &v)
			norm, _ := json.Marshal(v) // maps marshal with sorted keys
			out[kind] = append(out[kind], string(norm))
		}
		slices.Sort(out[kind])
	}
	return out
}

func sameDefinitions(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// running counts the nodes node i sees running (/api/nodes).
func running(l *clusterlab.Lab, i int) int {
	code, b := api(l, i, "/api/nodes")
	if code != 200 {
		return -1
	}
	var ns []struct{ Running bool }
	_ = json.Unmarshal(b, &ns)
	n := 0
	for _, x := range ns {
		if x.Running {
			n++
		}
	}
	return n
}

// declareUntil declares a durable queue through node i until the cluster
// commits it (the majority may still be electing a leader).
func declareUntil(t *testing.T, l *clusterlab.Lab, i int, name string) {
	t.Helper()
	var err error
	waitFor(t, "declaring "+name+" through "+l.Nodes[i].Name, func() bool {
		var c *amqp091.Connection
		if c, err = l.TryDial(i); err != nil {
			return false
		}
		defer c.Close()
		var ch *amqp091.Channel
		if ch, err = c.Channel(); err != nil {
			return false
		}
		_, err = ch.QueueDeclare(name, true, false, false, false, nil)
		return err == nil
	})
}

// TestPartitionedNodes cuts nodes off by taking their link down. n3 runs
// with cluster_partition_handling = pause_minority, n1 and n2 with the
// default (ignore); every node counts a node down after 2 s of link loss.
//
//   - n3 cut off: it closes its client connections with 320 saying it is
//     in a minority and refuses new ones; n1 and n2 go on declaring, and
//     each is now quorum-critical; healed, n3 serves again with the
//     majority's definitions.
//   - n2 cut off (ignore): it keeps its clients but refuses a declare with
//     541 "no quorum"; the majority goes on; healed, the three nodes have
//     the same definitions, and the refused declare is nowhere.
//   - n3 SIGKILLed: after the grace its transient queue is deleted from
//     the definitions; its durable queue stays.
func TestPartitionedNodes(t *testing.T) {
	l := clusterlab.New(t, 3)
	l.Extra = "cluster_node_down_grace_period = 2000\n"
	l.Nodes[2].Extra = "cluster_partition_handling = pause_minority\n"
	l.StartAll()
	t.Cleanup(func() {
		if t.Failed() {
			for i := range l.Nodes {
				t.Logf("%s log:\n%s", l.Nodes[i].Name, l.Log(i))
			}
		}
	})
	waitFor(t, "every node to see the three running", func() bool {
		return running(l, 0) == 3 && running(l, 1) == 3 && running(l, 2) == 3
	})
	if code, b := api(l, 0, "/api/health/checks/node-is-quorum-critical"); code != 200 {
		t.Fatalf("all up: node-is-quorum-critical on n1: %d %s", code, b)
	}

	// n3 (pause_minority) cut off
	c3 := l.Dial(t, 2)
	closed := c3.NotifyClose(make(chan *amqp091.Error, 1))
	l.Cut(2)
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 || !strings.Contains(e.Reason, "minority") {
			t.Fatalf("n3's client connection closed with %v, want 320 saying n3 is in a minority", e)
		}
		t.Logf("n3 closed its client: %d %s", e.Code, e.Reason)
	case <-time.After(60 * time.Second):
		t.Fatal("n3, cut off with pause_minority, did not close its client connection")
	}
	if c, err := dialLocal(l, 2); err == nil {
		c.Close()
		t.Fatal("n3 accepted an AMQP connection while paused in a minority")
	}
	declareUntil(t, l, 0, "majority-1")
	for _, i := range []int{0, 1} {
		code, b := api(l, i, "/api/health/checks/node-is-quorum-critical")
		if code != 503 || !strings.Contains(string(b), `"failed"`) {
			t.Fatalf("%s with n3 cut off: node-is-quorum-critical %d %s, want 503", l.Nodes[i].Name, code, b)
		}
	}
	l.Heal(2)
	waitFor(t, "n3 to serve again with the majority's queue", func() bool {
		c, err := l.TryDial(2)
		if err != nil {
			return false
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			return false
		}
		_, err = ch.QueueDeclarePassive("majority-1", true, false, false, false, nil)
		return err == nil
	})

	// n2 (ignore) cut off
	c2, err := dialLocal(l, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ch2 := channel(t, c2)
	l.Cut(1)
	waitFor(t, "n2 to see the others gone", func() bool { return running(l, 1) == 1 })
	_, err = ch2.QueueDeclare("minority-2", true, false, false, false, nil)
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != 541 || !strings.Contains(ae.Reason, "no quorum") {
		t.Fatalf("declare on n2 cut off: %v, want 541 no quorum", err)
	}
	declareUntil(t, l, 0, "majority-2")
	declareUntil(t, l, 2, "majority-3")
	l.Heal(1)
	waitFor(t, "the three nodes to have the same definitions", func() bool {
		d := definitions(t, l, 0)
		return len(d["queues"]) > 0 && sameDefinitions(definitions(t, l, 1), d) && sameDefinitions(definitions(t, l, 2), d)
	})
	want := queues(t, l, 0)
	for _, q := range []string{"majority-1", "majority-2", "majority-3"} {
		if !slices.Contains(want, q) {
			t.Fatalf("after healing the nodes list %v: %s missing", want, q)
		}
	}
	if slices.Contains(want, "minority-2") {
		t.Fatalf("the declare refused on the minority exists: %v", want)
	}

	// n3 SIGKILLed: its transient queue goes, its durable queue stays
	ch3 := channel(t, l.Dial(t, 2))
	if _, err := ch3.QueueDeclare("transient-3", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch3.QueueDeclare("durable-3", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to see n3's queues", func() bool {
		qs := queues(t, l, 0)
		return slices.Contains(qs, "transient-3") && slices.Contains(qs, "durable-3")
	})
	l.Kill(2)
	waitFor(t, "n3's transient queue to leave the definitions", func() bool {
		return !slices.Contains(queues(t, l, 0), "transient-3") && !slices.Contains(queues(t, l, 1), "transient-3")
	})
	for _, i := range []int{0, 1} {
		if qs := queues(t, l, i); !slices.Contains(qs, "durable-3") {
			t.Fatalf("%s lost n3's durable queue: %v", l.Nodes[i].Name, qs)
		}
	}
}
