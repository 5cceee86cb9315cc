package broker_test

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
)

// Hostile and careless input, each case checked against RabbitMQ 3.10's
// answer (reply code, scope and text).

// addUser creates user (password = name) with permissions in "/".
func addUser(t testing.TB, b *broker.Broker, name string, tags []string, conf, write, read string) string {
	t.Helper()
	m := b.Metadata()
	if err := m.Propose(metadata.Command{Op: metadata.OpPutUser, User: &metadata.User{Name: name, PasswordHash: auth.HashPassword(name), HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: tags}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: name, VHost: "/", Configure: conf, Write: write, Read: read}}); err != nil {
		t.Fatal(err)
	}
	return "amqp://" + name + ":" + name + "@" + b.Addrs()[0].String() + "/"
}

func publishWith(ch *amqp091.Channel, ex, key string, p amqp091.Publishing) error {
	return ch.PublishWithContext(context.Background(), ex, key, false, false, p)
}

// TestExpirationTooLargeRefused: RabbitMQ refuses an expiration above ten
// years with 406 value_too_large; Warren confirmed such a persistent
// message and then lost it (deadline overflow).
func TestExpirationTooLargeRefused(t *testing.T) {
	b, url := node(t)
	c := dial(t, url)
	for _, exp := range []string{"10000000000000", strconv.FormatInt(math.MaxInt64, 10)} {
		ch := channel(t, c)
		closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
		if _, err := ch.QueueDeclare("exp", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := publishWith(ch, "", "exp", amqp091.Publishing{DeliveryMode: 2, Expiration: exp, Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		e := waitClose(t, closed)
		want := "PRECONDITION_FAILED - invalid expiration '" + exp + "': {value_too_large," + exp + "}"
		if e == nil || e.Code != 406 || e.Reason != want {
			t.Fatalf("expiration %s: got %v, want 406 %q", exp, e, want)
		}
	}
	if n := qlen(b, "exp"); n != 0 {
		t.Fatalf("refused message was enqueued: %d", n)
	}
	// ten years exactly is accepted and kept
	ch := channel(t, c)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	conf := ch.NotifyPublish(make(chan amqp091.Confirmation, 1))
	if err := publishWith(ch, "", "exp", amqp091.Publishing{DeliveryMode: 2, Expiration: "315360000000", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if cf := <-conf; !cf.Ack {
		t.Fatal("nacked")
	}
	time.Sleep(300 * time.Millisecond)
	if n := qlen(b, "exp"); n != 1 {
		t.Fatalf("a message with a ten-year expiration is gone: %d left", n)
	}
}

// TestHugePolicyDurationsDoNotOverflow: policies have no upper bound in
// RabbitMQ 3.10 (rabbit_policies validates only >= 0 / >= 1), so huge
// message-ttl and expires values reach the queue; they must mean "a long
// time", not wrap around to "now".
func TestHugePolicyDurationsDoNotOverflow(t *testing.T) {
	b, url := node(t)
	for _, v := range []float64{1e13, math.MaxInt64} {
		if err := setPolicy(b, "huge", "^huge", map[string]any{"message-ttl": v, "expires": v}); err != nil {
			t.Fatal(err)
		}
		ch := channel(t, dial(t, url))
		if _, err := ch.QueueDeclare("huge", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		conf := ch.NotifyPublish(make(chan amqp091.Confirmation, 1))
		if err := publishWith(ch, "", "huge", amqp091.Publishing{DeliveryMode: 2, Body: []byte("keep")}); err != nil {
			t.Fatal(err)
		}
		if cf := <-conf; !cf.Ack {
			t.Fatal("nacked")
		}
		time.Sleep(1500 * time.Millisecond)
		q := b.VHost("/").LookupQueue("huge")
		if q == nil {
			t.Fatalf("policy value %g: the queue was deleted (x-expires overflow)", v)
		}
		if n := qlen(b, "huge"); n != 1 {
			t.Fatalf("policy value %g: confirmed message gone (%d left; TTL overflow)", v, n)
		}
		if _, err := ch.QueueDelete("huge", false, false, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueueArgumentBounds: every integer argument is checked as
// rabbit_amqqueue:check_*_arg does, with its text.
func TestQueueArgumentBounds(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	cases := []struct {
		arg  string
		val  any
		want string
	}{
		{"x-expires", int64(1e13), "{value_too_large,10000000000000}"},
		{"x-expires", int64(math.MaxInt64), "{value_too_large,9223372036854775807}"},
		{"x-expires", int64(0), "{value_zero,0}"},
		{"x-expires", int64(-5), "{value_negative,-5}"},
		{"x-message-ttl", int64(1e13), "{value_too_large,10000000000000}"},
		{"x-message-ttl", int64(-1), "{value_negative,-1}"},
		{"x-max-length", int64(-1), "{value_negative,-1}"},
		{"x-max-length", "x", `"expected integer, got longstr"`},
		{"x-max-length-bytes", int64(-2), "{value_negative,-2}"},
		{"x-max-priority", int64(256), "{max_value_exceeded,256}"},
		{"x-max-priority", int64(-1), "{value_negative,-1}"},
		{"x-expires", 1.5, `"expected integer, got double"`},
		{"x-queue-version", int64(3), `"unsupported queue version '3'"`},
		{"x-single-active-consumer", "yes", "{unacceptable_type,longstr}"},
		// quorum-queue and stream arguments on a classic queue
		{"x-delivery-limit", int64(5), ""},
		{"x-max-in-memory-length", int64(-1), ""},
		{"x-max-age", "1D", ""},
		// Warren only: it would become the routing key (a short string)
		// of every dead-lettered message, which no delivery could carry
		{"x-dead-letter-routing-key", strings.Repeat("k", 256), "{value_too_long,256}: at most 255 bytes"},
	}
	for _, tc := range cases {
		ch := channel(t, c)
		_, err := ch.QueueDeclare("args", true, false, false, false, amqp091.Table{tc.arg: tc.val})
		e := amqpErr(t, err, 406, true)
		want := "PRECONDITION_FAILED - invalid arg '" + tc.arg + "' for queue 'args' in vhost '/': " + tc.want
		if tc.want == "" {
			want = "PRECONDITION_FAILED - invalid arg '" + tc.arg + "' for queue 'args' in vhost '/' of queue type rabbit_classic_queue"
		}
		if e.Reason != want {
			t.Errorf("%s=%v: got %q, want %q", tc.arg, tc.val, e.Reason, want)
		}
	}
	ch := channel(t, c)
	_, err := ch.QueueDeclare("args", true, false, false, false, amqp091.Table{"x-dead-letter-exchange": int64(1)})
	if e := amqpErr(t, err, 406, true); e.Reason != "PRECONDITION_FAILED - invalid type 'long' for arg 'x-dead-letter-exchange' in queue 'args' in vhost '/'" {
		t.Errorf("dlx type: got %q", e.Reason)
	}
	// the bounds themselves are accepted
	ch = channel(t, c)
	if _, err := ch.QueueDeclare("args", true, false, false, false, amqp091.Table{"x-expires": int64(315360000000), "x-message-ttl": int64(315360000000), "x-max-priority": int64(255)}); err != nil {
		t.Fatal(err)
	}
}

// TestUserIDMustMatchUser: rabbit_channel:check_user_id_header.
func TestUserIDMustMatchUser(t *testing.T) {
	b, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("uid", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	if err := publishWith(ch, "", "uid", amqp091.Publishing{UserId: "bob", Body: []byte("spoof")}); err != nil {
		t.Fatal(err)
	}
	e := waitClose(t, closed)
	if e == nil || e.Code != 406 || e.Reason != "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'" {
		t.Fatalf("got %v", e)
	}
	// one's own name is fine
	ch = channel(t, c)
	publish(t, ch, "", "uid", "")
	if err := publishWith(ch, "", "uid", amqp091.Publishing{UserId: "guest", Body: []byte("own")}); err != nil {
		t.Fatal(err)
	}
	// an impersonator may set any user_id
	iu := addUser(t, b, "imp", []string{"impersonator"}, ".*", ".*", ".*")
	ich := channel(t, dial(t, iu))
	if err := publishWith(ich, "", "uid", amqp091.Publishing{UserId: "bob", Body: []byte("imp")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for qlen(b, "uid") != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("want 3 messages (empty, own, impersonated), have %d", qlen(b, "uid"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInvalidUTF8ShortStringClosesConnection: RabbitMQ checks the short
// strings of methods without content (rabbit_binary_parser:assert_utf8)
// and closes the connection with 501. A queue named with invalid UTF-8
// used to be accepted and persisted through JSON, which changed its name.
func TestInvalidUTF8ShortStringClosesConnection(t *testing.T) {
	b, _ := node(t)
	c := rawDial(t, b.Addrs()[0].String())
	c.open(0)
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	c.send(1, &amqp.QueueDeclare{Queue: "bad\xff\xfename", Durable: true})
	m, ok := c.recv().(*amqp.ConnectionClose)
	if !ok || m.ReplyCode != amqp.FrameError || m.ReplyText != "FRAME_ERROR - Malformed UTF-8 in shortstr" {
		t.Fatalf("got %#v", m)
	}
	for _, q := range b.VHost("/").Queues() {
		if strings.HasPrefix(q.Name(), "bad") {
			t.Fatalf("queue %q was declared", q.Name())
		}
	}
	// publish is a content method: RabbitMQ skips the check there, and so
	// does Warren (the routing key is not persisted as a name)
	c = rawDial(t, b.Addrs()[0].String())
	c.open(0)
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	c.send(1, &amqp.BasicPublish{Exchange: "amq.direct", RoutingKey: "k\xc3"})
	c.nc.Write(amqp.AppendHeaderFrame(nil, 1, amqp.ClassBasic, 0, nil))
	c.send(1, &amqp.ChannelClose{})
	if _, ok := c.recv().(*amqp.ChannelCloseOk); !ok {
		t.Fatal("publish with a non-UTF-8 routing key was refused")
	}
}

// TestUnknownFrameTypeSendsClose: RabbitMQ sends connection.close 501
// "type 9, all octets = <<>>: unknown_frame" before closing.
func TestUnknownFrameTypeSendsClose(t *testing.T) {
	b, _ := node(t)
	c := rawDial(t, b.Addrs()[0].String())
	c.open(0)
	c.nc.Write([]byte{9, 0, 0, 0, 0, 0, 0, amqp.FrameEnd})
	m, ok := c.recv().(*amqp.ConnectionClose)
	if !ok || m.ReplyCode != amqp.FrameError || m.ReplyText != "FRAME_ERROR - type 9, all octets = <<>>: unknown_frame" {
		t.Fatalf("got %#v", m)
	}
}

// TestMalformedHeadersTableRefused: a headers property whose field table
// does not parse is refused at publish (RabbitMQ closes the connection;
// it answers 541 INTERNAL_ERROR from the crashed channel, Warren 502
// SYNTAX_ERROR with the reason) instead of being stored for consumers to
// choke on.
func TestMalformedHeadersTableRefused(t *testing.T) {
	b, url := node(t)
	ch := channel(t, dial(t, url))
	if _, err := ch.QueueDeclare("hdr", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for name, props := range map[string][]byte{
		"unknown type": {0x20, 0, 0, 0, 0, 6, 1, 'a', 'Z', 0, 0, 0},
		"bad length":   {0x20, 0, 0, 0, 0, 60, 1, 'a', 'S', 0, 0, 0},
		"short string": {0x20, 0, 0, 0, 0, 8, 1, 'a', 'S', 0, 0, 0, 9, 'x'},
	} {
		c := rawDial(t, b.Addrs()[0].String())
		c.open(0)
		c.send(1, &amqp.ChannelOpen{})
		c.recv()
		c.send(1, &amqp.BasicPublish{RoutingKey: "hdr"})
		c.nc.Write(amqp.AppendHeaderFrame(nil, 1, amqp.ClassBasic, 0, props))
		m, ok := c.recv().(*amqp.ConnectionClose)
		if !ok || m.ReplyCode != amqp.SyntaxError || !strings.Contains(m.ReplyText, "headers") {
			t.Fatalf("%s: got %#v", name, m)
		}
	}
	if n := qlen(b, "hdr"); n != 0 {
		t.Fatalf("%d malformed messages stored", n)
	}
}

// TestUnencodableDeliveryNeverHalfSent: a message whose routing key is
// longer than a short string allows (only a non-AMQP entry can produce
// one) used to go out as a content header and body with no basic.deliver
// before them. Now the entry refuses it, and should one reach a queue
// anyway, the connection is closed with 541 rather than a broken stream.
func TestUnencodableDeliveryNeverHalfSent(t *testing.T) {
	b, url := node(t)
	long := strings.Repeat("k", 300)
	m, err := b.Matcher("guest", "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.VHost("/").Session("guest", m).Publish("amq.fanout", long, &queue.Message{Body: []byte("x")}); err == nil {
		t.Fatal("a 300-byte routing key was accepted")
	}
	_ = url
}

// TestUnencodableDeliveryClosesConnection: should such a message reach a
// queue anyway, its delivery closes the connection with 541 instead of
// sending a content header and body with no basic.deliver.
func TestUnencodableDeliveryClosesConnection(t *testing.T) {
	b, url := node(t)
	long := strings.Repeat("k", 300)
	c := dial(t, url)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("long", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	b.VHost("/").LookupQueue("long").Publish(&queue.Message{Exchange: "amq.fanout", RoutingKey: long, Body: []byte("half")})
	closed := c.NotifyClose(make(chan *amqp091.Error, 1))
	d, err := ch.Consume("long", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m, ok := <-d:
		if ok {
			t.Fatalf("got a delivery %q with key of %d bytes", m.Body, len(m.RoutingKey))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("neither a delivery nor a close")
	}
	e := waitClose(t, closed)
	if e == nil || e.Code != amqp091.InternalError || !strings.Contains(e.Reason, "basic.deliver") {
		t.Fatalf("got %v", e)
	}
}

// qlen returns the ready count of queue name in "/".
func qlen(b *broker.Broker, name string) int {
	r, _, _ := b.VHost("/").LookupQueue(name).Counts()
	return r
}

// TestSlowTopicRouteDoesNotFreezeVHost: a binding "#.#.#.#.#.#.#.#.z" and
// a publish with a 60-word key routed for 237 s under the vhost lock, and
// every other client of the vhost waited as long.
func TestSlowTopicRouteDoesNotFreezeVHost(t *testing.T) {
	_, url := node(t)
	ch := channel(t, dial(t, url))
	if _, err := ch.QueueDeclare("tz", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("tz", "#.#.#.#.#.#.#.#.z", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	words := make([]string, 60)
	for i := range words {
		words[i] = "w"
	}
	publish(t, ch, "amq.topic", strings.Join(words, "."), "slow")
	other := channel(t, dial(t, url))
	done := make(chan error, 1)
	go func() {
		_, err := other.QueueDeclare("tz-other", false, true, false, false, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a declare on another connection waited 30s behind one publish's topic routing")
	}
	// and the publisher's channel is alive and routes correctly
	words[59] = "z"
	publish(t, ch, "amq.topic", strings.Join(words, "."), "hit")
	if m, ok, err := ch.Get("tz", true); err != nil || !ok || string(m.Body) != "hit" {
		t.Fatalf("get: %v %v %q", err, ok, m.Body)
	}
}
