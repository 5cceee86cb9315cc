package conn_test

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/warrenmq/warren/internal/amqp"
)

func TestHandshakeAndClose(t *testing.T) {
	c := dial(t)
	c.raw(amqp.ProtocolHeader)
	start := expect[*amqp.ConnectionStart](c, 0)
	if start.VersionMajor != 0 || start.VersionMinor != 9 || start.Mechanisms != "AMQPLAIN PLAIN" && start.Mechanisms != "PLAIN AMQPLAIN" || start.Locales != "en_US" {
		t.Fatalf("connection.start = %d-%d %q %q", start.VersionMajor, start.VersionMinor, start.Mechanisms, start.Locales)
	}
	caps, _ := start.ServerProperties["capabilities"].(amqp.Table)
	for _, k := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify", "connection.blocked", "authentication_failure_close", "per_consumer_qos", "direct_reply_to"} {
		if caps[k] != true {
			t.Errorf("capability %s = %v, want true", k, caps[k])
		}
	}
	c.send(0, &amqp.ConnectionStartOk{ClientProperties: amqp.Table{"product": "conntest"}, Mechanism: "PLAIN", Response: plain("guest", "guest"), Locale: "en_US"})
	c.expectEqual(0, &amqp.ConnectionTune{ChannelMax: srvChannelMax, FrameMax: srvFrameMax, Heartbeat: srvHeartbeat})
	c.send(0, &amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: cliFrameMax, Heartbeat: 0})
	c.send(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	c.expectEqual(0, &amqp.ConnectionOpenOk{})

	c.openChannel(1)
	// channel.close from the client: close-ok, and the id can be reused
	c.send(1, &amqp.ChannelClose{ReplyCode: 200, ReplyText: "bye"})
	c.expectEqual(1, &amqp.ChannelCloseOk{})
	c.openChannel(1)

	c.send(0, &amqp.ConnectionClose{ReplyCode: 200, ReplyText: "goodbye"})
	c.expectEqual(0, &amqp.ConnectionCloseOk{})
	_ = c.nc.Close() // the client hangs up after close-ok
	if c.done != nil {
		<-c.done
	}
}

func TestHandshakeRefusals(t *testing.T) {
	t.Run("bad protocol header", func(t *testing.T) {
		c := dial(t)
		c.raw([]byte("AMQP\x00\x00\x09\x00"))
		buf := make([]byte, 8)
		if _, err := readFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, amqp.ProtocolHeader) {
			t.Fatalf("server answered %q, want its protocol header %q", buf, amqp.ProtocolHeader)
		}
		c.expectClosed()
	})
	t.Run("bad password", func(t *testing.T) {
		c := dial(t)
		c.raw(amqp.ProtocolHeader)
		expect[*amqp.ConnectionStart](c, 0)
		c.send(0, &amqp.ConnectionStartOk{ClientProperties: amqp.Table{"capabilities": amqp.Table{"authentication_failure_close": true}}, Mechanism: "PLAIN", Response: plain("guest", "wrong"), Locale: "en_US"})
		c.expectEqual(0, &amqp.ConnectionClose{ReplyCode: amqp.AccessRefused, ReplyText: "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."})
		c.expectClosed()
	})
	t.Run("missing vhost", func(t *testing.T) {
		c := dial(t)
		c.raw(amqp.ProtocolHeader)
		expect[*amqp.ConnectionStart](c, 0)
		c.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: plain("guest", "guest"), Locale: "en_US"})
		expect[*amqp.ConnectionTune](c, 0)
		c.send(0, &amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: cliFrameMax})
		c.send(0, &amqp.ConnectionOpen{VirtualHost: "conntest-nope"})
		m := expect[*amqp.ConnectionClose](c, 0)
		if m.ReplyCode != amqp.NotAllowed || m.ClassId != 10 || m.MethodId != 40 || m.ReplyText != c.text("NOT_ALLOWED - vhost conntest-nope not found") && !c.remote {
			t.Fatalf("connection.close %d (%d,%d) %q, want 530 (10,40)", m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText)
		}
		c.send(0, &amqp.ConnectionCloseOk{})
		c.expectClosed()
	})
	t.Run("frame_max above the server's", func(t *testing.T) {
		c := dial(t)
		c.raw(amqp.ProtocolHeader)
		expect[*amqp.ConnectionStart](c, 0)
		c.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: plain("guest", "guest"), Locale: "en_US"})
		expect[*amqp.ConnectionTune](c, 0)
		c.send(0, &amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: srvFrameMax + 1})
		if c.remote {
			t.Skip("RabbitMQ resets the socket here before the client can read its close")
		}
		m := expect[*amqp.ConnectionClose](c, 0)
		if m.ReplyCode != amqp.NotAllowed || m.ClassId != 10 || m.MethodId != 31 {
			t.Fatalf("connection.close %d (%d,%d) %q, want 530 (10,31)", m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText)
		}
		if want := c.text(fmt.Sprintf("NOT_ALLOWED - frame_max=%d > %d max size", srvFrameMax+1, srvFrameMax)); want != "" && m.ReplyText != want {
			t.Fatalf("text %q, want %q", m.ReplyText, want)
		}
	})
}

func readFull(c *client, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := c.nc.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// body returns n bytes that differ from frame to frame.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}

func TestPublishConsumeAck(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	q := qname(t, "q")
	c.declare(1, q)

	// 10,000 bytes in frames of at most 4096: three body frames
	payload := body(10000)
	props := amqp.Properties{ContentType: "application/octet-stream", Headers: amqp.Table{"k": "v"}, MessageID: "m1", DeliveryMode: 1}
	c.publish(1, "", q, props, payload)
	c.publish(1, "", q, amqp.Properties{}, []byte("second"))
	c.publish(1, "", q, amqp.Properties{}, nil) // empty body: header only
	if n, cons := c.counts(1, q, 3); n != 3 || cons != 0 {
		t.Fatalf("queue has %d messages, %d consumers; want 3, 0", n, cons)
	}

	c.send(1, &amqp.BasicConsume{Queue: q, ConsumerTag: "ctag"})
	c.expectEqual(1, &amqp.BasicConsumeOk{ConsumerTag: "ctag"})
	m, d := c.expectDeliver(1)
	if *m != (amqp.BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 1, Exchange: "", RoutingKey: q}) {
		t.Fatalf("deliver = %+v", *m)
	}
	if !bytes.Equal(d.body, payload) || d.bodyFrames != 3 {
		t.Fatalf("body of %d bytes in %d frames, want the 10000 bytes published in 3 frames", len(d.body), d.bodyFrames)
	}
	if d.props.ContentType != props.ContentType || d.props.MessageID != "m1" || d.props.DeliveryMode != 1 || d.props.Headers["k"] != "v" {
		t.Fatalf("properties = %+v", d.props)
	}
	m, d = c.expectDeliver(1)
	if m.DeliveryTag != 2 || string(d.body) != "second" {
		t.Fatalf("second delivery: tag %d body %q", m.DeliveryTag, d.body)
	}
	m, d = c.expectDeliver(1)
	if m.DeliveryTag != 3 || len(d.body) != 0 || d.bodyFrames != 0 {
		t.Fatalf("third delivery: tag %d body %q in %d frames", m.DeliveryTag, d.body, d.bodyFrames)
	}
	// ack 1 alone, then 2 and 3 with multiple
	c.send(1, &amqp.BasicAck{DeliveryTag: 1})
	c.send(1, &amqp.BasicAck{DeliveryTag: 3, Multiple: true})
	c.send(1, &amqp.BasicCancel{ConsumerTag: "ctag"})
	c.expectEqual(1, &amqp.BasicCancelOk{ConsumerTag: "ctag"})
	if n, cons := c.counts(1, q, 0); n != 0 || cons != 0 {
		t.Fatalf("after acks and cancel: %d messages, %d consumers; want 0, 0", n, cons)
	}
	// an ack of a tag already acked is a channel error, 406
	c.send(1, &amqp.BasicAck{DeliveryTag: 2})
	c.expectChannelClose(1, amqp.PreconditionFailed, 60, 80, c.text("PRECONDITION_FAILED - unknown delivery tag 2"))
}

func TestQosPrefetchHonoured(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	q := qname(t, "q")
	c.declare(1, q)
	for i := 1; i <= 5; i++ {
		c.publish(1, "", q, amqp.Properties{}, []byte(fmt.Sprint(i)))
	}
	c.send(1, &amqp.BasicQos{PrefetchCount: 2})
	c.expectEqual(1, &amqp.BasicQosOk{})
	c.send(1, &amqp.BasicConsume{Queue: q, ConsumerTag: "c"})
	c.expectEqual(1, &amqp.BasicConsumeOk{ConsumerTag: "c"})
	got := func(tag uint64) {
		t.Helper()
		m, d := c.expectDeliver(1)
		if m.DeliveryTag != tag || string(d.body) != fmt.Sprint(tag) {
			t.Fatalf("delivery tag %d body %q, want tag %d body %q", m.DeliveryTag, d.body, tag, fmt.Sprint(tag))
		}
	}
	// round trip: the next method must be declare-ok, not a third delivery
	ready := func(want uint32) {
		t.Helper()
		if n, _ := c.counts(1, q, want); n != want {
			t.Fatalf("%d messages ready, want %d", n, want)
		}
	}
	got(1)
	got(2)
	ready(3)
	c.send(1, &amqp.BasicAck{DeliveryTag: 1})
	got(3)
	ready(2)
	c.send(1, &amqp.BasicAck{DeliveryTag: 3, Multiple: true})
	got(4)
	got(5)
	ready(0)
	// nack with requeue: redelivered with a new tag
	c.send(1, &amqp.BasicNack{DeliveryTag: 5, Requeue: true})
	m, d := c.expectDeliver(1)
	if m.DeliveryTag != 6 || !m.Redelivered || string(d.body) != "5" {
		t.Fatalf("redelivery: tag %d redelivered %v body %q, want tag 6, true, 5", m.DeliveryTag, m.Redelivered, d.body)
	}
}

func TestPublisherConfirms(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	q := qname(t, "q")
	c.declare(1, q)
	c.send(1, &amqp.ConfirmSelect{})
	c.expectEqual(1, &amqp.ConfirmSelectOk{})
	const n = 5
	for i := 0; i < n; i++ {
		key := q
		if i == 2 {
			key = "conntest-no-such-queue" // unroutable: confirmed too
		}
		c.publish(1, "", key, amqp.Properties{}, []byte("x"))
	}
	// acks cover 1..n exactly once; on Warren they come in order (RabbitMQ
	// confirms an unroutable message at once, ahead of routed ones)
	acked := map[uint64]bool{}
	var next uint64 = 1
	for len(acked) < n {
		a := expect[*amqp.BasicAck](c, 1)
		if a.DeliveryTag == 0 || a.DeliveryTag > n || acked[a.DeliveryTag] {
			t.Fatalf("basic.ack tag %d multiple %v: outside 1..%d or acked twice (acked so far %v)", a.DeliveryTag, a.Multiple, n, acked)
		}
		if !c.remote && (a.DeliveryTag < next || (!a.Multiple && a.DeliveryTag != next)) {
			t.Fatalf("basic.ack tag %d multiple %v, want the next tag to be %d", a.DeliveryTag, a.Multiple, next)
		}
		acked[a.DeliveryTag] = true
		if a.Multiple {
			for tag := a.DeliveryTag - 1; tag > 0; tag-- {
				acked[tag] = true
			}
		}
		next = a.DeliveryTag + 1
	}
	if got, _ := c.counts(1, q, n-1); got != n-1 {
		t.Fatalf("%d messages in the queue, want %d", got, n-1)
	}
	// a confirm channel cannot become transactional
	c.send(1, &amqp.TxSelect{})
	c.expectChannelClose(1, amqp.PreconditionFailed, 90, 10, c.text("PRECONDITION_FAILED - cannot switch from confirm to tx mode"))
}

func TestTransactions(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	q := qname(t, "q")
	c.declare(1, q)
	c.send(1, &amqp.TxSelect{})
	c.expectEqual(1, &amqp.TxSelectOk{})
	c.publish(1, "", q, amqp.Properties{}, []byte("a"))
	c.publish(1, "", q, amqp.Properties{}, []byte("b"))
	if got, _ := c.counts(1, q); got != 0 {
		t.Fatalf("%d messages visible before commit, want 0", got)
	}
	c.send(1, &amqp.TxCommit{})
	c.expectEqual(1, &amqp.TxCommitOk{})
	if got, _ := c.counts(1, q, 2); got != 2 {
		t.Fatalf("%d messages after commit, want 2", got)
	}
	c.publish(1, "", q, amqp.Properties{}, []byte("c"))
	c.send(1, &amqp.TxRollback{})
	c.expectEqual(1, &amqp.TxRollbackOk{})
	if got, _ := c.counts(1, q); got != 2 {
		t.Fatalf("%d messages after rollback, want 2", got)
	}
	// acks are transactional too
	c.send(1, &amqp.BasicGet{Queue: q})
	g := expect[*amqp.BasicGetOk](c, 1)
	d := c.content(1, g)
	if g.DeliveryTag != 1 || g.MessageCount != 1 || string(d.body) != "a" {
		t.Fatalf("get-ok tag %d count %d body %q", g.DeliveryTag, g.MessageCount, d.body)
	}
	c.send(1, &amqp.BasicAck{DeliveryTag: 1})
	c.send(1, &amqp.TxRollback{})
	c.expectEqual(1, &amqp.TxRollbackOk{})
	c.send(1, &amqp.BasicAck{DeliveryTag: 1})
	c.send(1, &amqp.TxCommit{})
	c.expectEqual(1, &amqp.TxCommitOk{})
	// a non-transactional channel cannot commit
	c.openChannel(2)
	c.send(2, &amqp.TxCommit{})
	c.expectChannelClose(2, amqp.PreconditionFailed, 90, 20, c.text("PRECONDITION_FAILED - channel is not transactional"))
	if got, _ := c.counts(1, q, 1); got != 1 {
		t.Fatalf("%d messages after the committed ack, want 1", got)
	}
}

// A channel error closes only its channel: the connection and other
// channels go on.
func TestChannelErrorScope(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	c.openChannel(2)
	q := qname(t, "q")
	c.declare(2, q)
	missing := qname(t, "missing")
	c.send(1, &amqp.QueueDeclare{Queue: missing, Passive: true})
	c.expectChannelClose(1, amqp.NotFound, 50, 10, c.text("NOT_FOUND - no queue '"+missing+"' in vhost '/'"))
	// channel 2 still works, channel 1 can be opened again
	c.publish(2, "", q, amqp.Properties{}, []byte("still here"))
	if got, _ := c.counts(2, q, 1); got != 1 {
		t.Fatalf("%d messages, want 1", got)
	}
	c.openChannel(1)
	c.send(1, &amqp.BasicConsume{Queue: missing})
	c.expectChannelClose(1, amqp.NotFound, 60, 20, c.text("NOT_FOUND - no queue '"+missing+"' in vhost '/'"))
	// publishing to a missing exchange: 404 on basic.publish
	c.openChannel(1)
	c.publish(1, "conntest-nox", "k", amqp.Properties{}, []byte("x"))
	c.expectChannelClose(1, amqp.NotFound, 60, 40, c.text("NOT_FOUND - no exchange 'conntest-nox' in vhost '/'"))
	// frames the client sent on a closing channel before its close-ok are
	// dropped: a publish after the error does not count
	c.openChannel(1)
	c.send(1, &amqp.QueueDeclare{Queue: missing, Passive: true})
	c.publish(1, "", q, amqp.Properties{}, []byte("dropped"))
	c.expectChannelClose(1, amqp.NotFound, 50, 10, "")
	if got, _ := c.counts(2, q); got != 1 {
		t.Fatalf("%d messages, want 1 (the publish on the closing channel must be dropped)", got)
	}
	c.send(0, &amqp.ConnectionClose{ReplyCode: 200})
	c.expectEqual(0, &amqp.ConnectionCloseOk{})
}

// Connection errors: the server sends connection.close with the spec's
// hard-error code and the offending class/method, and ends the connection
// after close-ok.
func TestConnectionErrors(t *testing.T) {
	t.Run("method on a channel that is not open", func(t *testing.T) {
		c := open(t)
		c.send(5, &amqp.QueueDeclare{Queue: "x", Passive: true})
		c.expectConnectionClose(amqp.ChannelError, 50, 10, c.text("CHANNEL_ERROR - expected 'channel.open' on channel 5, got 'queue.declare'"))
	})
	t.Run("method on a closed channel", func(t *testing.T) {
		c := open(t)
		c.openChannel(1)
		c.send(1, &amqp.ChannelClose{ReplyCode: 200})
		c.expectEqual(1, &amqp.ChannelCloseOk{})
		c.send(1, &amqp.BasicQos{PrefetchCount: 1})
		c.expectConnectionClose(amqp.ChannelError, 60, 10, "")
	})
	t.Run("content header without a publish", func(t *testing.T) {
		c := open(t)
		c.openChannel(1)
		c.raw(amqp.AppendHeaderFrame(nil, 1, amqp.ClassBasic, 3, nil))
		c.expectConnectionClose(amqp.UnexpectedFrame, 0, 0, c.text("UNEXPECTED_FRAME - expected method frame, got non method frame instead"))
	})
	t.Run("method where the content header belongs", func(t *testing.T) {
		c := open(t)
		c.openChannel(1)
		c.send(1, &amqp.BasicPublish{RoutingKey: "x"})
		c.send(1, &amqp.BasicQos{PrefetchCount: 1})
		c.expectConnectionClose(amqp.UnexpectedFrame, 60, 40, c.text("UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"))
	})
	t.Run("body on a channel that is not open", func(t *testing.T) {
		c := open(t)
		// RabbitMQ 3.10 starts channel 3 for the frame, whose assembler
		// refuses content where channel.open belongs
		c.raw(amqp.AppendBodyFrames(nil, 3, []byte("abc"), cliFrameMax))
		c.expectConnectionClose(amqp.UnexpectedFrame, 0, 0, c.text("UNEXPECTED_FRAME - expected method frame, got non method frame instead"))
	})
	t.Run("frame larger than frame_max", func(t *testing.T) {
		c := open(t)
		c.openChannel(1)
		c.send(1, &amqp.BasicPublish{RoutingKey: "x"})
		c.raw(amqp.AppendHeaderFrame(nil, 1, amqp.ClassBasic, 5000, nil))
		big := amqp.AppendBodyFrames(nil, 1, body(5000), 5008) // one frame of 5008 > 4096
		c.raw(big)
		m := expect[*amqp.ConnectionClose](c, 0)
		if m.ReplyCode != amqp.FrameError || m.ClassId != 0 || m.MethodId != 0 {
			t.Fatalf("connection.close %d (%d,%d) %q, want 501 (0,0)", m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText)
		}
		c.send(0, &amqp.ConnectionCloseOk{})
		c.expectClosed()
	})
	t.Run("method on channel 0 that is not a connection method", func(t *testing.T) {
		c := open(t)
		c.send(0, &amqp.QueueDeclare{Queue: "x"})
		c.expectConnectionClose(amqp.ChannelError, 50, 10, "CHANNEL_ERROR - unexpected method in connection state running")
	})
	t.Run("channel above channel_max", func(t *testing.T) {
		c := open(t) // tune-ok asked for channel_max 100
		if c.remote {
			// RabbitMQ 3.10 counts open channels against channel_max, not
			// their numbers; Warren follows the spec (highest number)
			t.Skip("Warren-specific: the spec's reading of channel_max")
		}
		c.send(101, &amqp.ChannelOpen{})
		c.expectConnectionClose(amqp.ChannelError, 0, 0, "")
	})
}

// A mandatory message that reaches no queue comes back with basic.return
// 312 NO_ROUTE before its confirm; a consumer whose queue is deleted gets
// basic.cancel from the server (consumer_cancel_notify).
func TestReturnAndServerCancel(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	c.send(1, &amqp.ConfirmSelect{})
	c.expectEqual(1, &amqp.ConfirmSelectOk{})
	b, err := amqp.AppendMethodFrame(nil, 1, &amqp.BasicPublish{Exchange: "amq.direct", RoutingKey: "conntest-nowhere", Mandatory: true})
	if err != nil {
		t.Fatal(err)
	}
	b = amqp.AppendHeaderFrame(b, 1, amqp.ClassBasic, 4, nil)
	b = amqp.AppendBodyFrames(b, 1, []byte("lost"), cliFrameMax)
	c.raw(b)
	r := expect[*amqp.BasicReturn](c, 1)
	if *r != (amqp.BasicReturn{ReplyCode: amqp.NoRoute, ReplyText: "NO_ROUTE", Exchange: "amq.direct", RoutingKey: "conntest-nowhere"}) {
		t.Fatalf("basic.return = %+v", *r)
	}
	if d := c.content(1, r); string(d.body) != "lost" {
		t.Fatalf("returned body %q", d.body)
	}
	if a := expect[*amqp.BasicAck](c, 1); a.DeliveryTag != 1 {
		t.Fatalf("basic.ack tag %d, want 1", a.DeliveryTag)
	}

	q := qname(t, "q")
	c.declare(1, q)
	c.send(1, &amqp.BasicConsume{Queue: q, ConsumerTag: "gone"})
	c.expectEqual(1, &amqp.BasicConsumeOk{ConsumerTag: "gone"})
	c.openChannel(2)
	c.send(2, &amqp.QueueDelete{Queue: q})
	// the cancel to channel 1 and delete-ok on channel 2, in either order
	var cancelled, deleted bool
	for !cancelled || !deleted {
		ch, m := c.next()
		switch {
		case ch == 1 && reflect.DeepEqual(m, &amqp.BasicCancel{ConsumerTag: "gone", NoWait: true}):
			cancelled = true
		case ch == 2 && reflect.DeepEqual(m, &amqp.QueueDeleteOk{MessageCount: 0}):
			deleted = true
		default:
			t.Fatalf("got %s %+v on channel %d", m.Name(), m, ch)
		}
	}
}

// A publish that races the server's channel.close (the client answered
// close-ok while its publish was already on the way, as amqp091-go and
// streadway can) is dropped, not a connection error; any other method on
// that channel still is one, and the client may open the channel again.
func TestPublishRacingServerChannelClose(t *testing.T) {
	c := open(t)
	c.openChannel(1)
	c.publish(1, "no-such-exchange", "k", amqp.Properties{}, []byte("x"))
	c.expectChannelClose(1, amqp.NotFound, 60, 40, "") // answers close-ok
	// after close-ok: a publish with its content on the closed channel
	c.publish(1, "", "k", amqp.Properties{}, []byte("late"))
	// the connection still works, and channel 1 opens again
	c.openChannel(1)
	c.declare(1, qname(t, "after-race"))
	// a method other than basic.publish on a server-closed channel is
	// still a connection error
	c.openChannel(2)
	c.publish(2, "no-such-exchange", "k", amqp.Properties{}, []byte("x"))
	c.expectChannelClose(2, amqp.NotFound, 60, 40, "")
	c.send(2, &amqp.BasicQos{PrefetchCount: 1})
	c.expectConnectionClose(amqp.ChannelError, 60, 10, "")
}
