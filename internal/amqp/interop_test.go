package amqp

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// peer is the broker side of a net.Pipe whose other end is driven by the
// amqp091-go client: everything it reads was encoded by amqp091-go.
type peer struct {
	t    *testing.T
	conn net.Conn
	fr   *FrameReader
}

func (p *peer) send(ch uint16, m Method) {
	p.t.Helper()
	buf, err := AppendMethodFrame(nil, ch, m)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.Write(buf); err != nil {
		p.t.Fatalf("writing %s: %v", m.Name(), err)
	}
}

func (p *peer) frame() Frame {
	p.t.Helper()
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			p.t.Fatalf("reading a frame sent by amqp091-go: %v", err)
		}
		if f.Type != FrameHeartbeat {
			return f
		}
	}
}

func (p *peer) method(want Method) Method {
	p.t.Helper()
	f := p.frame()
	if f.Type != FrameMethod {
		p.t.Fatalf("frame type %d, want a method frame carrying %s", f.Type, want.Name())
	}
	m, err := DecodeMethod(f.Payload)
	if err != nil {
		p.t.Fatalf("decoding %x: %v", f.Payload, err)
	}
	if reflect.TypeOf(m) != reflect.TypeOf(want) {
		p.t.Fatalf("got %s, want %s", m.Name(), want.Name())
	}
	return m
}

// TestDecodeFramesFromAMQP091Client runs a handshake, a channel, a queue
// declare with arguments and a multi-frame publish from the amqp091-go
// client and checks every decoded field, including field tables of every
// type amqp091-go can encode.
func TestDecodeFramesFromAMQP091Client(t *testing.T) {
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	_ = srv.SetDeadline(time.Now().Add(20 * time.Second))
	_ = cli.SetDeadline(time.Now().Add(20 * time.Second))

	ts := time.Unix(1700000000, 0)
	clientTable := amqp091.Table{
		"bool": true, "byte": byte(200), "i8": int8(-5), "i16": int16(-300), "int": 70000,
		"i32": int32(-70000), "i64": int64(-1 << 40), "u16": uint16(60000), "u32": uint32(4000000000),
		"f32": float32(1.5), "f64": 2.25, "dec": amqp091.Decimal{Scale: 2, Value: -1234}, "str": "héllo",
		"arr": []any{int32(1), "two", []any{false}}, "ts": ts, "nested": amqp091.Table{"x": nil},
		"bytes": []byte{0, 1, 0xff},
	}
	wantTable := Table{
		"bool": true, "byte": uint8(200), "i8": int8(-5), "i16": int16(-300), "int": int32(70000),
		"i32": int32(-70000), "i64": int64(-1 << 40), "u16": uint16(60000), "u32": uint32(4000000000),
		"f32": float32(1.5), "f64": 2.25, "dec": Decimal{Scale: 2, Value: -1234}, "str": "héllo",
		"arr": []any{int32(1), "two", []any{false}}, "ts": ts, "nested": Table{"x": nil},
		"bytes": []byte{0, 1, 0xff},
	}
	body := bytes.Repeat([]byte("0123456789"), 10000) // 100000 bytes: several body frames at frame_max 4096

	clientErr := make(chan error, 1)
	go func() {
		c, err := amqp091.Open(cli, amqp091.Config{
			SASL:       []amqp091.Authentication{&amqp091.PlainAuth{Username: "guest", Password: "secret"}},
			Vhost:      "/prod",
			Properties: amqp091.Table{"product": "interop", "all": clientTable},
			FrameSize:  4096,
			Locale:     "en_US",
		})
		if err != nil {
			clientErr <- err
			return
		}
		ch, err := c.Channel()
		if err != nil {
			clientErr <- err
			return
		}
		if _, err := ch.QueueDeclare("jobs", true, false, false, false, amqp091.Table{"x-message-ttl": int32(60000), "x-queue-type": "classic"}); err != nil {
			clientErr <- err
			return
		}
		err = ch.PublishWithContext(context.Background(), "amq.direct", "jobs", true, false, amqp091.Publishing{
			ContentType: "text/plain", Headers: amqp091.Table{"retries": int32(3), "trace": []any{"a", "b"}},
			DeliveryMode: 2, Priority: 7, CorrelationId: "corr", ReplyTo: "replies", Expiration: "60000",
			MessageId: "m-1", Timestamp: ts, Type: "job", UserId: "guest", AppId: "test", Body: body,
		})
		if err != nil {
			clientErr <- err
			return
		}
		clientErr <- c.Close()
	}()

	p := &peer{t: t, conn: srv, fr: NewFrameReader(srv, 4096)}
	if err := p.fr.ReadProtocolHeader(); err != nil {
		t.Fatal(err)
	}
	p.send(0, &ConnectionStart{VersionMajor: 0, VersionMinor: 9,
		ServerProperties: Table{"product": "warren", "capabilities": Table{"publisher_confirms": true}},
		Mechanisms:       "PLAIN AMQPLAIN", Locales: "en_US"})
	so := p.method(&ConnectionStartOk{}).(*ConnectionStartOk)
	if so.Mechanism != "PLAIN" || so.Response != "\x00guest\x00secret" || so.Locale != "en_US" {
		t.Fatalf("start-ok %+v", so)
	}
	if so.ClientProperties["product"] != "interop" {
		t.Fatalf("client properties %v", so.ClientProperties)
	}
	if got := so.ClientProperties["all"]; !reflect.DeepEqual(got, wantTable) {
		t.Fatalf("table encoded by amqp091-go:\n got %#v\nwant %#v", got, wantTable)
	}
	p.send(0, &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 0})
	to := p.method(&ConnectionTuneOk{}).(*ConnectionTuneOk)
	if to.ChannelMax != 2047 || to.FrameMax != 4096 || to.Heartbeat != 0 {
		t.Fatalf("tune-ok %+v", to)
	}
	if o := p.method(&ConnectionOpen{}).(*ConnectionOpen); o.VirtualHost != "/prod" {
		t.Fatalf("open %+v", o)
	}
	p.send(0, &ConnectionOpenOk{})

	f := p.frame()
	if m, err := DecodeMethod(f.Payload); err != nil || m.Name() != "channel.open" || f.Channel != 1 {
		t.Fatalf("channel.open: %v %v ch %d", m, err, f.Channel)
	}
	p.send(1, &ChannelOpenOk{})

	qd := p.method(&QueueDeclare{}).(*QueueDeclare)
	wantQD := &QueueDeclare{Queue: "jobs", Durable: true, Arguments: Table{"x-message-ttl": int32(60000), "x-queue-type": "classic"}}
	if !reflect.DeepEqual(qd, wantQD) {
		t.Fatalf("queue.declare\n got %+v\nwant %+v", qd, wantQD)
	}
	p.send(1, &QueueDeclareOk{Queue: "jobs"})

	pub := p.method(&BasicPublish{}).(*BasicPublish)
	if pub.Exchange != "amq.direct" || pub.RoutingKey != "jobs" || !pub.Mandatory || pub.Immediate {
		t.Fatalf("publish %+v", pub)
	}
	hf := p.frame()
	if hf.Type != FrameHeader || hf.Channel != 1 {
		t.Fatalf("frame type %d ch %d, want a content header", hf.Type, hf.Channel)
	}
	cid, size, raw, err := ParseContentHeader(hf.Payload)
	if err != nil || cid != ClassBasic || size != uint64(len(body)) {
		t.Fatalf("content header: class %d size %d: %v", cid, size, err)
	}
	props, err := DecodeProperties(raw)
	if err != nil {
		t.Fatal(err)
	}
	wantProps := Properties{ContentType: "text/plain", Headers: Table{"retries": int32(3), "trace": []any{"a", "b"}},
		DeliveryMode: 2, Priority: 7, CorrelationID: "corr", ReplyTo: "replies", Expiration: "60000",
		MessageID: "m-1", Timestamp: ts, Type: "job", UserID: "guest", AppID: "test"}
	if !reflect.DeepEqual(props, wantProps) {
		t.Fatalf("properties\n got %+v\nwant %+v", props, wantProps)
	}
	mode, prio, exp, hasHeaders, err := PeekDeliveryInfo(raw)
	if err != nil || mode != 2 || prio != 7 || exp != "60000" || !hasHeaders {
		t.Fatalf("peek %d %d %q %v %v", mode, prio, exp, hasHeaders, err)
	}
	var got []byte
	frames := 0
	for len(got) < len(body) {
		bf := p.frame()
		if bf.Type != FrameBody || len(bf.Payload)+8 > 4096 {
			t.Fatalf("body frame type %d of %d bytes", bf.Type, len(bf.Payload))
		}
		frames++
		got = append(got, bf.Payload...)
	}
	if !bytes.Equal(got, body) || frames != (len(body)+4087)/4088 {
		t.Fatalf("body of %d bytes in %d frames", len(got), frames)
	}

	cl := p.method(&ConnectionClose{}).(*ConnectionClose)
	if cl.ReplyCode != ReplySuccess {
		t.Fatalf("close %+v", cl)
	}
	p.send(0, &ConnectionCloseOk{})
	if err := <-clientErr; err != nil {
		t.Fatalf("amqp091-go client: %v", err)
	}
}
