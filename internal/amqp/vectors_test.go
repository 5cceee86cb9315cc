package amqp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestHeaderFrameVector(t *testing.T) {
	p := Properties{ContentType: "t", DeliveryMode: 2, Timestamp: time.Unix(258, 0)}
	props, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	// flags: content-type (bit 15), delivery-mode (12), timestamp (6)
	wantProps := []byte{0x90, 0x40, 1, 't', 2, 0, 0, 0, 0, 0, 0, 1, 2}
	if !bytes.Equal(props, wantProps) {
		t.Fatalf("properties\n got %x\nwant %x", props, wantProps)
	}
	buf := AppendHeaderFrame(nil, 5, ClassBasic, 1000, props)
	want := append([]byte{2, 0, 5, 0, 0, 0, 25, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8}, wantProps...)
	want = append(want, 0xce)
	if !bytes.Equal(buf, want) {
		t.Fatalf("header frame\n got %x\nwant %x", buf, want)
	}
	cid, size, raw, err := ParseContentHeader(buf[7 : len(buf)-1])
	if err != nil || cid != ClassBasic || size != 1000 || !bytes.Equal(raw, wantProps) {
		t.Fatalf("parse: %d %d %x %v", cid, size, raw, err)
	}
	if _, _, _, err := ParseContentHeader([]byte{0, 60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Fatal("non-zero weight accepted")
	}
	if hb := AppendHeartbeat(nil); !bytes.Equal(hb, []byte{8, 0, 0, 0, 0, 0, 0, 0xce}) {
		t.Fatalf("heartbeat %x", hb)
	}
}

func TestPropertyContinuationFlag(t *testing.T) {
	// bit 0 set: a second flags word follows (all zero) before the list
	raw := []byte{0x80, 0x01, 0x00, 0x00, 2, 'c', 't'}
	p, err := DecodeProperties(raw)
	if err != nil || p.ContentType != "ct" {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestDecodeErrorsCarryIDs(t *testing.T) {
	_, err := DecodeMethod([]byte{0, 99, 0, 7})
	var e *Error
	if !errors.As(err, &e) || e.Code != CommandInvalid || e.ClassID != 99 || e.MethodID != 7 || !e.Hard() {
		t.Fatalf("unknown method: %#v", err)
	}
	_, err = DecodeMethod([]byte{0, 50, 0, 10, 0, 0, 1})
	if !errors.As(err, &e) || e.Code != SyntaxError || e.ClassID != 50 || e.MethodID != 10 {
		t.Fatalf("truncated queue.declare: %#v", err)
	}
	if _, _, err := ReadTable([]byte{0, 0, 0, 9, 1, 'k', 'S', 0xff, 0xff, 0xff, 0xff}); !errors.As(err, &e) || e.Code != SyntaxError {
		t.Fatalf("hostile string length: %v", err)
	}
	if ReplyName(NotFound) != "NOT_FOUND" || ReplyName(ConnectionForced) != "CONNECTION_FORCED" {
		t.Fatal("reply names")
	}
}

func TestBodyFramesTinyFrameMaxTerminates(t *testing.T) {
	buf := AppendBodyFrames(nil, 1, make([]byte, 10000), 8)
	if want := 3*8 + 10000; len(buf) != want {
		t.Fatalf("%d bytes, want %d (frames clamped to FrameMinSize)", len(buf), want)
	}
}

// TestHotPathAllocations checks the zero-allocation promise of the encoders
// and of ReadFrame (after the reader's buffer has grown once).
func TestHotPathAllocations(t *testing.T) {
	buf := make([]byte, 0, 8192)
	m := &BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 9, Redelivered: true, Exchange: "x", RoutingKey: "q"}
	props := []byte{0x10, 0, 2}
	body := make([]byte, 100)
	if n := testing.AllocsPerRun(100, func() {
		buf, _ = AppendMethodFrame(buf[:0], 1, m)
		buf = AppendHeaderFrame(buf, 1, ClassBasic, 100, props)
		buf = AppendBodyFrames(buf, 1, body, 4096)
		buf = AppendHeartbeat(buf)
	}); n != 0 {
		t.Errorf("Append* allocate %v times per delivery", n)
	}
	frames := bytes.Repeat(buf, 200)
	fr := NewFrameReader(bytes.NewReader(frames), 0)
	if _, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadFrame allocates %v times per frame", n)
	}
	if n := testing.AllocsPerRun(100, func() { PeekDeliveryInfo(props) }); n != 0 {
		t.Errorf("PeekDeliveryInfo allocates %v times", n)
	}
}
