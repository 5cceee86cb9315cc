package amqp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// chunker hands out its input in small reads whose sizes (1 to 8 bytes)
// follow a pseudo-random sequence drawn from seed.
type chunker struct {
	b    []byte
	seed uint32
}

func (c *chunker) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	c.seed = c.seed*1664525 + 1013904223
	n := min(1+int(c.seed>>29), len(p), len(c.b))
	n = copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// readAll reads frames until an error and returns copies of them and the
// error that ended the stream.
func readAll(fr *FrameReader) ([]Frame, error) {
	var out []Frame
	for i := 0; i < 1000; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			return out, err
		}
		f.Payload = append([]byte(nil), f.Payload...)
		out = append(out, f)
	}
	return out, nil
}

func seedFrames(f *testing.F) {
	pub, _ := AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "x", RoutingKey: "k"})
	p := Properties{Headers: Table{"a": []any{int32(1)}}, DeliveryMode: 2}
	props, _ := p.Append(nil)
	pub = AppendHeaderFrame(pub, 1, ClassBasic, 3, props)
	pub = AppendBodyFrames(pub, 1, []byte("abc"), 0)
	pub = AppendHeartbeat(pub)
	f.Add(uint32(1), pub)
	f.Add(uint32(7), []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint32(0), []byte{2, 0, 1, 0, 0, 0, 0, 0xce})
	f.Add(uint32(3), append(AppendBodyFrames(nil, 2, bytes.Repeat([]byte("b"), 5000), 4096), 9, 9))
}

func FuzzFrameReader(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, seed uint32, data []byte) {
		whole, wholeErr := readAll(NewFrameReader(bytes.NewReader(data), 4096))
		var in io.Reader = &chunker{b: data, seed: seed}
		if seed&1 != 0 {
			// a tiny bufio buffer sends every frame through the copying path
			in = bufio.NewReaderSize(in, 16)
		}
		frames, err := readAll(NewFrameReader(in, 4096))
		// Neither small reads nor the reader's buffer size may change the result.
		if !reflect.DeepEqual(frames, whole) || (err == nil) != (wholeErr == nil) || errors.Is(err, io.EOF) != errors.Is(wholeErr, io.EOF) {
			t.Fatalf("chunked reads: %d frames, %v; one read: %d frames, %v", len(frames), err, len(whole), wholeErr)
		}
		for _, fm := range frames {
			if len(fm.Payload)+8 > 4096 {
				t.Fatalf("frame of %d bytes passed frame_max", len(fm.Payload)+8)
			}
			switch fm.Type {
			case FrameMethod:
				if m, err := DecodeMethod(fm.Payload); err == nil {
					// what decodes must re-encode to the same method
					buf, err := AppendMethod(nil, m)
					if err == nil {
						m2, err := DecodeMethod(buf)
						if err != nil || m2.Name() != m.Name() {
							t.Fatalf("re-decode of %s: %v", m.Name(), err)
						}
					}
				} else {
					var ae *Error
					if !errors.As(err, &ae) {
						t.Fatalf("decode error is not an *Error: %v", err)
					}
				}
			case FrameHeader:
				if _, _, props, err := ParseContentHeader(fm.Payload); err == nil {
					DecodeProperties(props)
					PeekDeliveryInfo(props)
				}
			}
		}
	})
}

func FuzzReadTable(f *testing.F) {
	good, _ := AppendTable(nil, Table{"a": "b", "n": Table{"x": []any{int64(1), Decimal{1, 2}}}, "t": true})
	f.Add(good)
	f.Add([]byte{0, 0, 0, 3, 1, 'a', 'F'})
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, n, err := ReadTable(data)
		// the allocation-free validator used on publish agrees
		cn, cerr := checkTable(data, 0)
		if (err == nil) != (cerr == nil) || (err == nil && cn != n) {
			t.Fatalf("checkTable: %d, %v; ReadTable: %d, %v", cn, cerr, n, err)
		}
		if err != nil {
			return
		}
		if n > len(data) {
			t.Fatalf("consumed %d of %d", n, len(data))
		}
		enc, err := AppendTable(nil, tb)
		if err != nil {
			t.Fatalf("decoded table does not re-encode: %v", err)
		}
		tb2, _, err := ReadTable(enc)
		if err != nil || len(tb2) != len(tb) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzDecodeMethod(f *testing.F) {
	for _, m := range []Method{&ConnectionStartOk{ClientProperties: Table{"product": "x"}, Mechanism: "PLAIN", Response: "\x00a\x00b"}, &QueueDeclare{Queue: "q", Arguments: Table{"x-max-length": int32(1)}}, &BasicAck{Multiple: true}} {
		b, _ := AppendMethod(nil, m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMethod(data)
		if err == nil && m == nil {
			t.Fatal("nil method without error")
		}
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("decode error is not an *Error: %v", err)
			}
			return
		}
		// what decodes re-encodes, and decodes again to the same thing
		buf, err := AppendMethod(nil, m)
		if err != nil {
			t.Fatalf("%s does not re-encode: %v", m.Name(), err)
		}
		m2, err := DecodeMethod(buf)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("%s: re-decode %v: %#v != %#v", m.Name(), err, m2, m)
		}
	})
}

func FuzzDecodeProperties(f *testing.F) {
	p := Properties{ContentType: "a", Headers: Table{"h": int32(1)}, Expiration: "5", Priority: 1}
	b, _ := p.Append(nil)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeProperties(data)
		pi, perr := PeekPublishInfo(data)
		if err == nil {
			// what a consumer can decode, the publish check accepts, and
			// both read the same values
			if perr != nil {
				t.Fatalf("PeekPublishInfo refuses decodable properties: %v", perr)
			}
			if pi.DeliveryMode != p.DeliveryMode || pi.Priority != p.Priority || pi.Expiration != p.Expiration || pi.UserID != p.UserID || pi.HasHeaders != (p.Headers != nil) {
				t.Fatalf("peek %+v, decode %+v", pi, p)
			}
		}
		if err != nil {
			return
		}
		enc, err := p.Append(nil)
		if err != nil {
			return
		}
		if _, err := DecodeProperties(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(enc[:0], nil) && len(enc) == 0 {
			t.Fatal("empty encoding")
		}
	})
}
