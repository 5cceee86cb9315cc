package amqp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
	"unicode/utf8"
)

// Method is one AMQP method (AMQP 0-9-1 section 4.2.4). The concrete types
// are generated from the spec XML (spec_gen.go).
type Method interface {
	ClassID() uint16
	MethodID() uint16
	Name() string
	HasContent() bool
	Synchronous() bool
	// read and write take their cursor by value so that it stays on the
	// stack (a pointer passed through an interface escapes to the heap).
	read(r reader) error
	write(w writer) writer
}

// errShort is reported for any read past the end of the input.
var errShort = errors.New("truncated input")

// reader decodes AMQP primitive types from a byte slice. The first error is
// sticky: later reads return zero values.
type reader struct {
	b   []byte
	err error
	// utf8 makes shortstr fail with errMalformedUTF8 on invalid UTF-8
	// (RabbitMQ checks the short strings of methods without content).
	utf8 bool
}

// errMalformedUTF8 is reported for a short string that is not UTF-8.
var errMalformedUTF8 = errors.New("Malformed UTF-8 in shortstr")

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.b) < n {
		r.err = errShort
		return false
	}
	return true
}

func (r *reader) octet() uint8 {
	if !r.need(1) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) short() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) long() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) longlong() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) shortstr() string {
	n := int(r.octet())
	b := r.bytes(n)
	if r.utf8 && r.err == nil && !utf8.Valid(b) {
		r.err = errMalformedUTF8
		return ""
	}
	return string(b)
}

func (r *reader) longstr() string {
	n := r.long()
	if uint64(n) > uint64(len(r.b)) {
		r.need(len(r.b) + 1)
		return ""
	}
	return string(r.bytes(int(n)))
}

func (r *reader) timestamp() time.Time {
	return time.Unix(int64(r.longlong()), 0)
}

func (r *reader) table() Table {
	if r.err != nil {
		return nil
	}
	t, n, err := readTable(r.b, 0)
	if err != nil {
		r.err = err
		return nil
	}
	r.b = r.b[n:]
	return t
}

// writer appends AMQP primitive types to a byte slice.
type writer struct {
	b   []byte
	err error
}

func (w *writer) octet(v uint8)     { w.b = append(w.b, v) }
func (w *writer) short(v uint16)    { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) long(v uint32)     { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) longlong(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

func (w *writer) shortstr(s string) {
	if len(s) > 255 {
		if w.err == nil {
			w.err = fmt.Errorf("short string of %d bytes exceeds 255", len(s))
		}
		s = s[:255]
	}
	w.b = append(w.b, byte(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) longstr(s string) {
	w.long(uint32(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) timestamp(t time.Time) { w.longlong(uint64(t.Unix())) }

func (w *writer) table(t Table) {
	var err error
	w.b, err = AppendTable(w.b, t)
	if err != nil && w.err == nil {
		w.err = err
	}
}

// Table is an AMQP field table (section 4.2.5.5, with RabbitMQ's type set).
type Table map[string]any

// Decimal is an AMQP decimal value: Value / 10^Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// maxDepth bounds nested tables and arrays so hostile input cannot exhaust
// the stack.
const maxDepth = 64

// ReadTable decodes a long-length-prefixed table and returns the number of
// bytes consumed. A malformed table is an *Error with code SyntaxError.
func ReadTable(b []byte) (Table, int, error) {
	t, n, err := readTable(b, 0)
	if err != nil {
		return nil, 0, NewError(SyntaxError, 0, 0, "malformed field table: %v", err)
	}
	return t, n, nil
}

func readTable(b []byte, depth int) (Table, int, error) {
	if depth > maxDepth {
		return nil, 0, fmt.Errorf("field table nested deeper than %d", maxDepth)
	}
	if len(b) < 4 {
		return nil, 0, errShort
	}
	n := int(binary.BigEndian.Uint32(b))
	if n > len(b)-4 {
		return nil, 0, fmt.Errorf("field table length %d exceeds the %d bytes left: %w", n, len(b)-4, errShort)
	}
	body := b[4 : 4+n]
	t := Table{}
	for len(body) > 0 {
		kl := int(body[0])
		if len(body) < 1+kl+1 {
			return nil, 0, errShort
		}
		key := string(body[1 : 1+kl])
		v, used, err := readValue(body[1+kl:], depth)
		if err != nil {
			return nil, 0, fmt.Errorf("field %q: %w", key, err)
		}
		t[key] = v
		body = body[1+kl+used:]
	}
	return t, 4 + n, nil
}

// readValue decodes one typed field value; it returns bytes consumed.
func readValue(b []byte, depth int) (any, int, error) {
	if len(b) < 1 {
		return nil, 0, errShort
	}
	typ, b := b[0], b[1:]
	need := func(n int) error {
		if len(b) < n {
			return errShort
		}
		return nil
	}
	switch typ {
	case 't':
		if err := need(1); err != nil {
			return nil, 0, err
		}
		return b[0] != 0, 2, nil
	case 'b':
		if err := need(1); err != nil {
			return nil, 0, err
		}
		return int8(b[0]), 2, nil
	case 'B':
		if err := need(1); err != nil {
			return nil, 0, err
		}
		return b[0], 2, nil
	case 's':
		if err := need(2); err != nil {
			return nil, 0, err
		}
		return int16(binary.BigEndian.Uint16(b)), 3, nil
	case 'u':
		if err := need(2); err != nil {
			return nil, 0, err
		}
		return binary.BigEndian.Uint16(b), 3, nil
	case 'I':
		if err := need(4); err != nil {
			return nil, 0, err
		}
		return int32(binary.BigEndian.Uint32(b)), 5, nil
	case 'i':
		if err := need(4); err != nil {
			return nil, 0, err
		}
		return binary.BigEndian.Uint32(b), 5, nil
	case 'l':
		if err := need(8); err != nil {
			return nil, 0, err
		}
		return int64(binary.BigEndian.Uint64(b)), 9, nil
	case 'f':
		if err := need(4); err != nil {
			return nil, 0, err
		}
		return math.Float32frombits(binary.BigEndian.Uint32(b)), 5, nil
	case 'd':
		if err := need(8); err != nil {
			return nil, 0, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), 9, nil
	case 'D':
		if err := need(5); err != nil {
			return nil, 0, err
		}
		return Decimal{Scale: b[0], Value: int32(binary.BigEndian.Uint32(b[1:]))}, 6, nil
	case 'S', 'x':
		if err := need(4); err != nil {
			return nil, 0, err
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, 0, errShort
		}
		if typ == 'x' {
			return append([]byte(nil), b[4:4+n]...), 5 + int(n), nil
		}
		return string(b[4 : 4+n]), 5 + int(n), nil
	case 'A':
		if depth >= maxDepth {
			return nil, 0, fmt.Errorf("array nested deeper than %d", maxDepth)
		}
		if err := need(4); err != nil {
			return nil, 0, err
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, 0, errShort
		}
		body := b[4 : 4+n]
		arr := []any{}
		for len(body) > 0 {
			v, used, err := readValue(body, depth+1)
			if err != nil {
				return nil, 0, err
			}
			arr = append(arr, v)
			body = body[used:]
		}
		return arr, 5 + int(n), nil
	case 'T':
		if err := need(8); err != nil {
			return nil, 0, err
		}
		return time.Unix(int64(binary.BigEndian.Uint64(b)), 0), 9, nil
	case 'F':
		t, n, err := readTable(b, depth+1)
		if err != nil {
			return nil, 0, err
		}
		return t, 1 + n, nil
	case 'V':
		return nil, 1, nil
	}
	return nil, 0, fmt.Errorf("unknown field type %q", typ)
}

// checkTable validates a long-length-prefixed table like readTable, without
// building it, and returns the bytes it takes.
func checkTable(b []byte, depth int) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("field table nested deeper than %d", maxDepth)
	}
	if len(b) < 4 {
		return 0, errShort
	}
	n := int(binary.BigEndian.Uint32(b))
	if n > len(b)-4 {
		return 0, fmt.Errorf("field table length %d exceeds the %d bytes left: %w", n, len(b)-4, errShort)
	}
	body := b[4 : 4+n]
	for len(body) > 0 {
		kl := int(body[0])
		if len(body) < 1+kl+1 {
			return 0, errShort
		}
		used, err := checkValue(body[1+kl:], depth)
		if err != nil {
			return 0, err
		}
		body = body[1+kl+used:]
	}
	return 4 + n, nil
}

// checkValue validates one typed field value and returns its size.
func checkValue(b []byte, depth int) (int, error) {
	if len(b) < 1 {
		return 0, errShort
	}
	typ := b[0]
	fixed := 0
	switch typ {
	case 't', 'b', 'B':
		fixed = 1
	case 's', 'u':
		fixed = 2
	case 'I', 'i', 'f':
		fixed = 4
	case 'l', 'd', 'T':
		fixed = 8
	case 'D':
		fixed = 5
	case 'V':
		return 1, nil
	case 'S', 'x', 'A':
		if len(b) < 5 {
			return 0, errShort
		}
		n := binary.BigEndian.Uint32(b[1:])
		if uint64(n) > uint64(len(b)-5) {
			return 0, errShort
		}
		if typ == 'A' {
			if depth >= maxDepth {
				return 0, fmt.Errorf("array nested deeper than %d", maxDepth)
			}
			body := b[5 : 5+n]
			for len(body) > 0 {
				used, err := checkValue(body, depth+1)
				if err != nil {
					return 0, err
				}
				body = body[used:]
			}
		}
		return 5 + int(n), nil
	case 'F':
		n, err := checkTable(b[1:], depth+1)
		if err != nil {
			return 0, err
		}
		return 1 + n, nil
	default:
		return 0, fmt.Errorf("unknown field type %q", typ)
	}
	if len(b) < 1+fixed {
		return 0, errShort
	}
	return 1 + fixed, nil
}

// AppendTable encodes t (keys sorted, so the output is deterministic) with
// its long length prefix.
func AppendTable(buf []byte, t Table) ([]byte, error) {
	return appendTable(buf, t, 0)
}

func appendTable(buf []byte, t Table, depth int) ([]byte, error) {
	if depth > maxDepth {
		return buf, fmt.Errorf("field table nested deeper than %d", maxDepth)
	}
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(k) > 255 {
			return buf[:start], fmt.Errorf("field table key %.20q... longer than 255 bytes", k)
		}
		buf = append(buf, byte(len(k)))
		buf = append(buf, k...)
		var err error
		buf, err = appendValue(buf, t[k], depth)
		if err != nil {
			return buf[:start], fmt.Errorf("field %q: %w", k, err)
		}
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-4))
	return buf, nil
}

func appendValue(buf []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		return append(buf, 't', b), nil
	case int8:
		return append(buf, 'b', byte(x)), nil
	case uint8:
		return append(buf, 'B', x), nil
	case int16:
		return binary.BigEndian.AppendUint16(append(buf, 's'), uint16(x)), nil
	case uint16:
		return binary.BigEndian.AppendUint16(append(buf, 'u'), x), nil
	case int32:
		return binary.BigEndian.AppendUint32(append(buf, 'I'), uint32(x)), nil
	case uint32:
		return binary.BigEndian.AppendUint32(append(buf, 'i'), x), nil
	case int:
		return binary.BigEndian.AppendUint64(append(buf, 'l'), uint64(x)), nil
	case int64:
		return binary.BigEndian.AppendUint64(append(buf, 'l'), uint64(x)), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(buf, 'f'), math.Float32bits(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(buf, 'd'), math.Float64bits(x)), nil
	case Decimal:
		return binary.BigEndian.AppendUint32(append(buf, 'D', x.Scale), uint32(x.Value)), nil
	case string:
		buf = binary.BigEndian.AppendUint32(append(buf, 'S'), uint32(len(x)))
		return append(buf, x...), nil
	case []byte:
		buf = binary.BigEndian.AppendUint32(append(buf, 'x'), uint32(len(x)))
		return append(buf, x...), nil
	case []any:
		if depth >= maxDepth {
			return buf, fmt.Errorf("array nested deeper than %d", maxDepth)
		}
		buf = append(buf, 'A', 0, 0, 0, 0)
		start := len(buf)
		for _, e := range x {
			var err error
			if buf, err = appendValue(buf, e, depth+1); err != nil {
				return buf, err
			}
		}
		binary.BigEndian.PutUint32(buf[start-4:], uint32(len(buf)-start))
		return buf, nil
	case time.Time:
		return binary.BigEndian.AppendUint64(append(buf, 'T'), uint64(x.Unix())), nil
	case Table:
		return appendTable(append(buf, 'F'), x, depth+1)
	case map[string]any:
		return appendTable(append(buf, 'F'), Table(x), depth+1)
	case nil:
		return append(buf, 'V'), nil
	}
	return buf, fmt.Errorf("unsupported field value type %T", v)
}

// DecodeMethod decodes a method frame payload (section 4.2.4).
func DecodeMethod(payload []byte) (Method, error) {
	if len(payload) < 4 {
		return nil, NewError(SyntaxError, 0, 0, "method frame of %d bytes is too short", len(payload))
	}
	cid := binary.BigEndian.Uint16(payload)
	mid := binary.BigEndian.Uint16(payload[2:])
	m := newMethod(cid, mid)
	if m == nil {
		return nil, NewError(CommandInvalid, cid, mid, "unknown method: class %d, method %d", cid, mid)
	}
	// Like RabbitMQ (rabbit_binary_parser:assert_utf8 in the generated
	// decoder), the short strings of methods without content must be
	// UTF-8: names are persisted and shown, and must not change on the way.
	if err := m.read(reader{b: payload[4:], utf8: !m.HasContent()}); err != nil {
		if errors.Is(err, errMalformedUTF8) {
			return nil, NewError(FrameError, 0, 0, "Malformed UTF-8 in shortstr")
		}
		return nil, NewError(SyntaxError, cid, mid, "malformed '%s' method frame: %v", m.Name(), err)
	}
	return m, nil
}

// AppendMethod appends a method's payload (class id, method id, arguments).
func AppendMethod(buf []byte, m Method) ([]byte, error) {
	w := writer{b: buf}
	w.short(m.ClassID())
	w.short(m.MethodID())
	w = m.write(w)
	return w.b, w.err
}

// IntValue returns a field-table value of any integer type (or a whole
// float64, as JSON definitions carry numbers) as an int64.
func IntValue(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	}
	return 0, false
}
