package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// buildServer builds warren-server into dir.
func buildServer(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "warren-server")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestQuorumQueueSurvivesSIGKILL: on a standalone node, every message a
// quorum queue confirmed is there after the process is killed with
// SIGKILL and started again, in order, and nothing else is.
func TestQuorumQueueSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a server process")
	}
	dir := t.TempDir()
	bin := buildServer(t, dir)
	cookie := filepath.Join(dir, "cookie")
	if err := os.WriteFile(cookie, []byte("a-cookie"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{name: "solo@localhost", amqp: freeAddr(t), dataDir: filepath.Join(dir, "data"), conf: filepath.Join(dir, "solo.conf")}
	if err := os.WriteFile(p.conf, []byte("listeners.tcp.default = "+p.amqp+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.log, err = os.Create(filepath.Join(dir, "solo.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(p.log.Name())
			t.Logf("log:\n%s", b)
		}
	})
	p.start(t, bin, cookie)
	ch, err := dialUntil(t, p).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("orders", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var confirmed []string
	pending := make([]*amqp091.DeferredConfirmation, 0, n)
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "orders", false, false, amqp091.Publishing{Body: []byte(fmt.Sprintf("m%03d", i)), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, dc)
	}
	for i, dc := range pending {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil || !ok {
			t.Fatalf("message %d not confirmed: %v %v", i, ok, err)
		}
		confirmed = append(confirmed, fmt.Sprintf("m%03d", i))
	}
	// one taken and acknowledged just before the kill: acks are not
	// confirmed to clients, so it may come back (as in RabbitMQ: at least
	// once), but nothing confirmed may be missing
	m, ok, err := ch.Get("orders", false)
	if err != nil || !ok || string(m.Body) != confirmed[0] {
		t.Fatalf("get: %q %v %v", m.Body, ok, err)
	}
	if err := ch.Ack(m.DeliveryTag, false); err != nil {
		t.Fatal(err)
	}
	// the ack is asynchronous: a queue.declare round trip on the same
	// channel is processed after it, and a passive declare counts what
	// the queue holds
	waitCount(t, ch, "orders", n-1)
	first := confirmed[0]
	confirmed = confirmed[1:]

	p.stop(syscall.SIGKILL)
	p.start(t, bin, cookie)
	ch2, err := dialUntil(t, p).Channel()
	if err != nil {
		t.Fatal(err)
	}
	qi, err := ch2.QueueDeclarePassive("orders", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Messages == len(confirmed)+1 {
		m, ok, err := ch2.Get("orders", true)
		if err != nil || !ok || string(m.Body) != first {
			t.Fatalf("after SIGKILL, the extra message is %q %v %v, want the acknowledged %s", m.Body, ok, err, first)
		}
		t.Logf("the message acknowledged just before SIGKILL came back (its removal had not committed)")
	}
	for i, want := range confirmed {
		m, ok, err := ch2.Get("orders", true)
		if err != nil || !ok {
			t.Fatalf("after SIGKILL, message %d of %d (%s) is missing: %v %v", i, len(confirmed), want, ok, err)
		}
		if string(m.Body) != want {
			t.Fatalf("after SIGKILL, message %d is %q, want %q", i, m.Body, want)
		}
	}
	if m, ok, _ := ch2.Get("orders", true); ok {
		t.Fatalf("after SIGKILL, an extra message %q", m.Body)
	}
}

// waitCount polls a passive declare until the queue holds n messages.
func waitCount(t *testing.T, ch *amqp091.Channel, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if qi.Messages == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s holds %d messages, want %d", q, qi.Messages, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
