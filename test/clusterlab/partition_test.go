// Package clusterlab runs warren-server clusters as real processes, each
// node in its own network namespace (internal/netlab) with its own
// address, and cuts nodes off by taking their network link down.
package clusterlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sys/unix"

	"github.com/warrenmq/warren/internal/netlab"
	"github.com/warrenmq/warren/internal/testenv"
)

type node struct {
	host, name, addr, conf, data, log string
	cmd                               *exec.Cmd
}

type lab struct {
	t      *testing.T
	net    *netlab.Lab
	bin    string
	cookie string
	nodes  []*node
}

// newLab starts three nodes warren@b1..b3 on 10.91.0.1..3, with the
// given cluster_partition_handling each.
func newLab(t *testing.T, handling ...string) *lab {
	if testing.Short() {
		t.Skip("builds warren-server and runs three processes in network namespaces")
	}
	l := &lab{t: t, net: netlab.New(t, netlab.Options{})}
	dir := t.TempDir()
	l.bin = filepath.Join(dir, "warren-server")
	build := exec.Command("go", "build", "-o", l.bin, "./cmd/warren-server")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l.cookie = filepath.Join(dir, "cookie")
	if err := os.WriteFile(l.cookie, []byte("clusterlab-"+l.net.ID), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := []string{"cluster_formation.peer_discovery_backend = classic_config", "cluster_node_down_grace_period = 2000", "loopback_users = none"}
	for i := range 3 {
		n := &node{host: fmt.Sprintf("b%d", i+1), name: fmt.Sprintf("warren@b%d", i+1), addr: fmt.Sprintf("10.91.0.%d", i+1)}
		l.net.AddHost(n.host, n.addr+"/24")
		shared = append(shared,
			fmt.Sprintf("cluster_formation.classic_config.nodes.%d = %s", i+1, n.name),
			fmt.Sprintf("cluster_formation.classic_config.addresses.%d = %s:25672", i+1, n.addr))
		l.nodes = append(l.nodes, n)
	}
	for i, n := range l.nodes {
		n.conf = filepath.Join(dir, n.host+".conf")
		n.data = filepath.Join(dir, n.host+"-data")
		n.log = filepath.Join(dir, n.host+".log")
		conf := strings.Join(append(shared, "cluster_partition_handling = "+handling[i]), "\n") + "\n"
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range l.nodes {
			l.kill(n, syscall.SIGTERM)
		}
		if t.Failed() {
			for _, n := range l.nodes {
				b, _ := os.ReadFile(n.log)
				t.Logf("%s log:\n%s", n.name, b)
			}
		}
	})
	for _, n := range l.nodes {
		l.start(n)
	}
	return l
}

func (l *lab) start(n *node) {
	l.t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	n.cmd = l.net.Command(n.host, l.bin, "--config", n.conf, "--data-dir", n.data, "--port", "5672",
		"--management-port", "15672", "--prometheus-port", "0", "--control-port", "0")
	n.cmd.Env = append(os.Environ(), "WARREN_NODENAME="+n.name, "WARREN_COOKIE_FILE="+l.cookie)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
}

// kill signals node n's process (ip netns exec runs it under its own pid)
// and reaps it.
func (l *lab) kill(n *node, sig syscall.Signal) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
	n.cmd = nil
}

// link takes node n's network link down or up.
func (l *lab) link(n *node, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	l.net.IP(n.host, "link", "set", "eth0", state)
}

// dialer connects from inside node n's namespace (to its loopback): the
// socket is made on a thread moved into the namespace for the dial, and
// stays in that namespace.
func (l *lab) dialer(n *node) func(network, addr string) (net.Conn, error) {
	ns := l.net.NS(n.host)
	return func(network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			// the thread goes into the namespace and back; if it cannot
			// come back it stays locked and ends with the goroutine
			runtime.LockOSThread()
			self, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				ch <- res{nil, err}
				return
			}
			defer self.Close()
			f, err := os.Open("/run/netns/" + ns)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- res{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- res{nil, fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			c, err := net.DialTimeout(network, addr, 5*time.Second)
			if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

func (l *lab) dial(n *node) (*amqp091.Connection, error) {
	return amqp091.DialConfig("amqp://guest:guest@127.0.0.1:5672/", amqp091.Config{Dial: l.dialer(n), Heartbeat: 10 * time.Second})
}

// dialUntil connects to node n once it serves clients.
func (l *lab) dialUntil(n *node) *amqp091.Connection {
	l.t.Helper()
	var err error
	var c *amqp091.Connection
	waitUntil(l.t, n.name+" to accept AMQP connections", 90*time.Second, func() bool {
		c, err = l.dial(n)
		return err == nil
	})
	l.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (l *lab) channel(n *node) *amqp091.Channel {
	l.t.Helper()
	ch, err := l.dialUntil(n).Channel()
	if err != nil {
		l.t.Fatal(err)
	}
	return ch
}

// api GETs path from node n's management API.
func (l *lab) api(n *node, path string) (int, []byte) {
	l.t.Helper()
	dial := l.dialer(n)
	hc := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		Dial: func(network, addr string) (net.Conn, error) { return dial(network, addr) }}}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:15672"+path, nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// queues lists the queues of vhost / in node n's definitions.
func (l *lab) queues(n *node) []string {
	l.t.Helper()
	code, b := l.api(n, "/api/queues")
	if code != 200 {
		return nil
	}
	var qs []struct{ Name, Vhost string }
	if err := json.Unmarshal(b, &qs); err != nil {
		l.t.Fatalf("/api/queues on %s: %v", n.name, err)
	}
	var out []string
	for _, q := range qs {
		if q.Vhost == "/" {
			out = append(out, q.Name)
		}
	}
	slices.Sort(out)
	return out
}

// running lists the nodes node n sees running (/api/nodes).
func (l *lab) running(n *node) []string {
	code, b := l.api(n, "/api/nodes")
	if code != 200 {
		return nil
	}
	var ns []struct {
		Name    string
		Running bool
	}
	_ = json.Unmarshal(b, &ns)
	var out []string
	for _, x := range ns {
		if x.Running {
			out = append(out, x.Name)
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// declareUntil declares a durable queue through node n until the
// cluster commits it (a majority may still be electing a leader).
func (l *lab) declareUntil(n *node, name string) {
	l.t.Helper()
	var err error
	waitUntil(l.t, "declaring "+name+" through "+n.name, 60*time.Second, func() bool {
		var c *amqp091.Connection
		if c, err = l.dial(n); err != nil {
			return false
		}
		defer c.Close()
		ch, err2 := c.Channel()
		if err = err2; err != nil {
			return false
		}
		_, err = ch.QueueDeclare(name, true, false, false, false, nil)
		return err == nil
	})
}

// TestPartitionedNodes: three nodes, b3 with cluster_partition_handling =
// pause_minority, b1 and b2 with ignore.
//
//   - b3 cut off: it closes its client connections with 320 saying it is
//     in a minority and refuses new ones; b1 and b2 go on declaring, and
//     each is now quorum-critical; healed, b3 serves again with the
//     majority's definitions.
//   - b2 cut off (ignore): it keeps its clients but refuses a declare with
//     541 "no quorum"; the majority goes on; healed, the three nodes list
//     the same queues, and the refused declare is nowhere.
//   - b3 SIGKILLed: after the grace its transient queue is deleted from
//     the definitions; its durable queue stays.
func TestPartitionedNodes(t *testing.T) {
	l := newLab(t, "ignore", "ignore", "pause_minority")
	b1, b2, b3 := l.nodes[0], l.nodes[1], l.nodes[2]
	for _, n := range l.nodes {
		l.dialUntil(n)
	}
	waitUntil(t, "every node to see the three running", 60*time.Second, func() bool {
		for _, n := range l.nodes {
			if len(l.running(n)) != 3 {
				return false
			}
		}
		return true
	})
	if code, b := l.api(b1, "/api/health/checks/node-is-quorum-critical"); code != 200 {
		t.Fatalf("all up: node-is-quorum-critical on b1: %d %s", code, b)
	}

	// b3 (pause_minority) cut off
	c3 := l.dialUntil(b3)
	closed := c3.NotifyClose(make(chan *amqp091.Error, 1))
	l.link(b3, false)
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 || !strings.Contains(e.Reason, "minority") {
			t.Fatalf("b3's client connection closed with %v, want 320 saying b3 is in a minority", e)
		}
		t.Logf("b3 closed its client: %d %s", e.Code, e.Reason)
	case <-time.After(60 * time.Second):
		t.Fatal("b3, cut off with pause_minority, did not close its client connection")
	}
	if c, err := l.dial(b3); err == nil {
		c.Close()
		t.Fatal("b3 accepted an AMQP connection while paused in a minority")
	}
	l.declareUntil(b1, "majority-1")
	for _, n := range []*node{b1, b2} {
		code, b := l.api(n, "/api/health/checks/node-is-quorum-critical")
		if code != 503 || !strings.Contains(string(b), `"failed"`) {
			t.Fatalf("%s with b3 cut off: node-is-quorum-critical %d %s, want 503", n.name, code, b)
		}
	}
	l.link(b3, true)
	waitUntil(t, "b3 to serve again with the majority's queue", 90*time.Second, func() bool {
		c, err := l.dial(b3)
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

	// b2 (ignore) cut off
	ch2 := l.channel(b2)
	l.link(b2, false)
	waitUntil(t, "b2 to see the others gone", 60*time.Second, func() bool { return len(l.running(b2)) == 1 })
	_, err := ch2.QueueDeclare("minority-2", true, false, false, false, nil)
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != 541 || !strings.Contains(ae.Reason, "no quorum") {
		t.Fatalf("declare on b2 cut off: %v, want 541 no quorum", err)
	}
	l.declareUntil(b1, "majority-2")
	l.declareUntil(b3, "majority-3")
	l.link(b2, true)
	var want []string
	waitUntil(t, "the three nodes to list the same queues", 90*time.Second, func() bool {
		want = l.queues(b1)
		for _, n := range []*node{b2, b3} {
			if !slices.Equal(l.queues(n), want) {
				return false
			}
		}
		return len(want) > 0
	})
	for _, q := range []string{"majority-1", "majority-2", "majority-3"} {
		if !slices.Contains(want, q) {
			t.Fatalf("after healing the nodes list %v: %s missing", want, q)
		}
	}
	if slices.Contains(want, "minority-2") {
		t.Fatalf("the declare refused on the minority exists: %v", want)
	}

	// b3 SIGKILLed: its transient queue goes, its durable queue stays
	ch3 := l.channel(b3)
	if _, err := ch3.QueueDeclare("transient-3", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch3.QueueDeclare("durable-3", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b1 to see b3's queues", 30*time.Second, func() bool {
		qs := l.queues(b1)
		return slices.Contains(qs, "transient-3") && slices.Contains(qs, "durable-3")
	})
	l.kill(b3, syscall.SIGKILL)
	waitUntil(t, "b3's transient queue to leave the definitions", 60*time.Second, func() bool {
		for _, n := range []*node{b1, b2} {
			if slices.Contains(l.queues(n), "transient-3") {
				return false
			}
		}
		return true
	})
	for _, n := range []*node{b1, b2} {
		if qs := l.queues(n); !slices.Contains(qs, "durable-3") {
			t.Fatalf("%s lost b3's durable queue: %v", n.name, qs)
		}
		if code, _ := l.api(n, "/api/queues/%2F/durable-3"); code != 200 {
			t.Fatalf("%s: GET durable-3: %d", n.name, code)
		}
	}
}
