package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/config"
)

func declare(t *testing.T, ch *amqp091.Channel, name string, args amqp091.Table) {
	t.Helper()
	if _, err := ch.QueueDeclare(name, false, false, false, false, args); err != nil {
		t.Fatalf("declare %s: %v", name, err)
	}
}

func messages(t *testing.T, ch *amqp091.Channel, q string) int {
	t.Helper()
	r, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Messages
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMessageTTLExpiresWithoutConsumer(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	declare(t, ch, "ttlq", amqp091.Table{"x-message-ttl": int32(50)})
	publish(t, ch, "", "ttlq", "a")
	// a per-message expiration shorter than the queue's, behind a longer one
	declare(t, ch, "perq", nil)
	ch.PublishWithContext(context.Background(), "", "perq", false, false, amqp091.Publishing{Expiration: "60000", Body: []byte("long")})
	ch.PublishWithContext(context.Background(), "", "perq", false, false, amqp091.Publishing{Expiration: "30", Body: []byte("short")})
	eventually(t, "queue TTL expiry", func() bool { return messages(t, ch, "ttlq") == 0 })
	eventually(t, "per-message expiry behind the head", func() bool { return messages(t, ch, "perq") == 1 })
	m, ok, _ := ch.Get("perq", true)
	if !ok || string(m.Body) != "long" {
		t.Fatalf("wrong survivor %q", m.Body)
	}
}

func TestInvalidExpirationRefused(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	cl := ch.NotifyClose(make(chan *amqp091.Error, 1))
	ch.PublishWithContext(context.Background(), "", "x", false, false, amqp091.Publishing{Expiration: "soon"})
	if e := waitClose(t, cl); e == nil || e.Code != 406 {
		t.Fatalf("got %v", e)
	}
}

func TestTTLZeroDeliversOnlyToReadyConsumer(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	declare(t, ch, "z", amqp091.Table{"x-message-ttl": int32(0)})
	publish(t, ch, "", "z", "dropped")
	time.Sleep(20 * time.Millisecond)
	if n := messages(t, ch, "z"); n != 0 {
		t.Fatalf("ttl 0 message kept (%d)", n)
	}
	d, _ := ch.Consume("z", "", true, false, false, false, nil)
	publish(t, ch, "", "z", "delivered")
	if m := recv(t, d); string(m.Body) != "delivered" {
		t.Fatal(string(m.Body))
	}
}

func TestQueueExpires(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	declare(t, ch, "exp", amqp091.Table{"x-expires": int32(600)})
	// a passive declare renews the lease (as in RabbitMQ): at 350 ms and
	// 700 ms the queue is still there, then it goes 600 ms after the last use
	for i := 0; i < 2; i++ {
		time.Sleep(350 * time.Millisecond)
		if _, err := ch.QueueDeclarePassive("exp", false, false, false, false, nil); err != nil {
			t.Fatalf("queue expired although used %d ms before: %v", 350, err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	_, err := ch.QueueDeclarePassive("exp", false, false, false, false, nil)
	amqpErr(t, err, 404, true)
}

func TestMaxLengthOverflowModes(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	declare(t, ch, "dh", amqp091.Table{"x-max-length": int32(2)})
	for i := 0; i < 5; i++ {
		publish(t, ch, "", "dh", fmt.Sprint(i))
	}
	time.Sleep(20 * time.Millisecond)
	m1, _, _ := ch.Get("dh", true)
	m2, _, _ := ch.Get("dh", true)
	if string(m1.Body)+string(m2.Body) != "34" {
		t.Fatalf("drop-head kept %q %q", m1.Body, m2.Body)
	}
	declare(t, ch, "bytes", amqp091.Table{"x-max-length-bytes": int32(10)})
	publish(t, ch, "", "bytes", "12345")
	publish(t, ch, "", "bytes", "67890")
	publish(t, ch, "", "bytes", "abcde")
	time.Sleep(20 * time.Millisecond)
	if n := messages(t, ch, "bytes"); n != 2 {
		t.Fatalf("max-length-bytes kept %d", n)
	}

	cch := channel(t, c)
	cch.Confirm(false)
	acks := cch.NotifyPublish(make(chan amqp091.Confirmation, 10))
	declare(t, cch, "rp", amqp091.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	publish(t, cch, "", "rp", "kept")
	publish(t, cch, "", "rp", "refused")
	for i, want := range []bool{true, false} {
		select {
		case cf := <-acks:
			if cf.Ack != want || cf.DeliveryTag != uint64(i+1) {
				t.Fatalf("confirm %d: %+v, want ack=%v", i+1, cf, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no confirm")
		}
	}
	if m, _, _ := cch.Get("rp", true); string(m.Body) != "kept" {
		t.Fatalf("reject-publish kept %q", m.Body)
	}
}

func TestDeadLetteringAndXDeath(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.ExchangeDeclare("dlx1", "fanout", false, false, false, false, nil))
	must(ch.ExchangeDeclare("dlx2", "direct", false, false, false, false, nil))
	// work → (reject) → dlx1 → hold (ttl 30) → (expired) → dlx2 with key "final" → final
	declare(t, ch, "work", amqp091.Table{"x-dead-letter-exchange": "dlx1"})
	declare(t, ch, "hold", amqp091.Table{"x-message-ttl": int32(30), "x-dead-letter-exchange": "dlx2", "x-dead-letter-routing-key": "final"})
	declare(t, ch, "final", nil)
	must(ch.QueueBind("hold", "", "dlx1", false, nil))
	must(ch.QueueBind("final", "final", "dlx2", false, nil))
	ch.PublishWithContext(context.Background(), "amq.direct", "", false, false, amqp091.Publishing{Body: []byte("x")})
	must(ch.QueueBind("work", "rk", "amq.direct", false, nil))
	ch.PublishWithContext(context.Background(), "amq.direct", "rk", false, false, amqp091.Publishing{Body: []byte("payload"), Expiration: "60000", Headers: amqp091.Table{"keep": "me"}})
	d, _ := ch.Consume("work", "", false, false, false, false, nil)
	m := recv(t, d)
	m.Reject(false)
	var got amqp091.Delivery
	eventually(t, "message in final", func() bool {
		var ok bool
		got, ok, _ = ch.Get("final", true)
		return ok
	})
	if string(got.Body) != "payload" || got.Headers["keep"] != "me" || got.RoutingKey != "final" || got.Exchange != "dlx2" {
		t.Fatalf("dead-lettered message: %+v", got)
	}
	if got.Expiration != "" {
		t.Fatalf("expiration kept: %q", got.Expiration)
	}
	deaths, ok := got.Headers["x-death"].([]interface{})
	if !ok || len(deaths) != 2 {
		t.Fatalf("x-death: %#v", got.Headers["x-death"])
	}
	first := deaths[0].(amqp091.Table) // most recent first
	second := deaths[1].(amqp091.Table)
	check := func(tb amqp091.Table, queue, reason, exchange string, keys []string) {
		t.Helper()
		if tb["queue"] != queue || tb["reason"] != reason || tb["exchange"] != exchange || tb["count"] != int64(1) {
			t.Fatalf("x-death entry %#v", tb)
		}
		rk, _ := tb["routing-keys"].([]interface{})
		if len(rk) != len(keys) || rk[0] != keys[0] {
			t.Fatalf("routing-keys %#v", tb["routing-keys"])
		}
		if ts, ok := tb["time"].(time.Time); !ok || time.Since(ts) > time.Minute {
			t.Fatalf("time %#v", tb["time"])
		}
	}
	check(first, "hold", "expired", "dlx1", []string{"rk"})
	check(second, "work", "rejected", "amq.direct", []string{"rk"})
	if _, has := second["original-expiration"]; has {
		t.Fatal("original-expiration on a rejection entry")
	}
	if got.Headers["x-first-death-reason"] != "rejected" || got.Headers["x-first-death-queue"] != "work" || got.Headers["x-first-death-exchange"] != "amq.direct" {
		t.Fatalf("x-first-death-*: %#v", got.Headers)
	}
}

func TestDeadLetterCountIncrements(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	ch.ExchangeDeclare("back", "fanout", false, false, false, false, nil)
	declare(t, ch, "loop", amqp091.Table{"x-dead-letter-exchange": "back"})
	ch.QueueBind("loop", "", "back", false, nil)
	publish(t, ch, "", "loop", "m")
	d, _ := ch.Consume("loop", "", false, false, false, false, nil)
	recv(t, d).Reject(false) // rejection loops are allowed
	m := recv(t, d)
	m.Reject(false)
	m = recv(t, d)
	deaths := m.Headers["x-death"].([]interface{})
	if len(deaths) != 1 || deaths[0].(amqp091.Table)["count"] != int64(2) {
		t.Fatalf("x-death after two rejections: %#v", deaths)
	}
	m.Ack(false)
}

func TestPriorityQueue(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	declare(t, ch, "pq", amqp091.Table{"x-max-priority": int32(5)})
	for i, p := range []uint8{1, 9, 3, 5, 0, 5} {
		ch.PublishWithContext(context.Background(), "", "pq", false, false, amqp091.Publishing{Priority: p, Body: []byte(fmt.Sprint(i))})
	}
	time.Sleep(20 * time.Millisecond)
	var order string
	for {
		m, ok, _ := ch.Get("pq", true)
		if !ok {
			break
		}
		order += string(m.Body)
	}
	// 9 is capped to 5: FIFO among the three at 5, then 3, 1, 0
	if order != "135204" {
		t.Fatalf("priority order %q", order)
	}
}

func TestSingleActiveConsumer(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch1, ch2 := channel(t, c), channel(t, c)
	declare(t, ch1, "sac", amqp091.Table{"x-single-active-consumer": true})
	d1, _ := ch1.Consume("sac", "first", false, false, false, false, nil)
	d2, _ := ch2.Consume("sac", "second", false, false, false, false, nil)
	for i := 0; i < 3; i++ {
		publish(t, ch1, "", "sac", fmt.Sprint(i))
	}
	recv(t, d1)
	m := recv(t, d1)
	recv(t, d1)
	noRecv(t, d2, 50*time.Millisecond)
	_ = m
	ch1.Close() // unacked go back, to the next consumer, in order
	for i := 0; i < 3; i++ {
		got := recv(t, d2)
		if string(got.Body) != fmt.Sprint(i) || !got.Redelivered {
			t.Fatalf("takeover delivery %d: %q redelivered=%v", i, got.Body, got.Redelivered)
		}
	}
}

func TestPolicyAppliesAndArgumentsWin(t *testing.T) {
	b, url := node(t)
	ch := channel(t, dial(t, url))
	declare(t, ch, "pol-a", nil)
	declare(t, ch, "pol-b", amqp091.Table{"x-max-length": int32(3)})
	if err := setPolicy(b, "lim", "^pol-", map[string]any{"max-length": 1.0}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		publish(t, ch, "", "pol-a", fmt.Sprint(i))
		publish(t, ch, "", "pol-b", fmt.Sprint(i))
	}
	time.Sleep(20 * time.Millisecond)
	if n := messages(t, ch, "pol-a"); n != 1 {
		t.Fatalf("policy max-length: %d", n)
	}
	if n := messages(t, ch, "pol-b"); n != 1 {
		t.Fatalf("lower of argument and policy max-length must win: %d", n)
	}
}

func TestDirectReplyTo(t *testing.T) {
	_, url := node(t)
	server := channel(t, dial(t, url))
	declare(t, server, "rpc", nil)
	reqs, _ := server.Consume("rpc", "", true, false, false, false, nil)
	client := channel(t, dial(t, url))
	replies, err := client.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	client.PublishWithContext(context.Background(), "", "rpc", false, false, amqp091.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "c1", Body: []byte("ping")})
	req := recv(t, reqs)
	if req.ReplyTo == "amq.rabbitmq.reply-to" || len(req.ReplyTo) <= len("amq.rabbitmq.reply-to.") {
		t.Fatalf("reply_to not rewritten: %q", req.ReplyTo)
	}
	server.PublishWithContext(context.Background(), "", req.ReplyTo, false, false, amqp091.Publishing{CorrelationId: req.CorrelationId, Body: []byte("pong")})
	rep := recv(t, replies)
	if string(rep.Body) != "pong" || rep.CorrelationId != "c1" {
		t.Fatalf("reply %+v", rep)
	}
	// misuse: publishing with reply_to set but no reply consumer
	other := channel(t, dial(t, url))
	cl := other.NotifyClose(make(chan *amqp091.Error, 1))
	other.PublishWithContext(context.Background(), "", "rpc", false, false, amqp091.Publishing{ReplyTo: "amq.rabbitmq.reply-to"})
	if e := waitClose(t, cl); e == nil || e.Code != 406 {
		t.Fatalf("no reply consumer: %v", e)
	}
	// misuse: consuming the pseudo-queue with acks
	other = channel(t, dial(t, url))
	_, err = other.Consume("amq.rabbitmq.reply-to", "", false, false, false, false, nil)
	amqpErr(t, err, 406, true)
}

func TestMemoryAlarmBlocksPublishers(t *testing.T) {
	b, url := node(t, func(c *config.Config) { c.VMMemoryHighWatermark = 0.99 })
	c := dial(t, url)
	blocked := c.NotifyBlocked(make(chan amqp091.Blocking, 4))
	b.SetMemoryHighWatermark(1e-12) // any resident memory is above it
	select {
	case bl := <-blocked:
		if !bl.Active {
			t.Fatalf("got %+v", bl)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.blocked while the memory alarm is on")
	}
	if len(b.Alarms()) == 0 {
		t.Fatal("no alarm reported")
	}
	// a consumer on another connection keeps draining
	consumer := channel(t, dial(t, url))
	declare(t, consumer, "alarm-q", nil)
	d, _ := consumer.Consume("alarm-q", "", true, false, false, false, nil)
	pub := channel(t, c)
	pub.Confirm(false)
	acks := pub.NotifyPublish(make(chan amqp091.Confirmation, 1))
	publish(t, pub, "", "alarm-q", "held")
	select {
	case <-acks:
		t.Fatal("publish confirmed while publishers are blocked")
	case <-time.After(200 * time.Millisecond):
	}
	b.SetMemoryHighWatermark(0.99) // clears the alarm
	select {
	case bl := <-blocked:
		if bl.Active {
			t.Fatalf("got %+v", bl)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.unblocked after the alarm cleared")
	}
	if m := recv(t, d); string(m.Body) != "held" {
		t.Fatal(string(m.Body))
	}
}

// TestTransientMessagesPagedOutUnderMemoryPressure sets the paging ratio
// so low that the node is always above it (but below the alarm): a backlog
// of transient messages leaves memory for the paging store, and a consumer
// still gets every message, in order.
func TestTransientMessagesPagedOutUnderMemoryPressure(t *testing.T) {
	b, url := node(t, func(c *config.Config) {
		c.VMMemoryHighWatermark = 0.99
		c.VMMemoryHighWatermarkPagingRatio = 1e-9
	})
	ch := channel(t, dial(t, url))
	declare(t, ch, "paged-q", nil)
	ch.Confirm(false)
	acks := ch.NotifyPublish(make(chan amqp091.Confirmation, 20000))
	const n = 5000
	body := func(i int) []byte { return []byte(fmt.Sprintf("%06d-%s", i, strings.Repeat("p", 1000))) }
	for i := 0; i < n; i++ {
		if err := ch.PublishWithContext(context.Background(), "", "paged-q", false, false, amqp091.Publishing{Body: body(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if a := <-acks; !a.Ack {
			t.Fatal("nacked")
		}
	}
	b.SetMemoryHighWatermark(0.99) // runs a memory check now
	if used := b.QueueBodyBytes(); used > 200*1010 {
		t.Fatalf("%d bytes of bodies still in memory under pressure", used)
	}
	ch.Qos(500, 0, false)
	ds, err := ch.Consume("paged-q", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		m := recv(t, ds)
		if !bytes.Equal(m.Body, body(i)) {
			t.Fatalf("message %d: %q", i, m.Body[:7])
		}
		m.Ack(false)
	}
}
