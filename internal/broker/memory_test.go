package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/amqp"
)

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestGetRejectLoopWithoutReadingIsBounded: basic.get + basic.reject
// (requeue) of one large message, in a loop, by a client that never reads
// its socket. Warren used to copy the body into an unbounded output buffer
// per get (RSS +1.4 GiB for 16 MiB bodies); gets now wait for the writer
// as deliveries do.
func TestGetRejectLoopWithoutReadingIsBounded(t *testing.T) {
	b, url := node(t)
	const size = 4 << 20
	const loops = 60 // 240 MiB if every get were buffered
	ch := channel(t, dial(t, url))
	if _, err := ch.QueueDeclare("big", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	conf := ch.NotifyPublish(make(chan amqp091.Confirmation, 1))
	if err := ch.PublishWithContext(context.Background(), "", "big", false, false, amqp091.Publishing{Body: bytes.Repeat([]byte("m"), size)}); err != nil {
		t.Fatal(err)
	}
	<-conf
	before := heapInUse()

	c := rawDial(t, b.Addrs()[0].String())
	c.open(0)
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	var out []byte
	for i := 1; i <= loops; i++ {
		out, _ = amqp.AppendMethodFrame(out, 1, &amqp.BasicGet{Queue: "big"})
		out, _ = amqp.AppendMethodFrame(out, 1, &amqp.BasicReject{DeliveryTag: uint64(i), Requeue: true})
	}
	if _, err := c.nc.Write(out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the old code buffered all of it by now
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MiB", grown>>20)
	if grown > 48<<20 {
		t.Fatalf("heap grew by %d MiB for a client that reads nothing (bound: 48 MiB)", grown>>20)
	}
	// others are unaffected
	other := channel(t, dial(t, url))
	if _, err := other.QueueDeclare("other", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	// and the stuck connection still ends when its peer goes
	n := len(b.Connections())
	c.nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Connections()) >= n {
		if time.Now().After(deadline) {
			t.Fatal("the blocked connection did not end after its socket closed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// or when the server closes it (user deleted, shutdown): the close must
	// not wait forever on a peer that reads nothing, nor process the gets
	// still buffered
	c = rawDial(t, b.Addrs()[0].String())
	c.open(0)
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	before = heapInUse()
	if _, err := c.nc.Write(out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	n = len(b.Connections())
	local := c.nc.LocalAddr().String()
	for _, sc := range b.Connections() {
		if sc.RemoteAddr().String() == local {
			go sc.Close(amqp.ConnectionForced, "test")
		}
	}
	deadline = time.Now().Add(15 * time.Second)
	for len(b.Connections()) >= n {
		if time.Now().After(deadline) {
			t.Fatal("a server-side close of the blocked connection did not end it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if grown := int64(heapInUse()) - int64(before); grown > 48<<20 {
		t.Fatalf("heap grew by %d MiB while closing a connection that reads nothing", grown>>20)
	}
}

// TestDeclaredBodySizeNotAllocatedUpFront: content headers announcing
// 128 MiB followed by 1,000 bytes, on 12 channels, used to allocate
// 12 x 128 MiB at once.
func TestDeclaredBodySizeNotAllocatedUpFront(t *testing.T) {
	b, _ := node(t)
	before := heapInUse()
	for conn := 0; conn < 2; conn++ { // 2 connections x 6 channels
		c := rawDial(t, b.Addrs()[0].String())
		c.open(0)
		var out []byte
		for ch := uint16(1); ch <= 6; ch++ {
			out, _ = amqp.AppendMethodFrame(out, ch, &amqp.ChannelOpen{})
			out, _ = amqp.AppendMethodFrame(out, ch, &amqp.BasicPublish{Exchange: "amq.fanout"})
			out = amqp.AppendHeaderFrame(out, ch, amqp.ClassBasic, 128<<20, nil)
			out = amqp.AppendBodyFrames(out, ch, make([]byte, 1000), 0)
		}
		c.nc.Write(out)
		for i := 0; i < 6; i++ {
			if m, ok := c.recv().(*amqp.ChannelOpenOk); !ok {
				t.Fatalf("no channel.open-ok: %#v", m)
			}
		}
		// a round trip on another channel: everything before it is read
		c.send(7, &amqp.ChannelOpen{})
		if m, ok := c.recv().(*amqp.ChannelOpenOk); !ok {
			t.Fatalf("no channel.open-ok: %#v", m)
		}
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MiB", grown>>20)
	if grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB for 12 KB of body (bound: 32 MiB)", grown>>20)
	}
}

// TestManyExclusiveQueuesOnOneFanout: thousands of exclusive queues bound
// to one fanout exchange (the issue used 20,000; set WARREN_TEST_QUEUES).
// Closing their connection deleted them holding the lock every other
// declare needs, for minutes; now other declares get in between.
// (Binding cost itself is covered by exchange.TestManyBindingsAreCheap.)
func TestManyExclusiveQueuesOnOneFanout(t *testing.T) {
	b, url := node(t)
	n := 3000
	if s := os.Getenv("WARREN_TEST_QUEUES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	c := dial(t, url)
	ch := channel(t, c)
	if err := ch.ExchangeDeclare("fan", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("ex-%d", i)
		if _, err := ch.QueueDeclare(name, false, false, true, true, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(name, "", "fan", true, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ch.QueueDeclare("sync", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("declared and bound %d in %v", n, time.Since(t0))
	vh := b.VHost("/")
	if got := len(vh.Queues()); got != n+1 {
		t.Fatalf("%d queues, want %d", got, n+1)
	}

	other := channel(t, dial(t, url))
	t1 := time.Now()
	// close-ok comes once the exclusive queues are gone (as RabbitMQ), so
	// the close runs beside the declare below
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	defer func() { <-closed }()
	// wait for the cleanup to be under way, then declare: the declare
	// must not wait for the whole cleanup
	for len(vh.Queues()) > n-10 {
		if time.Since(t1) > 60*time.Second {
			t.Fatal("cleanup did not start within 60s")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := other.QueueDeclare("other", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if left := len(vh.Queues()); left <= 2 {
		t.Fatalf("a declare had to wait for the cleanup of all %d exclusive queues", n)
	}
	for len(vh.Queues()) > 2 { // "sync" and "other" stay
		if time.Since(t1) > 120*time.Second {
			t.Fatalf("cleanup of %d exclusive queues took over 120s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("cleanup took %v", time.Since(t1))
}

// TestDirectReplyToWaitsForRequester: replies to a direct reply-to
// requester that never reads its socket used to pile up in its output
// buffer; the responder now waits (RabbitMQ's credit flow).
func TestDirectReplyToWaitsForRequester(t *testing.T) {
	b, url := node(t)
	rch := channel(t, dial(t, url))
	if _, err := rch.QueueDeclare("req", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, b.Addrs()[0].String())
	c.open(0)
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	c.send(1, &amqp.BasicConsume{Queue: "amq.rabbitmq.reply-to", NoAck: true})
	c.recv()
	p := amqp.Properties{ReplyTo: "amq.rabbitmq.reply-to"}
	props, _ := p.Append(nil)
	c.send(1, &amqp.BasicPublish{RoutingKey: "req"})
	c.nc.Write(amqp.AppendHeaderFrame(nil, 1, amqp.ClassBasic, 0, props))
	var req amqp091.Delivery
	for i := 0; ; i++ {
		m, ok, err := rch.Get("req", true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			req = m
			break
		}
		if i > 500 {
			t.Fatal("no request")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := heapInUse()
	body := bytes.Repeat([]byte("r"), 4<<20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 60; i++ { // 240 MiB if all were buffered
			if rch.PublishWithContext(context.Background(), "", req.ReplyTo, false, false, amqp091.Publishing{Body: body}) != nil {
				return
			}
		}
	}()
	time.Sleep(4 * time.Second)
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MiB", grown>>20)
	if grown > 40<<20 {
		t.Fatalf("heap grew by %d MiB buffering replies for a requester that reads nothing", grown>>20)
	}
	// once the requester goes, the responder is released
	c.nc.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the responder stayed blocked after the requester left")
	}
}
