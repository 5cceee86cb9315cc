package amqp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors of the frame layer; test with errors.Is.
var (
	ErrFrameTooLarge     = errors.New("frame larger than the negotiated frame_max")
	ErrBadFrameEnd       = errors.New("frame does not end with 0xCE")
	ErrBadProtocolHeader = errors.New("not an AMQP 0-9-1 protocol header")
	ErrUnknownFrameType  = errors.New("unknown_frame")
)

// ProtocolHeader is what an AMQP 0-9-1 client sends first (section 4.2.2).
var ProtocolHeader = []byte("AMQP\x00\x00\x09\x01")

// DefaultFrameMax is RabbitMQ's default frame_max.
const DefaultFrameMax = 131072

// Frame is one frame (section 4.2.3). Payload is only valid until the next
// ReadFrame call on the reader that returned it.
type Frame struct {
	Type    uint8
	Channel uint16
	Payload []byte
}

// FrameReader reads frames and enforces frame_max.
type FrameReader struct {
	r        *bufio.Reader
	frameMax uint32
	buf      []byte
}

// NewFrameReader reads from r (wrapped in a bufio.Reader unless it is one).
// frameMax 0 means DefaultFrameMax; it counts the whole frame, header and
// end octet included, as the spec says.
func NewFrameReader(r io.Reader, frameMax uint32) *FrameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	if frameMax == 0 {
		frameMax = DefaultFrameMax
	}
	return &FrameReader{r: br, frameMax: frameMax}
}

// SetFrameMax changes the limit after tuning.
func (fr *FrameReader) SetFrameMax(n uint32) {
	if n == 0 {
		n = DefaultFrameMax
	}
	fr.frameMax = n
}

// Buffered returns the bytes already read from the socket but not parsed.
func (fr *FrameReader) Buffered() int { return fr.r.Buffered() }

// ReadProtocolHeader reads and checks the 8-byte protocol header.
func (fr *FrameReader) ReadProtocolHeader() error {
	var h [8]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: got %q before EOF", ErrBadProtocolHeader, h[:])
		}
		return err
	}
	if string(h[:]) != string(ProtocolHeader) {
		return fmt.Errorf("%w: got %q", ErrBadProtocolHeader, h[:])
	}
	return nil
}

// ReadFrame reads the next frame. The payload buffer is reused.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	hdr, err := fr.r.Peek(7)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) > 0 {
			return Frame{}, io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	typ := hdr[0]
	ch := binary.BigEndian.Uint16(hdr[1:])
	size := binary.BigEndian.Uint32(hdr[3:])
	if uint64(size)+8 > uint64(fr.frameMax) {
		return Frame{}, fmt.Errorf("%w: %d bytes, frame_max %d", ErrFrameTooLarge, uint64(size)+8, fr.frameMax)
	}
	switch typ {
	case FrameMethod, FrameHeader, FrameBody, FrameHeartbeat:
	default:
		// RabbitMQ's words: "type 9, all octets = <<>>: unknown_frame".
		return Frame{}, fmt.Errorf("type %d, all octets = <<>>: %w", typ, ErrUnknownFrameType)
	}
	total := int(size) + 8
	var payload []byte
	if total <= fr.r.Size() {
		// Parse in place from the bufio buffer when the frame fits.
		b, err := fr.r.Peek(total)
		if err != nil {
			return Frame{}, unexpected(err)
		}
		if b[total-1] != FrameEnd {
			return Frame{}, fmt.Errorf("%w: got 0x%02x", ErrBadFrameEnd, b[total-1])
		}
		if cap(fr.buf) < int(size) {
			fr.buf = make([]byte, size, max(int(size), 4096))
		}
		payload = fr.buf[:size]
		copy(payload, b[7:total-1])
		_, _ = fr.r.Discard(total)
	} else {
		_, _ = fr.r.Discard(7)
		if cap(fr.buf) < int(size)+1 {
			fr.buf = make([]byte, size+1)
		}
		b := fr.buf[:size+1]
		if _, err := io.ReadFull(fr.r, b); err != nil {
			return Frame{}, unexpected(err)
		}
		if b[size] != FrameEnd {
			return Frame{}, fmt.Errorf("%w: got 0x%02x", ErrBadFrameEnd, b[size])
		}
		payload = b[:size]
	}
	return Frame{Type: typ, Channel: ch, Payload: payload}, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func appendFrameHeader(buf []byte, typ uint8, ch uint16) ([]byte, int) {
	buf = append(buf, typ, byte(ch>>8), byte(ch), 0, 0, 0, 0)
	return buf, len(buf)
}

func finishFrame(buf []byte, start int) []byte {
	binary.BigEndian.PutUint32(buf[start-4:], uint32(len(buf)-start))
	return append(buf, FrameEnd)
}

// AppendMethodFrame appends a whole method frame.
func AppendMethodFrame(buf []byte, channel uint16, m Method) ([]byte, error) {
	buf, start := appendFrameHeader(buf, FrameMethod, channel)
	buf, err := AppendMethod(buf, m)
	if err != nil {
		return buf[:start-7], err
	}
	return finishFrame(buf, start), nil
}

// AppendHeaderFrame appends a content header frame; props are the property
// flags and list exactly as they should go on the wire.
func AppendHeaderFrame(buf []byte, channel uint16, classID uint16, bodySize uint64, props []byte) []byte {
	buf, start := appendFrameHeader(buf, FrameHeader, channel)
	buf = binary.BigEndian.AppendUint16(buf, classID)
	buf = append(buf, 0, 0) // weight
	buf = binary.BigEndian.AppendUint64(buf, bodySize)
	if len(props) == 0 {
		buf = append(buf, 0, 0)
	} else {
		buf = append(buf, props...)
	}
	return finishFrame(buf, start)
}

// AppendBodyFrames appends body split into frames of at most frameMax bytes
// (payload frameMax-8). frameMax 0 means DefaultFrameMax; a value below the
// spec's FrameMinSize, which no peer may negotiate, counts as FrameMinSize.
func AppendBodyFrames(buf []byte, channel uint16, body []byte, frameMax uint32) []byte {
	if frameMax == 0 {
		frameMax = DefaultFrameMax
	}
	if frameMax < FrameMinSize {
		frameMax = FrameMinSize
	}
	chunk := int(frameMax) - 8
	for len(body) > 0 {
		n := min(chunk, len(body))
		var start int
		buf, start = appendFrameHeader(buf, FrameBody, channel)
		buf = append(buf, body[:n]...)
		buf = finishFrame(buf, start)
		body = body[n:]
	}
	return buf
}

// AppendHeartbeat appends a heartbeat frame.
func AppendHeartbeat(buf []byte) []byte {
	return append(buf, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
}

// ParseContentHeader splits a content header payload (section 4.2.6.1).
// props aliases payload.
func ParseContentHeader(payload []byte) (classID uint16, bodySize uint64, props []byte, err error) {
	if len(payload) < 14 {
		return 0, 0, nil, NewError(SyntaxError, 0, 0, "content header of %d bytes is too short", len(payload))
	}
	classID = binary.BigEndian.Uint16(payload)
	if w := binary.BigEndian.Uint16(payload[2:]); w != 0 {
		return 0, 0, nil, NewError(SyntaxError, classID, 0, "content header weight %d must be 0", w)
	}
	bodySize = binary.BigEndian.Uint64(payload[4:])
	return classID, bodySize, payload[12:], nil
}
