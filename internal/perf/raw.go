package perf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The raw-frame publisher (Config.Raw): a minimal AMQP 0-9-1 client that
// writes Basic.Publish frames itself and sends Batch publishes per socket
// write, as lavinmqperf or several perf-test producers do. It exists so
// that a benchmark measures the broker rather than amqp091-go, which
// flushes the socket once per publish. It speaks only what a publisher
// needs: the handshake (PLAIN), one channel, Confirm.Select, Basic.Publish
// and the server's Basic.Ack / Basic.Nack / Close.

const (
	frameMethod    = 1
	frameHeader    = 2
	frameBody      = 3
	frameHeartbeat = 8
	frameEnd       = 0xCE
)

// rawConn is one raw client connection with channel 1 open.
type rawConn struct {
	nc       net.Conn
	r        *bufio.Reader
	frameMax int
}

type rawFrame struct {
	typ     byte
	channel uint16
	payload []byte
}

func (f rawFrame) method() (class, method uint16) {
	if f.typ != frameMethod || len(f.payload) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(f.payload), binary.BigEndian.Uint16(f.payload[2:])
}

func readFrame(r *bufio.Reader) (rawFrame, error) {
	var h [7]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return rawFrame{}, err
	}
	size := binary.BigEndian.Uint32(h[3:])
	if size > 1<<28 {
		return rawFrame{}, fmt.Errorf("frame of %d bytes: not AMQP 0-9-1 (is this an AMQP port?)", size)
	}
	p := make([]byte, size+1)
	if _, err := io.ReadFull(r, p); err != nil {
		return rawFrame{}, err
	}
	if p[size] != frameEnd {
		return rawFrame{}, fmt.Errorf("frame end octet %#x, want 0xCE", p[size])
	}
	return rawFrame{typ: h[0], channel: binary.BigEndian.Uint16(h[1:]), payload: p[:size]}, nil
}

// appendFrame appends a frame holding payload to b.
func appendFrame(b []byte, typ byte, channel uint16, payload []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, channel)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, frameEnd)
}

// appendMethodFrame appends a method frame whose arguments are args.
func appendMethodFrame(b []byte, channel, class, method uint16, args []byte) []byte {
	p := binary.BigEndian.AppendUint16(nil, class)
	p = binary.BigEndian.AppendUint16(p, method)
	return appendFrame(b, frameMethod, channel, append(p, args...))
}

func shortstr(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func longstr(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
}

// clientProperties is the StartOk field table: product and the
// capabilities a publisher uses.
func clientProperties() []byte {
	var caps []byte
	for _, k := range []string{"publisher_confirms", "basic.nack", "connection.blocked"} {
		caps = append(shortstr(caps, k), 't', 1)
	}
	var t []byte
	t = append(shortstr(t, "product"), 'S')
	t = longstr(t, "warren-perf raw")
	t = append(shortstr(t, "capabilities"), 'F')
	t = binary.BigEndian.AppendUint32(t, uint32(len(caps)))
	t = append(t, caps...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(t))), t...)
}

// closeError reads a Connection.Close or Channel.Close's reply code and text.
func closeError(f rawFrame) error {
	class, _ := f.method()
	p := f.payload[4:]
	if len(p) < 3 {
		return fmt.Errorf("server closed the %s", map[uint16]string{10: "connection", 20: "channel"}[class])
	}
	code := binary.BigEndian.Uint16(p)
	n := int(p[2])
	text := ""
	if len(p) >= 3+n {
		text = string(p[3 : 3+n])
	}
	scope := "connection"
	if class == 20 {
		scope = "channel"
	}
	return fmt.Errorf("server closed the %s: %d %s", scope, code, text)
}

// expect reads frames until the method class.method on channel arrives;
// a Close from the server becomes an error.
func (c *rawConn) expect(class, method uint16) (rawFrame, error) {
	for {
		f, err := readFrame(c.r)
		if err != nil {
			return f, fmt.Errorf("waiting for method %d.%d: %w", class, method, err)
		}
		if f.typ == frameHeartbeat {
			continue
		}
		cl, m := f.method()
		if (cl == 10 && m == 50) || (cl == 20 && m == 40) {
			return f, closeError(f)
		}
		if cl == class && m == method {
			return f, nil
		}
	}
}

func (c *rawConn) send(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// dialRaw connects to uri, opens the connection and channel 1, and puts
// the channel in confirm mode when confirms is set.
func dialRaw(uri string, confirms bool) (*rawConn, error) {
	u, err := amqp.ParseURI(uri)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), 10*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := &rawConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.handshake(u, confirms); err != nil {
		nc.Close()
		return nil, fmt.Errorf("raw client handshake with %s:%d: %w", u.Host, u.Port, err)
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *rawConn) handshake(u amqp.URI, confirms bool) error {
	if err := c.send([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return err
	}
	if _, err := c.expect(10, 10); err != nil { // Connection.Start
		return err
	}
	args := clientProperties()
	args = shortstr(args, "PLAIN")
	args = longstr(args, "\x00"+u.Username+"\x00"+u.Password)
	args = shortstr(args, "en_US")
	if err := c.send(appendMethodFrame(nil, 0, 10, 11, args)); err != nil {
		return err
	}
	f, err := c.expect(10, 30) // Connection.Tune
	if err != nil {
		return err
	}
	if len(f.payload) < 12 {
		return errors.New("short Connection.Tune")
	}
	chMax := binary.BigEndian.Uint16(f.payload[4:])
	c.frameMax = int(binary.BigEndian.Uint32(f.payload[6:]))
	if c.frameMax == 0 || c.frameMax > 1<<20 {
		c.frameMax = 1 << 17
	}
	tune := binary.BigEndian.AppendUint16(nil, chMax)
	tune = binary.BigEndian.AppendUint32(tune, uint32(c.frameMax))
	tune = binary.BigEndian.AppendUint16(tune, 0) // no heartbeats
	b := appendMethodFrame(nil, 0, 10, 31, tune)
	b = appendMethodFrame(b, 0, 10, 40, append(shortstr(shortstr(nil, u.Vhost), ""), 0)) // Connection.Open
	if err := c.send(b); err != nil {
		return err
	}
	if _, err := c.expect(10, 41); err != nil {
		return err
	}
	if err := c.send(appendMethodFrame(nil, 1, 20, 10, shortstr(nil, ""))); err != nil { // Channel.Open
		return err
	}
	if _, err := c.expect(20, 11); err != nil {
		return err
	}
	if confirms {
		if err := c.send(appendMethodFrame(nil, 1, 85, 10, []byte{0})); err != nil { // Confirm.Select
			return err
		}
		if _, err := c.expect(85, 11); err != nil {
			return err
		}
	}
	return nil
}

// appendPublish appends one Basic.Publish with its content header and
// body frames to b.
func (c *rawConn) appendPublish(b []byte, exchange, key string, persistent bool, body []byte) []byte {
	args := binary.BigEndian.AppendUint16(nil, 0)
	args = shortstr(args, exchange)
	args = shortstr(args, key)
	args = append(args, 0) // mandatory, immediate off
	b = appendMethodFrame(b, 1, 60, 40, args)
	h := binary.BigEndian.AppendUint16(nil, 60)
	h = binary.BigEndian.AppendUint16(h, 0)
	h = binary.BigEndian.AppendUint64(h, uint64(len(body)))
	if persistent {
		h = binary.BigEndian.AppendUint16(h, 0x1000) // delivery-mode present
		h = append(h, 2)
	} else {
		h = binary.BigEndian.AppendUint16(h, 0)
	}
	b = appendFrame(b, frameHeader, 1, h)
	chunk := c.frameMax - 8
	for len(body) > 0 {
		n := min(chunk, len(body))
		b = appendFrame(b, frameBody, 1, body[:n])
		body = body[n:]
	}
	return b
}

// close sends Connection.Close and waits until readerDone is closed,
// which the reader does on Close-Ok: closing the socket earlier would
// reset it while the server may still have publishes to read (a flooded
// broker reads slowly under flow control), and they would be lost. It
// returns an error when the server did not answer within closeWait.
func (c *rawConn) close(readerDone <-chan struct{}) error {
	args := binary.BigEndian.AppendUint16(nil, 200)
	args = shortstr(args, "bye")
	args = binary.BigEndian.AppendUint32(args, 0)
	defer c.nc.Close()
	c.nc.SetWriteDeadline(time.Now().Add(closeWait))
	if err := c.send(appendMethodFrame(nil, 0, 10, 50, args)); err != nil {
		return fmt.Errorf("sending Connection.Close: %w", err)
	}
	select {
	case <-readerDone:
		return nil
	case <-time.After(closeWait):
		return fmt.Errorf("no Connection.Close-Ok within %v: publishes the server had not read yet are lost", closeWait)
	}
}

// closeWait bounds the wait for Close-Ok. A flooded broker reads the
// last publishes only as its flow control lets it: RabbitMQ 3.10 on a
// loaded 2-core VM took over 2 minutes after a 2 s fanout run (the
// missing messages were exactly the last ones written).
const closeWait = 10 * time.Minute

// confirmSet turns the server's acks (single or multiple) into the
// sequence numbers they confirm: on one channel the delivery tag of the
// publish with sequence s is s+1.
type confirmSet struct {
	done []bool // by tag-1 - base
	base uint64 // tags below base+1 are all settled
}

// settle marks tag (and with multiple every earlier tag) settled and
// calls fn for each tag newly settled.
func (s *confirmSet) settle(tag uint64, multiple bool, fn func(tag uint64)) {
	if tag == 0 || tag <= s.base {
		return
	}
	idx := int(tag - 1 - s.base)
	for len(s.done) <= idx {
		s.done = append(s.done, false)
	}
	from := idx
	if multiple {
		from = 0
	}
	for i := from; i <= idx; i++ {
		if !s.done[i] {
			s.done[i] = true
			fn(s.base + uint64(i) + 1)
		}
	}
	n := 0
	for n < len(s.done) && s.done[n] {
		n++
	}
	if n > 0 {
		s.done = append(s.done[:0], s.done[n:]...)
		s.base += uint64(n)
	}
}

// produceRaw is produce for Config.Raw: the same numbered messages,
// confirms and tracker, Batch publishes per write.
func (r *run) produceRaw(ctx context.Context, id int) {
	time.Sleep(r.cfg.ProducerStartDelay)
	confirms := r.cfg.ConfirmWindow > 0
	c, err := dialRaw(r.uri(id), confirms)
	if err != nil {
		r.err("producer %d: %v", id, err)
		return
	}
	var window chan struct{}
	if confirms {
		window = make(chan struct{}, r.cfg.ConfirmWindow)
	}
	// the reader: acks and nacks, and the server closing on us
	failed := make(chan struct{})
	var readErr error
	var rmu sync.Mutex
	defer func() {
		if err := c.close(failed); err != nil {
			r.err("producer %d: %v", id, err)
		}
	}()
	go func() {
		defer close(failed)
		var set confirmSet
		for {
			f, err := readFrame(c.r)
			if err != nil {
				rmu.Lock()
				readErr = err
				rmu.Unlock()
				return
			}
			cl, m := f.method()
			switch {
			case cl == 10 && m == 51: // Close-Ok: the server read everything
				rmu.Lock()
				readErr = errors.New("connection closed")
				rmu.Unlock()
				return
			case (cl == 10 && m == 50) || (cl == 20 && m == 40):
				rmu.Lock()
				readErr = closeError(f)
				rmu.Unlock()
				return
			case cl == 60 && (m == 80 || m == 120) && len(f.payload) >= 13:
				tag := binary.BigEndian.Uint64(f.payload[4:])
				multiple := f.payload[12]&1 != 0
				ack := m == 80
				set.settle(tag, multiple, func(t uint64) {
					if ack {
						r.c.confirmed.Add(1)
						r.tracker.Sent(uint32(id), uint32(t-1))
					} else {
						r.c.nacked.Add(1)
					}
					if window != nil {
						<-window
					}
				})
			}
		}
	}()
	body := make([]byte, r.cfg.Size)
	key := r.cfg.RoutingKey
	if r.cfg.Exchange == "" || key == "" {
		key = r.queueName(id % r.cfg.Queues)
	}
	batch := max(r.cfg.Batch, 1)
	if r.cfg.Rate > 0 {
		batch = 1 // paced: one publish per write
	}
	pace := newPacer(r.cfg.Rate)
	buf := make([]byte, 0, 64<<10)
	var pending []uint32 // in buf, for the tracker when there are no confirms
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		if err := c.send(buf); err != nil {
			rmu.Lock()
			e := readErr
			rmu.Unlock()
			if e == nil {
				e = err
			}
			r.err("producer %d: publish: %v", id, e)
			return false
		}
		r.c.sent.Add(uint64(len(pending)))
		if !confirms {
			for _, s := range pending {
				r.tracker.Sent(uint32(id), s)
			}
		}
		r.lastSend(time.Now())
		buf, pending = buf[:0], pending[:0]
		return true
	}
	seq := uint32(0)
	for ; r.cfg.MessageCount <= 0 || int(seq) < r.cfg.MessageCount; seq++ {
		if ctx.Err() != nil {
			break
		}
		pace.wait()
		if window != nil {
			select {
			case window <- struct{}{}:
			default:
				if !flush() {
					return
				}
				select {
				case window <- struct{}{}:
				case <-ctx.Done():
					r.awaitConfirms(window, failed)
					return
				case <-failed:
					rmu.Lock()
					r.err("producer %d: %v", id, readErr)
					rmu.Unlock()
					return
				}
			}
		}
		Encode(body, uint32(id), seq, time.Now())
		buf = c.appendPublish(buf, r.cfg.Exchange, key, r.cfg.Persistent, body)
		pending = append(pending, seq)
		if len(pending) >= batch || len(buf) >= 256<<10 {
			if !flush() {
				return
			}
		}
	}
	if !flush() {
		return
	}
	if window != nil {
		r.awaitConfirms(window, failed)
	}
}

// awaitConfirms waits while confirms keep arriving (10 s without one
// ends the wait) until window is empty.
func (r *run) awaitConfirms(window chan struct{}, failed <-chan struct{}) {
	last, lastN := time.Now(), len(window)
	for len(window) > 0 {
		select {
		case <-failed:
			return
		case <-time.After(5 * time.Millisecond):
		}
		if n := len(window); n != lastN {
			last, lastN = time.Now(), n
		} else if time.Since(last) > 10*time.Second {
			r.err("%d publishes unconfirmed 10 s after the last confirm", n)
			return
		}
	}
}
