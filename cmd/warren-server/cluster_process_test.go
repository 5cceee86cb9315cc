package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// serverProcess is one warren-server process of a test cluster.
type serverProcess struct {
	name, conf, dataDir, amqp string
	cmd                       *exec.Cmd
	log                       *os.File
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (p *serverProcess) start(t *testing.T, bin, cookieFile string) {
	t.Helper()
	p.cmd = exec.Command(bin, "--config", p.conf, "--data-dir", p.dataDir, "--management-port", "0", "--prometheus-port", "0", "--control-port", "0")
	p.cmd.Env = append(os.Environ(), "WARREN_NODENAME="+p.name, "WARREN_COOKIE_FILE="+cookieFile)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *serverProcess) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// dialUntil connects to a node that may still be waiting for a majority.
func dialUntil(t *testing.T, p *serverProcess) *amqp091.Connection {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := amqp091.Dial("amqp://guest:guest@" + p.amqp + "/")
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.log.Name())
			t.Fatalf("node %s never accepted AMQP connections: %v\n%s", p.name, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestThreeProcessesFormACluster runs three warren-server processes on
// the loopback, formed from cluster_formation.classic_config and started
// in reverse order: definitions made through one are seen through the
// others, a queue's messages stay on its home node, and a node killed
// with SIGKILL catches up when it comes back.
func TestThreeProcessesFormACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three server processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "warren-server")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cookie := filepath.Join(dir, "cookie")
	if err := os.WriteFile(cookie, []byte("a-shared-cookie"), 0o600); err != nil {
		t.Fatal(err)
	}
	var shared []string
	shared = append(shared, "cluster_formation.peer_discovery_backend = classic_config")
	nodes := make([]*serverProcess, 3)
	for i := range nodes {
		p := &serverProcess{name: fmt.Sprintf("n%d@localhost", i+1), amqp: freeAddr(t), dataDir: filepath.Join(dir, fmt.Sprintf("data%d", i+1))}
		shared = append(shared,
			fmt.Sprintf("cluster_formation.classic_config.nodes.%d = %s", i+1, p.name),
			fmt.Sprintf("cluster_formation.classic_config.addresses.%d = %s", i+1, freeAddr(t)))
		nodes[i] = p
	}
	for i, p := range nodes {
		p.conf = filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		conf := strings.Join(append(shared, "listeners.tcp.default = "+p.amqp), "\n") + "\n"
		if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if p.log, err = os.Create(filepath.Join(dir, fmt.Sprintf("n%d.log", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range nodes {
			p.stop(syscall.SIGTERM)
		}
		if t.Failed() {
			for _, p := range nodes {
				b, _ := os.ReadFile(p.log.Name())
				t.Logf("%s log:\n%s", p.name, b)
			}
		}
	})
	for i := 2; i >= 0; i-- {
		nodes[i].start(t, bin, cookie)
		time.Sleep(200 * time.Millisecond)
	}
	ch := make([]*amqp091.Channel, 3)
	for i, p := range nodes {
		var err error
		if ch[i], err = dialUntil(t, p).Channel(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch[0].ExchangeDeclare("events", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch[0].QueueDeclare("audit", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch[0].QueueBind("audit", "", "events", false, nil); err != nil {
		t.Fatal(err)
	}
	// seen through node 3 (a passive declare answers 404 until it is)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := dialUntil(t, nodes[2]).Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err = c.QueueDeclarePassive("audit", true, false, false, false, nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 3 never saw queue audit: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// publishing to it through node 3 reaches it on node 1 (forwarding)
	if err := ch[2].Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch[2].PublishWithDeferredConfirmWithContext(context.Background(), "events", "", false, false, amqp091.Publishing{Body: []byte("via 3"), DeliveryMode: 2})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish through node 3 to node 1's queue: %v", err)
	}
	if err := ch[0].Publish("events", "", false, false, amqp091.Publishing{Body: []byte("via 1"), DeliveryMode: 2}); err != nil {
		t.Fatal(err)
	}

	// node 2 killed; the other two go on; node 2 comes back and catches up
	nodes[1].stop(syscall.SIGKILL)
	deadline = time.Now().Add(30 * time.Second)
	for {
		c, err := dialUntil(t, nodes[0]).Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err = c.QueueDeclare("after-kill", true, false, false, false, nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes 1 and 3 could not change definitions without node 2: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	nodes[1].start(t, bin, cookie)
	c2, err := dialUntil(t, nodes[1]).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.QueueDeclarePassive("after-kill", true, false, false, false, nil); err != nil {
		t.Fatalf("restarted node 2 lacks a queue declared while it was down: %v", err)
	}
	for _, want := range []string{"via 3", "via 1"} {
		m, ok, err := ch[0].Get("audit", true)
		if err != nil || !ok || string(m.Body) != want {
			t.Fatalf("get audit on its home: %v %v %q, want %q", err, ok, m.Body, want)
		}
	}
	if m, ok, _ := ch[0].Get("audit", true); ok {
		t.Fatalf("audit holds %q too", m.Body)
	}
}
