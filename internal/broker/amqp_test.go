package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/testenv"
)

func TestHandshakeAndServerProperties(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	p := c.Properties
	if p["product"] != "Warren" {
		t.Errorf("product = %v", p["product"])
	}
	caps, _ := p["capabilities"].(amqp091.Table)
	for _, k := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify", "connection.blocked", "consumer_priorities", "authentication_failure_close", "per_consumer_qos", "direct_reply_to"} {
		if caps[k] != true {
			t.Errorf("capability %s = %v", k, caps[k])
		}
	}
	if c.Config.ChannelMax != 2047 || c.Config.FrameSize != 131072 {
		t.Errorf("tuned channel_max=%d frame_max=%d", c.Config.ChannelMax, c.Config.FrameSize)
	}
	if c.Config.Heartbeat != 10*time.Second {
		t.Errorf("heartbeat %v, want the lower non-zero value 10s", c.Config.Heartbeat)
	}
}

func TestBadCredentials(t *testing.T) {
	_, url := node(t)
	// amqp091-go does not announce authentication_failure_close: it sees
	// the socket close and reports ErrCredentials (TestCompatLoginFailure)
	_, err := amqp091.Dial(strings.Replace(url, "guest:guest", "guest:wrong", 1))
	if !errors.Is(err, amqp091.ErrCredentials) {
		t.Fatalf("bad password: %v", err)
	}
	// AMQPLAIN too
	_, err = amqp091.DialConfig(url, amqp091.Config{SASL: []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: "guest", Password: "nope"}}})
	if !errors.Is(err, amqp091.ErrCredentials) {
		t.Fatalf("bad AMQPLAIN password: %v", err)
	}
	c, err := amqp091.DialConfig(url, amqp091.Config{SASL: []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: "guest", Password: "guest"}}})
	if err != nil {
		t.Fatalf("AMQPLAIN login: %v", err)
	}
	c.Close()
}

func TestGuestOnlyFromLoopback(t *testing.T) {
	// Listen on all interfaces and connect through a non-loopback address of
	// this host if it has one; otherwise check the rule with a user that is
	// configured loopback-only and ensure loopback still works.
	_, url := node(t, func(c *config.Config) { c.AMQPListeners = []string{"0.0.0.0:0"} })
	port := url[strings.LastIndex(url, ":")+1 : len(url)-1]
	var ext string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			ext = ipn.IP.String()
			break
		}
	}
	if c, err := amqp091.Dial("amqp://guest:guest@127.0.0.1:" + port + "/"); err != nil {
		t.Fatalf("guest from loopback refused: %v", err)
	} else {
		c.Close()
	}
	if ext == "" {
		testenv.Skip(t, "no non-loopback IPv4 address on this host")
	}
	_, err := amqp091.Dial("amqp://guest:guest@" + ext + ":" + port + "/")
	// a refused login closes the socket for clients that do not announce
	// authentication_failure_close (amqp091-go): ErrCredentials
	if !errors.Is(err, amqp091.ErrCredentials) {
		t.Fatalf("guest from %s: want ErrCredentials, got %v", ext, err)
	}
}

func TestBadProtocolHeader(t *testing.T) {
	b, _ := node(t)
	nc, err := net.Dial("tcp", b.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("AMQP\x00\x00\x08\x00"))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, _ := nc.Read(buf)
	if !bytes.Equal(buf[:n], []byte("AMQP\x00\x00\x09\x01")) {
		t.Fatalf("got %q, want our protocol header", buf[:n])
	}
	if _, err := nc.Read(buf); err == nil {
		t.Fatal("connection still open after a bad header")
	}
}

func TestVHostAccess(t *testing.T) {
	_, url := node(t)
	_, err := amqp091.Dial(url + "no-such-vhost")
	amqpErr(t, err, 530, true)
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(q.Name, "amq.gen-") {
		t.Fatalf("server-named queue %q", q.Name)
	}
	ts := time.Unix(1700000000, 0)
	pub := amqp091.Publishing{
		ContentType: "text/plain", ContentEncoding: "utf-8",
		Headers: amqp091.Table{
			"s": "str", "i": int32(-5), "l": int64(1 << 40), "b": true, "f": 1.5,
			"nested": amqp091.Table{"x": "y"}, "arr": []interface{}{"a", int32(1)},
			"bytes": []byte{0, 1, 2}, "dec": amqp091.Decimal{Scale: 2, Value: 12345}, "ts": ts,
		},
		DeliveryMode: 2, Priority: 3, CorrelationId: "corr", ReplyTo: "rt", Expiration: "60000",
		MessageId: "mid", Timestamp: ts, Type: "t", UserId: "guest", AppId: "app",
		Body: []byte("hello"),
	}
	if err := ch.PublishWithContext(context.Background(), "", q.Name, false, false, pub); err != nil {
		t.Fatal(err)
	}
	d, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, d)
	if string(m.Body) != "hello" || m.ContentType != "text/plain" || m.CorrelationId != "corr" || m.Priority != 3 ||
		m.DeliveryMode != 2 || m.Expiration != "60000" || !m.Timestamp.Equal(ts) || m.AppId != "app" || m.UserId != "guest" {
		t.Fatalf("delivery differs: %+v", m)
	}
	if m.Headers["s"] != "str" || m.Headers["i"] != int32(-5) || m.Headers["l"] != int64(1<<40) ||
		fmt.Sprint(m.Headers["nested"]) != fmt.Sprint(amqp091.Table{"x": "y"}) || !bytes.Equal(m.Headers["bytes"].([]byte), []byte{0, 1, 2}) ||
		m.Headers["dec"] != (amqp091.Decimal{Scale: 2, Value: 12345}) {
		t.Fatalf("headers differ: %#v", m.Headers)
	}
	if m.RoutingKey != q.Name || m.Exchange != "" || m.Redelivered {
		t.Fatalf("envelope: %+v", m)
	}
}

func TestLargeMessageSpansFrames(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	q, _ := ch.QueueDeclare("big", false, false, false, false, nil)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	if err := ch.PublishWithContext(context.Background(), "", q.Name, false, false, amqp91(body)); err != nil {
		t.Fatal(err)
	}
	m, ok, err := ch.Get(q.Name, true)
	if err != nil || !ok || !bytes.Equal(m.Body, body) {
		t.Fatalf("get: ok=%v err=%v len=%d", ok, err, len(m.Body))
	}
}

func amqp91(b []byte) amqp091.Publishing { return amqp091.Publishing{Body: b} }

func TestExchangeTypes(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	mk := func(name string) <-chan amqp091.Delivery {
		if _, err := ch.QueueDeclare(name, false, true, false, false, nil); err != nil {
			t.Fatal(err)
		}
		d, err := ch.Consume(name, "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, x := range [][2]string{{"d", "direct"}, {"f", "fanout"}, {"t", "topic"}, {"h", "headers"}} {
		if err := ch.ExchangeDeclare(x[0], x[1], false, true, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	q1, q2 := mk("q1"), mk("q2")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.QueueBind("q1", "k1", "d", false, nil))
	must(ch.QueueBind("q2", "", "f", false, nil))
	must(ch.QueueBind("q1", "", "f", false, nil))
	must(ch.QueueBind("q1", "a.*.c", "t", false, nil))
	must(ch.QueueBind("q2", "a.#", "t", false, nil))
	must(ch.QueueBind("q1", "", "h", false, amqp091.Table{"x-match": "any", "k": "v", "n": int32(1)}))
	must(ch.QueueBind("q2", "", "h", false, amqp091.Table{"x-match": "all", "k": "v", "n": int32(1)}))

	publish(t, ch, "d", "k1", "direct")
	if m := recv(t, q1); string(m.Body) != "direct" {
		t.Fatal(string(m.Body))
	}
	noRecv(t, q2, 50*time.Millisecond)
	publish(t, ch, "f", "whatever", "fanout")
	recv(t, q1)
	recv(t, q2)
	publish(t, ch, "t", "a.b.c", "topic1")
	recv(t, q1)
	recv(t, q2)
	publish(t, ch, "t", "a.b.b.c", "topic2")
	if m := recv(t, q2); string(m.Body) != "topic2" {
		t.Fatal(string(m.Body))
	}
	noRecv(t, q1, 50*time.Millisecond)
	ch.PublishWithContext(context.Background(), "h", "", false, false, amqp091.Publishing{Headers: amqp091.Table{"k": "v"}, Body: []byte("h1")})
	if m := recv(t, q1); string(m.Body) != "h1" {
		t.Fatal(string(m.Body))
	}
	noRecv(t, q2, 50*time.Millisecond)
	ch.PublishWithContext(context.Background(), "h", "", false, false, amqp091.Publishing{Headers: amqp091.Table{"k": "v", "n": int32(1)}, Body: []byte("h2")})
	recv(t, q1)
	recv(t, q2)
}

func TestExchangeToExchangeAndAlternate(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.ExchangeDeclare("src", "topic", false, false, false, false, amqp091.Table{"alternate-exchange": "ae"}))
	must(ch.ExchangeDeclare("dst", "fanout", false, false, false, false, nil))
	must(ch.ExchangeDeclare("ae", "fanout", false, false, false, false, nil))
	_, err := ch.QueueDeclare("viae2e", false, false, false, false, nil)
	must(err)
	_, err = ch.QueueDeclare("unrouted", false, false, false, false, nil)
	must(err)
	must(ch.ExchangeBind("dst", "x.#", "src", false, nil))
	must(ch.QueueBind("viae2e", "", "dst", false, nil))
	must(ch.QueueBind("unrouted", "", "ae", false, nil))
	publish(t, ch, "src", "x.y", "one")
	publish(t, ch, "src", "nomatch", "two")
	time.Sleep(20 * time.Millisecond)
	m, ok, _ := ch.Get("viae2e", true)
	if !ok || string(m.Body) != "one" {
		t.Fatalf("e2e: %v %q", ok, m.Body)
	}
	m, ok, _ = ch.Get("unrouted", true)
	if !ok || string(m.Body) != "two" {
		t.Fatalf("alternate exchange: %v %q", ok, m.Body)
	}
	must(ch.ExchangeUnbind("dst", "x.#", "src", false, nil))
	publish(t, ch, "src", "x.y", "three")
	time.Sleep(20 * time.Millisecond)
	if _, ok, _ := ch.Get("viae2e", true); ok {
		t.Fatal("routed after exchange.unbind")
	}
}

func TestExchangeErrors(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	cases := []struct {
		name string
		fn   func(ch *amqp091.Channel) error
		code int
	}{
		{"passive missing", func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclarePassive("nope", "direct", false, false, false, false, nil)
		}, 404},
		{"amq prefix", func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare("amq.mine", "direct", false, false, false, false, nil)
		}, 403},
		{"redeclare other type", func(ch *amqp091.Channel) error {
			if err := ch.ExchangeDeclare("x1", "direct", false, false, false, false, nil); err != nil {
				return err
			}
			return ch.ExchangeDeclare("x1", "fanout", false, false, false, false, nil)
		}, 406},
		{"redeclare other durable", func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare("x1", "direct", true, false, false, false, nil)
		}, 406},
		{"delete if-unused", func(ch *amqp091.Channel) error {
			ch.QueueDeclare("bq", false, false, false, false, nil)
			ch.QueueBind("bq", "k", "x1", false, nil)
			return ch.ExchangeDelete("x1", true, false)
		}, 406},
		{"publish to missing exchange", func(ch *amqp091.Channel) error {
			cl := ch.NotifyClose(make(chan *amqp091.Error, 1))
			ch.PublishWithContext(context.Background(), "nope", "k", false, false, amqp91(nil))
			return waitClose(t, cl)
		}, 404},
		{"bind to missing exchange", func(ch *amqp091.Channel) error { return ch.QueueBind("bq", "k", "nope", false, nil) }, 404},
		{"bind missing queue", func(ch *amqp091.Channel) error { return ch.QueueBind("nope", "k", "x1", false, nil) }, 404},
		{"publish to internal", func(ch *amqp091.Channel) error {
			if err := ch.ExchangeDeclare("int", "direct", false, false, true, false, nil); err != nil {
				return err
			}
			cl := ch.NotifyClose(make(chan *amqp091.Error, 1))
			ch.PublishWithContext(context.Background(), "int", "k", false, false, amqp91(nil))
			return waitClose(t, cl)
		}, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := channel(t, c)
			amqpErr(t, tc.fn(ch), tc.code, true)
		})
	}
	// the connection survived every channel error
	ch := channel(t, c)
	if err := ch.ExchangeDeclare("x2", "topic", false, false, false, false, nil); err != nil {
		t.Fatalf("connection unusable after channel errors: %v", err)
	}
	// unknown exchange type is a connection error (503)
	cl := c.NotifyClose(make(chan *amqp091.Error, 1))
	err := ch.ExchangeDeclare("x3", "nonsense", false, false, false, false, nil)
	amqpErr(t, err, 503, true)
	if e := waitClose(t, cl); e == nil || e.Code != 503 {
		t.Fatalf("connection close: %v", e)
	}
}

func TestQueueErrorsAndExclusive(t *testing.T) {
	_, url := node(t)
	c1, c2 := dial(t, url), dial(t, url)
	ch1 := channel(t, c1)
	if _, err := ch1.QueueDeclare("ex", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	ch2 := channel(t, c2)
	_, err := ch2.QueueDeclare("ex", false, false, true, false, nil)
	amqpErr(t, err, 405, true)
	ch2 = channel(t, c2)
	_, err = ch2.Consume("ex", "", true, false, false, false, nil)
	amqpErr(t, err, 405, true)

	ch2 = channel(t, c2)
	_, err = ch2.QueueDeclarePassive("missing", false, false, false, false, nil)
	amqpErr(t, err, 404, true)
	ch2 = channel(t, c2)
	ch2.QueueDeclare("args", false, false, false, false, amqp091.Table{"x-max-length": int32(5)})
	_, err = ch2.QueueDeclare("args", false, false, false, false, amqp091.Table{"x-max-length": int32(6)})
	amqpErr(t, err, 406, true)
	ch2 = channel(t, c2)
	_, err = ch2.QueueDeclare("args", true, false, false, false, amqp091.Table{"x-max-length": int32(5)})
	amqpErr(t, err, 406, true)
	ch2 = channel(t, c2)
	_, err = ch2.QueueDeclare("badttl", false, false, false, false, amqp091.Table{"x-message-ttl": "abc"})
	amqpErr(t, err, 406, true)
	ch2 = channel(t, c2)
	_, err = ch2.QueueDeclare("quorum", false, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	amqpErr(t, err, 406, true) // a quorum queue is durable
	ch2 = channel(t, c2)
	_, err = ch2.QueueDeclare("amq.reserved", false, false, false, false, nil)
	amqpErr(t, err, 403, true)

	// exclusive queue goes away with its connection
	c1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ch2 = channel(t, c2)
		_, err = ch2.QueueDeclarePassive("ex", false, false, true, false, nil)
		if e, ok := err.(*amqp091.Error); ok && e.Code == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exclusive queue survived its connection: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQueuePurgeDeleteConditions(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("pq", false, false, false, false, nil)
	for i := 0; i < 3; i++ {
		publish(t, ch, "", "pq", "m")
	}
	ch.Confirm(false)
	n, err := ch.QueuePurge("pq", false)
	if err != nil || n != 3 {
		t.Fatalf("purge: %d %v", n, err)
	}
	publish(t, ch, "", "pq", "m")
	time.Sleep(10 * time.Millisecond)
	_, err = ch.QueueDelete("pq", false, true, false)
	amqpErr(t, err, 406, true)
	ch = channel(t, c)
	d, _ := ch.Consume("pq", "ctag", false, false, false, false, nil)
	recv(t, d)
	ch2 := channel(t, c)
	_, err = ch2.QueueDelete("pq", true, false, false)
	amqpErr(t, err, 406, true)
	ch2 = channel(t, c)
	cancelled := ch.NotifyCancel(make(chan string, 1))
	if n, err := ch2.QueueDelete("pq", false, false, false); err != nil || n != 0 {
		t.Fatalf("delete: %d %v", n, err)
	}
	select {
	case tag := <-cancelled:
		if tag != "ctag" {
			t.Fatalf("cancel for %q", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no consumer cancel notification after queue.delete")
	}
}

func TestAutoDeleteQueue(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	ch.QueueDeclare("ad", false, true, false, false, nil)
	if _, err := ch.Consume("ad", "c1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Cancel("c1", false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	_, err := ch.QueueDeclarePassive("ad", false, true, false, false, nil)
	amqpErr(t, err, 404, true)
}

func TestMandatoryReturn(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	ret := ch.NotifyReturn(make(chan amqp091.Return, 1))
	ch.PublishWithContext(context.Background(), "amq.direct", "nobody", true, false, amqp091.Publishing{Body: []byte("lost"), MessageId: "m1"})
	select {
	case r := <-ret:
		if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" || string(r.Body) != "lost" || r.MessageId != "m1" {
			t.Fatalf("return: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return")
	}
}

func TestImmediateRefused(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	cl := c.NotifyClose(make(chan *amqp091.Error, 1))
	ch.PublishWithContext(context.Background(), "", "x", false, true, amqp091.Publishing{})
	if e := waitClose(t, cl); e == nil || e.Code != 540 {
		t.Fatalf("immediate: %v", e)
	}
}

func TestAckNackRejectRequeue(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("acks", false, false, false, false, nil)
	for i := 0; i < 4; i++ {
		publish(t, ch, "", "acks", fmt.Sprint(i))
	}
	d, _ := ch.Consume("acks", "", false, false, false, false, nil)
	m0, m1, m2, m3 := recv(t, d), recv(t, d), recv(t, d), recv(t, d)
	if string(m0.Body) != "0" || string(m3.Body) != "3" {
		t.Fatal("order")
	}
	m1.Ack(true) // acks 0 and 1
	m2.Reject(true)
	r := recv(t, d)
	if string(r.Body) != "2" || !r.Redelivered {
		t.Fatalf("requeued: %q redelivered=%v", r.Body, r.Redelivered)
	}
	m3.Nack(false, false)
	r.Nack(true, false)
	noRecv(t, d, 50*time.Millisecond)
	ch2 := channel(t, c)
	if q, _ := ch2.QueueDeclarePassive("acks", false, false, false, false, nil); q.Messages != 0 {
		t.Fatalf("left %d messages", q.Messages)
	}
	// unknown delivery tag → 406 on the channel
	cl := ch.NotifyClose(make(chan *amqp091.Error, 1))
	ch.Ack(999, false)
	if e := waitClose(t, cl); e == nil || e.Code != 406 {
		t.Fatalf("unknown tag: %v", e)
	}
	// a double ack is also an unknown tag
	ch3 := channel(t, c)
	publish(t, ch3, "", "acks", "x")
	time.Sleep(10 * time.Millisecond)
	m, ok, _ := ch3.Get("acks", false)
	if !ok {
		t.Fatal("get")
	}
	m.Ack(false)
	cl = ch3.NotifyClose(make(chan *amqp091.Error, 1))
	m.Ack(false)
	if e := waitClose(t, cl); e == nil || e.Code != 406 {
		t.Fatalf("double ack: %v", e)
	}
}

func TestUnackedRequeuedOnChannelClose(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("rq", false, false, false, false, nil)
	publish(t, ch, "", "rq", "a")
	publish(t, ch, "", "rq", "b")
	d, _ := ch.Consume("rq", "", false, false, false, false, nil)
	recv(t, d)
	recv(t, d)
	ch.Close()
	ch2 := channel(t, c)
	time.Sleep(10 * time.Millisecond)
	m, ok, _ := ch2.Get("rq", true)
	if !ok || string(m.Body) != "a" || !m.Redelivered || m.MessageCount != 1 {
		t.Fatalf("after close: ok=%v %q redelivered=%v count=%d", ok, m.Body, m.Redelivered, m.MessageCount)
	}
}

func TestGetEmptyAndRecover(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	ch.QueueDeclare("g", false, false, false, false, nil)
	if _, ok, err := ch.Get("g", false); ok || err != nil {
		t.Fatalf("get-empty: %v %v", ok, err)
	}
	publish(t, ch, "", "g", "x")
	time.Sleep(10 * time.Millisecond)
	if _, ok, _ := ch.Get("g", false); !ok {
		t.Fatal("get")
	}
	if err := ch.Recover(true); err != nil {
		t.Fatal(err)
	}
	m, ok, _ := ch.Get("g", true)
	if !ok || !m.Redelivered {
		t.Fatalf("recover did not requeue: %v %v", ok, m.Redelivered)
	}
}

func TestQosPerConsumerAndGlobal(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	ch.QueueDeclare("qa", false, false, false, false, nil)
	ch.QueueDeclare("qb", false, false, false, false, nil)
	for i := 0; i < 10; i++ {
		publish(t, ch, "", "qa", "a")
		publish(t, ch, "", "qb", "b")
	}
	if err := ch.Qos(3, 0, true); err != nil { // channel-wide 3
		t.Fatal(err)
	}
	if err := ch.Qos(2, 0, false); err != nil { // per consumer 2
		t.Fatal(err)
	}
	da, _ := ch.Consume("qa", "", false, false, false, false, nil)
	db, _ := ch.Consume("qb", "", false, false, false, false, nil)
	got := 0
	var last amqp091.Delivery
	// wait (bounded) for the deliveries the limits allow, then make sure no
	// fourth one comes
	deadline := time.After(5 * time.Second)
	quiet := time.After(time.Hour)
loop:
	for {
		select {
		case m := <-da:
			got++
			last = m
		case m := <-db:
			got++
			last = m
		case <-quiet:
			break loop
		case <-deadline:
			break loop
		}
		if got == 3 {
			quiet = time.After(300 * time.Millisecond)
		}
	}
	if got != 3 {
		t.Fatalf("delivered %d unacked, want 3 (global limit)", got)
	}
	last.Ack(false)
	select {
	case <-da:
	case <-db:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery after ack freed room")
	}
}

func TestPublisherConfirms(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	acks := ch.NotifyPublish(make(chan amqp091.Confirmation, 200))
	ch.QueueDeclare("cq", false, false, false, false, nil)
	for i := 0; i < 100; i++ {
		publish(t, ch, "", "cq", "m")
	}
	publish(t, ch, "amq.direct", "unroutable", "m")
	for i := 1; i <= 101; i++ {
		select {
		case c := <-acks:
			if !c.Ack || c.DeliveryTag != uint64(i) {
				t.Fatalf("confirm %d: %+v", i, c)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("confirm %d missing", i)
		}
	}
	// mixing tx and confirm is 406
	err := ch.Tx()
	amqpErr(t, err, 406, true)
}

func TestTransactions(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("tq", false, false, false, false, nil)
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "tq", "1")
	other := channel(t, c)
	if q, _ := other.QueueDeclarePassive("tq", false, false, false, false, nil); q.Messages != 0 {
		t.Fatal("uncommitted publish visible")
	}
	if err := ch.TxRollback(); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "tq", "2")
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	q, _ := other.QueueDeclarePassive("tq", false, false, false, false, nil)
	if q.Messages != 1 {
		t.Fatalf("after commit %d messages", q.Messages)
	}
	m, _, _ := ch.Get("tq", false)
	m.Ack(false)
	ch.TxRollback() // the ack is discarded
	ch.Close()
	time.Sleep(10 * time.Millisecond)
	q, _ = other.QueueDeclarePassive("tq", false, false, false, false, nil)
	if q.Messages != 1 {
		t.Fatalf("rolled-back ack removed the message (%d left)", q.Messages)
	}
	if err := other.Confirm(false); err != nil {
		t.Fatal(err)
	}
	amqpErr(t, other.Tx(), 406, true)
}

func TestExclusiveConsumer(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("xc", false, false, false, false, nil)
	if _, err := ch.Consume("xc", "a", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch2 := channel(t, c)
	_, err := ch2.Consume("xc", "b", false, false, false, false, nil)
	amqpErr(t, err, 403, true)
}

func TestConsumerPriority(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	lo, hi := channel(t, c), channel(t, c)
	lo.QueueDeclare("prio", false, false, false, false, nil)
	lo.Qos(1, 0, false)
	hi.Qos(1, 0, false)
	dl, _ := lo.Consume("prio", "lo", false, false, false, false, amqp091.Table{"x-priority": int32(1)})
	dh, _ := hi.Consume("prio", "hi", false, false, false, false, amqp091.Table{"x-priority": int32(10)})
	publish(t, lo, "", "prio", "1")
	if m := recv(t, dh); string(m.Body) != "1" {
		t.Fatal("high priority consumer did not get the first message")
	}
	publish(t, lo, "", "prio", "2")
	if m := recv(t, dl); string(m.Body) != "2" {
		t.Fatal("low priority consumer did not get the overflow")
	}
}

func TestConsumerTagReuse(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("tags", false, false, false, false, nil)
	ch.Consume("tags", "same", false, false, false, false, nil)
	cl := c.NotifyClose(make(chan *amqp091.Error, 1))
	_, err := ch.Consume("tags", "same", false, false, false, false, nil)
	if err == nil {
		t.Fatal("reused consumer tag accepted")
	}
	if e := waitClose(t, cl); e == nil || e.Code != 530 {
		t.Fatalf("close: %v", e)
	}
}

func TestChannelFlowAndMax(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	// channel.flow(active=false) is refused (TestCompatChannelFlowStopRefused)
	if err := ch.Flow(true); err != nil {
		t.Fatal(err)
	}

	c, err := amqp091.DialConfig(url, amqp091.Config{ChannelMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	channel(t, c)
	channel(t, c)
	if _, err := c.Channel(); err == nil {
		t.Fatal("third channel above channel_max 2 opened")
	}
}

func TestMaxMessageSize(t *testing.T) {
	_, url := node(t, func(c *config.Config) { c.MaxMessageSize = 1024 })
	c := dial(t, url)
	ch := channel(t, c)
	ch.QueueDeclare("mm", false, false, false, false, nil)
	cl := ch.NotifyClose(make(chan *amqp091.Error, 1))
	ch.PublishWithContext(context.Background(), "", "mm", false, false, amqp91(make([]byte, 2048)))
	if e := waitClose(t, cl); e == nil || e.Code != 406 {
		t.Fatalf("oversized: %v", e)
	}
	ch2 := channel(t, c)
	if err := ch2.PublishWithContext(context.Background(), "", "mm", false, false, amqp91(make([]byte, 512))); err != nil {
		t.Fatal(err)
	}
}

func TestManyConnectionsOneBadFrame(t *testing.T) {
	b, url := node(t)
	good := dial(t, url)
	ch := channel(t, good)
	ch.QueueDeclare("alive", false, false, false, false, nil)
	hostile := [][]byte{
		[]byte("AMQP\x00\x00\x09\x01\x01\x00\x00\xff\xff\xff\xff"),                     // absurd frame size
		[]byte("AMQP\x00\x00\x09\x01\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\x00"), // bad frame end
		[]byte("AMQP\x00\x00\x09\x01garbagegarbagegarbage"),
	}
	for _, h := range hostile {
		nc, err := net.Dial("tcp", b.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(h)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := nc.Read(buf); err != nil {
				break
			}
		}
		nc.Close()
	}
	publish(t, ch, "", "alive", "still here")
	time.Sleep(10 * time.Millisecond)
	if m, ok, err := ch.Get("alive", true); !ok || err != nil || string(m.Body) != "still here" {
		t.Fatalf("good connection affected: %v %v", ok, err)
	}
}

func TestServerClosesWithConnectionForced(t *testing.T) {
	b, url := node(t)
	c := dial(t, url)
	cl := c.NotifyClose(make(chan *amqp091.Error, 1))
	for _, x := range b.Connections() {
		x.Close(320, "broker forced connection closure with reason 'test'")
	}
	if e := waitClose(t, cl); e == nil || e.Code != 320 {
		t.Fatalf("got %v", e)
	}
}

func TestPermissionsEnforced(t *testing.T) {
	b, url := node(t)
	for _, c := range []metadata.Command{
		{Op: metadata.OpPutUser, User: &metadata.User{Name: "lim", PasswordHash: auth.HashPassword("pw"), Tags: []string{}}},
		{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: "lim", VHost: "/", Configure: "^lim-", Write: "^lim-", Read: "^lim-"}},
		{Op: metadata.OpAddVHost, VHost: "other"},
	} {
		if err := b.Metadata().Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	limURL := strings.Replace(url, "guest:guest", "lim:pw", 1)
	c := dial(t, limURL)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("lim-q", false, true, false, false, nil); err != nil {
		t.Fatalf("permitted declare: %v", err)
	}
	e := amqpErr(t, func() error {
		_, err := channel(t, c).QueueDeclare("other-q", false, true, false, false, nil)
		return err
	}(), 403, true)
	if !strings.Contains(e.Reason, "access to queue 'other-q' in vhost '/' refused for user 'lim'") {
		t.Fatalf("wording: %s", e.Reason)
	}
	// binding needs read on the exchange: amq.direct is not readable
	amqpErr(t, channel(t, c).QueueBind("lim-q", "k", "amq.direct", false, nil), 403, true)
	// publishing needs write on the exchange (the default exchange is amq.default)
	pc := channel(t, c)
	cl := pc.NotifyClose(make(chan *amqp091.Error, 1))
	pc.PublishWithContext(context.Background(), "", "lim-q", false, false, amqp91(nil))
	if e := waitClose(t, cl); e == nil || e.Code != 403 {
		t.Fatalf("publish to amq.default: %v", e)
	}
	// consuming needs read on the queue
	gc := channel(t, dial(t, url))
	gc.QueueDeclare("guest-q", false, true, false, false, nil)
	_, err := channel(t, c).Consume("guest-q", "", true, false, false, false, nil)
	amqpErr(t, err, 403, true)
	// no permissions at all on vhost "other": connection.open refused
	_, err = amqp091.Dial(limURL + "other")
	amqpErr(t, err, 530, true)
}
