package amqp

import (
	"bufio"
	"bytes"
	"errors"
	"go/build"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/warrenmq/warren/internal/amqp/specgen"
	"github.com/warrenmq/warren/internal/testenv"
)

// fill sets every field of a method struct to a non-zero value; bools
// alternate (pattern 0) or are all true (pattern 1).
func fill(m Method, pattern int) {
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(pattern == 1 || i%2 == 0)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(i + 1))
		case reflect.String:
			f.SetString(strings.Repeat("s", i+1))
		case reflect.Map:
			f.Set(reflect.ValueOf(Table{"k": int32(i)}))
		case reflect.Struct:
			f.Set(reflect.ValueOf(time.Unix(int64(1700000000+i), 0)))
		}
	}
}

func TestEveryMethodRoundTrips(t *testing.T) {
	n := 0
	for cid := uint16(0); cid < 100; cid++ {
		for mid := uint16(0); mid <= 200; mid++ {
			m := newMethod(cid, mid)
			if m == nil {
				continue
			}
			n++
			for pattern := range 2 {
				fill(m, pattern)
				buf, err := AppendMethodFrame(nil, 7, m)
				if err != nil {
					t.Fatalf("%s: %v", m.Name(), err)
				}
				fr := NewFrameReader(bytes.NewReader(buf), 0)
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("%s: %v", m.Name(), err)
				}
				if f.Type != FrameMethod || f.Channel != 7 {
					t.Fatalf("%s: frame %d ch %d", m.Name(), f.Type, f.Channel)
				}
				got, err := DecodeMethod(f.Payload)
				if err != nil {
					t.Fatalf("%s: %v", m.Name(), err)
				}
				if !reflect.DeepEqual(got, m) {
					t.Fatalf("%s: got %+v want %+v", m.Name(), got, m)
				}
			}
		}
	}
	if n != 64 {
		t.Fatalf("%d methods generated, the spec has 64", n)
	}
}

func TestByteExactVectors(t *testing.T) {
	buf, _ := AppendMethodFrame(nil, 0, &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60})
	want := []byte{1, 0, 0, 0, 0, 0, 12, 0, 10, 0, 30, 0x07, 0xff, 0, 2, 0, 0, 0, 60, 0xce}
	if !bytes.Equal(buf, want) {
		t.Fatalf("tune:\n got %x\nwant %x", buf, want)
	}
	buf, _ = AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "x", RoutingKey: "rk", Mandatory: true})
	want = []byte{1, 0, 1, 0, 0, 0, 12, 0, 60, 0, 40, 0, 0, 1, 'x', 2, 'r', 'k', 1, 0xce}
	if !bytes.Equal(buf, want) {
		t.Fatalf("publish:\n got %x\nwant %x", buf, want)
	}
}

func TestTablesRoundTripAllTypes(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	in := Table{
		"bool": true, "i8": int8(-1), "u8": uint8(200), "i16": int16(-300), "u16": uint16(60000),
		"i32": int32(-70000), "u32": uint32(4000000000), "i64": int64(-1 << 40), "f32": float32(1.5),
		"f64": 2.25, "dec": Decimal{Scale: 3, Value: -12345}, "str": "héllo", "bytes": []byte{0, 0xff},
		"arr": []any{int32(1), "two", []any{true}}, "ts": ts, "nested": Table{"deep": Table{"x": nil}},
		"void": nil,
	}
	buf, err := AppendTable(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, n, err := ReadTable(buf)
	if err != nil || n != len(buf) {
		t.Fatalf("%v consumed %d of %d", err, n, len(buf))
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("\n in %#v\nout %#v", in, out)
	}
	if _, err := AppendTable(nil, Table{"bad": struct{}{}}); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("unsupported type: %v", err)
	}
}

func TestPropertiesRoundTripAndPeek(t *testing.T) {
	p := Properties{ContentType: "ct", Headers: Table{"a": "b"}, DeliveryMode: 2, Priority: 9, Expiration: "100",
		MessageID: "m", Timestamp: time.Unix(5, 0), AppID: "app", ClusterID: "c"}
	raw, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodeProperties(raw)
	if err != nil || !reflect.DeepEqual(p, q) {
		t.Fatalf("%v\n%+v\n%+v", err, p, q)
	}
	mode, prio, exp, hh, err := PeekDeliveryInfo(raw)
	if err != nil || mode != 2 || prio != 9 || exp != "100" || !hh {
		t.Fatalf("peek %d %d %q %v %v", mode, prio, exp, hh, err)
	}
	for i := range raw {
		DecodeProperties(raw[:i])
		PeekDeliveryInfo(raw[:i])
	}
}

func TestFrameReaderLimitsAndErrors(t *testing.T) {
	big, _ := AppendMethodFrame(nil, 1, &BasicPublish{Exchange: strings.Repeat("e", 200)})
	fr := NewFrameReader(bytes.NewReader(big), 4096)
	if _, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	fr = NewFrameReader(bytes.NewReader(big), 100)
	if _, err := fr.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame_max: %v", err)
	}
	bad := append([]byte(nil), big...)
	bad[len(bad)-1] = 0
	fr = NewFrameReader(bytes.NewReader(bad), 0)
	if _, err := fr.ReadFrame(); !errors.Is(err, ErrBadFrameEnd) {
		t.Fatalf("frame end: %v", err)
	}
	fr = NewFrameReader(strings.NewReader("AMQP\x00\x00\x09\x00"), 0)
	if err := fr.ReadProtocolHeader(); !errors.Is(err, ErrBadProtocolHeader) {
		t.Fatalf("header: %v", err)
	}
	// a body larger than the bufio buffer takes the copying path
	body := bytes.Repeat([]byte{7}, 100000)
	buf := AppendBodyFrames(nil, 3, body, 131072)
	fr = NewFrameReader(bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(buf)), 16), 131072)
	f, err := fr.ReadFrame()
	if err != nil || !bytes.Equal(f.Payload, body) {
		t.Fatalf("large body: %v", err)
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestBodySplitting(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 10000)
	buf := AppendBodyFrames(nil, 1, body, 4096)
	fr := NewFrameReader(bytes.NewReader(buf), 4096)
	var got []byte
	frames := 0
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
		got = append(got, f.Payload...)
	}
	if frames != 3 || !bytes.Equal(got, body) {
		t.Fatalf("%d frames", frames)
	}
}

func TestErrorsScopeAndText(t *testing.T) {
	e := NewError(NotFound, 50, 10, "no queue '%s' in vhost '%s'", "q", "/")
	if e.Text != "NOT_FOUND - no queue 'q' in vhost '/'" || e.Hard() {
		t.Fatalf("%+v", e)
	}
	if !NewError(FrameError, 0, 0, "x").Hard() || NewError(PreconditionFailed, 0, 0, "x").Hard() {
		t.Fatal("scope")
	}
	if _, err := DecodeMethod([]byte{0, 99, 0, 1}); err == nil || err.(*Error).Code != CommandInvalid {
		t.Fatalf("unknown method: %v", err)
	}
	if _, err := DecodeMethod([]byte{0, 60, 0, 40, 0}); err == nil || err.(*Error).Code != SyntaxError {
		t.Fatalf("truncated: %v", err)
	}
}

func TestGeneratedIsFresh(t *testing.T) {
	path, err := specgen.SpecPath()
	if err != nil {
		testenv.Skip(t, "spec XML not found (go mod download fetches amqp091-go): %v", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		testenv.Skip(t, "spec XML not readable: %v", err)
	}
	want, err := specgen.Generate(raw)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("spec_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, have) {
		t.Fatal("spec_gen.go is stale: run `go generate ./internal/amqp`")
	}
}

// TestImportsOnlyStdlib enforces the architecture rule for this package.
func TestImportsOnlyStdlib(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
			t.Errorf("internal/amqp imports %s; it may import only the standard library", imp)
		}
	}
}

func BenchmarkDecodeBasicPublish(b *testing.B) {
	buf, _ := AppendMethod(nil, &BasicPublish{Exchange: "amq.direct", RoutingKey: "some.key"})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeMethod(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendDeliver(b *testing.B) {
	buf := make([]byte, 0, 4096)
	m := &BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 1, Exchange: "", RoutingKey: "q"}
	body := make([]byte, 16)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = AppendMethodFrame(buf[:0], 1, m)
		buf = AppendHeaderFrame(buf, 1, ClassBasic, 16, nil)
		buf = AppendBodyFrames(buf, 1, body, 131072)
	}
}

// loop repeats its data forever.
type loop struct {
	data []byte
	off  int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func BenchmarkReadFrame(b *testing.B) {
	one, _ := AppendMethodFrame(nil, 1, &BasicPublish{RoutingKey: "q"})
	fr := NewFrameReader(&loop{data: bytes.Repeat(one, 1000)}, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	for i := 0; i < b.N; i++ {
		if _, err := fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeProperties(b *testing.B) {
	p := Properties{ContentType: "application/json", Headers: Table{"x-retry": int32(3)}, DeliveryMode: 2,
		MessageID: "id-1", Timestamp: time.Unix(1700000000, 0)}
	raw, _ := p.Append(nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeProperties(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeekDeliveryInfo(b *testing.B) {
	p := Properties{ContentType: "application/json", Headers: Table{"x-retry": int32(3)}, DeliveryMode: 2, Priority: 4}
	raw, _ := p.Append(nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, _, _, err := PeekDeliveryInfo(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNewErrorTruncatesAtRuneBoundary(t *testing.T) {
	e := NewError(NotFound, 0, 0, "no queue '%s'", strings.Repeat("é", 200))
	if len(e.Text) > 255 || !utf8.ValidString(e.Text) {
		t.Fatalf("%d bytes, valid UTF-8 %v", len(e.Text), utf8.ValidString(e.Text))
	}
}

func TestDecodeMethodRefusesNonUTF8ShortStrings(t *testing.T) {
	b, _ := AppendMethod(nil, &ExchangeDeclare{Exchange: "x\xff", Type: "direct"})
	_, err := DecodeMethod(b)
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != FrameError || ae.Text != "FRAME_ERROR - Malformed UTF-8 in shortstr" || !ae.Hard() {
		t.Fatalf("got %v", err)
	}
	// content methods are not checked (RabbitMQ skips them for speed)
	b, _ = AppendMethod(nil, &BasicPublish{RoutingKey: "k\xff"})
	if _, err := DecodeMethod(b); err != nil {
		t.Fatal(err)
	}
}
