package node_test

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warren-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/warrenmq/warren/cmd/warren-server")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type server struct {
	cmd  *exec.Cmd
	port int
	log  string
}

func startServer(t *testing.T, bin, dir string, port int, extra ...string) *server {
	t.Helper()
	logf := filepath.Join(dir, "server.log")
	f, _ := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	args := append([]string{"--port", strconv.Itoa(port), "--management-port", "0", "--prometheus-port", "0", "--control-port", "0", "--data-dir", filepath.Join(dir, "data")}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "WARREN_COOKIE_FILE="+filepath.Join(dir, "cookie"))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, port: port, log: logf}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf)
			t.Fatalf("server did not start: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setup skips in -short mode, builds the server and picks a data
// directory and a port.
func setup(t *testing.T) (bin, dir string, port int, url string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and kills real processes")
	}
	port = freePort(t)
	return buildServer(t), t.TempDir(), port, fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
}

// dial opens a connection and a channel.
func dial(t *testing.T, url string) (*amqp091.Connection, *amqp091.Channel) {
	t.Helper()
	c, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

func (s *server) kill9() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
}

// TestKill9KeepsConfirmedMessages publishes persistent messages with
// confirms into several durable queues, SIGKILLs the node at a random
// moment, restarts it, and checks that every confirmed message is there
// (redelivery allowed, loss never). Repeated with different kill points.
func TestKill9KeepsConfirmedMessages(t *testing.T) {
	bin, dir, port, url := setup(t)
	const queues = 3
	rounds := 6
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	confirmed := map[string]bool{} // body → confirmed, across rounds
	received := map[string]bool{}  // bodies a consumer got (and acked)
	var mu sync.Mutex
	srv := startServer(t, bin, dir, port)
	for round := 0; round < rounds; round++ {
		c, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		setup, _ := c.Channel()
		for q := 0; q < queues; q++ {
			if _, err := setup.QueueDeclare(fmt.Sprintf("crash-%d", q), true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for q := 0; q < queues; q++ {
			wg.Add(1)
			go func(q int) {
				defer wg.Done()
				ch, err := c.Channel()
				if err != nil {
					return
				}
				ch.Confirm(false)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					body := fmt.Sprintf("r%d-q%d-m%d", round, q, i)
					dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", fmt.Sprintf("crash-%d", q), false, false,
						amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: []byte(body)})
					if err != nil {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					ok, err := dc.WaitContext(ctx)
					cancel()
					if err != nil {
						return
					}
					if ok {
						mu.Lock()
						confirmed[body] = true
						mu.Unlock()
					}
				}
			}(q)
		}
		// a consumer on the first queue acks as it goes: what it received
		// counts as kept even though the queue no longer holds it
		if cch, err := c.Channel(); err == nil {
			cch.Qos(100, 0, false)
			if ds, err := cch.Consume("crash-0", "", false, false, false, false, nil); err == nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for d := range ds {
						mu.Lock()
						received[string(d.Body)] = true
						mu.Unlock()
						d.Ack(false)
					}
				}()
			}
		}
		time.Sleep(time.Duration(50+rng.Intn(400)) * time.Millisecond)
		srv.kill9()
		close(stop)
		wg.Wait()
		c.Close()
		srv = startServer(t, bin, dir, port)
	}
	// drain everything and compare
	c, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	got := map[string]bool{}
	for q := 0; q < queues; q++ {
		for {
			m, ok, err := ch.Get(fmt.Sprintf("crash-%d", q), true)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got[string(m.Body)] = true
		}
	}
	lost := 0
	for b := range confirmed {
		if !got[b] && !received[b] {
			lost++
			if lost < 10 {
				t.Errorf("confirmed message %s lost", b)
			}
		}
	}
	if len(confirmed) == 0 {
		t.Fatal("no message was confirmed: the test proved nothing")
	}
	if lost > 0 {
		logb, _ := os.ReadFile(srv.log)
		t.Fatalf("%d of %d confirmed messages lost\n%s", lost, len(confirmed), logb)
	}
	if len(received) == 0 {
		t.Fatal("the consumer received nothing: acks were not exercised")
	}
	t.Logf("%d confirmed messages over %d kill -9 rounds, none lost (%d present, %d consumed)", len(confirmed), rounds, len(got), len(received))
}

// TestDefinitionsSurviveRestart checks that durable definitions come back
// and transient ones do not.
func TestDefinitionsSurviveRestart(t *testing.T) {
	bin, dir, port, url := setup(t)
	srv := startServer(t, bin, dir, port)
	c, ch := dial(t, url)
	ch.ExchangeDeclare("dx", "topic", true, false, false, false, nil)
	ch.ExchangeDeclare("tx", "topic", false, false, false, false, nil)
	ch.QueueDeclare("dq", true, false, false, false, amqp091.Table{"x-max-length": int32(100)})
	ch.QueueDeclare("tq", false, false, false, false, nil)
	ch.QueueBind("dq", "a.#", "dx", false, nil)
	ch.PublishWithContext(context.Background(), "", "dq", false, false, amqp091.Publishing{DeliveryMode: 2, Body: []byte("persistent")})
	ch.PublishWithContext(context.Background(), "", "dq", false, false, amqp091.Publishing{DeliveryMode: 1, Body: []byte("transient")})
	ch.Confirm(false)
	dc, _ := ch.PublishWithDeferredConfirmWithContext(context.Background(), "dx", "a.b", false, false, amqp091.Publishing{DeliveryMode: 2, Body: []byte("routed")})
	dc.Wait()
	c.Close()
	srv.kill9()
	srv = startServer(t, bin, dir, port)
	c, ch = dial(t, url)
	defer c.Close()
	if err := ch.ExchangeDeclarePassive("dx", "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("durable exchange lost: %v", err)
	}
	q, err := ch.QueueDeclarePassive("dq", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("durable queue lost: %v", err)
	}
	if q.Messages != 2 {
		t.Fatalf("durable queue holds %d messages, want the 2 persistent ones", q.Messages)
	}
	m, _, _ := ch.Get("dq", true)
	if string(m.Body) != "persistent" || m.Redelivered {
		t.Fatalf("first recovered message %q redelivered=%v (it was never delivered)", m.Body, m.Redelivered)
	}
	// the binding survived too
	ch.PublishWithContext(context.Background(), "dx", "a.c", false, false, amqp091.Publishing{Body: []byte("x")})
	time.Sleep(20 * time.Millisecond)
	if q, _ := ch.QueueDeclarePassive("dq", true, false, false, false, nil); q.Messages != 2 {
		t.Fatalf("binding lost: %d", q.Messages)
	}
	ch2, _ := c.Channel()
	if _, err := ch2.QueueDeclarePassive("tq", false, false, false, false, nil); err == nil {
		t.Fatal("transient queue survived a restart")
	}
	ch3, _ := c.Channel()
	if err := ch3.ExchangeDeclarePassive("tx", "topic", false, false, false, false, nil); err == nil {
		t.Fatal("transient exchange survived a restart")
	}
}

// TestRecoverThousandQueues checks that 1,000 durable queues with
// persistent messages all come back after kill -9.
func TestRecoverThousandQueues(t *testing.T) {
	bin, dir, port, url := setup(t)
	srv := startServer(t, bin, dir, port)
	c, ch := dial(t, url)
	ch.Confirm(false)
	const queues, per = 1000, 3
	var last *amqp091.DeferredConfirmation
	var err error
	for q := 0; q < queues; q++ {
		name := fmt.Sprintf("rq-%04d", q)
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		for m := 0; m < per; m++ {
			last, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", name, false, false,
				amqp091.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("%s-%d", name, m))})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if ok := last.Wait(); !ok {
		t.Fatal("last publish nacked")
	}
	c.Close()
	srv.kill9()
	start := time.Now()
	srv = startServer(t, bin, dir, port)
	t.Logf("restart with %d queues / %d messages took %v", queues, queues*per, time.Since(start))
	c, ch = dial(t, url)
	defer c.Close()
	for q := 0; q < queues; q++ {
		name := fmt.Sprintf("rq-%04d", q)
		r, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		if err != nil {
			t.Fatalf("queue %s lost: %v", name, err)
		}
		if r.Messages != per {
			t.Fatalf("queue %s has %d messages, want %d", name, r.Messages, per)
		}
	}
	m, ok, _ := ch.Get("rq-0999", true)
	if !ok || string(m.Body) != "rq-0999-0" {
		t.Fatalf("first message of rq-0999: %q", m.Body)
	}
}

// TestTTLSurvivesRestart checks that a persistent message keeps its TTL
// deadline across a kill -9 (a restart neither drops nor extends it).
func TestTTLSurvivesRestart(t *testing.T) {
	bin, dir, port, url := setup(t)
	srv := startServer(t, bin, dir, port)
	c, ch := dial(t, url)
	ch.QueueDeclare("ttlq", true, false, false, false, nil)
	ch.Confirm(false)
	dc, _ := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "ttlq", false, false,
		amqp091.Publishing{DeliveryMode: 2, Expiration: "2500", Body: []byte("short-lived")})
	dc2, _ := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "ttlq", false, false,
		amqp091.Publishing{DeliveryMode: 2, Body: []byte("forever")})
	if !dc.Wait() || !dc2.Wait() {
		t.Fatal("not confirmed")
	}
	published := time.Now()
	c.Close()
	srv.kill9()
	srv = startServer(t, bin, dir, port)
	c, ch = dial(t, url)
	defer c.Close()
	if q, _ := ch.QueueDeclarePassive("ttlq", true, false, false, false, nil); q.Messages != 2 && time.Since(published) < 2*time.Second {
		t.Fatalf("after restart %d messages, want 2", q.Messages)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive("ttlq", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the persistent message's TTL was lost across the restart (%d messages)", q.Messages)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if el := time.Since(published); el < 2400*time.Millisecond {
		t.Fatalf("expired after %v, before its 2.5 s TTL", el)
	}
	m, ok, _ := ch.Get("ttlq", true)
	if !ok || string(m.Body) != "forever" {
		t.Fatalf("survivor %q", m.Body)
	}
}

// TestRedeliveredAfterKill9 checks the redelivered flag after a crash: a
// message delivered but not acked comes back redelivered, the ones never
// delivered do not.
func TestRedeliveredAfterKill9(t *testing.T) {
	bin, dir, port, url := setup(t)
	srv := startServer(t, bin, dir, port)
	c, ch := dial(t, url)
	ch.QueueDeclare("rdq", true, false, false, false, nil)
	ch.Confirm(false)
	for _, b := range []string{"one", "two", "three"} {
		dc, _ := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "rdq", false, false,
			amqp091.Publishing{DeliveryMode: 2, Body: []byte(b)})
		if !dc.Wait() {
			t.Fatal("not confirmed")
		}
	}
	storeSize := func() int64 {
		var n int64
		es, _ := os.ReadDir(filepath.Join(dir, "data", "msgs"))
		for _, e := range es {
			if fi, err := os.Stat(filepath.Join(dir, "data", "msgs", e.Name())); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	before := storeSize()
	m, ok, err := ch.Get("rdq", false) // delivered, never acked
	if err != nil || !ok || string(m.Body) != "one" {
		t.Fatalf("get: %q %v %v", m.Body, ok, err)
	}
	// the delivery record is not fsynced, but it reaches the OS within
	// milliseconds; wait until it is in the file
	deadline := time.Now().Add(5 * time.Second)
	for storeSize() == before {
		if time.Now().After(deadline) {
			t.Fatal("the delivery was never recorded in the store")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.kill9()
	c.Close()
	srv = startServer(t, bin, dir, port)
	c, ch = dial(t, url)
	defer c.Close()
	want := []struct {
		body        string
		redelivered bool
	}{{"one", true}, {"two", false}, {"three", false}}
	for _, w := range want {
		m, ok, err := ch.Get("rdq", true)
		if err != nil || !ok {
			t.Fatalf("get %s: %v %v", w.body, ok, err)
		}
		if string(m.Body) != w.body || m.Redelivered != w.redelivered {
			t.Fatalf("got %q redelivered=%v, want %q redelivered=%v", m.Body, m.Redelivered, w.body, w.redelivered)
		}
	}
}

// TestSIGTERMIsOrderly stops a node with SIGTERM while a client is
// connected: the client gets connection.close 320 (CONNECTION_FORCED), the
// process exits cleanly, and after a restart the persistent messages are
// all there, none marked redelivered except the one delivered and unacked.
func TestSIGTERMIsOrderly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and signals real processes")
	}
	bin := buildServer(t)
	dir := t.TempDir()
	port := freePort(t)
	url := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
	srv := startServer(t, bin, dir, port)
	c, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	closed := c.NotifyClose(make(chan *amqp091.Error, 1))
	ch, _ := c.Channel()
	ch.QueueDeclare("termq", true, false, false, false, nil)
	ch.Confirm(false)
	const n = 2000
	var last *amqp091.DeferredConfirmation
	for i := 0; i < n; i++ {
		last, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "termq", false, false,
			amqp091.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("m%05d", i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !last.Wait() {
		t.Fatal("nacked")
	}
	if m, ok, _ := ch.Get("termq", false); !ok || string(m.Body) != "m00000" {
		t.Fatalf("get: %v %q", ok, m.Body)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 {
			t.Fatalf("client saw %v, want 320 CONNECTION_FORCED", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection.close after SIGTERM")
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			logb, _ := os.ReadFile(srv.log)
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logb)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("node still running 15 s after SIGTERM")
	}
	srv = startServer(t, bin, dir, port)
	c, ch = dial(t, url)
	defer c.Close()
	for i := 0; i < n; i++ {
		m, ok, err := ch.Get("termq", true)
		if err != nil || !ok {
			t.Fatalf("message %d missing after a clean restart: %v", i, err)
		}
		if want := fmt.Sprintf("m%05d", i); string(m.Body) != want || m.Redelivered != (i == 0) {
			t.Fatalf("got %q redelivered=%v, want %q redelivered=%v", m.Body, m.Redelivered, want, i == 0)
		}
	}
}

// TestKill9WithBacklogOnDisk runs the node with a small memory watermark,
// so most of a backlog's bodies live only on disk, kills it with SIGKILL
// while a consumer drains and acks, and checks after the restart that
// every confirmed message was either received or is still queued, in
// order, with its body intact.
func TestKill9WithBacklogOnDisk(t *testing.T) {
	bin, dir, port, url := setup(t)
	conf := filepath.Join(dir, "warren.conf")
	// the node is always above 1% of the watermark: queues keep only the
	// head of a backlog in memory (they would past 4,096 messages anyway)
	os.WriteFile(conf, []byte("vm_memory_high_watermark.absolute = 400MB\nvm_memory_high_watermark_paging_ratio = 0.01\n"), 0o644)
	srv := startServer(t, bin, dir, port, "--config", conf)
	c, ch := dial(t, url)
	ch.QueueDeclare("disk-backlog", true, false, false, false, nil)
	ch.Confirm(false)
	const n = 20000
	body := func(i int) []byte { return []byte(fmt.Sprintf("%06d|%s", i, strings.Repeat("b", 1000))) }
	var last *amqp091.DeferredConfirmation
	var err error
	for i := 0; i < n; i++ {
		last, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "disk-backlog", false, false,
			amqp091.Publishing{DeliveryMode: 2, Body: body(i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !last.Wait() {
		t.Fatal("nacked")
	}
	// drain part of it with acks, then kill
	cc, _ := c.Channel()
	cc.Qos(200, 0, false)
	ds, _ := cc.Consume("disk-backlog", "", false, false, false, false, nil)
	received := 0
	for d := range ds {
		if string(d.Body) != string(body(received)) {
			t.Fatalf("delivery %d: %q", received, d.Body[:6])
		}
		received++
		if received%50 == 0 {
			d.Ack(true)
		}
		if received == n/2 {
			break
		}
	}
	srv.kill9()
	c.Close()
	srv = startServer(t, bin, dir, port, "--config", conf)
	c, ch = dial(t, url)
	defer c.Close()
	// what comes back starts at or before the first unacked message and
	// runs in order to the end
	m, ok, err := ch.Get("disk-backlog", true)
	if err != nil || !ok {
		t.Fatalf("queue empty after restart: %v", err)
	}
	var first int
	fmt.Sscanf(string(m.Body[:6]), "%d", &first)
	if first > received-received%50 {
		t.Fatalf("first message after restart is %d, but only %d were acked", first, received-received%50)
	}
	next := first + 1
	for {
		m, ok, err := ch.Get("disk-backlog", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if string(m.Body) != string(body(next)) {
			t.Fatalf("after %d got %q", next-1, m.Body[:6])
		}
		next++
	}
	if next != n {
		t.Fatalf("recovered messages %d..%d, want up to %d", first, next-1, n-1)
	}
	logb, _ := os.ReadFile(srv.log)
	if !strings.Contains(string(logb), "paging threshold") {
		t.Fatalf("the node never paged: the test did not exercise bodies on disk\n%s", logb)
	}
}
